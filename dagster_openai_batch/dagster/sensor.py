"""`openai_batch_sensor`: watches in-flight batches and materializes results once per batch set.

Each tick:
1. reads the ``batch_job`` materializations recorded since the last tick (new batch sets); per
   pipeline and partition only the newest submission is watched: **the newest submission wins**;
2. looks at every in-flight batch with as few API calls as `BatchClient.retrieve_many` allows
   (list pages of 100: ≤ 11 calls for 1,000 batches);
3. records progress as an `AssetObservation` on ``batch_job`` when it changed;
4. for each batch set whose batches all reached a terminal state (expired and cancelled included),
   requests exactly one run of the pipeline's results job (``run_key`` = the batch ids @ the
   ``batch_job`` record), which materializes ``results`` and evaluates ``batches_accepted`` —
   unless the latest ``results`` of the partition already hold those batches' answers, or a newer
   ``batch_job`` superseded the set. A set whose batches all failed validation gets a run of
   ``batches_accepted`` alone, which turns red with the errors.
5. submits the parts of a set that wait for room in their model's queue (and new attempts of parts
   refused with ``token_limit_exceeded``) as the queue admits them (``queue.py``), under the keys
   ``batch_job`` would have used, and records the set again as a ``batch_job`` materialization,
   which the next tick reads as the set's newest submission; a set is collected only once every
   part has run.

Nothing the sensor records can conflict with an earlier record: it writes observations and
``batch_job`` materializations (which Dagster allows any number of) and no runless check
evaluation (Dagster allows only one per check and partition). The cursor (watermarks + in-flight
sets) is saved atomically with the run requests, and run keys deduplicate, so restarting the
daemon, resetting the cursor or a second tick at the same moment neither loses nor repeats a
batch (a batch created by a tick whose records were lost is adopted by its key at the next one).
One set that cannot be processed is logged and kept for the next tick; it never fails the tick
for the others.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import dagster as dg
import openai
from openai.types import Batch
from pydantic import BaseModel, ValidationError

from ..core.client import BatchClientError
from ..core.errors import OpenAIBatchError
from ..core.queue_budget import token_limit_of
from ..core.vocabulary import RESULT_FILE_STATUSES, TERMINAL_STATUSES
from .asset_bodies import batch_status
from .pipeline import OpenAIBatchPipeline
from .queue import LiveQueue, Submission, has_pending_parts, read_queue
from .resource import OpenAIBatchResource
from .stage_records import (
    BatchJobRecord,
    BatchStatusRecord,
    ResultsRecord,
    StageRecordError,
    latest_record,
)


class InFlight(BaseModel):
    """One batch set (one ``batch_job`` materialization) the sensor still watches."""

    pipeline: str
    partition: str | None
    batch_ids: list[str]
    storage_id: int
    """Of the ``batch_job`` materialization that recorded the set."""
    progress: str = ""
    queued: bool = False
    """Parts of the set still wait for room in the queue (the sensor submits them)."""
    run_id: str = ""
    """Of the ``batch_job`` run (in the metadata of the batches the sensor creates)."""


class SensorCursor(BaseModel):
    watermarks: dict[str, int] = {}
    """Per pipeline: the storage id of the newest batch_job materialization already read."""
    in_flight: list[InFlight] = []


class SensorTickError(OpenAIBatchError, RuntimeError):
    """The tick could not look at the batches (service unreachable or refusing); it wrote
    nothing."""


def _run_key(item: InFlight) -> str:
    """One results run per ``batch_job`` materialization of a batch set."""
    return f"{'+'.join(item.batch_ids)}@{item.storage_id}"


def _where(item: InFlight) -> str:
    return item.pipeline + (f" [{item.partition}]" if item.partition is not None else "")


def _newest_per_partition(items: Sequence[InFlight]) -> tuple[list[InFlight], list[InFlight]]:
    """(the newest set of each pipeline partition, the older sets it supersedes)."""
    newest: dict[tuple[str, str | None], InFlight] = {}
    for item in items:
        key = (item.pipeline, item.partition)
        if key not in newest or newest[key].storage_id < item.storage_id:
            newest[key] = item
    kept = sorted(newest.values(), key=lambda item: item.storage_id)
    kept_ids = {id(item) for item in kept}  # identity: comparing models is O(fields) each
    return kept, [item for item in items if id(item) not in kept_ids]


class _LatestRecords:
    """Newest materializations of an asset per partition, read at most once per tick."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self._by_key: dict[dg.AssetKey, Mapping[str | None, int]] = {}

    def storage_id(self, key: dg.AssetKey, partition: str | None) -> int | None:
        if key not in self._by_key:
            latest: dict[str | None, int] = {}
            latest.update(
                self.instance.get_latest_storage_id_by_partition(
                    key, dg.DagsterEventType.ASSET_MATERIALIZATION
                )
            )
            newest = self.instance.fetch_materializations(key, limit=1).records
            if (
                newest
                and newest[0].asset_materialization
                and newest[0].asset_materialization.partition is None
            ):
                latest[None] = newest[0].storage_id
            self._by_key[key] = latest
        return self._by_key[key].get(partition)

    def results(self, key: dg.AssetKey, partition: str | None) -> ResultsRecord | None:
        """The record of the newest ``results`` materialization ``key`` for ``partition``."""
        if self.storage_id(key, partition) is None:
            return None
        return latest_record(self.instance, key, partition, ResultsRecord)


def _why_not_collect(
    latest: _LatestRecords, pipeline: OpenAIBatchPipeline, item: InFlight
) -> str | None:
    """Why a finished batch set needs no results run (None: it needs one)."""
    newest_job = latest.storage_id(pipeline.batch_job.key, item.partition)
    if newest_job is not None and newest_job > item.storage_id:
        return (
            "a newer batch_job superseded it (to collect it anyway, materialize results with "
            "config batch_ids and allow_superseded: true)"
        )
    collected = latest.results(pipeline.results.key, item.partition)
    if collected is not None and set(item.batch_ids) <= set(collected.covered_batch_ids):
        return "the latest results already hold their answers"
    return None


def _read_new_batch_sets(
    context: dg.SensorEvaluationContext, pipeline: OpenAIBatchPipeline, cursor: SensorCursor
) -> list[InFlight]:
    found = []
    after = cursor.watermarks.get(pipeline.name)
    while True:
        page = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=pipeline.batch_job.key, after_storage_id=after),
            limit=500,
            ascending=True,
        )
        for record in page.records:
            after = record.storage_id
            materialization = record.asset_materialization
            if materialization is None:
                continue
            try:
                job = BatchJobRecord.read(materialization.metadata)
            except StageRecordError as error:
                context.log.warning(
                    f"Skipping {pipeline.batch_job.key.to_user_string()} record "
                    f"{record.storage_id}: {error}."
                )
                continue
            queued = has_pending_parts(job)
            if job.batch_id_list or queued:  # an input with no rows submits nothing
                found.append(
                    InFlight(
                        pipeline=pipeline.name,
                        partition=materialization.partition,
                        batch_ids=job.batch_id_list,
                        storage_id=record.storage_id,
                        queued=queued,
                        run_id=record.run_id or "",
                    )
                )
        if not page.has_more:
            break
    if after is not None:
        cursor.watermarks[pipeline.name] = after
    return found


def _load_cursor(context: dg.SensorEvaluationContext) -> SensorCursor:
    if not context.cursor:
        return SensorCursor()
    try:
        return SensorCursor.model_validate_json(context.cursor)
    except ValidationError:
        # Re-reading every batch_job record is safe (run keys and the collection rule deduplicate).
        context.log.warning(
            "The sensor cursor is unreadable; starting again from the first batch_job records."
        )
        return SensorCursor()


def _retrieve(resource: OpenAIBatchResource, items: Sequence[InFlight]) -> dict[str, Batch]:
    ids = [batch_id for item in items for batch_id in item.batch_ids]
    try:
        with resource.get_batch_client() as client:
            return client.retrieve_many(ids, missing_ok=True)
    except (BatchClientError, openai.APIError) as error:
        message = str(error).splitlines()[0][:300].rstrip(". ")
        raise SensorTickError(
            f"Could not look at {len(ids)} in-flight batch(es) on {resource.backend}: {message}. "
            "Nothing was recorded; the next tick tries again."
        ) from None


class _Tick:
    """What one tick decides: observations, run requests, and the sets still in flight."""

    def __init__(
        self, context: dg.SensorEvaluationContext, by_name: Mapping[str, OpenAIBatchPipeline]
    ) -> None:
        self.context, self.by_name = context, by_name
        self.latest = _LatestRecords(context.instance)
        self.observations: list[dg.AssetObservation] = []
        self.run_requests: list[dg.RunRequest] = []
        self.in_flight: list[InFlight] = []
        self.materializations: list[dg.AssetMaterialization] = []
        """New ``batch_job`` records of sets whose waiting parts the tick submitted."""
        self.queue: LiveQueue | None = None
        """The queue, read at most once per tick (only when a set has parts to submit)."""
        self.running: list[str] = []
        """The sets still in flight, in words."""
        self.finished: list[str] = []
        """The sets that finished at this tick, in words."""

    def process(
        self, resource: OpenAIBatchResource, item: InFlight, batches: Mapping[str, Batch]
    ) -> None:
        pipeline = self.by_name.get(item.pipeline)
        missing = [i for i in item.batch_ids if i not in batches]
        if pipeline is None or missing:
            why = f"the service does not know {missing}" if missing else "their pipeline is gone"
            self.context.log.warning(
                f"No longer watching {_where(item)} batches {item.batch_ids}: {why}."
            )
            return
        known = [batches[i] for i in item.batch_ids]
        status = batch_status(resource, known, as_of=OBSERVED)
        progress = f"{status.status}:{status.requests_completed}:{status.requests_failed}"
        observation = None
        if progress != item.progress:
            done = status.requests_completed + status.requests_failed
            observation = dg.AssetObservation(
                asset_key=pipeline.batch_job.key,
                partition=item.partition,
                # dagster/row_count: the one figure of the latest observation that the asset's
                # Overview tab shows (next to the latest materialization's metadata).
                metadata={**status, "dagster/row_count": dg.MetadataValue.int(done)},
            )
        words = _progress_words(status)
        if (item.queued or any(token_limit_of(b) is not None for b in known)) and self._submit(
            resource, pipeline, item, known, observation
        ):
            return
        if not all(b.status in TERMINAL_STATUSES for b in known):
            self._keep(item.model_copy(update={"progress": progress}), observation)
            self.running.append(f"{_label(item)}: {words}")
            return
        reason = _why_not_collect(self.latest, pipeline, item)
        if reason is not None:
            self.context.log.info(
                f"{_where(item)} batches {item.batch_ids} finished; no results run: {reason}."
            )
            self.finished.append(f"{_label(item)}: {words}; no results run ({reason})")
        else:
            self.run_requests.append(_run_request(pipeline, item, known))
            self.finished.append(f"{_label(item)}: {words}; results run requested")
        if observation is not None:
            self.observations.append(observation)

    def _submit(
        self,
        resource: OpenAIBatchResource,
        pipeline: OpenAIBatchPipeline,
        item: InFlight,
        known: list[Batch],
        observation: dg.AssetObservation | None,
    ) -> bool:
        """Submit the set's waiting parts (and new attempts of parts refused for the token limit)
        as the queue admits them; True while the set still has parts to submit, or submitted
        some at this tick (it is then kept in flight)."""
        job = _job_record_at(self.context.instance, pipeline, item)
        if not job.key_base:  # made before queue-aware submission: nothing to resubmit
            return False
        metadata = {"dagster_pipeline": item.pipeline[:512]}
        if item.run_id:
            metadata["dagster_run_id"] = item.run_id
        if item.partition is not None:
            metadata["dagster_partition"] = item.partition[:512]
        submission = Submission.of_record(job, list(known), metadata)
        with resource.get_batch_client() as client:
            if self.queue is None:
                self.queue = read_queue(resource, client, time.time())
            changed = submission.advance(client, self.queue)
        if not changed and submission.complete:
            return False
        if changed:
            status = batch_status(resource, submission.batches, as_of=SENSOR_SUBMISSION)
            snapshot = {name: getattr(status, name) for name in BatchStatusRecord.model_fields}
            update = {**snapshot, **submission.record_fields(), "adopted": submission.adopted}
            self.materializations.append(
                dg.AssetMaterialization(
                    asset_key=pipeline.batch_job.key,
                    partition=item.partition,
                    metadata={**job.model_copy(update=update)},
                )
            )
        # Kept as it was: the next tick reads the new record as the set's newest submission (and
        # were that record lost, the batches made now are adopted by their keys).
        self._keep(item, observation)
        done = f"{changed} batch(es) submitted" if changed else ""
        self.running.append(
            f"{_label(item)}: {'; '.join(w for w in (done, submission.waiting) if w)}"
        )
        return True

    def _keep(self, item: InFlight, observation: dg.AssetObservation | None) -> None:
        self.in_flight.append(item)
        if observation is not None:
            self.observations.append(observation)

    def summary(self) -> str:
        """The tick in words: each set in flight with its progress, then what finished."""
        parts = []
        if self.in_flight:
            count = len(self.in_flight)
            parts.append(
                f"{count} batch {'set' if count == 1 else 'sets'} in flight: "
                + _listed(self.running or [f"{_label(item)}" for item in self.in_flight])
                + "."
            )
        else:
            parts.append("No batch in flight.")
        if self.finished:
            parts.append(f"Finished: {_listed(self.finished)}.")
        return " ".join(parts)


OBSERVED = "observed by openai_batch_sensor: current (see checked_at)"
SENSOR_SUBMISSION = (
    "as openai_batch_sensor left them when it submitted parts that waited for the queue; its "
    "observations are current"
)


def _job_record_at(
    instance: dg.DagsterInstance, pipeline: OpenAIBatchPipeline, item: InFlight
) -> BatchJobRecord:
    """The ``batch_job`` record that recorded ``item``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=pipeline.batch_job.key, storage_ids=[item.storage_id]),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        raise StageRecordError(f"batch_job record {item.storage_id} is gone")
    return BatchJobRecord.read(records[0].asset_materialization.metadata)


def _label(item: InFlight) -> str:
    return f"{item.pipeline} ({item.partition if item.partition is not None else 'all'})"


def _listed(lines: Sequence[str], shown: int = 5) -> str:
    more = f"; and {len(lines) - shown} more" if len(lines) > shown else ""
    return "; ".join(lines[:shown]) + more


def _progress_words(status: BatchStatusRecord) -> str:
    """``in_progress, 152/300 done (51%), 1 min 10 s elapsed, expected to finish at 14:03 UTC``."""
    done = status.requests_completed + status.requests_failed
    words = [status.status or "unknown"]
    if status.requests_total:
        failed = f", {status.requests_failed:,} failed" if status.requests_failed else ""
        words.append(f"{done:,}/{status.requests_total:,} done ({status.percent_done:g}%){failed}")
    else:
        words.append("not started")
    if status.elapsed:
        words.append(f"{status.elapsed} elapsed")
    if status.expected_finish is not None:
        at = datetime.fromtimestamp(status.expected_finish.value, tz=UTC)
        words.append(f"expected to finish at {at:%H:%M:%S} UTC")
    return ", ".join(words)


RESULTS_RUN_TAG: Final = ("openai_batch/stage", "results")
"""The tag on every results run the sensor requests (key, value)."""


def _run_request(
    pipeline: OpenAIBatchPipeline, item: InFlight, batches: Sequence[Batch]
) -> dg.RunRequest:
    """The results run of a finished set: results + checks, or ``batches_accepted`` alone when no
    batch produced output (all failed validation)."""
    check_config = {pipeline.accepted_check_op_name: {"config": {"batch_ids": item.batch_ids}}}
    common: dict[str, Any] = {
        "run_key": _run_key(item),
        "job_name": pipeline.results_job.name,
        "partition_key": item.partition,
        "tags": {
            "openai_batch/batch_ids": ",".join(item.batch_ids)[:1000],
            # A stable tag for the run queue's tag_concurrency_limits (README, "Deploy").
            RESULTS_RUN_TAG[0]: RESULTS_RUN_TAG[1],
        },
    }
    if not any(b.status in RESULT_FILE_STATUSES for b in batches):
        return dg.RunRequest(
            **common,
            asset_selection=[],
            asset_check_keys=[pipeline.accepted_check_key],
            run_config={"ops": check_config},
        )
    results_config = {pipeline.results_op_name: {"config": {"batch_ids": item.batch_ids}}}
    return dg.RunRequest(**common, run_config={"ops": {**results_config, **check_config}})


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
        cursor = _load_cursor(context)
        for pipeline in pipelines:
            cursor.in_flight.extend(_read_new_batch_sets(context, pipeline, cursor))
        watched, superseded = _newest_per_partition(cursor.in_flight)
        newest = {(item.pipeline, item.partition): item for item in watched}
        for item in superseded:
            kept = newest[(item.pipeline, item.partition)]
            if set(item.batch_ids) <= set(kept.batch_ids):
                continue  # the same submission, recorded again with more of its parts
            context.log.info(
                f"{_where(item)} batches {item.batch_ids}: superseded by a newer batch_job."
            )
        if not watched:
            cursor.in_flight = []
            return dg.SensorResult(
                skip_reason="No batch in flight.", cursor=cursor.model_dump_json()
            )

        batches = _retrieve(resource, watched)
        tick = _Tick(context, by_name)
        for item in watched:
            try:
                tick.process(resource, item, batches)
            except Exception as error:  # one bad set never fails the tick for the others
                context.log.warning(
                    f"Could not process {_where(item)} batches {item.batch_ids} "
                    f"({type(error).__name__}: {str(error)[:200]}); trying again at the next tick."
                )
                tick.in_flight.append(item)
                tick.running.append(f"{_label(item)}: not looked at (error, see the logs)")
        cursor.in_flight = tick.in_flight
        summary = tick.summary()
        if tick.run_requests:  # a tick that requests runs has no skip reason: say it in its logs
            context.log.info(summary)
        return dg.SensorResult(
            run_requests=tick.run_requests,
            asset_events=[*tick.materializations, *tick.observations],
            cursor=cursor.model_dump_json(),
            skip_reason=None if tick.run_requests else summary,
        )

    return _sensor
