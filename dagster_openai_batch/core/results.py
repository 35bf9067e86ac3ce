"""The results table: output and error files joined to the inputs by custom_id, as Parquet.

Every input custom_id gets exactly one row, whatever order the result lines come in:
``succeeded``, ``failed``, ``expired``, ``cancelled`` or ``missing`` (absent from both files of a
batch that neither expired nor was cancelled). Each result line is parsed once, on every core
(:mod:`.result_lines`), into Arrow record batches spilled to temporary Arrow files beside the result
files; the join to the inputs is a hash lookup in Arrow, and rows are then gathered in input order
from the memory-mapped spills, a chunk at a time, so memory stays bounded whatever the number of
rows.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeAlias

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from openai.types import Batch
from pydantic import BaseModel

from .pricing import cost_usd
from .result_lines import (
    BATCH_ROWS,
    TOKEN_COLUMNS,
    VECTOR,
    VECTORS,
    Parsers,
    SpillFile,
    spill_schema,
)
from .storage import atomic_output, resolve
from .vocabulary import BatchEndpoint, as_endpoint

STATUSES = ("succeeded", "failed", "expired", "cancelled", "missing")
JOIN_BATCH_ROWS = BATCH_ROWS
"""Rows per chunk of the join, as many as per spilled record batch."""
USAGE_FIELDS = (*TOKEN_COLUMNS, "calls")
"""Per-model tallies: the token columns, then the number of answered requests."""


class ResultsSummary(BaseModel):
    """What :func:`collect_results` wrote."""

    path: str
    rows: int
    counts: dict[str, int]
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    cost_note: str = ""
    unmatched_lines: int = 0
    """Result lines whose custom_id is not among the inputs (ignored)."""
    preview: list[dict[str, Any]] = []
    usage_by_model: dict[str, dict[str, int]] = {}
    """``{model: {calls, input_tokens, cached_tokens, output_tokens, reasoning_tokens}}`` of the
    answered requests."""


def usage_by_model(tokens_by_model: dict[str, list[int]]) -> dict[str, dict[str, int]]:
    """Per-model tallies (lists in `USAGE_FIELDS` order) as ``{model: {field: count}}``."""
    return {
        model: dict(zip(USAGE_FIELDS, tally, strict=True))
        for model, tally in sorted(tokens_by_model.items())
    }


def result_schema(endpoint: BatchEndpoint | str, several_inputs: bool = False) -> pa.Schema:
    """The columns :func:`collect_results` adds to the input columns.

    An embeddings ``answer`` is one vector per row, or with ``several_inputs`` (some request
    embedded a list of inputs) a list of vectors per row, one per input.
    """
    answer: pa.DataType = pa.string()
    if as_endpoint(endpoint) == "/v1/embeddings":
        answer = VECTORS if several_inputs else VECTOR
    return pa.schema(
        [
            ("custom_id", pa.string()),
            ("status", pa.string()),
            ("status_code", pa.int32()),
            ("error_code", pa.string()),
            ("error_message", pa.string()),
            ("response_body", pa.string()),
            ("answer", answer),
            *((name, pa.int64()) for name in TOKEN_COLUMNS),
            ("batch_id", pa.string()),
            ("request_id", pa.string()),
        ]
    )


class _Spill:
    """Every result line, parsed once (:class:`Parsers`) into record batches of temporary Arrow
    files; the custom_ids and success flags stay in memory for the join."""

    def __init__(self, endpoint: BatchEndpoint) -> None:
        self.endpoint = endpoint
        self.embeddings = endpoint == "/v1/embeddings"
        self.schema = spill_schema(endpoint)
        self.files: list[SpillFile] = []
        self.batches: list[tuple[str, int]] = []
        """(spill file, record batch number in it) of each record batch, in line order."""
        self.starts = [0]
        """The spill position of each record batch's first row (and the total, last)."""
        self.ids = pa.array([], pa.string())
        self.succeeded = np.zeros(0, bool)
        self.several_inputs = False
        """Some success embedded several inputs (so answers are lists of vectors)."""

    def read(self, spills: list[SpillFile]) -> None:
        """Keep the custom_ids and success flags of the lines of ``spills`` (in line order)."""
        self.files = spills
        self.several_inputs = any(f.several_inputs for f in self.files)
        ids: list[pa.Array] = []
        succeeded: list[np.ndarray] = []
        for spill in self.files:
            with pa.memory_map(spill.path) as source:
                reader = pa.ipc.open_file(source)
                batches = [reader.get_batch(n) for n in range(len(spill.batch_rows))]
                if batches:
                    # A copy of the file's ids, made while it is mapped: the mapping is let go
                    # (and each id is copied once here, not again for every later file).
                    ids.append(pa.concat_arrays([batch.column(0) for batch in batches]))
                succeeded.extend(
                    pc.equal(batch.column(1), "succeeded").to_numpy(zero_copy_only=False)
                    for batch in batches
                )
                del batches
            for number, rows in enumerate(spill.batch_rows):
                self.batches.append((spill.path, number))
                self.starts.append(self.starts[-1] + rows)
        self.ids = pa.concat_arrays([self.ids, *ids])
        del ids
        self.succeeded = np.concatenate([self.succeeded, *succeeded])
        pa.default_memory_pool().release_unused()  # the copies made on the way

    def forget_ids(self) -> None:
        """Let go of the custom_ids and success flags once the join has used them."""
        self.ids = pa.array([], pa.string())
        self.succeeded = np.zeros(0, bool)

    def gather(self, positions: np.ndarray, pool: pa.MemoryPool) -> pa.Table:
        """The spilled rows at ``positions`` (null rows where -1), in that order, made in ``pool``.

        Each record batch holding some is mapped on its own, its rows taken in position order and
        the mapping let go (a mapped file's pages count in the process's RSS while mapped); the
        rows are then put in order.
        """
        starts = np.asarray(self.starts, np.int64)
        valid = positions >= 0
        wanted = positions[valid]
        order = np.argsort(wanted, kind="stable")
        ranked = wanted[order]
        numbers = np.searchsorted(starts, ranked, side="right") - 1
        found, first = np.unique(numbers, return_index=True)
        ends = [*first[1:], len(ranked)]
        pieces = []
        spans = zip(found.tolist(), first.tolist(), ends[: len(first)], strict=True)
        # Record batches of one spill file are consecutive: the file is mapped once for them.
        for path, group in itertools.groupby(spans, key=lambda span: self.batches[span[0]][0]):
            with pa.memory_map(path) as source:
                reader = pa.ipc.open_file(source)
                for n, a, b in group:
                    rows = pa.array(ranked[a:b] - starts[n])
                    batch = reader.get_batch(self.batches[n][1])
                    pieces.append(pc.take(batch, rows, memory_pool=pool))
        table = pa.Table.from_batches(pieces, self.schema).combine_chunks(memory_pool=pool)
        del pieces  # before the next copy: two copies of the rows at a time, not three
        rank = np.empty(len(wanted), np.int64)
        rank[order] = np.arange(len(wanted))
        where = np.zeros(len(positions), np.int64)
        where[valid] = rank
        return pc.take(table, pa.array(where, mask=~valid), memory_pool=pool)


def nest_vectors(answers: pa.Array | pa.ChunkedArray) -> pa.Array:
    """An embeddings answer column of one vector per row as one of a list of vectors per row (that
    one vector), to sit beside answers of requests with several inputs."""
    flat = answers.combine_chunks() if isinstance(answers, pa.ChunkedArray) else answers
    valid = flat.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(valid)]).astype(np.int32)
    return pa.ListArray.from_arrays(
        pa.array(offsets), flat.filter(pa.array(valid)), mask=pa.array(~valid)
    )


def _one_vector_each(answers: pa.Array) -> pa.Array:
    """list<list<float32>> rows holding one vector each (or null) as list<float32>."""
    assert isinstance(answers, pa.ListArray)
    offsets = answers.offsets.to_numpy()[:-1]
    return answers.values.take(
        pa.array(offsets, pa.int64(), mask=answers.is_null().to_numpy(zero_copy_only=False))
    )


def _batch_for_file(path: Path, batches: list[Batch]) -> str | None:
    for b in batches:
        if any(key and key in path.name for key in (b.id, b.output_file_id, b.error_file_id)):
            return b.id
    return batches[0].id if len(batches) == 1 else None


NOT_SUBMITTED: Final = ""
"""The batch id given to the requests of a part that never became a batch (its submission was
cancelled while the part waited for the queue): their rows are ``cancelled``, with no batch id."""


def _absent_status(batch_id: str | None, by_id: dict[str, Batch], batches: list[Batch]) -> str:
    if batch_id == NOT_SUBMITTED:
        return "cancelled"
    owners = [by_id[batch_id]] if batch_id in by_id else batches
    states = {b.status for b in owners}
    if states == {"cancelled"} or states == {"cancelling"}:
        return "cancelled"
    if states == {"expired"}:
        return "expired"
    return "missing"


_ID_PREFIX = b'{"custom_id":"'
_ID_PATTERN = r'^\{"custom_id":"(?P<id>[^"\\]*)"'
_ID_BLOCK = 4 << 20
"""Bytes of a part read at a time for its custom_ids."""


def _sent_custom_id(raw: bytes) -> str | None:
    """The custom_id of a request line (None for a blank line), read straight from the bytes when
    the line starts with it as written by :func:`write_batch_input`, else parsed."""
    if raw.startswith(_ID_PREFIX):
        end = raw.find(b'"', len(_ID_PREFIX))
        value = raw[len(_ID_PREFIX) : end]
        if end > 0 and b"\\" not in value:
            return value.decode()
    if raw.isspace():
        return None
    return str(orjson.loads(raw)["custom_id"])


def _block_ids(block: bytes) -> pa.Array:
    """The custom_ids of the request lines of ``block`` (whole lines): matched in bulk where every
    line starts with :data:`_ID_PREFIX` and its custom_id has no escape, else line by line."""
    ends = np.flatnonzero(np.frombuffer(block, np.uint8) == ord("\n"))
    offsets = np.concatenate([[0], ends + 1]).astype(np.int32)
    lines = pa.StringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(block))
    found = pc.extract_regex(lines, _ID_PATTERN)
    if found.null_count == 0:
        return found.field("id")
    ids = [_sent_custom_id(raw) for raw in block.splitlines(keepends=True)]
    return pa.array([cid for cid in ids if cid is not None], pa.string())


def _part_ids(part: Path) -> pa.Array:
    """The custom_ids of a part's request lines, in order, read a block at a time."""
    blocks: list[pa.Array] = []
    rest = b""
    with Path(part).open("rb") as f:
        while chunk := f.read(_ID_BLOCK):
            block = rest + chunk
            cut = block.rfind(b"\n") + 1
            if cut:
                blocks.append(_block_ids(block[:cut]))
            rest = block[cut:]
    if rest.strip():
        blocks.append(_block_ids(rest + b"\n"))
    return pa.concat_arrays(blocks) if blocks else pa.array([], pa.string())


def sent_requests(parts: list[Path], batch_ids: list[str]) -> pa.Table:
    """The ``custom_id`` and ``batch_id`` of every request sent, part i having gone to batch i: the
    ``request_ids`` of :func:`collect_results`."""
    ids = [_part_ids(part) for part in parts]
    distinct = list(dict.fromkeys(batch_ids))
    owner = np.array([distinct.index(b) for b in batch_ids], np.int32)
    return pa.table(
        {  # one chunk each, so the join uses them without a copy
            "custom_id": pa.concat_arrays(ids) if ids else pa.array([], pa.string()),
            "batch_id": pa.DictionaryArray.from_arrays(  # 4 bytes a row, whatever the id
                np.repeat(owner, [len(found) for found in ids]), pa.array(distinct, pa.string())
            ),
        }
    )


class SentParts(NamedTuple):
    """The parts sent (JSONL request files) and the batch each went to: ``request_ids`` of
    :func:`collect_results` read (by :func:`sent_requests`) only if the join needs to know which
    batch a request went to, as when some request has no result line."""

    paths: list[Path]
    batch_ids: list[str]


RequestIds: TypeAlias = Iterable[str | tuple[str, str]] | pa.Table | SentParts | None
"""The ``request_ids`` of :func:`collect_results`."""


def _requests(request_ids: RequestIds) -> tuple[pa.Array, pa.Array] | None:
    """(custom_ids, owning batch ids or nulls) of ``request_ids``."""
    if request_ids is None:
        return None
    if isinstance(request_ids, SentParts):
        request_ids = sent_requests(*request_ids)
    if isinstance(request_ids, pa.Table):
        owner = request_ids.column("batch_id") if "batch_id" in request_ids.column_names else None
        ids = _one_array(request_ids.column("custom_id")).cast(pa.string())
        return ids, (_one_array(owner) if owner is not None else pa.nulls(len(ids), pa.string()))
    cids: list[str] = []
    owners: list[str | None] = []
    for item in request_ids:
        cid, owner = item if isinstance(item, tuple) else (item, None)
        cids.append(cid)
        owners.append(owner)
    return pa.array(cids, pa.string()), pa.array(owners, pa.string())


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array: its only chunk as it is (``combine_chunks`` copies even that)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _first_positions(ids: pa.Array, succeeded: np.ndarray) -> tuple[pa.Array, np.ndarray | None]:
    """The result ids with successes first (in file order, then the rest), and their positions in
    the spill (None where that is their own order: every line a success): a lookup finds each
    custom_id's success before any other line of it."""
    if succeeded.all():
        return ids, None
    order = np.concatenate([np.flatnonzero(succeeded), np.flatnonzero(~succeeded)])
    return ids.take(pa.array(order)), order


_LOOKUP_ROWS = 1 << 18
"""Result custom_ids hashed at a time to find the rows' lines: a hash table of 1,000,000 took ~60 MB
at its peak, four of a quarter ~20 MB, in the same time."""


def _positions(wanted: pa.Array, ids: pa.Array, order: np.ndarray | None) -> np.ndarray:
    """Spill position of each ``wanted`` custom_id's preferred line (its first in ``ids``), -1
    where it has none; ``order``: the spill position of each of ``ids`` (None: its own)."""
    positions = np.full(len(wanted), -1, np.int64)
    for start in range(0, len(ids), _LOOKUP_ROWS):
        at = pc.index_in(wanted, value_set=ids.slice(start, _LOOKUP_ROWS)).fill_null(-1).to_numpy()
        new = (at >= 0) & (positions < 0)
        found = at[new].astype(np.int64) + start
        positions[new] = found if order is None else order[found]
    return positions


class _Tally:
    """Counts by status and tokens by model of the rows written."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(STATUSES, 0)
        self.tokens_by_model: dict[str, list[int]] = {}

    def add(self, rows: pa.Table) -> None:
        for item in pc.value_counts(rows.column("status")).to_pylist():
            self.counts[item["values"]] += item["counts"]
        answered = rows.select(["model", *TOKEN_COLUMNS]).filter(
            pc.and_(pc.is_valid(rows.column("model")), pc.is_valid(rows.column("input_tokens")))
        )
        if not answered.num_rows:
            return
        models = pc.unique(answered.column("model"))
        if len(models) == 1:  # the usual case, without a group_by
            sums = [
                {
                    "model": models[0].as_py(),
                    **{f"{n}_sum": pc.sum(answered.column(n)).as_py() for n in TOKEN_COLUMNS},
                    "model_count": answered.num_rows,
                }
            ]
        else:
            sums = (
                answered.group_by("model")
                .aggregate([*((name, "sum") for name in TOKEN_COLUMNS), ("model", "count")])
                .to_pylist()
            )
        for row in sums:
            totals = self.tokens_by_model.setdefault(row["model"], [0] * len(USAGE_FIELDS))
            for i, name in enumerate(TOKEN_COLUMNS):
                totals[i] += row[f"{name}_sum"] or 0
            totals[-1] += row["model_count"]


def _input_chunks(
    prepared_inputs_path: Path | None, ids: pa.Array
) -> Iterator[tuple[pa.Table | None, int, int]]:
    """(input columns or None, first row, end row) in chunks of :data:`JOIN_BATCH_ROWS` rows, in
    input order.

    The inputs table is read a row group at a time, the rows past the last whole chunk carried
    to the next (reading it with ``iter_batches`` held ~30 MB more at 1,000,000 rows).
    """
    file = pq.ParquetFile(prepared_inputs_path) if prepared_inputs_path is not None else None
    columns = [c for c in file.schema_arrow.names if c != "custom_id"] if file is not None else []
    if file is None or not columns:
        for start in range(0, len(ids), JOIN_BATCH_ROWS):
            yield None, start, min(start + JOIN_BATCH_ROWS, len(ids))
        return
    start = 0
    rest = None
    for group in range(file.num_row_groups):
        table = file.read_row_group(group, columns=columns, use_threads=False)
        if rest is not None:
            table = pa.concat_tables([rest, table])
        whole = table.num_rows - table.num_rows % JOIN_BATCH_ROWS
        for offset in range(0, whole, JOIN_BATCH_ROWS):
            yield table.slice(offset, JOIN_BATCH_ROWS), start, start + JOIN_BATCH_ROWS
            start += JOIN_BATCH_ROWS
        rest = table.slice(whole)
    if rest is not None and rest.num_rows:
        yield rest, start, start + rest.num_rows


def collect_results(
    *,
    output_files: list[Path],
    error_files: list[Path],
    prepared_inputs_path: Path | None,
    request_ids: RequestIds,
    batches: list[Batch],
    endpoint: BatchEndpoint | str,
    dest: str | os.PathLike[str],
    parsers: Parsers | None = None,
) -> ResultsSummary:
    """Join result lines to the inputs and write a Parquet table to ``dest`` (local path or
    ``s3://…`` URI).

    Rows come from ``prepared_inputs_path`` (``inputs.parquet``, input columns kept), else
    ``request_ids``, else (with neither, e.g. for a follow-up merged later) the custom_ids found in
    the result files. ``request_ids`` items may be ``(custom_id, batch_id)`` pairs, telling which
    batch each request went to (or a table of ``custom_id`` and ``batch_id`` columns, or the
    :class:`SentParts`, read only if some request has no result line); result files
    are matched to batches by the file id in their name (as :meth:`BatchClient.download_results`
    names them; a batch id in the name works too). Embedding vectors go to ``answer`` (float32; a
    list of vectors per row, one per input, when some request embedded several inputs) and are not
    repeated in ``response_body``. ``parsers``: helper processes started before the files were
    downloaded (see :class:`~.result_lines.Parsers`).
    """
    ep = as_endpoint(endpoint)
    files = [Path(p) for p in [*output_files, *error_files]]
    by_id = {b.id: b for b in batches}
    if parsers is None:  # started now: their start-up is part of this call
        near = files[0].parent if files else None
        parsers = Parsers(ep, near, expected_bytes=sum(p.stat().st_size for p in files))
    with parsers:  # its spill files are deleted once the table is written
        spill = _Spill(ep)
        file_batches = [(p, _batch_for_file(p, batches)) for p in files]
        spill.read(parsers.finish(file_batches))
        wanted, owners, positions, unmatched = _join(
            spill,
            prepared_inputs_path,
            request_ids,
            lines_of_unknown_batch=any(batch_id is None for _, batch_id in file_batches),
        )
        spill.forget_ids()
        pa.default_memory_pool().release_unused()  # the join's hash tables
        absent = {
            owner: _absent_status(owner, by_id, batches)
            for owner in [None, *pc.unique(owners).to_pylist()]
        }
        summary = _write(
            dest, ep, spill, prepared_inputs_path, wanted, owners, positions, absent, unmatched
        )
    pa.default_memory_pool().release_unused()  # what the join and the write let go (~20 MB)
    return summary


def _join(
    spill: _Spill,
    prepared_inputs_path: Path | None,
    request_ids: RequestIds,
    *,
    lines_of_unknown_batch: bool,
) -> tuple[pa.Array, pa.Array, np.ndarray, int]:
    """The custom_ids of the rows (see :func:`collect_results`), their owning batch ids (or
    nulls), the spill position of each one's line (-1 where it has none) and the number of result
    custom_ids that are not among them.

    A row's owning batch tells its status where it has no line, and its batch id where its line's
    file belongs to no known batch: :class:`SentParts` beside an inputs table are read only then.
    """
    result_ids = spill.ids
    ids, order = _first_positions(result_ids, spill.succeeded)
    later = isinstance(request_ids, SentParts) and prepared_inputs_path is not None
    requests = None if later else _requests(request_ids)
    if prepared_inputs_path is not None:
        wanted = pq.read_table(prepared_inputs_path, columns=["custom_id"]).column(0)
        wanted = _one_array(wanted).cast(pa.string())
    elif requests is not None:
        wanted = requests[0]
    else:  # each custom_id of the result files, in order of first appearance
        first = pc.index_in(result_ids, value_set=result_ids).to_numpy(zero_copy_only=False)
        wanted = result_ids.filter(pa.array(first == np.arange(len(result_ids))))
    positions = _positions(wanted, ids, order)
    if later and (lines_of_unknown_batch or bool((positions < 0).any())):
        requests = _requests(request_ids)
    owners = pa.nulls(len(wanted), pa.string())
    if requests is not None and requests[0].equals(wanted):
        wanted, owners = requests  # one copy of the custom_ids kept, not two
    elif requests is not None:
        owners = requests[1].take(pc.index_in(wanted, value_set=requests[0]))
    used = np.zeros(len(result_ids), bool)
    used[positions[positions >= 0]] = True
    # Lines not used: repeats of a used custom_id, or custom_ids not among the rows (unmatched).
    rest = result_ids.filter(pa.array(~used))
    if len(rest):
        first = pc.index_in(rest, value_set=ids).to_numpy()
        preferred = first if order is None else order[first]
        rest = rest.filter(pa.array(~used[preferred]))
    unmatched = pc.count_distinct(rest).as_py() if len(rest) else 0
    return wanted, owners, positions, unmatched


def _write(
    dest: str | os.PathLike[str],
    endpoint: BatchEndpoint,
    spill: _Spill,
    prepared_inputs_path: Path | None,
    wanted: pa.Array,
    owners: pa.Array,
    positions: np.ndarray,
    absent: dict[str | None, str],
    unmatched: int,
) -> ResultsSummary:
    """Write the results table chunk by chunk in input order: this thread gathers each chunk's
    lines from the spill while another makes and writes the table of the chunk before (Arrow lets
    go of the GIL in both). Both allocate in :func:`_chunk_pool`."""
    pool = _chunk_pool()
    out = _TableWriter(result_schema(endpoint, spill.several_inputs), absent, spill, pool)
    with atomic_output(dest) as (fs, tmp), ThreadPoolExecutor(1) as background:
        writing: Future[None] | None = None
        try:
            for inputs, start, end in _input_chunks(prepared_inputs_path, wanted):
                lines = spill.gather(positions[start:end], pool)
                if writing is not None:
                    writing.result()
                    pool.release_unused()  # the chunk's memory: memory stays flat
                writing = background.submit(
                    out.add, fs, tmp, lines, inputs, wanted[start:end], owners[start:end]
                )
            if writing is not None:
                writing.result()
        finally:
            if writing is not None:
                wait([writing])
            out.close(fs, tmp)
            pool.release_unused()
    location = resolve(dest)[1] if "://" not in os.fspath(dest) else os.fspath(dest)
    return _summary(location, out.total, out.tally, unmatched, out.preview)


def _chunk_pool() -> pa.MemoryPool:
    """The memory pool the results table's chunks are made and written in: Arrow's jemalloc where
    pyarrow has it, else its default pool.

    Each chunk takes ~30 MB of new buffers, handed back after it is written so memory stays flat.
    The default pool on Linux (mimalloc) then faults each chunk's pages in again (0.43 page faults
    a row against jemalloc's 0.14, at ~2.5 µs a fault on a virtual machine): writing 1,000,000
    rows took 3.8-5.0 µs a row in it against 2.6-3.4 in jemalloc, with the same peak memory.
    """
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # built without it (as on Windows)
        return pa.default_memory_pool()


class _TableWriter:
    """The results table's Parquet writer, and what is told of the rows written."""

    def __init__(
        self,
        schema: pa.Schema,
        absent: dict[str | None, str],
        spill: _Spill,
        pool: pa.MemoryPool,
    ) -> None:
        self.schema, self.absent, self.spill, self.pool = schema, absent, spill, pool
        self.writer: pq.ParquetWriter | None = None
        self.tally = _Tally()
        self.total = 0
        self.preview: list[dict[str, Any]] = []

    def add(
        self,
        fs: Any,
        tmp: str,
        lines: pa.Table,
        inputs: pa.Table | None,
        custom_ids: pa.Array,
        owners: pa.Array,
    ) -> None:
        """Write the rows of a chunk: its gathered lines beside its input columns (if any)."""
        table = _result_columns(lines, self.schema, custom_ids, owners, self.absent, self.spill)
        self.tally.add(table.append_column("model", lines.column("model")))
        if inputs is not None:
            clash = set(inputs.column_names) & set(table.column_names)
            inputs = inputs.rename_columns(
                [f"input_{c}" if c in clash else c for c in inputs.column_names]
            )
            table = pa.Table.from_arrays(
                [table.column("custom_id"), *inputs.columns, *table.columns[1:]],
                names=["custom_id", *inputs.column_names, *table.column_names[1:]],
            )
        if self.writer is None:
            self.writer = _parquet_writer(tmp, table.schema, fs, self.pool)
        self.writer.write_table(table)
        self.total += table.num_rows
        if len(self.preview) < 5:
            self.preview.extend(table.slice(0, 5 - len(self.preview)).to_pylist())

    def close(self, fs: Any, tmp: str) -> None:
        if self.writer is None:  # no rows: the table of the result columns alone
            self.writer = _parquet_writer(tmp, self.schema, fs, self.pool)
        self.writer.close()


_DISTINCT_COLUMNS = frozenset({"custom_id", "response_body", "answer", "request_id"})
"""Result columns with a new value in about every row: not dictionary-encoded (trying costs about
half the time of writing the table)."""


def _parquet_writer(path: str, schema: pa.Schema, fs: Any, pool: pa.MemoryPool) -> pq.ParquetWriter:
    dictionary = [name for name in schema.names if name not in _DISTINCT_COLUMNS]
    return pq.ParquetWriter(
        path, schema, filesystem=fs, use_dictionary=dictionary, memory_pool=pool
    )


def _result_columns(
    lines: pa.Table,
    schema: pa.Schema,
    custom_ids: pa.Array,
    owners: pa.Array,
    absent: dict[str | None, str],
    spill: _Spill,
) -> pa.Table:
    """The result columns of a chunk: its gathered lines (null rows where a request has none)
    with the absent requests' status and every row's batch id filled in."""
    found = lines.column("custom_id").is_valid()
    status = lines.column("status")
    if not pc.all(found).as_py():
        statuses = pa.array([absent.get(o, absent[None]) for o in owners.to_pylist()], pa.string())
        status = pc.if_else(found, status, statuses)
    answer = lines.column("answer")
    if spill.embeddings and not spill.several_inputs:
        answer = _one_vector_each(answer.combine_chunks())
    columns = {
        "custom_id": custom_ids,
        "status": status,
        "answer": answer,
        "batch_id": pc.coalesce(lines.column("file_batch_id"), _batch_ids(owners)),
    }
    return pa.Table.from_arrays(
        [columns[f.name] if f.name in columns else lines.column(f.name) for f in schema],
        schema=schema,
    )


def _batch_ids(owners: pa.Array) -> pa.Array:
    """The owning batch ids as strings, null for requests never submitted."""
    ids = owners.cast(pa.string())
    return pc.if_else(pc.equal(ids, NOT_SUBMITTED), pa.scalar(None, pa.string()), ids)


def _summary(
    path: str, total: int, rows: _Tally, unmatched: int, preview: list[dict[str, Any]]
) -> ResultsSummary:
    totals = {
        name: sum(t[i] for t in rows.tokens_by_model.values())
        for i, name in enumerate(TOKEN_COLUMNS)
    }
    cost, note = _cost(rows.tokens_by_model)
    return ResultsSummary(
        path=path,
        rows=total,
        counts=rows.counts,
        **totals,
        cost_usd=cost,
        cost_note=note,
        unmatched_lines=unmatched,
        preview=preview,
        usage_by_model=usage_by_model(rows.tokens_by_model),
    )


def _cost(tokens_by_model: dict[str, list[int]]) -> tuple[float | None, str]:
    """Total cost at batch rates of ``{model: [input, cached, output, reasoning] tokens}``, and a
    note on it."""
    if not tokens_by_model:
        return 0.0, "no successful requests, so nothing billed"
    total = 0.0
    for model, (inp, cached, out, *_) in sorted(tokens_by_model.items()):
        cost = cost_usd(model, input_tokens=inp, cached_tokens=cached, output_tokens=out)
        if cost is None:
            return None, f"unknown model {model!r}: not in the price table, so no cost is given"
        total += cost
    return round(
        total, 6
    ), f"batch rates (pricing table dated 2025-10) for {', '.join(sorted(tokens_by_model))}"
