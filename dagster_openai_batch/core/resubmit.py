"""Follow-ups: resend the requests that did not succeed, and merge their answers back.

Only what can succeed on a retry is resent by default: rows that expired, were cancelled or are
missing, and failures that are not permanent (HTTP 429, 5xx, or an error line with no HTTP status).
A permanent HTTP 4xx failure (say 400 ``context_length_exceeded``) fails the same way again, so it
is resent only on request.

>>> RETRY_STATUSES
('failed', 'expired', 'cancelled', 'missing')
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .batch_request import BatchRequest
from .input_file import InputPart, read_jsonl_input
from .result_lines import TOKEN_COLUMNS, VECTOR, VECTORS
from .results import (
    STATUSES,
    USAGE_FIELDS,
    ResultsSummary,
    _cost,
    nest_vectors,
    result_schema,
    usage_by_model,
)
from .storage import atomic_output, resolve

RETRY_STATUSES = ("failed", "expired", "cancelled", "missing")
"""Statuses whose requests may be resent; ``failed`` only when not permanent (see
:func:`resubmittable`)."""
UNSENT_STATUSES = ("expired", "cancelled", "missing")
"""Statuses of requests that never got an answer: always resent."""
_BATCH_ROWS = 16_384
_RESULT_COLUMNS = frozenset(result_schema("/v1/completions").names)
"""The columns a results table adds to the inputs (the answer column's type aside)."""


def resubmittable(
    batch: pa.RecordBatch | pa.Table, include_permanent_failures: bool = False
) -> pa.Array:
    """Boolean mask of the rows of a results table to resend.

    ``expired``, ``cancelled`` and ``missing`` rows, and ``failed`` rows whose ``status_code`` is
    429, at least 500 or absent (an error line without an HTTP response); with
    ``include_permanent_failures``, every ``failed`` row.
    """
    status = batch.column("status")
    unsent = pc.is_in(status, value_set=pa.array(UNSENT_STATUSES))
    failed = pc.equal(status, "failed")
    if not include_permanent_failures and "status_code" in batch.column_names:
        code = batch.column("status_code")
        permanent = pc.and_(
            pc.and_(pc.greater_equal(code, 400), pc.less(code, 500)), pc.not_equal(code, 429)
        )
        failed = pc.and_(failed, pc.invert(pc.fill_null(permanent, False)))
    return pc.fill_null(pc.or_(unsent, failed), False)


def _ids_to_retry(
    results_path: str | os.PathLike[str], include_permanent_failures: bool = False
) -> set[str]:
    fs, path = resolve(results_path)
    ids: set[str] = set()
    with fs.open_input_file(path) as f:
        file = pq.ParquetFile(f)
        columns = [
            c for c in ("custom_id", "status", "status_code") if c in file.schema_arrow.names
        ]
        for rb in file.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            mask = resubmittable(rb, include_permanent_failures)
            ids.update(pc.filter(rb.column("custom_id"), mask).to_pylist())
    return ids


def count_resubmittable(
    results_path: str | os.PathLike[str], include_permanent_failures: bool = False
) -> int:
    """How many requests :func:`build_resubmission` would resend, so a caller can skip a follow-up
    early."""
    return len(_ids_to_retry(results_path, include_permanent_failures))


def build_resubmission(
    results_path: str | os.PathLike[str],
    sent: Iterable[InputPart | str | os.PathLike[str]] | Iterable[BatchRequest],
    *,
    include_permanent_failures: bool = False,
) -> Iterator[BatchRequest]:
    """Yield the original requests (same custom_id) of every row that can succeed on a retry.

    That is every expired, cancelled or missing row, and every failed row that is not a permanent
    HTTP 4xx failure (429 is retried); ``include_permanent_failures=True`` resends every failed row
    too. Yields nothing (it does not raise) when there is nothing to resend. ``sent`` is what was
    submitted: the input parts (or their JSONL paths), or the requests themselves.
    """
    retry = _ids_to_retry(results_path, include_permanent_failures)
    if not retry:
        return
    for item in sent:
        if isinstance(item, BatchRequest):
            if item.custom_id in retry:
                yield item
            continue
        for line in read_jsonl_input(item.path if isinstance(item, InputPart) else Path(item)):
            if line["custom_id"] in retry:
                yield BatchRequest(custom_id=line["custom_id"], url=line["url"], body=line["body"])


def _add_tokens(table: pa.Table, tokens_by_model: dict[str, list[int]]) -> None:
    """Add the token counts of the succeeded rows of ``table`` by model (read from each response
    body)."""
    mask = pc.and_(
        pc.equal(table.column("status"), "succeeded"), pc.is_valid(table.column("input_tokens"))
    )
    done = table.filter(pc.fill_null(mask, False))
    if not done.num_rows:
        return
    columns = [done.column(name).fill_null(0).to_pylist() for name in TOKEN_COLUMNS]
    for i, body in enumerate(done.column("response_body").to_pylist()):
        try:
            model = orjson.loads(body).get("model") if body else None
        except (orjson.JSONDecodeError, AttributeError):
            model = None
        totals = tokens_by_model.setdefault(
            model if isinstance(model, str) else "(unknown model)", [0] * len(USAGE_FIELDS)
        )
        for k, column in enumerate(columns):
            totals[k] += column[i]
        totals[-1] += 1


def merge_results(
    base_path: str | os.PathLike[str],
    followup_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
) -> ResultsSummary:
    """Write ``base_path`` with each row replaced by its follow-up result when that one succeeded,
    or when the base row had not (the later success wins). Input columns of the base are kept.

    ``cost_usd`` is the cost, at batch rates, of the answers in the merged table (each row's tokens
    priced by the model in its response body). ``dest`` is written whole or not at all, and may be
    ``base_path`` itself.
    """
    base_fs, base = resolve(base_path)
    with base_fs.open_input_file(base) as f:
        base_schema = pq.ParquetFile(f).schema_arrow
    followup = _Followup(followup_path, base_schema)
    tally = _Tally()
    writer: pq.ParquetWriter | None = None
    with atomic_output(dest) as (out_fs, tmp), base_fs.open_input_file(base) as f:
        try:
            for rb in pq.ParquetFile(f).iter_batches(batch_size=_BATCH_ROWS):
                table = followup.merge_into(pa.Table.from_batches([rb]))
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, filesystem=out_fs)
                writer.write_table(table)
                tally.add(table)
            if writer is None:  # an empty base: keep its schema
                writer = pq.ParquetWriter(tmp, pq.ParquetFile(f).schema_arrow, filesystem=out_fs)
        finally:
            if writer is not None:
                writer.close()
    return tally.summary(os.fspath(dest))


class _Followup:
    """The result columns of a follow-up's results table, and where each custom_id's row is.

    When one side's embeddings answers are lists of vectors (a request embedded several inputs)
    and the other's single vectors, the single vectors become one-vector lists on both sides.
    """

    def __init__(self, path: str | os.PathLike[str], base_schema: pa.Schema) -> None:
        fs, local = resolve(path)
        table = pq.read_table(local, filesystem=fs)
        self.columns = [c for c in table.column_names if c in _RESULT_COLUMNS]
        self.table = table.select(self.columns)
        types = [s.field("answer").type for s in (base_schema, table.schema) if "answer" in s.names]
        # Compared with ==, not hashed: a list's item name (item, element) is not part of its type.
        self.nest = any(t == VECTOR for t in types) and any(t == VECTORS for t in types)
        if self.nest:
            self.table = _nested(self.table)
        self.position = {cid: i for i, cid in enumerate(self.table.column("custom_id").to_pylist())}
        self.statuses = self.table.column("status").to_pylist()

    def merge_into(self, table: pa.Table) -> pa.Table:
        """``table`` (a chunk of the base) with the follow-up's rows that win put in."""
        if self.nest:
            table = _nested(table)
        statuses = table.column("status").to_pylist()
        take = []
        for i, cid in enumerate(table.column("custom_id").to_pylist()):
            j = self.position.get(cid)
            use = j is not None and (self.statuses[j] == "succeeded" or statuses[i] != "succeeded")
            take.append(j if use else None)
        # With no follow-up row to use (e.g. a follow-up batch that expired before any request ran)
        # the chunk stays as it is.
        if all(j is None for j in take):
            return table
        use_mask = pa.array([j is not None for j in take])
        # take() needs valid indices even where the mask keeps the base row.
        picked = self.table.take(pa.array([j or 0 for j in take], pa.int64()))
        for name in self.columns:
            if name == "custom_id":
                continue
            column = pc.if_else(
                use_mask, picked.column(name), table.column(name).cast(picked.column(name).type)
            )
            table = table.set_column(table.column_names.index(name), name, column)
        return table


def _nested(table: pa.Table) -> pa.Table:
    """``table`` with an answer column of single vectors as one of one-vector lists."""
    i = table.column_names.index("answer")
    if table.schema.field(i).type != VECTOR:
        return table
    return table.set_column(i, "answer", nest_vectors(table.column(i)))


class _Tally:
    """Counts, token totals, cost and preview of the merged table, chunk by chunk."""

    def __init__(self) -> None:
        self.rows = 0
        self.counts = dict.fromkeys(STATUSES, 0)
        self.totals = dict.fromkeys(TOKEN_COLUMNS, 0)
        self.tokens_by_model: dict[str, list[int]] = {}
        self.preview: list[dict[str, Any]] = []

    def add(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for status in table.column("status").to_pylist():
            self.counts[status] = self.counts.get(status, 0) + 1
        for name in TOKEN_COLUMNS:
            self.totals[name] += pc.sum(table.column(name)).as_py() or 0
        _add_tokens(table, self.tokens_by_model)
        if len(self.preview) < 5:
            self.preview.extend(table.slice(0, 5 - len(self.preview)).to_pylist())

    def summary(self, path: str) -> ResultsSummary:
        cost, note = _cost(self.tokens_by_model)
        return ResultsSummary(
            path=path,
            rows=self.rows,
            counts=self.counts,
            **self.totals,
            cost_usd=cost,
            cost_note=f"{note} (the answers in the merged table)" if cost else note,
            preview=self.preview,
            usage_by_model=usage_by_model(self.tokens_by_model),
        )
