"""What each stage records in its materialization metadata, and so hands the next stage.

Stages run in different processes (and, with Kubernetes, on different machines), so the batch
file ids and batch ids travel through Dagster's event log, not through local files. Each hand-off
is one typed metadata set (a Dagster ``NamespacedMetadataSet``, like ``TableMetadataSet``), its
keys namespaced ``openai_batch/`` (``openai_batch/batch_ids``, ``openai_batch/cost_usd``, …):

- :class:`InputFileRecord`: what ``input_file`` uploaded, read by ``batch_job``;
- :class:`BatchStatusRecord`: where a set of batches stands, recorded by the sensor's
  observations of ``batch_job`` and by the ``batches_accepted`` check;
- :class:`BatchJobRecord`: a ``BatchStatusRecord`` plus what ``results`` needs, read by the sensor,
  by ``results`` and by the next ``batch_job`` (adoption);
- :class:`ResultsRecord`: what ``results`` wrote, read by the sensor (already collected?) and by a
  ``batch_job`` resubmission;
- :class:`WatchedBatchRecord`: where a batch created elsewhere stands (``openai_batch_watch``).

Write a record with ``metadata={**Record(...)}``; read one with ``Record.read(metadata)`` or
:func:`latest_record`. Nothing else indexes metadata by key. Metadata written before the records
existed (bare keys) is still read: see :func:`with_legacy_keys`.

Example:
    >>> record = BatchJobRecord(batch_ids=dg.MetadataValue.json(["batch_1"]), status="completed")
    >>> metadata = {**record}
    >>> metadata["openai_batch/status"]
    'completed'
    >>> BatchJobRecord.read(metadata).batch_id_list
    ['batch_1']
    >>> BatchJobRecord.read({"batch_ids": dg.MetadataValue.json(["batch_1"])}).batch_id_list
    ['batch_1']
"""

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Self, TypeVar

import dagster as dg
from dagster._core.definitions.metadata import NamespacedMetadataSet
from pydantic import ValidationError, field_validator

from ..core.errors import OpenAIBatchError

NAMESPACE = "openai_batch"
RESULT_STATUSES = ("succeeded", "failed", "expired", "cancelled", "missing")


class StageRecordError(OpenAIBatchError, ValueError):
    """A materialization's metadata does not hold a readable record (e.g. batch ids not a list)."""


def _as_id_list(value: object) -> object:
    """Lists of ids and URIs are kept as JSON metadata (a list in the UI): accepts a list of
    non-empty strings, as a Python list or as JSON metadata, and refuses anything else."""
    if value is None:
        return None
    data = value.value if isinstance(value, dg.MetadataValue) else value
    if isinstance(data, list) and all(isinstance(item, str) and item for item in data):
        return dg.MetadataValue.json(list(data))
    raise ValueError(f"expected a list of ids, got {str(data)[:80]!r}")


def _as_int_list(value: object) -> object:
    """Per-part figures (token estimates, attempts) are kept as a JSON list of integers."""
    if value is None:
        return None
    data = value.value if isinstance(value, dg.MetadataValue) else value
    if isinstance(data, list) and all(type(item) is int for item in data):
        return dg.MetadataValue.json(list(data))
    raise ValueError(f"expected a list of integers, got {str(data)[:80]!r}")


def _ints(value: dg.JsonMetadataValue | None) -> list[int]:
    """The list held by a field :func:`_as_int_list` validated (empty when absent)."""
    data = value.data if value is not None else None
    return [int(item) for item in data] if isinstance(data, list) else []


def _strings(value: dg.JsonMetadataValue | None) -> list[str]:
    """The list held by a field :func:`_as_id_list` validated (empty when absent)."""
    data = value.data if value is not None else None
    return [str(item) for item in data] if isinstance(data, list) else []


class StageRecord(NamespacedMetadataSet):
    """Base of the records: the ``openai_batch`` namespace, reading with the legacy fallback."""

    @classmethod
    def namespace(cls) -> str:
        return NAMESPACE

    @classmethod
    def key(cls, field: str) -> str:
        """The metadata key of ``field``: ``openai_batch/<field>``."""
        if field not in cls.model_fields:
            raise KeyError(f"{cls.__name__} has no field {field!r}")
        return cls._namespaced_key(field)

    @classmethod
    def read(cls, metadata: Mapping[str, Any]) -> Self:
        """The record held by ``metadata`` (missing fields take their defaults).

        Raises:
            StageRecordError: a value has the wrong type (e.g. batch ids that are not a list).
        """
        try:
            return cls.extract(with_legacy_keys(metadata))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            raise StageRecordError(f"unreadable {cls.__name__} metadata ({problems})") from None


class InputFileRecord(StageRecord):
    """What ``input_file`` uploaded: one file per part, made from input ``content_hash``."""

    backend: str = ""
    endpoint: str = ""
    model: str = ""
    file_ids: dg.JsonMetadataValue | None = None
    parts: int = 0
    requests: int = 0
    bytes: int = 0
    content_hash: str = ""
    """Fingerprint of the input: with the pipeline, partition and part, the batches' key."""
    storage_uri: str = ""
    part_uris: dg.JsonMetadataValue | None = None
    """Where a copy of each part (what was sent) is kept."""
    inputs_uri: str = ""
    """Where the input rows are kept ("" for a JSONL input), joined to the answers by results."""
    preview: dg.JsonMetadataValue | None = None
    estimated_input_tokens: int = 0
    """Of every part: conservative (see ``core/token_estimate.py``); 0 in older records."""
    part_tokens: dg.JsonMetadataValue | None = None
    """Each part's estimated input tokens, in part order."""
    estimated_cost_min_usd: float | None = None
    """At batch rates, input tokens only (None: the model has no known price)."""
    estimated_cost_max_usd: float | None = None
    """At batch rates, with the output tokens per request that ``cost_estimate_note`` states."""
    cost_estimate_note: str = ""

    check_lists = field_validator("file_ids", "part_uris", mode="before")(_as_id_list)
    check_ints = field_validator("part_tokens", mode="before")(_as_int_list)

    @property
    def part_token_list(self) -> list[int]:
        return _ints(self.part_tokens)

    @property
    def file_id_list(self) -> list[str]:
        return _strings(self.file_ids)

    @property
    def part_uri_list(self) -> list[str]:
        return _strings(self.part_uris)


class BatchStatusRecord(StageRecord):
    """Where a set of batches stands (``batch_job``, the sensor's observations, the check)."""

    as_of: str = ""
    """When these figures were true: ``batch_job``'s own record is a snapshot taken at submission
    (its status and progress never change afterwards); the sensor's observations are current."""
    batch_ids: dg.JsonMetadataValue | None = None
    status: str = ""
    """The batches' statuses, sorted and comma-separated (``completed``, ``failed,in_progress``)."""
    progress: str = ""
    requests_total: int = 0
    requests_completed: int = 0
    requests_failed: int = 0
    model: str = ""
    expires_at: dg.TimestampMetadataValue | None = None
    """When the first batch expires."""
    dashboard: dg.MarkdownMetadataValue | None = None
    errors: dg.MarkdownMetadataValue | None = None
    """Validation errors, one line each."""
    percent_done: float = 0.0
    """Requests done (completed or failed) out of the total, in percent."""
    elapsed: str = ""
    """Since the first batch was created, until the last one finished (``3 min 12 s``)."""
    expected_finish: dg.TimestampMetadataValue | None = None
    """Estimated from the pace so far while requests are running (None otherwise)."""
    finished_at: dg.TimestampMetadataValue | None = None
    """When the last batch reached a final state (None while any is still running)."""
    checked_at: dg.TimestampMetadataValue | None = None
    """When the service was asked."""
    per_batch: dg.MarkdownMetadataValue | None = None
    """One line per batch: status, requests done, percentage."""

    check_batch_ids = field_validator("batch_ids", mode="before")(_as_id_list)

    @property
    def batch_id_list(self) -> list[str]:
        return _strings(self.batch_ids)


class WatchedBatchRecord(BatchStatusRecord):
    """Where a batch created elsewhere stands: the sensor's observations of a watch's ``batch``."""

    endpoint: str = ""
    input_file_id: str = ""
    output_file_id: str = ""
    error_file_id: str = ""
    results_available: bool = False
    """Finished with an output or error file: its ``results`` can be collected."""
    problem: str = ""
    """Why it cannot be watched or collected (e.g. the service does not know the id)."""


class BatchJobRecord(BatchStatusRecord):
    """What ``batch_job`` submitted (or adopted), and what ``results`` needs to collect it."""

    backend: str = ""
    endpoint: str = ""
    adopted: int = 0
    """How many of the batches existed already (nothing paid twice)."""
    content_hash: str = ""
    """Of the input the batches were made from (see :class:`InputFileRecord`)."""
    requests: int = 0
    """Requests sent by this submission (fewer than ``expected_rows`` for a follow-up)."""
    expected_rows: int = 0
    """Rows the results table must hold: the input's requests."""
    inputs_uri: str = ""
    part_uris: dg.JsonMetadataValue | None = None
    followup_of: str = ""
    """For a resubmission: the results URI whose failed requests were resent ("" otherwise)."""
    estimated_input_tokens: int = 0
    estimated_cost_min_usd: float | None = None
    estimated_cost_max_usd: float | None = None
    waiting: str = ""
    """Why parts are not submitted yet ("2 of 5 parts waiting: gpt-4o-mini queue 1.8M/2M
    tokens"); "" when every part has its batch. The sensor submits them as room frees."""
    parts: int = 0
    """Parts of the submission; ``batch_ids`` holds the batches of the first ones (0 in older
    records: one per batch id)."""
    file_ids: dg.JsonMetadataValue | None = None
    """Every part's uploaded file, for the parts still waiting."""
    part_tokens: dg.JsonMetadataValue | None = None
    attempts: dg.JsonMetadataValue | None = None
    """Per created part: which attempt its batch is (> 1 after ``token_limit_exceeded``)."""
    key_base: str = ""
    """The parts' idempotency keys are ``key_base:index`` (``:attempt:n`` from the second)."""
    queue_model: str = ""
    """The model name the parts' requests use: their queue."""

    check_part_uris = field_validator("part_uris", mode="before")(_as_id_list)
    check_file_ids = field_validator("file_ids", mode="before")(_as_id_list)
    check_ints = field_validator("part_tokens", "attempts", mode="before")(_as_int_list)

    @property
    def part_uri_list(self) -> list[str]:
        return _strings(self.part_uris)

    @property
    def file_id_list(self) -> list[str]:
        return _strings(self.file_ids)

    @property
    def part_token_list(self) -> list[int]:
        return _ints(self.part_tokens)

    @property
    def attempt_list(self) -> list[int]:
        """One per batch id (1 when not recorded)."""
        recorded = _ints(self.attempts)
        return [*recorded, *[1] * (len(self.batch_id_list) - len(recorded))]

    @property
    def part_count(self) -> int:
        return self.parts or len(self.batch_id_list)

    def handed_on(self) -> dict[str, Any]:
        """What ``results`` needs besides the batches: a re-recording of the same submission
        (a cancel) keeps it as it was."""
        return {name: getattr(self, name) for name in HANDED_ON}


HANDED_ON = (
    "content_hash",
    "requests",
    "expected_rows",
    "inputs_uri",
    "part_uris",
    "followup_of",
    "estimated_input_tokens",
    "estimated_cost_min_usd",
    "estimated_cost_max_usd",
)


class ResultsRecord(StageRecord):
    """What ``results`` wrote: the Parquet table, its counts, tokens and cost, and its batches."""

    backend: str = ""
    results_uri: str = ""
    content_hash: str = ""
    batch_ids: dg.JsonMetadataValue | None = None
    """The batches this run collected."""
    source_batch_ids: dg.JsonMetadataValue | None = None
    """Every batch whose answers the table holds (a merged follow-up holds its base's too)."""
    status_succeeded: int = 0
    status_failed: int = 0
    status_expired: int = 0
    status_cancelled: int = 0
    status_missing: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    """At batch rates; None (left out) for a model without a known price: never a made-up figure."""
    cost_note: str = ""
    estimated_input_tokens: int = 0
    """What ``input_file`` estimated (conservative), beside the ``input_tokens`` billed."""
    estimate_vs_actual: str = ""
    """The estimate of tokens and cost beside what the batches reported."""
    preview: dg.MarkdownMetadataValue | None = None
    column_schema: dg.TableSchemaMetadataValue | None = None
    """The table's columns, after the summary (Dagster's ``dagster/column_schema`` would put
    them above it, in the page's Columns section)."""

    check_lists = field_validator("batch_ids", "source_batch_ids", mode="before")(_as_id_list)

    @classmethod
    def status_fields(cls, counts: Mapping[str, int]) -> dict[str, int]:
        """Constructor arguments for the rows' counts by status."""
        return {f"status_{status}": counts.get(status, 0) for status in RESULT_STATUSES}

    @property
    def counts(self) -> dict[str, int]:
        """Rows by status (succeeded, failed, expired, cancelled, missing)."""
        return {status: int(getattr(self, f"status_{status}")) for status in RESULT_STATUSES}

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    @property
    def batch_id_list(self) -> list[str]:
        return _strings(self.batch_ids)

    @property
    def covered_batch_ids(self) -> list[str]:
        """Every batch whose answers the table holds."""
        return _strings(self.source_batch_ids) or self.batch_id_list


def with_legacy_keys(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """Metadata written by versions before the records, read under the records' keys.

    Those versions wrote the same facts under bare keys (``batch_ids``, ``content_hash``,
    ``status_succeeded``…), which are the records' field names. Metadata holding no
    ``openai_batch/`` key is therefore read with that prefix added to each bare key, so an
    instance upgraded with batches in flight neither wedges the sensor nor pays again for batches
    that ``batch_job`` should adopt. Metadata holding any ``openai_batch/`` key is read as it is.
    """
    prefix = f"{NAMESPACE}/"
    if any(key.startswith(prefix) for key in metadata):
        return metadata
    return {prefix + key: value for key, value in metadata.items() if "/" not in key}


# ---------------------------------------------------------------- reading from the instance

R = TypeVar("R", bound=StageRecord)


def _materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_key: str | None, limit: int
) -> Iterator[Mapping[str, dg.MetadataValue]]:
    """Metadata of the newest ``limit`` materializations of ``asset_key`` (for the partition)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=asset_key,
            asset_partitions=[partition_key] if partition_key is not None else None,
        ),
        limit=limit,
    ).records
    for record in records:
        if record.asset_materialization is not None:
            yield record.asset_materialization.metadata


def latest_metadata(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_key: str | None
) -> Mapping[str, dg.MetadataValue] | None:
    """Metadata of the newest materialization of ``asset_key`` (for ``partition_key``), as
    stored: for metadata sets other than the records (e.g. ``TableMetadataSet``)."""
    return next(_materializations(instance, asset_key, partition_key, 1), None)


def latest_record(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    partition_key: str | None,
    record_type: type[R],
    *,
    where: Callable[[R], bool] | None = None,
    search_depth: int = 50,
) -> R | None:
    """The record of the newest materialization of ``asset_key`` (for ``partition_key``).

    With ``where``, of the newest one (among ``search_depth``) whose record satisfies it; an
    unreadable record never does. Without, an unreadable newest record raises
    :class:`StageRecordError`.
    """
    for metadata in _materializations(
        instance, asset_key, partition_key, search_depth if where else 1
    ):
        if where is None:
            return record_type.read(metadata)
        try:
            record = record_type.read(metadata)
        except StageRecordError:
            continue
        if where(record):
            return record
    return None
