"""A run where parts wait for the model's queue and go through without user action.

``python -m dagster_openai_batch.demo.queue_flow [DIR]`` materializes a three-part pipeline on the
emulator whose gpt-4o-mini queue holds one part at a time (the README's "The queue and the cost"
example), then ticks the sensor as the daemon would, printing what waited, what each tick
submitted, and the estimate beside what was billed.
"""

import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

from ..core.templates import RequestTemplate
from ..dagster.pipeline import OpenAIBatchPipeline, openai_batch_assets
from ..dagster.resource import OpenAIBatchResource
from ..dagster.sensor import SensorCursor, openai_batch_sensor
from ..dagster.stage_records import BatchJobRecord, InputFileRecord, ResultsRecord, latest_record
from .run import SENSOR_NAME, launch_run_requests, prepare_home

MODEL = "gpt-4o-mini"
QUEUE_TOKENS = 800


@dg.asset
def questions() -> list[dict[str, str]]:
    return [{"id": f"q{i}", "text": f"Explain the number {i} in one line."} for i in range(30)]


def _definitions(emulator_dir: Path) -> tuple[dg.Definitions, OpenAIBatchPipeline]:
    answers = openai_batch_assets(
        name="answers",
        source=questions,
        template=RequestTemplate(
            endpoint="/v1/chat/completions",
            model=MODEL,
            messages=[{"role": "user", "content": "{text}"}],
            custom_id_column="id",
        ),
        max_requests_per_file=10,
    )
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        queue_token_budget={MODEL: QUEUE_TOKENS},
        emulator_faults={"token_limits": {MODEL: QUEUE_TOKENS}},
    )
    defs = dg.Definitions.merge(
        answers.definitions(),
        dg.Definitions(
            assets=[questions],
            sensors=[openai_batch_sensor([answers])],
            resources={"openai_batch": resource},
        ),
    )
    return defs, answers


def main(root: Path, timeout_seconds: float = 120) -> None:
    prepare_home(root / "dagster_home")
    defs, pipeline = _definitions(root / "emulator")
    instance = dg.DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    keys = [questions.key, pipeline.input_file.key, pipeline.batch_job.key]
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, asset_selection=keys, run_config=quiet).success
    source = latest_record(instance, pipeline.input_file.key, None, InputFileRecord)
    submitted = latest_record(instance, pipeline.batch_job.key, None, BatchJobRecord)
    assert source is not None
    assert submitted is not None
    print(
        f"input_file: {source.parts} parts, estimated {source.part_token_list} input tokens, "
        f"cost {source.estimated_cost_min_usd or 0:.4f} to {source.estimated_cost_max_usd or 0:.4f}"
        f" USD; "
        f"{MODEL} queue limit {QUEUE_TOKENS:,} tokens"
    )
    print(f"batch_job: {len(submitted.batch_id_list)} batch(es) created; {submitted.waiting}")
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    cursor: str | None = None
    start = time.monotonic()
    while True:
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
        ) as context:
            result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
            if isinstance(event, dg.AssetMaterialization):
                record = BatchJobRecord.read(event.metadata)
                print(
                    f"  +{time.monotonic() - start:4.1f}s sensor submitted a waiting part: "
                    f"{len(record.batch_id_list)}/{record.parts} parts have a batch"
                    + (f"; {record.waiting}" if record.waiting else "")
                )
        runs = launch_run_requests(
            defs, instance, result.run_requests or [], sensor_name=sensor.name, run_config=quiet
        )
        for run_id in runs:
            print(
                f"  +{time.monotonic() - start:4.1f}s sensor launched the results run {run_id[:8]}"
            )
        cursor = result.cursor
        if not cursor or not SensorCursor.model_validate_json(cursor).in_flight:
            break
        if time.monotonic() - start > timeout_seconds:
            raise TimeoutError("batches still in flight")
        time.sleep(0.3)
    results = latest_record(instance, pipeline.results.key, None, ResultsRecord)
    assert results is not None
    print(f"results: {results.rows} rows, {results.counts['succeeded']} succeeded")
    print(f"results: {results.estimate_vs_actual}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="queue-")))
