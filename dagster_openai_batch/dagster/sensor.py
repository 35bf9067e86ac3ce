"""`openai_batch_sensor`: watches in-flight batches and materializes results once per batch set.

Each tick:
1. reads the ``batch_job`` materializations recorded since the last tick (new batch sets);
2. looks at every in-flight batch with as few API calls as `BatchClient.retrieve_many` allows
   (list pages of 100: ≤ 11 calls for 1,000 batches);
3. records progress as an `AssetObservation` on ``batch_job`` when it changed;
4. for each batch set whose batches all reached a terminal state, requests exactly one run of
   ``results`` for its partition (``run_key`` = the batch ids @ the ``batch_job`` record),
   expired and cancelled included — unless its results were already materialized (e.g. by a run
   of all three assets) or a newer ``batch_job`` of the partition superseded it; a set whose
   batches all failed validation gets no run: its errors go to the observation and the log.

The cursor (watermarks + in-flight sets) is saved atomically with the run requests, and run keys
deduplicate, so restarting the daemon neither loses nor repeats a batch. If a results run fails,
re-materializing ``batch_job`` (which adopts the same batches) gets a new results run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import BaseModel

from .checks import accepted_evaluation
from .handoff import metadata_values
from .pipeline import OpenAIBatchPipeline
from .resource import OpenAIBatchResource
from .stages import TERMINAL, WITH_RESULTS, batch_status_metadata


class InFlight(BaseModel):
    """One batch set (one ``batch_job`` materialization) the sensor still watches."""

    pipeline: str
    partition: str | None
    batch_ids: list[str]
    storage_id: int
    """Of the ``batch_job`` materialization that recorded the set."""
    progress: str = ""


class SensorCursor(BaseModel):
    watermarks: dict[str, int] = {}
    """Per pipeline: the storage id of the newest batch_job materialization already read."""
    in_flight: list[InFlight] = []


def _run_key(item: InFlight) -> str:
    """One results run per ``batch_job`` materialization of a batch set."""
    return f"{'+'.join(item.batch_ids)}@{item.storage_id}"


def _newest_per_batch_set(items: Sequence[InFlight]) -> list[InFlight]:
    """Several materializations of the same batches (a retry that adopted them, a cancel): keep the newest."""
    newest: dict[tuple[str, str | None, tuple[str, ...]], InFlight] = {}
    for item in items:
        key = (item.pipeline, item.partition, tuple(item.batch_ids))
        if key not in newest or newest[key].storage_id < item.storage_id:
            newest[key] = item
    return sorted(newest.values(), key=lambda item: item.storage_id)


class _LatestRecords:
    """Storage ids of the newest materialization of an asset per partition, read once per tick."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self._by_key: dict[dg.AssetKey, Mapping[str | None, int]] = {}

    def storage_id(self, key: dg.AssetKey, partition: str | None) -> int | None:
        if key not in self._by_key:
            latest: dict[str | None, int] = {
                partition: storage_id
                for partition, storage_id in self.instance.get_latest_storage_id_by_partition(
                    key, dg.DagsterEventType.ASSET_MATERIALIZATION
                ).items()
            }
            newest = self.instance.fetch_materializations(key, limit=1).records
            if newest and newest[0].asset_materialization and newest[0].asset_materialization.partition is None:
                latest[None] = newest[0].storage_id
            self._by_key[key] = latest
        return self._by_key[key].get(partition)


def _why_not_collect(
    instance: dg.DagsterInstance, latest: _LatestRecords, pipeline: OpenAIBatchPipeline, item: InFlight
) -> str | None:
    """Why a finished batch set needs no results run (None: it needs one)."""
    newest_job = latest.storage_id(pipeline.batch_job.key, item.partition)
    if newest_job is not None and newest_job > item.storage_id:
        return "a newer batch_job superseded it (materialize results with config batch_ids to collect it anyway)"
    newest_results = latest.storage_id(pipeline.results.key, item.partition)
    if newest_results is None or newest_results < item.storage_id:
        return None
    collected = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=pipeline.results.key,
            asset_partitions=[item.partition] if item.partition is not None else None,
            after_storage_id=item.storage_id,
        ),
        limit=20,
    ).records
    for record in collected:
        materialization = record.asset_materialization
        if materialization is not None and metadata_values(materialization.metadata).get("batch_ids") == item.batch_ids:
            return "its results are already materialized"
    return None


def _read_new_batch_sets(
    instance: dg.DagsterInstance, pipeline: OpenAIBatchPipeline, cursor: SensorCursor
) -> list[InFlight]:
    found = []
    after = cursor.watermarks.get(pipeline.name)
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=pipeline.batch_job.key, after_storage_id=after),
            limit=500,
            ascending=True,
        )
        for record in page.records:
            after = record.storage_id
            materialization = record.asset_materialization
            if materialization is None:
                continue
            values = metadata_values(materialization.metadata)
            batch_ids = list(values.get("batch_ids") or [])
            if batch_ids:  # an input with no rows submits nothing
                found.append(
                    InFlight(
                        pipeline=pipeline.name,
                        partition=materialization.partition,
                        batch_ids=batch_ids,
                        storage_id=record.storage_id,
                    )
                )
        if not page.has_more:
            break
    if after is not None:
        cursor.watermarks[pipeline.name] = after
    return found


def openai_batch_sensor(
    pipelines: Sequence[OpenAIBatchPipeline],
    *,
    name: str = "openai_batch_sensor",
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """One sensor watching the batches of ``pipelines`` (which must share one resource key).

    Example:
        >>> # sensor = openai_batch_sensor([reviews_pipeline, embeddings_pipeline])
    """
    if not pipelines:
        raise ValueError("openai_batch_sensor needs at least one pipeline")
    resource_keys = {p.resource_key for p in pipelines}
    if len(resource_keys) != 1:
        raise ValueError(
            f"openai_batch_sensor {name!r}: pipelines use resource keys {sorted(resource_keys)}; "
            "make one sensor per resource key"
        )
    (resource_key,) = resource_keys
    by_name = {p.name: p for p in pipelines}

    @dg.sensor(
        name=name,
        jobs=[p.results_job for p in pipelines],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        required_resource_keys={resource_key},
        description="Watches in-flight OpenAI batches; materializes results when they finish.",
    )
    def _sensor(context: dg.SensorEvaluationContext, **_resources: Any) -> dg.SensorResult:
        # Direct invocation passes required resources as keyword arguments; the daemon does not.
        resource: OpenAIBatchResource = getattr(context.resources, resource_key)
        cursor = SensorCursor.model_validate_json(context.cursor) if context.cursor else SensorCursor()
        for pipeline in pipelines:
            cursor.in_flight.extend(_read_new_batch_sets(context.instance, pipeline, cursor))
        cursor.in_flight = _newest_per_batch_set(cursor.in_flight)
        if not cursor.in_flight:
            return dg.SensorResult(skip_reason="No batch in flight.", cursor=cursor.model_dump_json())

        ids = [batch_id for item in cursor.in_flight for batch_id in item.batch_ids]
        with resource.get_batch_client() as client:
            batches = client.retrieve_many(ids, missing_ok=True)

        run_requests: list[dg.RunRequest] = []
        events: list[dg.AssetObservation] = []
        checks: list[dg.AssetCheckEvaluation] = []
        still_in_flight: list[InFlight] = []
        latest = _LatestRecords(context.instance)
        for item in cursor.in_flight:
            known = [batches[i] for i in item.batch_ids if i in batches]
            if item.pipeline not in by_name or len(known) != len(item.batch_ids):
                missing = [i for i in item.batch_ids if i not in batches]
                context.log.warning(
                    f"No longer watching batches {item.batch_ids}: "
                    + (f"the service does not know {missing}" if missing else "their pipeline is gone")
                )
                continue
            pipeline = by_name[item.pipeline]
            metadata: dict[str, Any] = batch_status_metadata(resource, known)
            progress = f"{metadata['status']}:{metadata['requests_completed']}:{metadata['requests_failed']}"
            if progress != item.progress:
                events.append(
                    dg.AssetObservation(
                        asset_key=pipeline.batch_job.key, partition=item.partition, metadata=metadata
                    )
                )
                item.progress = progress
            if not all(b.status in TERMINAL for b in known):
                still_in_flight.append(item)
                continue
            checks.append(
                accepted_evaluation(pipeline.batch_job.key, item.partition, [b.status for b in known], metadata)
            )
            if not any(b.status in WITH_RESULTS for b in known):
                context.log.error(
                    f"{pipeline.name} batches {item.batch_ids} failed validation; no results run. "
                    f"{getattr(metadata.get('errors'), 'value', '')}"
                )
                continue
            reason = _why_not_collect(context.instance, latest, pipeline, item)
            if reason is not None:
                context.log.info(f"{pipeline.name} batches {item.batch_ids} finished; no results run: {reason}")
                continue
            run_requests.append(
                dg.RunRequest(
                    run_key=_run_key(item),
                    job_name=pipeline.results_job.name,
                    partition_key=item.partition,
                    run_config={
                        "ops": {pipeline.results_op_name: {"config": {"batch_ids": item.batch_ids}}}
                    },
                    tags={"openai_batch/batch_ids": ",".join(item.batch_ids)[:1000]},
                )
            )
        cursor.in_flight = still_in_flight
        return dg.SensorResult(
            run_requests=run_requests, asset_events=[*events, *checks], cursor=cursor.model_dump_json()
        )

    return _sensor
