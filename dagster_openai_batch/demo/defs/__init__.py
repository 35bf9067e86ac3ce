"""The demo's YAML-declared components (loaded by `dagster_openai_batch.demo.definitions`)."""
