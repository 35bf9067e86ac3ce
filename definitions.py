"""Dagster entry point of the demo: ``dagster dev -w workspace.yaml`` (or ``-f definitions.py``).

Two batch pipelines over product reviews, on the offline emulator unless OPENAI_API_KEY is set.
The code lives in `dagster_openai_batch/demo/definitions.py`.
"""

from dagster_openai_batch.demo.definitions import defs

__all__ = ["defs"]
