"""`openai_batch_watch`: watch and collect batches created elsewhere, by id.

A batch made by a script, in the OpenAI dashboard, by another orchestrator or by a lost run is
watched the way Terraform's ``openai_batch`` data source reads one: by its id alone. A watch is two
assets partitioned by batch id (a ``DynamicPartitionsDefinition`` named after the watch):

- ``<name>/batch``, an external asset: `openai_batch_watch_sensor` records an observation each time
  the batch changes (`WatchedBatchRecord`: status, request counts, input/output/error file ids,
  ``results_available``, expiry, dashboard link, validation errors);
- ``<name>/results``: the batch's results table, as pipelines write it (`ResultsRecord`, a row per
  request with its status, answer, tokens and cost, and the same checks), materialized by the sensor
  once the batch finishes with result files (run key ``<name>:<batch id>``), or by hand.

Ids come from ``batch_ids=`` (the sensor adds them as partitions), the UI's "Add partition", or
``instance.add_dynamic_partitions(watch.partitions_def.name, [...])``.

Example:
    >>> watch = openai_batch_watch("imported", batch_ids=["batch_abc123"])
    >>> [key.to_user_string() for key in watch.asset_keys]
    ['imported/batch', 'imported/results']
"""

import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import openai
import pyarrow.compute as pc
from openai.types import Batch
from pydantic import BaseModel, ValidationError

from ..core.client import BatchClient, BatchClientError
from ..core.foreign_batch import (
    ForeignBatchError,
    collect_foreign_batch,
    results_available,
    why_not_collectable,
)
from ..core.storage import join_uri, read_table, safe_segment
from ..core.vocabulary import TERMINAL_STATUSES
from .asset_bodies import batch_status, results_output
from .checks import check_specs, evaluate_checks
from .component_attributes import is_row_file, row_file_reader
from .pipeline import RESOURCE_KEY, PipelineDefinitionError, _storage_root
from .resource import OpenAIBatchResource
from .results_io import batch_results_io_manager
from .sensor import RESULTS_RUN_TAG, SensorTickError
from .stage_records import BatchStatusRecord, WatchedBatchRecord

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_]+$")
BATCH_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-.:=+/]{1,256}$")
"""Batch ids as services make them (OpenAI ``batch_…``, Azure UUIDs, base64 ones of gateways)."""


Inputs = dg.AssetKey | dg.AssetsDefinition | dg.AssetSpec | os.PathLike[str] | str
"""Source rows of a watch: an upstream asset (key, definition, spec or ``a/b`` string), or the path
of a CSV, Parquet or JSONL file of rows."""


@dataclass(frozen=True)
class OpenAIBatchWatch:
    """The definitions of one watch, ready for `dagster.Definitions`."""

    name: str
    batch: dg.AssetSpec
    results: dg.AssetsDefinition
    results_job: "UnresolvedAssetJobDefinition | dg.JobDefinition"
    partitions_def: dg.DynamicPartitionsDefinition
    batch_ids: tuple[str, ...] = ()
    """Ids declared in code or YAML: the sensor adds them as partitions."""
    resource_key: str = RESOURCE_KEY

    @property
    def asset_keys(self) -> list[dg.AssetKey]:
        return [self.batch.key, self.results.key]

    def definitions(self) -> dg.Definitions:
        """Assets and the results job of this watch (no resource, no sensor)."""
        return dg.Definitions(assets=[self.batch, self.results], jobs=[self.results_job])


def check_batch_ids(where: str, batch_ids: Sequence[str]) -> tuple[str, ...]:
    """``batch_ids`` without repeats, or a clear error naming the malformed ones."""
    bad = [i for i in batch_ids if not BATCH_ID_PATTERN.match(i) or "..." in i]
    if bad:
        raise PipelineDefinitionError(
            f"{where}: {bad} are not batch ids (letters, digits and _-.:=+/ only, e.g. "
            "'batch_abc123')"
        )
    return tuple(dict.fromkeys(batch_ids))


def openai_batch_watch(
    name: str,
    *,
    batch_ids: Sequence[str] = (),
    resource_key: str = RESOURCE_KEY,
    storage: str | None = None,
    group_name: str | None = None,
    max_failed_share: float = 0.05,
    inputs: Inputs | None = None,
    custom_id_column: str = "custom_id",
) -> OpenAIBatchWatch:
    """Watch and collect batches created elsewhere: ``<name>/batch`` and ``<name>/results``,
    partitioned by batch id.

    Args:
        name: The watch's name (a valid Dagster name): key prefix and group of its assets, name of
            its partitions and prefix of its job (``<name>_results``).
        batch_ids: Batches to watch; more can be added as partitions at any time.
        resource_key: Key of the `OpenAIBatchResource` that can see the batches.
        storage: Where results tables go (as for `openai_batch_assets`).
        group_name: The assets' group (default: ``name``).
        max_failed_share: The ``failed_share`` check fails above this share of failed requests.
        inputs: Source rows whose columns join each request's row by custom_id (without:
            the results table has no input columns): an upstream asset whose value is a list
            of dicts, a DataFrame or an Arrow table, or a CSV, Parquet or JSONL file of rows
            (``{partition_key}`` in its path is replaced by the batch id).
        custom_id_column: The column of ``inputs`` holding each row's custom_id.
    """
    where = f"openai_batch_watch({name!r})"
    if not NAME_PATTERN.match(name):
        raise PipelineDefinitionError(f"{where}: the name must be letters, digits and _ only")
    ids = check_batch_ids(where, batch_ids)
    partitions_def = dg.DynamicPartitionsDefinition(name=name)
    group = group_name or name
    batch_spec = dg.AssetSpec(
        key=dg.AssetKey([name, "batch"]),
        description="A batch created elsewhere, by id: openai_batch_watch_sensor records its "
        "status, request counts, file ids and results_available as observations.",
        group_name=group,
        partitions_def=partitions_def,
        kinds={"openai"},
    )
    results_key = dg.AssetKey([name, "results"])

    inputs_key, inputs_file = _inputs_source(inputs)
    asset_args: dict[str, Any] = {
        "key": results_key,
        "deps": [batch_spec.key],
        "description": "The batch's results table: a row per request (status, answer, tokens, "
        "cost), collected once the batch finishes.",
        "group_name": group,
        "partitions_def": partitions_def,
        "required_resource_keys": {resource_key},
        "check_specs": check_specs(results_key, max_failed_share),
        "io_manager_def": batch_results_io_manager,
        "kinds": {"openai", "parquet"},
    }

    def collect(context: dg.AssetExecutionContext, rows: Any) -> Iterator[Any]:
        return _collect(
            context,
            getattr(context.resources, resource_key),
            batch_key=batch_spec.key,
            results_key=results_key,
            storage_root=_storage_root(context, storage, name),
            max_failed_share=max_failed_share,
            rows=rows,
            custom_id_column=custom_id_column,
        )

    if inputs_key is not None:

        @dg.asset(ins={"rows": dg.AssetIn(key=inputs_key)}, **asset_args)
        def results(context: dg.AssetExecutionContext, rows: Any) -> Iterator[Any]:
            yield from collect(context, rows)

    else:
        read_rows = row_file_reader(inputs_file) if inputs_file is not None else None

        @dg.asset(**asset_args)
        def results(context: dg.AssetExecutionContext) -> Iterator[Any]:
            yield from collect(context, read_rows(context) if read_rows is not None else None)

    results_job = dg.define_asset_job(
        f"{name}_results",
        selection=dg.AssetSelection.assets(results_key),
        description=f"Collect the results of a batch watched by {name}.",
    )
    return OpenAIBatchWatch(
        name=name,
        batch=batch_spec,
        results=results,
        results_job=results_job,
        partitions_def=partitions_def,
        batch_ids=ids,
        resource_key=resource_key,
    )


def _inputs_source(inputs: Inputs | None) -> tuple[dg.AssetKey | None, Path | None]:
    """(the upstream asset, the file of rows) that ``inputs`` names; both None without."""
    if inputs is None:
        return None, None
    if isinstance(inputs, (dg.AssetsDefinition, dg.AssetSpec)):
        return inputs.key, None
    if isinstance(inputs, dg.AssetKey):
        return inputs, None
    if isinstance(inputs, os.PathLike) or is_row_file(inputs):
        return None, Path(inputs)
    return dg.AssetKey.from_user_string(inputs), None


def watched_record(
    resource: OpenAIBatchResource, batch: Batch, *, as_of: str
) -> WatchedBatchRecord:
    """Where ``batch`` stands, with its files and whether its results can be collected."""
    status = batch_status(resource, [batch], as_of=as_of)
    return WatchedBatchRecord(
        **{field: getattr(status, field) for field in BatchStatusRecord.model_fields},
        endpoint=batch.endpoint,
        input_file_id=batch.input_file_id or "",
        output_file_id=batch.output_file_id or "",
        error_file_id=batch.error_file_id or "",
        results_available=results_available(batch),
    )


def _unknown_record(batch_id: str, problem: str) -> WatchedBatchRecord:
    return WatchedBatchRecord(
        batch_ids=dg.MetadataValue.json([batch_id]),
        status="unknown",
        problem=problem,
        checked_at=dg.MetadataValue.timestamp(time.time()),
    )


def _unknown_problem(batch_id: str, resource: OpenAIBatchResource) -> str:
    return (
        f"the {resource.backend} service does not know batch {batch_id!r} (404): check the id, "
        "and that the resource's key, organization, project and base_url are those of the "
        "account that created it"
    )


def _retrieve_one(client: BatchClient, batch_id: str) -> Batch | None:
    try:
        return client.retrieve(batch_id)
    except openai.NotFoundError:
        return None


def _collect(
    context: dg.AssetExecutionContext,
    resource: OpenAIBatchResource,
    *,
    batch_key: dg.AssetKey,
    results_key: dg.AssetKey,
    storage_root: str,
    max_failed_share: float,
    rows: Any = None,
    custom_id_column: str = "custom_id",
) -> Iterator[Any]:
    """Retrieve the partition's batch, record where it stands, and collect its results (with the
    columns of its ``rows``, when given)."""
    batch_id = context.partition_key
    with (
        tempfile.TemporaryDirectory(prefix="openai-batch-") as tmp,
        resource.get_batch_client() as client,
    ):
        batch = _retrieve_one(client, batch_id)
        if batch is None:
            problem = _unknown_problem(batch_id, resource)
            context.log_event(
                dg.AssetObservation(
                    asset_key=batch_key,
                    partition=batch_id,
                    metadata={**_unknown_record(batch_id, problem)},
                )
            )
            raise dg.Failure(f"Cannot collect batch {batch_id}: {problem}.")
        context.log_event(
            dg.AssetObservation(
                asset_key=batch_key,
                partition=batch_id,
                metadata={**watched_record(resource, batch, as_of=COLLECTED)},
            )
        )
        dest = join_uri(storage_root, "results", f"{safe_segment(batch_id)}.parquet")
        try:
            collected = collect_foreign_batch(
                client, batch, Path(tmp), dest, rows=rows, custom_id_column=custom_id_column
            )
        except ForeignBatchError as error:
            later = "" if batch.status in TERMINAL_STATUSES else WHEN_FINISHED
            raise dg.Failure(f"{error}{later}") from None
    summary = collected.summary
    context.log.info(f"{summary.rows} rows of batch {batch_id}, from its {collected.rows_from}")
    table = read_table(summary.path, ["custom_id"])
    unique = pc.count_distinct(table.column("custom_id")).as_py() if table.num_rows else 0
    yield results_output(resource.backend, summary, [batch_id], sources=[batch_id])
    yield from evaluate_checks(
        results_key=results_key,
        expected_requests=collected.expected_rows,
        rows=summary.rows,
        unique_custom_ids=unique,
        counts=summary.counts,
        max_failed_share=max_failed_share,
    )


COLLECTED = "when its results were collected"
OBSERVED = "observed by openai_batch_watch_sensor: current (see checked_at)"
WHEN_FINISHED = " The openai_batch_watch_sensor collects it when it finishes."


# ---------------------------------------------------------------- the sensor


class WatchCursor(BaseModel):
    seen: dict[str, str] = {}
    """Per watched batch (``<watch>/<batch id>``) not collected yet: its progress when last
    observed (``status:completed:failed``, or ``unknown``). A final status is not looked at
    again."""


def _load_cursor(context: dg.SensorEvaluationContext) -> WatchCursor:
    if not context.cursor:
        return WatchCursor()
    try:
        return WatchCursor.model_validate_json(context.cursor)
    except ValidationError:
        context.log.warning(
            "The watch sensor's cursor is unreadable; looking at every batch again."
        )
        return WatchCursor()


@dataclass
class _Watched:
    watch: OpenAIBatchWatch
    batch_id: str

    @property
    def key(self) -> str:
        return f"{self.watch.name}/{self.batch_id}"

    def observation(self, metadata: Mapping[str, Any]) -> dg.AssetObservation:
        return dg.AssetObservation(
            asset_key=self.watch.batch.key, partition=self.batch_id, metadata=metadata
        )


class _WatchTick:
    """What one tick decides: partitions to add, observations, run requests, the new cursor."""

    def __init__(
        self, context: dg.SensorEvaluationContext, resource: OpenAIBatchResource, old: WatchCursor
    ) -> None:
        self.context, self.resource, self.old = context, resource, old
        self.cursor = WatchCursor()
        self.partition_requests: list[dg.AddDynamicPartitionsRequest] = []
        self.observations: list[dg.AssetObservation] = []
        self.run_requests: list[dg.RunRequest] = []
        self.words: list[str] = []

    def pending(self, watch: OpenAIBatchWatch) -> list[_Watched]:
        """The watch's batches to look at now; declared ids not yet partitions are added."""
        instance = self.context.instance
        existing = instance.get_dynamic_partitions(watch.name)
        new = [i for i in watch.batch_ids if i not in set(existing)]
        if new:  # observed from the next tick on, once the partitions exist
            self.partition_requests.append(watch.partitions_def.build_add_request(new))
            self.words.append(f"{watch.name}: watching {len(new)} new batch(es)")
        collected = instance.get_materialized_partitions(watch.results.key)
        found = []
        for batch_id in existing:
            item = _Watched(watch, batch_id)
            if batch_id in collected:
                continue
            seen = self.old.seen.get(item.key, "")
            if seen.split(":")[0] in TERMINAL_STATUSES:
                self.cursor.seen[item.key] = seen  # finished: its run (if any) was requested
                continue
            found.append(item)
        return found

    def process(self, item: _Watched, batch: Batch | None) -> None:
        before = self.old.seen.get(item.key)
        if batch is None:
            self.cursor.seen[item.key] = "unknown"
            if before != "unknown":
                problem = _unknown_problem(item.batch_id, self.resource)
                self.context.log.warning(f"{item.key}: {problem}; still looking at each tick.")
                record = _unknown_record(item.batch_id, problem)
                self.observations.append(item.observation({**record}))
            self.words.append(f"{item.key}: unknown to the service")
            return
        record = watched_record(self.resource, batch, as_of=OBSERVED)
        progress = f"{batch.status}:{record.requests_completed}:{record.requests_failed}"
        self.cursor.seen[item.key] = progress
        if progress != before:
            done = record.requests_completed + record.requests_failed
            metadata = {**record, "dagster/row_count": dg.MetadataValue.int(done)}
            self.observations.append(item.observation(metadata))
        self.words.append(f"{item.key}: {batch.status}, {record.progress}")
        if batch.status not in TERMINAL_STATUSES:
            return
        why = why_not_collectable(batch)
        if why is not None:
            self.context.log.info(f"{item.key} finished with nothing to collect: {why}.")
            return
        self.run_requests.append(
            dg.RunRequest(
                run_key=f"{item.watch.name}:{item.batch_id}",
                job_name=item.watch.results_job.name,
                partition_key=item.batch_id,
                tags={
                    "openai_batch/batch_ids": item.batch_id,
                    RESULTS_RUN_TAG[0]: RESULTS_RUN_TAG[1],
                },
            )
        )

    def result(self) -> dg.SensorResult:
        summary = "; ".join(self.words[:10]) or "No watched batch to look at."
        if self.run_requests:
            self.context.log.info(summary)
        return dg.SensorResult(
            run_requests=self.run_requests,
            asset_events=self.observations,
            dynamic_partitions_requests=self.partition_requests,
            cursor=self.cursor.model_dump_json(),
            skip_reason=None if self.run_requests else summary,
        )


def _retrieve_many(resource: OpenAIBatchResource, items: Sequence[_Watched]) -> Mapping[str, Batch]:
    ids = [item.batch_id for item in items]
    if not ids:
        return {}
    try:
        with resource.get_batch_client() as client:
            return client.retrieve_many(ids, missing_ok=True)
    except (BatchClientError, openai.APIError) as error:
        message = str(error).splitlines()[0][:300].rstrip(". ")
        raise SensorTickError(
            f"Could not look at {len(ids)} watched batch(es) on {resource.backend}: {message}. "
            "Nothing was recorded; the next tick tries again."
        ) from None


def openai_batch_watch_sensor(
    watches: Sequence[OpenAIBatchWatch],
    *,
    name: str = "openai_batch_watch_sensor",
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """One sensor for ``watches`` (sharing one resource key): adds their declared ids as
    partitions, observes each batch not collected yet, and requests one results run per batch that
    finished with result files (run key ``<watch>:<batch id>``: a cursor reset or a second tick
    never collects twice). An id the service does not know is logged and observed as ``unknown``;
    it never fails the tick for the others.

    Example:
        >>> # sensor = openai_batch_watch_sensor([openai_batch_watch("imported")])
    """
    if not watches:
        raise ValueError("openai_batch_watch_sensor needs at least one watch")
    resource_keys = {w.resource_key for w in watches}
    if len(resource_keys) != 1:
        raise ValueError(
            f"openai_batch_watch_sensor {name!r}: watches use resource keys "
            f"{sorted(resource_keys)}; make one sensor per resource key"
        )
    (resource_key,) = resource_keys

    @dg.sensor(
        name=name,
        jobs=[w.results_job for w in watches],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        required_resource_keys={resource_key},
        description="Watches OpenAI batches created elsewhere, by id; collects their results "
        "when they finish.",
    )
    def _sensor(context: dg.SensorEvaluationContext, **_resources: Any) -> dg.SensorResult:
        resource: OpenAIBatchResource = getattr(context.resources, resource_key)
        tick = _WatchTick(context, resource, _load_cursor(context))
        items = [item for watch in watches for item in tick.pending(watch)]
        batches = _retrieve_many(resource, items)
        for item in items:
            try:
                tick.process(item, batches.get(item.batch_id))
            except Exception as error:  # one bad batch never fails the tick for the others
                context.log.warning(
                    f"Could not process {item.key} ({type(error).__name__}: "
                    f"{str(error)[:200]}); trying again at the next tick."
                )
                tick.cursor.seen.pop(item.key, None)
                if item.key in tick.old.seen:
                    tick.cursor.seen[item.key] = tick.old.seen[item.key]
        return tick.result()

    return _sensor
