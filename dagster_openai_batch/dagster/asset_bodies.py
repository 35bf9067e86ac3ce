"""What the three assets do when they run (their declaration is in `pipeline.py`)."""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import openai
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster._core.definitions.metadata import TableMetadataSet
from openai.types import Batch

from ..core.client import BatchClientError
from ..core.file_lifecycle import delete_files, spent_files
from ..core.input_file import (
    PreparedInput,
    prepare_jsonl,
    prepare_rows,
    write_batch_input,
)
from ..core.input_validation import BatchInputError
from ..core.queue_budget import QUEUE_WINDOW_SECONDS, QueueBudgetError, token_limit_of
from ..core.resubmit import build_resubmission, merge_results
from ..core.result_lines import LOW_LINE_BYTES, Parsers
from ..core.results import NOT_SUBMITTED, ResultsSummary, SentParts, collect_results
from ..core.storage import (
    BatchResults,
    download_file,
    join_uri,
    read_table,
    readable_path,
    resolve,
    upload_file,
)
from ..core.templates import RequestTemplate
from ..core.token_estimate import (
    COST_NOTE,
    ESTIMATE_METHOD,
    cost_range,
    estimate_part_tokens,
    estimate_tokens,
)
from ..core.vocabulary import (
    ADOPTABLE_STATUSES,
    TERMINAL_STATUSES,
    BatchEndpoint,
)
from .checks import evaluate_checks
from .queue import Submission, has_pending_parts, read_queue
from .resource import OpenAIBatchResource
from .stage_records import (
    BatchJobRecord,
    BatchStatusRecord,
    InputFileRecord,
    ResultsRecord,
    StageRecord,
    StageRecordError,
    latest_record,
)

R = TypeVar("R", bound=StageRecord)


@dataclass(frozen=True)
class StageKeys:
    input_file: dg.AssetKey
    batch_job: dg.AssetKey
    results: dg.AssetKey


@dataclass(frozen=True)
class StageContext:
    """What every stage needs: the Dagster context, the resource and where tables go."""

    context: dg.AssetExecutionContext
    resource: OpenAIBatchResource
    keys: StageKeys
    pipeline: str
    endpoint: BatchEndpoint
    storage_root: str
    max_requests_per_file: int | None = None
    """The user's own limit; the backend's (``resource.service_profile``) otherwise."""

    @property
    def partition_key(self) -> str | None:
        return self.context.partition_key if self.context.has_partition_key else None

    def upstream(
        self,
        key: dg.AssetKey,
        record_type: type[R],
        *,
        where: Callable[[R], bool] | None = None,
        described: str = "",
    ) -> R:
        """The record of the newest materialization of ``key`` (satisfying ``where``, described
        in words for the error as ``described``)."""
        found = latest_record(
            self.context.instance, key, self.partition_key, record_type, where=where
        )
        if found is None:
            partition = f" for partition {self.partition_key!r}" if self.partition_key else ""
            raise dg.Failure(
                f"{key.to_user_string()} has no materialization{partition}"
                + (f" with {described}" if described else "")
                + ": materialize it first."
            )
        return found

    def latest(self, key: dg.AssetKey, record_type: type[R]) -> R | None:
        """The record of the newest materialization of ``key`` for the partition, if any."""
        return latest_record(self.context.instance, key, self.partition_key, record_type)


def _work_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="openai-batch-")


# ---------------------------------------------------------------- input_file


def materialize_input_file(
    stage: StageContext,
    *,
    rows: Any = None,
    template: RequestTemplate | None = None,
    jsonl_path: Path | None = None,
) -> Iterator[dg.MaterializeResult[Any]]:
    """Build, validate and split the JSONL input, keep a copy in storage, upload every part.

    An input without rows materializes nothing (and so submits nothing): quiet days are not errors.
    """
    with _work_dir() as tmp:
        try:
            if jsonl_path is not None:
                prepared = prepare_jsonl(
                    jsonl_path,
                    Path(tmp),
                    endpoint=stage.endpoint,
                    profile=stage.resource.service_profile,
                    max_requests=stage.max_requests_per_file,
                )
            else:
                assert template is not None
                prepared = prepare_rows(
                    rows,
                    template,
                    Path(tmp),
                    profile=stage.resource.service_profile,
                    max_requests=stage.max_requests_per_file,
                )
        except BatchInputError as error:
            if all(problem.code == "empty_file" for problem in error.problems):
                stage.context.log.info(
                    "The input has no rows: nothing to submit, nothing materialized."
                )
                return
            raise _input_failure(str(error)) from None
        except (KeyError, ValueError) as error:
            raise _input_failure(
                error.args[0] if isinstance(error, KeyError) else str(error)
            ) from None
        for warning in prepared.warnings:
            stage.context.log.warning(warning)
        stored = _store_input(stage, prepared)
        estimate = _estimate(stage, prepared)
        with stage.resource.get_batch_client() as client:
            files = client.upload_all(prepared.parts)
    stage.context.log.info(
        f"{prepared.requests} requests in {len(files)} file(s) on {stage.resource.backend}: "
        + ", ".join(f.id for f in files)
    )
    record = InputFileRecord(
        backend=stage.resource.backend,
        endpoint=str(stage.endpoint),
        model=prepared.model or "",
        file_ids=dg.MetadataValue.json([f.id for f in files]),
        parts=len(prepared.parts),
        requests=prepared.requests,
        bytes=prepared.bytes,
        content_hash=prepared.content_hash,
        storage_uri=stage.storage_root,
        part_uris=dg.MetadataValue.json(stored["parts"]),
        inputs_uri=stored["inputs"] or "",
        preview=dg.MetadataValue.json(prepared.preview),
        **estimate,
    )
    yield dg.MaterializeResult(metadata={**record})


def _estimate(stage: StageContext, prepared: PreparedInput) -> dict[str, Any]:
    """The parts' estimated input tokens and the cost range at batch rates (record fields)."""
    tokens = [
        estimate_part_tokens(p.path, bytes_=p.bytes, requests=p.requests, model=prepared.model)
        for p in prepared.parts
    ]
    costs = cost_range(
        prepared.model or "",
        input_tokens=sum(tokens),
        requests=prepared.requests,
        endpoint=str(stage.endpoint),
    )
    return {
        "estimated_input_tokens": sum(tokens),
        "part_tokens": dg.MetadataValue.json(tokens),
        "estimated_cost_min_usd": costs[0] if costs else None,
        "estimated_cost_max_usd": costs[1] if costs else None,
        "cost_estimate_note": f"tokens {ESTIMATE_METHOD}; cost {COST_NOTE}"
        if costs
        else f"tokens {ESTIMATE_METHOD}; no price known for {prepared.model!r}",
    }


def _input_failure(message: str) -> dg.Failure:
    """Bad input: one clear message, and nothing uploaded or paid for."""
    return dg.Failure(description=f"Invalid batch input, nothing uploaded: {message}")


def _store_input(stage: StageContext, prepared: PreparedInput) -> dict[str, Any]:
    """Copy the parts (what was sent) and the input rows to storage for the later stages."""
    base = join_uri(stage.storage_root, "input", prepared.content_hash[:16])
    part_uris = []
    for part in prepared.parts:
        uri = join_uri(base, f"part-{part.index:03d}.jsonl")
        upload_file(part.path, uri)
        part_uris.append(uri)
    inputs_uri = None
    if prepared.inputs_path is not None:
        inputs_uri = join_uri(base, "inputs.parquet")
        upload_file(prepared.inputs_path, inputs_uri)
    return {"parts": part_uris, "inputs": inputs_uri}


# ---------------------------------------------------------------- batch_job


def materialize_batch_job(
    stage: StageContext,
    *,
    wait: bool,
    wait_timeout_seconds: float,
    resubmit_failed: bool,
    include_permanent_failures: bool = False,
    new_batches: bool = False,
    max_estimated_cost_usd: float | None = None,
) -> Iterator[dg.MaterializeResult[Any]]:
    """Create (or adopt) one batch per uploaded part as the queue allows (the sensor submits the
    parts left waiting); return at once unless ``wait``."""
    source = stage.upstream(stage.keys.input_file, InputFileRecord)
    _refuse_over_budget(source, max_estimated_cost_usd)
    file_ids, part_tokens = source.file_id_list, _part_tokens(source)
    key_base = f"{stage.pipeline}:{stage.partition_key or '-'}:{source.content_hash}"
    if new_batches:  # a deliberate re-run (e.g. sampling with temperature > 0): paid again, once
        # Keyed by the root run, so a retry or re-execution of that run adopts what it created.
        run = stage.context.run
        key_base = f"{key_base}:run:{run.root_run_id or run.run_id}"
    followup_of, requests = "", source.requests
    if resubmit_failed:
        followup = _upload_resubmission(stage, source, include_permanent_failures)
        if followup is None:
            return
        followup_of, file_ids, followup_hash, requests, part_tokens = followup
        key_base = f"{key_base}:followup:{followup_hash[:16]}"
    with stage.resource.get_batch_client() as client:
        batches, attempts = (
            ([], [])
            if new_batches or resubmit_failed
            else _current_set(stage, client, source, len(file_ids), key_base)
        )
        recorded = len(batches)  # the latest batch_job's, kept as they are
        submission = Submission(
            key_base=key_base,
            file_ids=file_ids,
            part_tokens=part_tokens,
            model=source.model,
            endpoint=stage.endpoint,
            metadata=_batch_metadata(stage),
            batches=batches,
            attempts=attempts,
        )
        if not submission.complete:
            # The day of batches in flight matters only to a model with a queue budget.
            budgeted = source.model in stage.resource.queue_token_budget
            queue = read_queue(
                stage.resource,
                client,
                time.time(),
                horizon=QUEUE_WINDOW_SECONDS if budgeted else 3600,
            )
            for index, tokens in enumerate(part_tokens):
                try:
                    queue.room.check_fits(source.model, tokens, f"Part {index} of the input")
                except QueueBudgetError as error:
                    raise dg.Failure(f"No batch created: {error}") from None
            submission.advance(client, queue)
        adopted = recorded + submission.adopted
        if adopted:
            stage.context.log.info(f"Adopted {adopted} existing batch(es): nothing paid twice")
        if submission.waiting:
            stage.context.log.info(
                f"{submission.waiting}. The openai_batch_sensor submits them as the queue frees."
            )
        batches = submission.batches
        if wait and batches:
            batches = _wait(stage, client, batches, wait_timeout_seconds)
    handed_on = BatchJobRecord(
        content_hash=source.content_hash,
        requests=requests,
        expected_rows=source.requests,
        inputs_uri=source.inputs_uri,
        part_uris=source.part_uris,
        followup_of=followup_of,
        estimated_input_tokens=source.estimated_input_tokens,
        estimated_cost_min_usd=source.estimated_cost_min_usd,
        estimated_cost_max_usd=source.estimated_cost_max_usd,
    ).handed_on()
    record = _job_record(
        stage, batches, adopted=adopted, handed_on={**handed_on, **submission.record_fields()}
    )
    yield dg.MaterializeResult(metadata={**record})


def _refuse_over_budget(source: InputFileRecord, budget: float | None) -> None:
    """A clear failure, before any batch is created, when the input may cost more than
    ``budget`` (USD: the estimate's upper bound is compared)."""
    if budget is None:
        return
    high = source.estimated_cost_max_usd
    if high is None:
        why = source.cost_estimate_note or "input_file recorded no estimate (materialize it again)"
        raise dg.Failure(
            f"No batch created: max_estimated_cost_usd is {budget:g} USD but the input's cost "
            f"cannot be estimated ({why}). Remove the budget to submit anyway."
        )
    if high > budget:
        raise dg.Failure(
            f"No batch created, nothing paid: the input may cost up to {high:.4f} USD at batch "
            f"rates (estimated {source.estimated_cost_min_usd or 0:.4f} to {high:.4f} USD for "
            f"{source.estimated_input_tokens:,} input tokens of {source.model}, "
            f"{source.requests:,} requests; {source.cost_estimate_note}), more than "
            f"max_estimated_cost_usd = {budget:g} USD. Raise the budget or shrink the input."
        )


def _part_tokens(source: InputFileRecord) -> list[int]:
    """Each part's estimated tokens; an older record without them counts the whole input for
    every part (conservative)."""
    recorded = source.part_token_list
    if len(recorded) == len(source.file_id_list):
        return recorded
    whole = estimate_tokens(bytes_=source.bytes, requests=source.requests)
    return [whole] * len(source.file_id_list)


def _wait(stage: StageContext, client: Any, batches: list[Batch], timeout: float) -> list[Batch]:
    """The batches once finished; as they are if waiting fails or times out (they are recorded
    either way, and the sensor collects them)."""
    try:
        done = client.wait([b.id for b in batches], timeout=timeout)
    except (BatchClientError, openai.APIError) as error:
        stage.context.log.warning(
            f"Stopped waiting ({error}); the sensor will collect the batches."
        )
        return batches
    if any(done[b.id].status not in TERMINAL_STATUSES for b in batches):
        stage.context.log.warning(
            f"Batches still running after {timeout:.0f}s; the sensor will collect them."
        )
    return [done[b.id] for b in batches]


def _current_set(
    stage: StageContext, client: Any, source: InputFileRecord, parts: int, key_base: str
) -> tuple[list[Batch], list[int]]:
    """The batches (and their attempts) of the partition's latest ``batch_job`` when they were
    made from this very input and are still usable: a plain re-run keeps the current set (even
    one made with ``new_batches``, or one whose parts still wait for the queue). An unreadable
    latest record has none (the batches' keys still adopt)."""
    try:
        latest = stage.latest(stage.keys.batch_job, BatchJobRecord)
    except StageRecordError as error:
        stage.context.log.warning(f"Not adopting the latest batch_job's batches: {error}")
        return [], []
    if latest is None:
        return [], []
    ids = latest.batch_id_list
    waiting = latest.key_base == key_base and latest.part_count == parts
    if (
        latest.content_hash != source.content_hash
        or latest.followup_of
        or not (len(ids) == parts or waiting)
    ):
        return [], []
    found = client.retrieve_many(ids, missing_ok=True)
    batches = [found[i] for i in ids if i in found]
    usable = len(batches) == len(ids) and all(
        b.status in ADOPTABLE_STATUSES or token_limit_of(b) is not None for b in batches
    )
    return (batches, latest.attempt_list) if usable else ([], [])


def cancel_batch_job(stage: StageContext) -> Iterator[dg.MaterializeResult[Any]]:
    """Cancel the batches of the latest ``batch_job``; the sensor then collects their partial
    output."""
    previous = stage.upstream(stage.keys.batch_job, BatchJobRecord)
    ids = previous.batch_id_list
    with stage.resource.get_batch_client() as client:
        batches, failed = client.cancel_many(ids)
    if failed:
        # The sensor still watches the set through the previous record, cancelled parts included.
        raise dg.Failure(
            f"Cancelled {len(batches)} of {len(ids)} batches; could not cancel "
            + "; ".join(f"{batch_id} ({why})" for batch_id, why in failed.items())
            + ". Run again with cancel: true to retry them; the sensor collects what finished "
            "either way."
        )
    stage.context.log.info(f"Cancel requested for {', '.join(b.id for b in batches)}")
    handed_on = previous.handed_on()
    if previous.part_count > len(ids):  # parts still waiting for the queue are never submitted
        stage.context.log.warning(
            f"{previous.part_count - len(ids)} part(s) still waiting for the queue will not be "
            "submitted: results records their requests as cancelled (nothing paid for them)."
        )
    record = _job_record(stage, batches, adopted=0, handed_on=handed_on)
    yield dg.MaterializeResult(metadata={**record})


SUBMISSION_SNAPSHOT = (
    "as batch_job left them (status and progress never change here). The sensor "
    "records the current ones as observations (Events tab; Row count above: requests done)"
)


def _job_record(
    stage: StageContext, batches: Sequence[Batch], *, adopted: int, handed_on: dict[str, Any]
) -> BatchJobRecord:
    """``batch_job``'s record: where the batches stand, and what ``results`` needs."""
    status = batch_status(stage.resource, batches, as_of=SUBMISSION_SNAPSHOT)
    snapshot = {name: getattr(status, name) for name in BatchStatusRecord.model_fields}
    # Labelled in the values themselves: the asset page shows them without the as_of line.
    snapshot["status"] = f"when batch_job ran: {status.status}"
    snapshot["progress"] = f"when batch_job ran: {status.progress}"
    return BatchJobRecord(
        **snapshot,
        backend=stage.resource.backend,
        endpoint=str(stage.endpoint),
        adopted=adopted,
        **handed_on,
    )


def _batch_metadata(stage: StageContext) -> dict[str, str]:
    metadata = {
        "dagster_pipeline": stage.pipeline[:512],
        "dagster_run_id": stage.context.run.run_id,
    }
    if stage.partition_key is not None:
        metadata["dagster_partition"] = stage.partition_key[:512]
    return metadata


def batch_status(
    resource: OpenAIBatchResource, batches: Sequence[Batch], *, as_of: str = ""
) -> BatchStatusRecord:
    """Where ``batches`` stand: ids, statuses, progress, links and errors (recorded by
    ``batch_job``, by the sensor's observations and by ``batches_accepted``)."""
    total, completed, failed = _request_counts(batches)
    now = time.time()
    finished = _finished_at(batches)
    started = min((b.created_at for b in batches if b.created_at), default=None)
    expected = _expected_finish(batches, total, completed + failed, now) if not finished else None
    return BatchStatusRecord(
        as_of=as_of,
        batch_ids=dg.MetadataValue.json([b.id for b in batches]),
        status=",".join(sorted({b.status for b in batches})),
        progress=_progress(total, completed + failed),
        requests_total=total,
        requests_completed=completed,
        requests_failed=failed,
        model=next((b.model for b in batches if b.model), "") or "",
        expires_at=_first_expiry(batches),
        dashboard=_dashboard_links(resource, batches),
        errors=_validation_errors(batches),
        percent_done=round(100 * (completed + failed) / total, 1) if total else 0.0,
        elapsed=_duration((finished or now) - started) if started else "",
        expected_finish=dg.MetadataValue.timestamp(expected) if expected else None,
        finished_at=dg.MetadataValue.timestamp(finished) if finished else None,
        checked_at=dg.MetadataValue.timestamp(now),
        per_batch=_per_batch(batches),
    )


def _finished_at(batches: Sequence[Batch]) -> float | None:
    """When the last of ``batches`` reached a final state (None while any is running, or when the
    service gives no time at all)."""
    if not batches or any(b.status not in TERMINAL_STATUSES for b in batches):
        return None
    ends = [
        end
        for b in batches
        # A compatible service may leave any of them out.
        if (end := b.completed_at or b.failed_at or b.expired_at or b.cancelled_at or b.created_at)
    ]
    return float(max(ends)) if ends else None


def _expected_finish(batches: Sequence[Batch], total: int, done: int, now: float) -> float | None:
    """``now`` plus the time the remaining requests take at the pace so far (None before any
    request is done: no pace to go by)."""
    running_since = [b.in_progress_at for b in batches if b.in_progress_at]
    if not done or not total or not running_since or now <= min(running_since):
        return None
    pace = done / (now - min(running_since))
    return now + (total - done) / pace


def _duration(seconds: float) -> str:
    """``45 s``, ``3 min 12 s``, ``2 h 05 min``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _per_batch(batches: Sequence[Batch]) -> dg.MarkdownMetadataValue | None:
    """A markdown list, one line per batch (the first 20): ``batch_x: in_progress, 12/100``."""
    lines = []
    for b in batches[:20]:
        counts = b.request_counts
        done = counts.completed + counts.failed if counts else 0
        total = counts.total if counts else 0
        share = f" ({done / total:.0%})" if total else ""
        lines.append(f"- `{b.id}`: {b.status}, {done:,}/{total:,} requests done{share}")
    if len(batches) > 20:
        lines.append(f"- and {len(batches) - 20} more")
    return dg.MetadataValue.md("\n".join(lines)) if lines else None


def _request_counts(batches: Sequence[Batch]) -> tuple[int, int, int]:
    """(total, completed, failed) requests of ``batches``, as far as the service has counted."""
    counts = [b.request_counts for b in batches if b.request_counts]
    return (
        sum(c.total for c in counts),
        sum(c.completed for c in counts),
        sum(c.failed for c in counts),
    )


def _progress(total: int, done: int) -> str:
    """``1,200/5,000 requests done (24%)``, or ``not started`` before the service counts them."""
    if not total:
        return "not started"
    return f"{done:,}/{total:,} requests done ({done / total:.0%})"


def _first_expiry(batches: Sequence[Batch]) -> dg.TimestampMetadataValue | None:
    expiries = [b.expires_at for b in batches if b.expires_at]
    return dg.MetadataValue.timestamp(float(min(expiries))) if expiries else None


def _dashboard_links(
    resource: OpenAIBatchResource, batches: Sequence[Batch]
) -> dg.MarkdownMetadataValue | None:
    """A markdown list of the batches' dashboard pages (None when the backend has none)."""
    links = [(b.id, resource.dashboard_url(b.id)) for b in batches]
    lines = [f"- [{batch_id}]({link})" for batch_id, link in links if link]
    return dg.MetadataValue.md("\n".join(lines)) if lines else None


def _validation_errors(batches: Sequence[Batch]) -> dg.MarkdownMetadataValue | None:
    """A markdown list of the batches' validation errors (the first 20; None when none)."""
    errors = [
        _describe_error(b.id, e)
        for b in batches
        if b.errors and b.errors.data
        for e in b.errors.data
    ]
    return dg.MetadataValue.md("\n".join(f"- {e}" for e in errors[:20])) if errors else None


def _describe_error(batch_id: str, error: Any) -> str:
    """``batch_x line 3 (body.model): model_not_found — message``, leaving out what is unknown."""
    where = " ".join(
        part
        for part in (
            f"line {error.line}" if error.line else "",
            f"({error.param})" if error.param else "",
        )
        if part
    )
    text = (
        f"{batch_id}{' ' + where if where else ''}: {error.code or 'error'} — {error.message or ''}"
    )
    return text.rstrip(" —")


def check_batches_accepted(
    instance: dg.DagsterInstance,
    resource: OpenAIBatchResource,
    batch_job_key: dg.AssetKey,
    partition: str | None,
    *,
    batch_ids: Sequence[str] = (),
) -> dg.AssetCheckResult:
    """``batches_accepted``, looked up now: did any of ``batch_ids`` (default: the latest
    ``batch_job``'s batches) fail validation?"""
    if not batch_ids:
        latest = latest_record(instance, batch_job_key, partition, BatchJobRecord)
        batch_ids = latest.batch_id_list if latest is not None else []
    batches: list[Batch] = []
    if batch_ids:
        with resource.get_batch_client() as client:
            found = client.retrieve_many(batch_ids)
        batches = [found[i] for i in batch_ids]
    return dg.AssetCheckResult(
        passed=all(b.status != "failed" for b in batches),
        metadata={**batch_status(resource, batches)},
    )


def _upload_resubmission(
    stage: StageContext, source: InputFileRecord, include_permanent_failures: bool
) -> tuple[str, list[str], str, int, list[int]] | None:
    """Upload, as new files, the requests of the current input's results that can succeed on retry.

    Returns (results uri, file ids, content hash, requests, each part's estimated tokens), or
    None when nothing is to be resent.
    """
    previous = stage.upstream(
        stage.keys.results,
        ResultsRecord,
        where=lambda results: results.content_hash == source.content_hash,
        described=f"content_hash {source.content_hash!r}",
    )
    results_uri = previous.results_uri
    with _work_dir() as tmp, stage.resource.get_batch_client() as client:
        local_parts = [
            readable_path(uri, Path(tmp) / f"sent-{i}.jsonl")
            for i, uri in enumerate(source.part_uri_list)
        ]
        local_results = readable_path(results_uri, Path(tmp) / "results.parquet")
        requests = iter(
            build_resubmission(
                local_results, local_parts, include_permanent_failures=include_permanent_failures
            )
        )
        first = next(requests, None)
        if first is None:
            stage.context.log.info(
                f"Nothing to resubmit in {results_uri}: batch_job left as it was."
            )
            return None
        prepared = write_batch_input(
            itertools.chain([first], requests),
            Path(tmp) / "followup",
            endpoint=stage.endpoint,
            profile=stage.resource.service_profile,
        )
        file_ids = [f.id for f in client.upload_all(prepared.parts)]
        tokens = [
            estimate_part_tokens(p.path, bytes_=p.bytes, requests=p.requests, model=p.model)
            for p in prepared.parts
        ]
    stage.context.log.info(f"Resubmitting {prepared.requests} requests from {results_uri}")
    return results_uri, file_ids, prepared.content_hash, prepared.requests, tokens


# ---------------------------------------------------------------- results


def _superseded_by(stage: StageContext, ids: list[str]) -> list[str] | None:
    """The batch ids of a newer ``batch_job`` submission of the partition, or None if ``ids`` is
    the newest."""
    newest = stage.latest(stage.keys.batch_job, BatchJobRecord)
    newest_ids = newest.batch_id_list if newest is not None else []
    return newest_ids if newest_ids and newest_ids != ids else None


def materialize_results(
    stage: StageContext,
    *,
    batch_ids: list[str],
    max_failed_share: float,
    allow_superseded: bool = False,
    delete_input_files: bool = False,
    delete_result_files: bool = False,
) -> Iterator[Any]:
    """Download output and error files, join them to the inputs, write Parquet, run the checks.

    The newest ``batch_job`` submission of the partition wins: collecting an older set fails
    before anything is written (and again just before recording, in case a newer submission
    arrived meanwhile) unless ``allow_superseded``. Once the results are recorded, the batches'
    input files and result files are deleted from the service if asked (see
    :func:`delete_spent_files`).
    """
    job = _recorded_job(stage, batch_ids)
    ids = job.batch_id_list
    _refuse_if_superseded(stage, ids, allow_superseded)
    if has_pending_parts(job):
        raise dg.Failure(
            f"Parts of this submission still wait for the queue ({job.waiting or 'not created'}): "
            "the openai_batch_sensor submits them as room frees and materializes results once "
            "every part has run. To stop here, materialize batch_job with config cancel: true."
        )
    with _work_dir() as tmp_name, stage.resource.get_batch_client() as client:
        tmp = Path(tmp_name)
        found = client.retrieve_many(ids)
        batches = [found[i] for i in ids]
        unfinished = [f"{b.id} ({b.status})" for b in batches if b.status not in TERMINAL_STATUSES]
        if unfinished:
            raise dg.Failure(
                f"Batches still running: {', '.join(unfinished)}. The openai_batch_sensor "
                "materializes results when they finish."
            )
        # Helpers that parse result lines start now, and parse each file once it is downloaded.
        expected = LOW_LINE_BYTES * _request_counts(batches)[0]
        with Parsers(stage.endpoint, tmp, expected_bytes=expected) as parsers:
            outputs, errors = _download_results(stage, client, batches, tmp, parsers.add)
            followup_of = job.followup_of
            dest = join_uri(stage.storage_root, "results", f"{'-'.join(ids)[:80]}.parquet")
            if followup_of:  # rows: the resubmitted requests found in the result files
                inputs_local, request_ids, target = None, None, str(tmp / "followup.parquet")
            else:  # rows: every request sent, each with the batch its part went to
                sent = [
                    readable_path(u, tmp / f"sent-{i}.jsonl")
                    for i, u in enumerate(job.part_uri_list)
                ]
                # Parts past the batches never became one (cancelled while waiting for the queue).
                owners = [*ids, *[NOT_SUBMITTED] * (len(sent) - len(ids))]
                request_ids, target = SentParts(sent, owners), dest
                inputs_local = (
                    readable_path(job.inputs_uri, tmp / "inputs.parquet")
                    if job.inputs_uri
                    else None
                )
            summary = collect_results(
                output_files=outputs,
                error_files=errors,
                prepared_inputs_path=inputs_local,
                request_ids=request_ids,
                batches=batches,
                endpoint=stage.endpoint,
                dest=target,
                parsers=parsers,
            )
        if followup_of:
            base = download_file(followup_of, tmp / "base.parquet")
            summary = merge_results(base, Path(summary.path), dest)
        # The table's custom_ids as written, counted (0.3 s at 1,000,000 rows) while the work
        # files are deleted and the output is recorded.
        counter = ThreadPoolExecutor(1)
        unique_ids = counter.submit(_count_distinct, read_table(summary.path, ["custom_id"]))
        counter.shutdown(wait=False)  # the count goes on; its result is awaited below
    expected = job.expected_rows or job.requests
    sources = ids
    if followup_of:
        base_record = stage.upstream(
            stage.keys.results,
            ResultsRecord,
            where=lambda results: results.results_uri == followup_of,
            described=f"results_uri {followup_of!r}",
        )
        sources = [*base_record.covered_batch_ids, *ids]
    _refuse_if_superseded(stage, ids, allow_superseded)
    yield results_output(stage.resource.backend, summary, ids, sources=sources, job=job)
    yield from evaluate_checks(
        results_key=stage.keys.results,
        expected_requests=expected,
        rows=summary.rows,
        unique_custom_ids=unique_ids.result(),
        counts=summary.counts,
        max_failed_share=max_failed_share,
    )
    if delete_input_files or delete_result_files:
        yield delete_spent_files(
            stage, batches, inputs=delete_input_files, results=delete_result_files
        )


def _count_distinct(table: pa.Table) -> int:
    """The distinct custom_ids of a results table."""
    return pc.count_distinct(table.column("custom_id")).as_py() if table.num_rows else 0


def _download_results(
    stage: StageContext,
    client: Any,
    batches: list[Batch],
    tmp: Path,
    on_file: Callable[[Path, str], None],
) -> tuple[list[Path], list[Path]]:
    """The batches' result files on disk (each given to ``on_file`` once complete); a clear
    failure when the service no longer has one."""
    try:
        downloaded: tuple[list[Path], list[Path]] = client.download_results(
            batches, tmp, on_file=on_file
        )
    except openai.NotFoundError as error:
        ids = [b.id for b in batches]
        earlier = latest_record(
            stage.context.instance,
            stage.keys.results,
            stage.partition_key,
            ResultsRecord,
            where=lambda record: set(ids) <= set(record.covered_batch_ids),
        )
        kept = f" Their results are stored at {earlier.results_uri}." if earlier else ""
        raise dg.Failure(
            f"A result file of batches {ids} is gone from the service "
            f"({error.message}): deleted (delete_result_files, cleanup) or expired "
            f"(output_expires_after_seconds, 30 days by default), so these answers cannot be "
            f"collected again.{kept}"
        ) from None
    return downloaded


def delete_spent_files(
    stage: StageContext, batches: Sequence[Batch], *, inputs: bool, results: bool
) -> dg.AssetObservation:
    """Delete the finished ``batches``' input files (``inputs``; not one a batch in flight still
    uses) and output and error files (``results``) from the service, after their answers are
    stored; recorded as an observation of ``results``. A failed delete is logged, never fatal:
    the file stays until the service expires it."""
    with stage.resource.get_batch_client() as client:
        try:
            spent = spent_files(client, batches, inputs=inputs, results=results)
        except (BatchClientError, openai.APIError) as error:
            stage.context.log.warning(f"Deleting no file ({error}); they expire in time.")
            spent = []
        done = delete_files(client, spent)
    for file_id, why in done.failed.items():
        stage.context.log.warning(
            f"Could not delete file {file_id} ({why}); it stays until the service expires it."
        )
    stage.context.log.info(
        f"Deleted {len(done.deleted)} file(s) from the service"
        + (f" ({len(done.gone)} already gone)" if done.gone else "")
    )
    return dg.AssetObservation(
        asset_key=stage.keys.results,
        partition=stage.partition_key,
        metadata={
            "openai_batch/deleted_files": dg.MetadataValue.json(done.deleted),
            "openai_batch/already_gone_files": dg.MetadataValue.json(done.gone),
            "openai_batch/delete_failures": dg.MetadataValue.json(done.failed),
        },
    )


def _recorded_job(stage: StageContext, batch_ids: list[str]) -> BatchJobRecord:
    """The ``batch_job`` record of ``batch_ids`` (default: the latest); batches this pipeline
    did not submit are pointed to ``openai_batch_watch``."""
    if not batch_ids:
        return stage.upstream(stage.keys.batch_job, BatchJobRecord)
    found = latest_record(
        stage.context.instance,
        stage.keys.batch_job,
        stage.partition_key,
        BatchJobRecord,
        where=lambda record: record.batch_id_list == batch_ids,
    )
    if found is None:
        raise dg.Failure(
            f"{stage.keys.batch_job.to_user_string()} never submitted batches {batch_ids}"
            + (f" for partition {stage.partition_key!r}" if stage.partition_key else "")
            + ". To watch and collect a batch created elsewhere (a script, the dashboard, a lost "
            "run), add its id to an openai_batch_watch (README: 'Batches created elsewhere')."
        )
    return found


def _refuse_if_superseded(stage: StageContext, ids: list[str], allow_superseded: bool) -> None:
    newer = None if allow_superseded else _superseded_by(stage, ids)
    if newer is not None:
        raise dg.Failure(
            f"Not collecting batches {ids}: a newer batch_job submission ({', '.join(newer)}) "
            "superseded them, and the sensor collects that one. To collect these anyway, set "
            "results config allow_superseded: true."
        )


def results_output(
    backend: str,
    summary: ResultsSummary,
    ids: list[str],
    *,
    sources: list[str],
    job: BatchJobRecord | None = None,
) -> dg.Output[BatchResults]:
    """A ``results`` asset's output: the table's handle, with its record, usage and row count
    (``job``: the ``batch_job`` record of the batches, when a pipeline submitted them)."""
    record = _results_record(backend, summary, ids, sources=sources, job=job)
    table_metadata = TableMetadataSet(row_count=summary.rows)  # the page's "Row count"
    return dg.Output(
        BatchResults(uri=summary.path, rows=summary.rows, counts=summary.counts),
        metadata=_summary_first(record, insights_usage(summary), table_metadata),
    )


def _results_record(
    backend: str,
    summary: ResultsSummary,
    ids: list[str],
    *,
    sources: list[str],
    job: BatchJobRecord | None,
) -> ResultsRecord:
    return ResultsRecord(
        column_schema=dg.MetadataValue.table_schema(_column_schema(summary.path)),
        backend=backend,
        results_uri=summary.path,
        content_hash=job.content_hash if job else "",
        batch_ids=dg.MetadataValue.json(ids),
        source_batch_ids=dg.MetadataValue.json(sources),
        **ResultsRecord.status_fields(summary.counts),
        input_tokens=summary.input_tokens,
        cached_tokens=summary.cached_tokens,
        output_tokens=summary.output_tokens,
        reasoning_tokens=summary.reasoning_tokens,
        cost_usd=summary.cost_usd,  # a number or nothing: the UI plots it over time
        cost_note=summary.cost_note or "at batch rates",
        estimated_input_tokens=job.estimated_input_tokens if job else 0,
        estimate_vs_actual=_estimate_vs_actual(job, summary) if job else "",
        preview=dg.MetadataValue.md(
            _markdown_table(_preview_columns(summary.preview), summary.preview)
        ),
    )


def _estimate_vs_actual(job: BatchJobRecord, summary: ResultsSummary) -> str:
    """``input tokens: estimated ≤ 1,200, billed 950; cost: estimated 0.0001 to 0.0009 USD, billed
    0.0004 USD`` ("" when ``input_file`` recorded no estimate)."""
    if not job.estimated_input_tokens:
        return ""
    words = (
        f"input tokens: estimated ≤ {job.estimated_input_tokens:,}, billed {summary.input_tokens:,}"
    )
    low, high = job.estimated_cost_min_usd, job.estimated_cost_max_usd
    if low is not None and high is not None:
        billed = "unknown" if summary.cost_usd is None else f"{summary.cost_usd:.4f} USD"
        words += f"; cost: estimated {low:.4f} to {high:.4f} USD, billed {billed}"
    if job.followup_of:
        words += " (the estimate is of the whole input; this run resent part of it)"
    return words


SUMMARY_FIELDS = (
    "status_succeeded",
    "status_failed",
    "status_expired",
    "status_cancelled",
    "status_missing",
    "cost_usd",
    "cost_note",
    "estimate_vs_actual",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "preview",
)
"""What the results page shows first: outcomes, cost and tokens, then the answers."""


def _summary_first(
    record: ResultsRecord, usage: Mapping[str, Any], table: TableMetadataSet
) -> dict[str, Any]:
    """The results metadata in reading order: the summary, the locations and batches, the usage
    under Insights' keys, the row count, and the columns last."""
    recorded = dict(record)
    first = {
        key: recorded[key] for key in map(ResultsRecord.key, SUMMARY_FIELDS) if key in recorded
    }
    columns = ResultsRecord.key("column_schema")
    rest = {key: value for key, value in recorded.items() if key != columns}
    return {**first, **rest, **usage, **table, columns: recorded[columns]}


def insights_usage(summary: ResultsSummary) -> dict[str, int]:
    """Usage under the keys ``dagster-openai`` and Dagster+ Insights read:
    ``openai.<model>.calls``, ``.total_tokens``, ``.prompt_tokens``, ``.completion_tokens``."""
    usage: dict[str, int] = {}
    for model, tally in summary.usage_by_model.items():
        prompt, completion = tally["input_tokens"], tally["output_tokens"]
        usage |= {
            f"openai.{model}.calls": tally["calls"],
            f"openai.{model}.total_tokens": prompt + completion,
            f"openai.{model}.prompt_tokens": prompt,
            f"openai.{model}.completion_tokens": completion,
        }
    return usage


PREVIEW_RESULT_COLUMNS = ("answer", "status", "custom_id", "error_message")
RESULT_COLUMNS = {
    "status_code",
    "error_code",
    "response_body",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "batch_id",
    "request_id",
}


def _preview_columns(rows: list[dict[str, Any]], input_columns: int = 3) -> list[str]:
    """What fits on screen: the outcome columns and the first few input columns."""
    if not rows:
        return []
    first = rows[0]
    inputs = [
        c
        for c in first
        if c not in RESULT_COLUMNS
        and c not in PREVIEW_RESULT_COLUMNS
        and first[c] != first["custom_id"]  # the custom_id column itself: shown once
    ]
    return [*PREVIEW_RESULT_COLUMNS[:3], *inputs[:input_columns], PREVIEW_RESULT_COLUMNS[3]]


def _column_schema(uri: str) -> dg.TableSchema:
    """The results table's columns, for the asset page's column view."""
    fs, path = resolve(uri)
    with fs.open_input_file(path) as f:
        schema = pq.read_schema(f)
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                field.name, str(field.type), description=COLUMN_DESCRIPTIONS.get(field.name)
            )
            for field in schema
        ]
    )


COLUMN_DESCRIPTIONS = {
    "custom_id": "The request's id, joining it to its input row.",
    "status": "succeeded, failed, expired, cancelled or missing.",
    "status_code": "HTTP status of the request's response (null when it never ran).",
    "error_code": "Error code of a failed request (e.g. context_length_exceeded, batch_expired).",
    "error_message": "Error message of a failed request.",
    "response_body": "The endpoint's full JSON response (embedding vectors left to answer).",
    "answer": "Text (chat, completions, responses), JSON text of the structured output, "
    "embedding vector (float32) or moderation flags; a request with several inputs keeps one row, "
    "its answer one entry per input in input order (a list of vectors, a JSON list of flags).",
    "input_tokens": "Prompt tokens billed for the request.",
    "cached_tokens": "Prompt tokens served from cache (billed at the cached rate).",
    "output_tokens": "Completion tokens billed for the request.",
    "reasoning_tokens": "Reasoning tokens (part of output_tokens).",
    "batch_id": "The OpenAI batch the request ran in.",
    "request_id": "The service's request id, for support tickets.",
}


def _markdown_table(
    columns: list[str], rows: list[dict[str, Any]], width: int = 28, answer_width: int = 90
) -> str:
    """A markdown table whose cells fit on screen: the answer gets most of the width."""
    if not rows:
        return "(no rows)"

    def cell(column: str, value: Any) -> str:
        limit = answer_width if column == "answer" else width
        text = "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= limit else text[: limit - 1] + "…"

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
