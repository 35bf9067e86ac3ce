"""Run the requests that did not succeed again, and merge the follow-up's answers back.

>>> RETRY_STATUSES
('failed', 'expired', 'cancelled', 'missing')
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .models import BatchRequest
from .results import STATUSES, TOKEN_COLUMNS, ResultsSummary, result_schema
from .storage import open_output, resolve
from .writer import InputPart, read_jsonl_input

RETRY_STATUSES = ("failed", "expired", "cancelled", "missing")
_BATCH_ROWS = 16_384


def _ids_to_retry(results_path: str | os.PathLike[str]) -> set[str]:
    fs, path = resolve(results_path)
    ids: set[str] = set()
    with fs.open_input_file(path) as f:
        for rb in pq.ParquetFile(f).iter_batches(batch_size=_BATCH_ROWS, columns=["custom_id", "status"]):
            mask = pc.is_in(rb.column("status"), value_set=pa.array(RETRY_STATUSES))
            ids.update(pc.filter(rb.column("custom_id"), mask).to_pylist())
    return ids


def build_resubmission(
    results_path: str | os.PathLike[str],
    sent: Iterable[InputPart | str | os.PathLike[str]] | Iterable[BatchRequest],
) -> Iterator[BatchRequest]:
    """Yield the original requests (same custom_id) of every row whose status is failed/expired/cancelled/missing.

    ``sent`` is what was submitted: the input parts (or their JSONL paths), or the requests themselves.
    """
    retry = _ids_to_retry(results_path)
    for item in sent:
        if isinstance(item, BatchRequest):
            if item.custom_id in retry:
                yield item
            continue
        for line in read_jsonl_input(item.path if isinstance(item, InputPart) else Path(item)):
            if line["custom_id"] in retry:
                yield BatchRequest(custom_id=line["custom_id"], url=line["url"], body=line["body"])


def merge_results(
    base_path: str | os.PathLike[str], followup_path: str | os.PathLike[str], dest: str | os.PathLike[str]
) -> ResultsSummary:
    """Write ``base_path`` with each row replaced by its follow-up result when that one succeeded, or when the
    base row had not (the later success wins). Input columns of the base are kept.
    """
    fs, path = resolve(followup_path)
    followup = pq.read_table(path, filesystem=fs)
    result_cols = [c for c in followup.column_names if c in result_schema("/v1/completions").names]
    followup = followup.select(result_cols)
    position = {cid: i for i, cid in enumerate(followup.column("custom_id").to_pylist())}
    ok = followup.column("status").to_pylist()
    base_fs, base = resolve(base_path)
    out_fs, out = open_output(dest)
    counts = dict.fromkeys(STATUSES, 0)
    totals = dict.fromkeys(TOKEN_COLUMNS, 0)
    rows = 0
    preview: list[dict[str, Any]] = []
    writer: pq.ParquetWriter | None = None
    with base_fs.open_input_file(base) as f:
        for rb in pq.ParquetFile(f).iter_batches(batch_size=_BATCH_ROWS):
            table = pa.Table.from_batches([rb])
            statuses = table.column("status").to_pylist()
            take = []
            for i, cid in enumerate(table.column("custom_id").to_pylist()):
                j = position.get(cid)
                use = j is not None and (ok[j] == "succeeded" or statuses[i] != "succeeded")
                take.append(j if use else None)
            picked = followup.take(pa.array([j if j is not None else 0 for j in take], pa.int64()))
            use_mask = pa.array([j is not None for j in take])
            for name in result_cols:
                if name == "custom_id":
                    continue
                column = pc.if_else(use_mask, picked.column(name), table.column(name).cast(picked.column(name).type))
                table = table.set_column(table.column_names.index(name), name, column)
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema, filesystem=out_fs)
            writer.write_table(table)
            rows += table.num_rows
            for status in table.column("status").to_pylist():
                counts[status] = counts.get(status, 0) + 1
            for name in TOKEN_COLUMNS:
                totals[name] += pc.sum(table.column(name)).as_py() or 0
            if len(preview) < 5:
                preview.extend(table.slice(0, 5 - len(preview)).to_pylist())
    if writer is not None:
        writer.close()
    return ResultsSummary(path=os.fspath(dest), rows=rows, counts=counts, **totals, cost_usd=None,
                          cost_note="not computed for merged results: add the cost of the original run and of the follow-up", preview=preview)

