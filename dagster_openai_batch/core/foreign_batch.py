"""The results table of a batch created elsewhere (a script, the dashboard, another orchestrator).

Nothing recorded what such a batch was sent, so its rows are the custom_ids of its input file, read
back from the service: every request is accounted for, the never-run ones of a cancelled or expired
batch included. When the service no longer serves that file (deleted, expired, refused), the rows
are the custom_ids found in the result files. Source rows, when given, add their columns.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import orjson
from openai.types import Batch

from .client import BatchClient
from .errors import OpenAIBatchError
from .inputs_table import InputsTableWriter
from .result_lines import LOW_LINE_BYTES, Parsers
from .results import ResultsSummary, collect_results
from .templates import iter_rows
from .vocabulary import RESULT_FILE_STATUSES, TERMINAL_STATUSES

_BUFFER = 1 << 20


class ForeignBatchError(OpenAIBatchError, ValueError):
    """The batch cannot be collected (yet): still running, failed validation, or no result file."""


@dataclass(frozen=True)
class ForeignResults:
    """What :func:`collect_foreign_batch` wrote, and where its rows came from."""

    summary: ResultsSummary
    expected_rows: int
    """The batch's request count (the rows written when the service does not count them)."""
    rows_from: str
    """``input file <id>``, or why the result files alone gave the rows."""


def results_available(batch: Batch) -> bool:
    """Whether ``batch`` is finished and has an output or error file to collect."""
    return batch.status in RESULT_FILE_STATUSES and bool(
        batch.output_file_id or batch.error_file_id
    )


def why_not_collectable(batch: Batch) -> str | None:
    """Why ``batch`` has no results to collect now, in words (None: it has)."""
    if batch.status not in TERMINAL_STATUSES:
        return f"it is still {batch.status}"
    if batch.status == "failed":
        data = (batch.errors.data if batch.errors else None) or []
        errors = [e.message or e.code or "" for e in data]
        detail = f": {'; '.join(e for e in errors[:3] if e)}" if any(errors) else ""
        return f"it failed before running any request{detail}"
    if not results_available(batch):
        return f"it is {batch.status} without an output or error file"
    return None


def collect_foreign_batch(
    client: BatchClient,
    batch: Batch,
    work_dir: Path,
    dest: str | os.PathLike[str],
    *,
    rows: Any = None,
    custom_id_column: str = "custom_id",
) -> ForeignResults:
    """Download ``batch``'s result files (and its input file, for the custom_ids) into
    ``work_dir`` and write its results table to ``dest``.

    ``rows`` (dicts, a DataFrame or an Arrow table, each row's request id in
    ``custom_id_column``) adds their columns to the batch's rows, joined by custom_id; rows of
    other batches are left out, and a request without a row keeps null input columns.

    Raises:
        ForeignBatchError: the batch has nothing to collect (see :func:`why_not_collectable`).
    """
    why = why_not_collectable(batch)
    if why is not None:
        raise ForeignBatchError(f"Batch {batch.id} has no results to collect: {why}.")
    counts = batch.request_counts
    # Helpers that parse result lines start now, and parse each file once it is downloaded.
    expected = LOW_LINE_BYTES * (counts.total if counts else 0)
    with Parsers(batch.endpoint, work_dir, expected_bytes=expected) as parsers:
        outputs, errors = client.download_results([batch], work_dir, on_file=parsers.add)
        sent, rows_from = _sent_custom_ids(client, batch, work_dir)
        inputs = None
        if rows is not None:
            ids = dict.fromkeys(_custom_ids([sent] if sent is not None else [*outputs, *errors]))
            inputs = _inputs_table(rows, custom_id_column, ids, work_dir / "inputs.parquet")
        summary = collect_results(
            output_files=outputs,
            error_files=errors,
            prepared_inputs_path=inputs,
            request_ids=None if sent is None else ((cid, batch.id) for cid in _custom_ids([sent])),
            batches=[batch],
            endpoint=batch.endpoint,
            dest=dest,
            parsers=parsers,
        )
    expected = counts.total if counts and counts.total else summary.rows
    return ForeignResults(summary=summary, expected_rows=expected, rows_from=rows_from)


def _sent_custom_ids(client: BatchClient, batch: Batch, work_dir: Path) -> tuple[Path | None, str]:
    """The batch's input file, downloaded (None when the service does not serve it), and where the
    rows come from in words. A transient failure (5xx, cut downloads) raises: retry later."""
    if not batch.input_file_id:
        return None, "result files (the batch names no input file)"
    try:
        path = client.download(batch.input_file_id, work_dir / f"{batch.input_file_id}.input.jsonl")
    except (openai.NotFoundError, openai.PermissionDeniedError, openai.BadRequestError) as error:
        why = str(error.message)[:160]
        return None, f"result files (input file {batch.input_file_id} not served: {why})"
    return path, f"input file {batch.input_file_id}"


def _custom_ids(paths: Iterable[Path]) -> Iterator[str]:
    """The custom_id of each line of an input file the service accepted, or of result files."""
    for path in paths:
        with path.open("rb", buffering=_BUFFER) as f:
            for raw in f:
                if raw.strip():
                    yield str(orjson.loads(raw)["custom_id"])


def _inputs_table(rows: Any, column: str, ids: dict[str, None], dest: Path) -> Path:
    """``inputs.parquet`` of the batch: a row per custom_id of ``ids`` (in their order) with the
    columns of its row among ``rows`` (none when it has no row)."""
    mine: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(iter_rows(rows), 1):
        if column not in row:
            raise ForeignBatchError(f"input row {number} has no {column!r} column")
        custom_id = str(row[column])
        if custom_id in ids:
            mine[custom_id] = row
    writer = InputsTableWriter(dest, id_column=column)
    for custom_id in ids:
        writer.add(custom_id, mine.pop(custom_id, {}), size=0)
    return writer.close()
