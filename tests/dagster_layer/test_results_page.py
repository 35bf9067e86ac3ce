"""What the results page shows: the summary first, Insights' usage keys, a readable preview."""

import dagster as dg
from pipeline_helpers import recorded, run_sensor_until_idle

from dagster_openai_batch import RequestTemplate, openai_batch_assets, openai_batch_sensor
from dagster_openai_batch.dagster.stage_records import ResultsRecord

ROWS = [{"id": f"r{i}", "text": f"review {i} " + "words " * 40} for i in range(7)]


@dg.asset
def reviews() -> list[dict]:
    return ROWS


def test_results_metadata_reads_summary_first_with_insights_usage(instance, resource):
    pipeline = openai_batch_assets(
        name="labels",
        source=reviews,
        template=RequestTemplate(
            endpoint="/v1/chat/completions",
            model="gpt-4o-mini",
            prompt="Label: {text}",
            custom_id_column="id",
        ),
    )
    defs = dg.Definitions.merge(
        pipeline.definitions(),
        dg.Definitions(
            assets=[reviews],
            sensors=[openai_batch_sensor([pipeline], minimum_interval_seconds=1)],
            resources={"openai_batch": resource},
        ),
    )
    submitted = dg.materialize(
        [reviews, pipeline.input_file, pipeline.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
    )
    assert submitted.success
    run_sensor_until_idle(defs, instance)
    event = instance.get_latest_materialization_event(pipeline.results.key)
    assert event is not None
    assert event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    keys = list(metadata)
    # The summary comes first, Dagster's table metadata (the long column schema) last.
    assert keys[:3] == [
        "openai_batch/status_succeeded",
        "openai_batch/status_failed",
        "openai_batch/status_expired",
    ]
    assert keys.index("openai_batch/cost_usd") < keys.index("openai_batch/results_uri")
    # The columns come last, in the metadata (not in the Columns section above the summary).
    assert keys[-2:] == ["dagster/row_count", "openai_batch/column_schema"]
    assert "dagster/column_schema" not in keys
    assert "path" not in keys  # one location: the table (no pickled copy beside it)
    record = recorded(instance, pipeline.results.key, ResultsRecord)
    # Usage under the keys dagster-openai and Dagster+ Insights use, per answering model.
    usage = {k: v.value for k, v in metadata.items() if k.startswith("openai.")}
    models = {k.split(".")[1] for k in usage}
    assert len(models) == 1
    (model,) = models
    assert model.startswith("gpt-4o-mini")
    assert usage[f"openai.{model}.calls"] == record.status_succeeded
    assert usage[f"openai.{model}.prompt_tokens"] == record.input_tokens
    assert usage[f"openai.{model}.completion_tokens"] == record.output_tokens
    assert usage[f"openai.{model}.total_tokens"] == record.input_tokens + record.output_tokens
    # The preview leads with the answer and keeps every cell short.
    preview = str(metadata["openai_batch/preview"].value)
    header, _, *rows = preview.splitlines()
    assert header.startswith("| answer | status | custom_id | text |")
    assert len(rows) == 5
    assert all(len(cell.strip(" |")) <= 90 for row in rows for cell in row.split(" | "))
