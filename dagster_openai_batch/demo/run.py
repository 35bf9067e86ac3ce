"""Run the demo end to end on a real Dagster instance, the way the daemon would.

Submit both pipelines, evaluate the sensor until every batch has finished, run the results jobs it
requests, and summarise. Used by ``dagster-openai-batch demo``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from ..dagster.pipeline import OpenAIBatchPipeline
from ..dagster.sensor import SensorCursor
from ..dagster.stage_records import ResultsRecord, latest_record

SENSOR_NAME = "openai_batch_sensor"
INSTANCE_SETTINGS = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
"""Run config that keeps the runs' DEBUG/INFO lines off the terminal (they stay in the instance)."""


def prepare_home(home: Path) -> None:
    """Point ``DAGSTER_HOME`` at ``home`` (made if needed), with telemetry off."""
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text(INSTANCE_SETTINGS)
    os.environ["DAGSTER_HOME"] = str(home.absolute())


def evaluate_sensor_once(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None, *, quiet: bool = False
) -> tuple[str | None, list[str]]:
    """One sensor tick, with its effects applied as the daemon applies them; returns the new
    cursor and the run ids launched."""
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    launched = launch_run_requests(
        defs,
        instance,
        result.run_requests or [],
        sensor_name=sensor.name,
        run_config=QUIET if quiet else None,
    )
    return result.cursor, launched


def launch_run_requests(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    run_requests: Sequence[dg.RunRequest],
    *,
    sensor_name: str,
    run_config: Mapping[str, Any] | None = None,
    launched_keys: set[str] | None = None,
) -> list[str]:
    """Run a sensor's requests in process as the daemon launches them: once per run key (also
    across ``launched_keys``, updated), as the job's asset/check subset, tagged as the sensor's;
    returns run ids."""
    launched = []
    for request in run_requests:
        run_key = request.run_key or ""
        if launched_keys is not None and run_key in launched_keys:
            continue
        if instance.get_runs(dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1):
            continue  # the daemon deduplicates run keys the same way
        if launched_keys is not None:
            launched_keys.add(run_key)
        job = defs.resolve_job_def(request.job_name or "")
        if request.asset_selection is not None or request.asset_check_keys is not None:
            job = job.get_subset(
                asset_selection=set(request.asset_selection or []),
                asset_check_selection=set(request.asset_check_keys or []),
            )
        outcome = job.execute_in_process(
            instance=instance,
            run_config={**request.run_config, **(run_config or {})},
            partition_key=request.partition_key,
            tags={**request.tags, "dagster/run_key": run_key, "dagster/sensor_name": sensor_name},
            raise_on_error=False,
        )
        launched.append(outcome.run_id)
    return launched


def run_demo(
    home: Path, *, timeout_seconds: float = 600, echo: Callable[[str], Any] = print
) -> dict[str, ResultsRecord]:
    """Submit, watch, collect. Returns each pipeline's ``results`` record."""
    prepare_home(home)
    from .definitions import DAILY, PIPELINES, daily_reviews, defs, product_reviews, review_labels

    resources = dict(defs.resources or {})
    instance = dg.DagsterInstance.get()
    day = DAILY.get_last_partition_key()
    echo(f"Dagster home: {home} (backend: {resources['openai_batch'].backend})")
    submissions: list[tuple[dg.AssetsDefinition, OpenAIBatchPipeline, str | None]] = [
        (product_reviews, review_labels, None),
        (daily_reviews, PIPELINES[1], day),
    ]
    asset_job = defs.resolve_implicit_global_asset_job_def()
    for source, pipeline, partition in submissions:
        # As a user would in the UI: materialize the rows, then launch the pipeline's submit job.
        asset_job.execute_in_process(
            instance=instance,
            asset_selection=[source.key],
            partition_key=partition,
            run_config=QUIET,
        )
        defs.resolve_job_def(pipeline.submit_job.name).execute_in_process(
            instance=instance, partition_key=partition, run_config=QUIET
        )
        echo(f"submitted {pipeline.name}" + (f" [{partition}]" if partition else ""))

    cursor: str | None = None
    deadline = time.monotonic() + timeout_seconds
    while True:
        cursor, launched = evaluate_sensor_once(defs, instance, cursor, quiet=True)
        for run_id in launched:
            run = instance.get_run_by_id(run_id)
            echo(f"sensor launched {run.job_name if run else 'a results run'} ({run_id[:8]})")
        in_flight = SensorCursor.model_validate_json(cursor).in_flight if cursor else []
        if not in_flight:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"batches still in flight after {timeout_seconds}s: {in_flight}")
        time.sleep(1.0)

    summary = {}
    for _, pipeline, partition in submissions:
        found = latest_record(instance, pipeline.results.key, partition, ResultsRecord)
        summary[pipeline.name] = found or ResultsRecord()
    return summary


def format_summary(summary: Mapping[str, ResultsRecord]) -> str:
    """One line per pipeline: rows, non-zero status counts, tokens, cost, where the table is."""
    lines = []
    for name, record in summary.items():
        statuses = ", ".join(f"{status} {n}" for status, n in record.counts.items() if n)
        cost = record.cost_usd
        if cost is None:
            cost_text = "unknown"
        else:
            cost_text = f"${cost:.4f}" if cost >= 0.0001 or cost == 0 else "< $0.0001"
        lines.append(
            f"{name}: {record.rows} rows ({statuses or 'none'}); "
            f"tokens in {record.input_tokens:,} / out {record.output_tokens:,}; "
            f"cost {cost_text} at batch rates\n  {record.results_uri}"
        )
    return "\n".join(lines)
