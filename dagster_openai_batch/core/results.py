"""The results table: output and error files joined to the inputs by custom_id, as Parquet.

Every input custom_id gets exactly one row, whatever order the result lines come in:
``succeeded``, ``failed``, ``expired``, ``cancelled`` or ``missing`` (absent from both files of a
batch that neither expired nor was cancelled). Each result line is parsed once, into Arrow record
batches spilled to a temporary Arrow file beside the result files; the join to the inputs is a hash
lookup in Arrow, and rows are then gathered in input order from the memory-mapped spill, a chunk at
a time, so memory stays bounded whatever the number of rows.
"""

from __future__ import annotations

import base64
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from openai.types import Batch
from pydantic import BaseModel

from .pricing import cost_usd
from .storage import atomic_output, resolve
from .vocabulary import BatchEndpoint, as_endpoint

STATUSES = ("succeeded", "failed", "expired", "cancelled", "missing")
JOIN_BATCH_ROWS = 8_192
"""Rows per spilled record batch and per chunk of the join (memory grows with it: at 16,384 the
parse of 200,000 chat results held ~60 MB more)."""
_BUFFER = 1 << 20
TOKEN_COLUMNS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
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


VECTOR = pa.list_(pa.float32())
VECTORS = pa.list_(VECTOR)


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


def _chat_answer(body: dict[str, Any]) -> str | None:
    choices = body.get("choices") or [{}]
    message = choices[0].get("message") or {}
    content: str | None = message.get("content")
    if content is not None:
        return content
    if message.get("tool_calls"):
        return orjson.dumps(message["tool_calls"]).decode()
    refusal: str | None = message.get("refusal")
    return refusal


def _completion_answer(body: dict[str, Any]) -> str | None:
    text: str | None = (body.get("choices") or [{}])[0].get("text")
    return text


def _responses_answer(body: dict[str, Any]) -> str | None:
    output_text: str | None = body.get("output_text")
    if output_text is not None:
        return output_text
    texts = [
        c.get("text", "")
        for item in body.get("output") or []
        if item.get("type") == "message"
        for c in item.get("content") or []
        if c.get("type") == "output_text"
    ]
    return "".join(texts) if texts else None


def _moderation_answer(body: dict[str, Any]) -> str | None:
    """The flags of one input, or a JSON list of them (in input order) when the request had
    several."""
    flags = [
        {
            "flagged": bool(result.get("flagged")),
            "categories": sorted(k for k, v in (result.get("categories") or {}).items() if v),
        }
        for result in body.get("results") or [{}]
    ]
    return orjson.dumps(flags if len(flags) > 1 else flags[0]).decode()


_TEXT_ANSWERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "/v1/chat/completions": _chat_answer,
    "/v1/completions": _completion_answer,
    "/v1/responses": _responses_answer,
    "/v1/moderations": _moderation_answer,
}
"""How each endpoint's text answer is read from its response body."""


def _no_answer(body: dict[str, Any]) -> None:
    return None


def _vectors(body: dict[str, Any]) -> tuple[list[np.ndarray] | None, dict[str, Any]]:
    """The vectors of an embeddings body (in input order), and the body without them."""
    data = body.get("data")
    if not isinstance(data, list) or not data:
        return None, body
    items = sorted(data, key=lambda d: d.get("index") or 0) if len(data) > 1 else data
    vectors = []
    for item in items:
        vector = item.get("embedding")
        if isinstance(vector, str):
            vectors.append(np.frombuffer(base64.b64decode(vector), dtype="<f4"))
        else:
            vectors.append(np.asarray(vector, dtype=np.float32))
    kept = [{k: v for k, v in item.items() if k != "embedding"} for item in data]
    return vectors, {**body, "data": kept}


def _usage(body: dict[str, Any]) -> tuple[int | None, int | None, int | None, int | None]:
    u = body.get("usage")
    if not isinstance(u, dict):
        return None, None, None, None
    inp = u.get("prompt_tokens", u.get("input_tokens"))
    out = u.get("completion_tokens", u.get("output_tokens"))
    if out is None and inp is not None:
        out = 0
    cached = (u.get("prompt_tokens_details") or u.get("input_tokens_details") or {}).get(
        "cached_tokens"
    )
    reasoning = (u.get("completion_tokens_details") or u.get("output_tokens_details") or {}).get(
        "reasoning_tokens"
    )
    return (
        inp,
        cached or (0 if inp is not None else None),
        out,
        reasoning or (0 if out is not None else None),
    )


_SPILL_SCHEMA = [
    ("custom_id", pa.string()),
    ("status", pa.string()),
    ("status_code", pa.int32()),
    ("error_code", pa.string()),
    ("error_message", pa.string()),
    ("response_body", pa.string()),
    ("answer", pa.string()),
    *((name, pa.int64()) for name in TOKEN_COLUMNS),
    ("file_batch_id", pa.string()),
    ("request_id", pa.string()),
    ("model", pa.string()),
]
"""One parsed result line: the result columns (``file_batch_id``: the batch of its file, if known)
and the model that answered (successes only). Embeddings answers are spilled as lists of
vectors."""


def _failure(line: dict[str, Any]) -> tuple[Any, ...]:
    """(response body as JSON bytes, request_id, status, status_code, error_code, error_message)
    of a line that is not a success."""
    response, error = line.get("response"), line.get("error")
    if isinstance(response, dict):
        code, request_id, raw_body = (
            response.get("status_code"),
            response.get("request_id"),
            response.get("body"),
        )
        body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else {}
        raw_error = body.get("error")
        e: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        error_code = e.get("code") or e.get("type") or f"http_{code}"
        return orjson.dumps(body), request_id, "failed", code, error_code, e.get("message")
    if isinstance(error, dict):
        code = error.get("code")
        status = {"batch_expired": "expired", "batch_cancelled": "cancelled"}.get(
            code or "", "failed"
        )
        return None, None, status, None, code, error.get("message")
    return (
        None,
        None,
        "failed",
        None,
        "malformed_result_line",
        "result line has neither response nor error",
    )


_PER_LINE = ("custom_id", "response_body", "answer", *TOKEN_COLUMNS, "request_id", "model")
"""The spill columns collected line by line (the status columns are those of a success unless
the line is among the failures; ``file_batch_id`` is the file's)."""


def _byte_offset(path: Path, line_number: int) -> int:
    with path.open("rb") as f:
        return sum(len(raw) for raw in itertools.islice(f, line_number))


class _Spill:
    """Every result line, parsed once, as Arrow record batches in a temporary Arrow file; the
    custom_ids and success flags stay in memory for the join."""

    def __init__(self, path: Path, endpoint: BatchEndpoint) -> None:
        self.path = path
        self.endpoint = endpoint
        self.embeddings = endpoint == "/v1/embeddings"
        answer = VECTORS if self.embeddings else pa.string()
        self.schema = pa.schema([(n, answer if n == "answer" else t) for n, t in _SPILL_SCHEMA])
        self.writer = pa.ipc.new_file(str(path), self.schema)
        self.ids: list[pa.Array] = []
        self.succeeded: list[np.ndarray] = []
        self.starts = [0]
        """The spill position of each record batch's first row (and the total, last)."""
        self.several_inputs = False
        """Some success embedded several inputs (so answers are lists of vectors)."""

    def read(self, files: list[Path], file_batch: list[str | None]) -> None:
        """Parse and spill every line of ``files`` (``file_batch``: each file's batch id)."""
        loads, dumps, usage = orjson.loads, orjson.dumps, _usage
        text_answer = _TEXT_ANSWERS.get(self.endpoint, _no_answer)
        embeddings = self.embeddings
        columns: dict[str, list[Any]] = {name: [] for name in _PER_LINE}
        add_id, add_body, add_answer, add_in, add_cached, add_out, add_reasoning, add_rid = (
            columns[name].append for name in _PER_LINE[:-1]
        )
        add_model = columns["model"].append
        ids = columns["custom_id"]
        failures: list[tuple[int, Any, Any, Any, Any]] = []
        for path, batch_id in zip(files, file_batch, strict=True):
            with path.open("rb", buffering=_BUFFER) as f:
                for number, raw in enumerate(f):
                    try:
                        line = loads(raw)
                        cid = line["custom_id"]
                    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
                        if raw.isspace():
                            continue
                        raise ValueError(
                            f"{path}: byte {_byte_offset(path, number)}: not a batch result line "
                            f"({e}); is the file complete? Download it again"
                        ) from None
                    response = line.get("response")
                    if response.__class__ is dict and response.get("status_code") == 200:
                        body = response.get("body")
                        if body.__class__ is not dict:
                            body = {}
                        inp, cached, out, reasoning = usage(body)
                        if embeddings:
                            vectors, body = _vectors(body)
                            add_answer(vectors)
                            if vectors is not None and len(vectors) > 1:
                                self.several_inputs = True
                        else:
                            add_answer(text_answer(body))
                        add_body(dumps(body))
                        add_rid(response.get("request_id"))
                        add_model(body.get("model"))
                    else:
                        body_json, request_id, *failure = _failure(line)
                        failures.append((len(ids), *failure))
                        inp = cached = out = reasoning = None
                        add_answer(None)
                        add_body(body_json)
                        add_rid(request_id)
                        add_model(None)
                    add_id(cid)
                    add_in(inp)
                    add_cached(cached)
                    add_out(out)
                    add_reasoning(reasoning)
                    if len(ids) == JOIN_BATCH_ROWS:
                        self._flush(columns, failures, batch_id)
            self._flush(columns, failures, batch_id)
        self.writer.close()

    def _flush(
        self,
        columns: dict[str, list[Any]],
        failures: list[tuple[int, Any, Any, Any, Any]],
        batch_id: str | None,
    ) -> None:
        """Spill the lines collected (response bodies as JSON bytes), then empty ``columns`` and
        ``failures``."""
        n = len(columns["custom_id"])
        if not n:
            return
        status, code = ["succeeded"] * n, [200] * n
        error_code: list[Any] = [None] * n
        error_message: list[Any] = [None] * n
        succeeded = np.ones(n, bool)
        for i, *failure in failures:
            status[i], code[i], error_code[i], error_message[i] = failure
            succeeded[i] = False
        values = {
            **columns,
            "status": status,
            "status_code": code,
            "error_code": error_code,
            "error_message": error_message,
            "file_batch_id": [batch_id] * n,
        }
        arrays = []
        for field in self.schema:
            if field.name == "response_body":
                arrays.append(pa.array(values[field.name], pa.binary()).cast(pa.string()))
            elif field.name == "answer" and self.embeddings:
                arrays.append(_vector_lists(values[field.name]))
            elif field.name == "custom_id":  # text, even where a service wrote a number
                ids = values[field.name]
                if any(i.__class__ is not str for i in ids):
                    ids = [str(i) for i in ids]
                arrays.append(pa.array(ids, pa.string()))
            else:
                arrays.append(pa.array(values[field.name], field.type))
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        self.writer.write_batch(batch)
        self.ids.append(batch.column(0))
        self.succeeded.append(succeeded)
        self.starts.append(self.starts[-1] + n)
        for values_list in columns.values():
            values_list.clear()
        failures.clear()
        pa.default_memory_pool().release_unused()  # see _write

    def gather(self, positions: np.ndarray) -> pa.Table:
        """The spilled rows at ``positions`` (null rows where -1), in that order.

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
        for n, a, b in zip(found, first, ends[: len(first)], strict=True):
            with pa.memory_map(str(self.path)) as source:
                batch = pa.ipc.open_file(source).get_batch(int(n))
                pieces.append(batch.take(pa.array(ranked[a:b] - starts[n])))
        table = pa.Table.from_batches(pieces, self.schema).combine_chunks()
        rank = np.empty(len(wanted), np.int64)
        rank[order] = np.arange(len(wanted))
        where = np.zeros(len(positions), np.int64)
        where[valid] = rank
        return table.take(pa.array(where, mask=~valid))

    def custom_ids(self) -> pa.Array:
        return pa.concat_arrays(self.ids) if self.ids else pa.array([], pa.string())


def _vector_lists(values: Iterable[list[np.ndarray] | None]) -> pa.Array:
    """Rows of vectors (or None) as a list<list<float32>> array."""
    rows = list(values)
    counts = np.array([0 if r is None else len(r) for r in rows], dtype=np.int32)
    vectors = [v for r in rows if r is not None for v in r]
    lengths = np.array([len(v) for v in vectors], dtype=np.int32)
    flat = np.concatenate(vectors) if vectors else np.array([], np.float32)
    inner = pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)),
        pa.array(flat, pa.float32()),
    )
    return pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)),
        inner,
        mask=pa.array([r is None for r in rows], pa.bool_()),
    )


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


def sent_requests(parts: list[Path], batch_ids: list[str]) -> pa.Table:
    """The ``custom_id`` and ``batch_id`` of every request sent, part i having gone to batch i: the
    ``request_ids`` of :func:`collect_results`."""
    ids: list[pa.Array] = []
    owners: list[pa.Array] = []
    for part, batch_id in zip(parts, batch_ids, strict=True):
        with Path(part).open("rb", buffering=_BUFFER) as f:
            found = [cid for cid in map(_sent_custom_id, f) if cid is not None]
        ids.append(pa.array(found, pa.string()))
        owners.append(
            pa.DictionaryArray.from_arrays(np.zeros(len(found), np.int32), pa.array([batch_id]))
        )
    owner_type = pa.dictionary(pa.int32(), pa.string())
    return pa.table(
        {
            "custom_id": pa.chunked_array(ids, pa.string()),
            "batch_id": pa.chunked_array(owners, owner_type),  # 4 bytes a row, whatever the id
        }
    )


def _requests(
    request_ids: Iterable[str | tuple[str, str]] | pa.Table | None,
) -> tuple[pa.Array, pa.Array] | None:
    """(custom_ids, owning batch ids or nulls) of ``request_ids``."""
    if request_ids is None:
        return None
    if isinstance(request_ids, pa.Table):
        owner = request_ids.column("batch_id") if "batch_id" in request_ids.column_names else None
        ids = request_ids.column("custom_id").combine_chunks().cast(pa.string())
        return ids, (
            owner.combine_chunks() if owner is not None else pa.nulls(len(ids), pa.string())
        )
    cids: list[str] = []
    owners: list[str | None] = []
    for item in request_ids:
        cid, owner = item if isinstance(item, tuple) else (item, None)
        cids.append(cid)
        owners.append(owner)
    return pa.array(cids, pa.string()), pa.array(owners, pa.string())


def _first_positions(ids: pa.Array, succeeded: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """The result ids with successes first (in file order, then the rest), and their positions in
    the spill: a lookup finds each custom_id's success before any other line of it."""
    order = np.concatenate([np.flatnonzero(succeeded), np.flatnonzero(~succeeded)])
    if succeeded.all():
        return ids, order
    return ids.take(pa.array(order)), order


def _positions(wanted: pa.Array, ids: pa.Array, order: np.ndarray) -> np.ndarray:
    """Spill position of each ``wanted`` custom_id's preferred line, -1 where it has none."""
    found = pc.fill_null(pc.index_in(wanted, value_set=ids), -1).to_numpy().astype(np.int64)
    positions = np.full(len(found), -1, np.int64)
    positions[found >= 0] = order[found[found >= 0]]
    return positions


class _Tally:
    """Counts by status and tokens by model of the rows written."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(STATUSES, 0)
        self.tokens_by_model: dict[str, list[int]] = {}

    def add(self, rows: pa.Table) -> None:
        for item in pc.value_counts(rows.column("status")).to_pylist():
            self.counts[item["values"]] += item["counts"]
        answered = rows.filter(
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
    """(input columns or None, first row, end row) in chunks, in input order."""
    if prepared_inputs_path is None:
        for start in range(0, len(ids), JOIN_BATCH_ROWS):
            yield None, start, min(start + JOIN_BATCH_ROWS, len(ids))
        return
    start = 0
    file = pq.ParquetFile(prepared_inputs_path)
    columns = [c for c in file.schema_arrow.names if c != "custom_id"]
    for rb in file.iter_batches(batch_size=JOIN_BATCH_ROWS, columns=columns):
        yield pa.Table.from_batches([rb]), start, start + rb.num_rows
        start += rb.num_rows


def collect_results(
    *,
    output_files: list[Path],
    error_files: list[Path],
    prepared_inputs_path: Path | None,
    request_ids: Iterable[str | tuple[str, str]] | pa.Table | None,
    batches: list[Batch],
    endpoint: BatchEndpoint | str,
    dest: str | os.PathLike[str],
) -> ResultsSummary:
    """Join result lines to the inputs and write a Parquet table to ``dest`` (local path or
    ``s3://…`` URI).

    Rows come from ``prepared_inputs_path`` (``inputs.parquet``, input columns kept), else
    ``request_ids``, else (with neither, e.g. for a follow-up merged later) the custom_ids found in
    the result files. ``request_ids`` items may be ``(custom_id, batch_id)`` pairs, telling which
    batch each request went to (or a table of ``custom_id`` and ``batch_id`` columns); result files
    are matched to batches by the file id in their name (as :meth:`BatchClient.download_results`
    names them; a batch id in the name works too). Embedding vectors go to ``answer`` (float32; a
    list of vectors per row, one per input, when some request embedded several inputs) and are not
    repeated in ``response_body``.
    """
    ep = as_endpoint(endpoint)
    files = [Path(p) for p in [*output_files, *error_files]]
    by_id = {b.id: b for b in batches}
    spill_dir = tempfile.TemporaryDirectory(dir=files[0].parent if files else None)
    with spill_dir as spill_name:
        spill = _Spill(Path(spill_name) / "lines.arrow", ep)
        spill.read(files, [_batch_for_file(p, batches) for p in files])
        wanted, owners, positions, unmatched = _join(spill, prepared_inputs_path, request_ids)
        pa.default_memory_pool().release_unused()  # the join's hash tables
        absent = {
            owner: _absent_status(owner, by_id, batches)
            for owner in [None, *pc.unique(owners).to_pylist()]
        }
        return _write(
            dest, ep, spill, prepared_inputs_path, wanted, owners, positions, absent, unmatched
        )


def _join(
    spill: _Spill,
    prepared_inputs_path: Path | None,
    request_ids: Iterable[str | tuple[str, str]] | pa.Table | None,
) -> tuple[pa.Array, pa.Array, np.ndarray, int]:
    """The custom_ids of the rows (see :func:`collect_results`), their owning batch ids (or
    nulls), the spill position of each one's line (-1 where it has none) and the number of result
    custom_ids that are not among them."""
    result_ids = spill.custom_ids()
    ids, order = _first_positions(
        result_ids, np.concatenate(spill.succeeded) if spill.succeeded else np.zeros(0, bool)
    )
    requests = _requests(request_ids)
    if prepared_inputs_path is not None:
        wanted = pq.read_table(prepared_inputs_path, columns=["custom_id"]).column(0)
        wanted = wanted.combine_chunks().cast(pa.string())
    elif requests is not None:
        wanted = requests[0]
    else:  # each custom_id of the result files, in order of first appearance
        first = pc.index_in(result_ids, value_set=result_ids).to_numpy(zero_copy_only=False)
        wanted = result_ids.filter(pa.array(first == np.arange(len(result_ids))))
    owners = pa.nulls(len(wanted), pa.string())
    if requests is not None and requests[0].equals(wanted):
        owners = requests[1]
    elif requests is not None:
        owners = requests[1].take(pc.index_in(wanted, value_set=requests[0]))
    positions = _positions(wanted, ids, order)
    used = np.zeros(len(result_ids), bool)
    used[positions[positions >= 0]] = True
    # Lines not used: repeats of a used custom_id, or custom_ids not among the rows (unmatched).
    rest = result_ids.filter(pa.array(~used))
    if len(rest):
        preferred = order[pc.index_in(rest, value_set=ids).to_numpy()]
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
    """Write the results table chunk by chunk in input order, gathering each chunk's lines from
    the spill."""
    schema = result_schema(endpoint, spill.several_inputs)
    path = resolve(dest)[1]
    tally = _Tally()
    pool = pa.default_memory_pool()
    writer: pq.ParquetWriter | None = None
    total = 0
    preview: list[dict[str, Any]] = []
    with atomic_output(dest) as (fs, tmp):
        try:
            for inputs, start, end in _input_chunks(prepared_inputs_path, wanted):
                lines = spill.gather(positions[start:end])
                table = _result_columns(
                    lines, schema, wanted[start:end], owners[start:end], absent, spill
                )
                tally.add(table.append_column("model", lines.column("model")))
                if inputs is not None:
                    clash = set(inputs.column_names) & set(table.column_names)
                    inputs = inputs.rename_columns(
                        [f"input_{c}" if c in clash else c for c in inputs.column_names]
                    )
                    table = pa.Table.from_arrays(
                        [table.column("custom_id"), *inputs.columns, *table.columns[1:]],
                        names=["custom_id", *inputs.column_names, *table.column_names[1:]],
                    )
                if writer is None:
                    writer = _parquet_writer(tmp, table.schema, fs)
                writer.write_table(table)
                # Arrow's allocator (mimalloc) keeps freed chunks for reuse; hand them back so the
                # join's memory stays flat.
                pool.release_unused()
                total += table.num_rows
                if len(preview) < 5:
                    preview.extend(table.slice(0, 5 - len(preview)).to_pylist())
            if writer is None:
                writer = _parquet_writer(tmp, schema, fs)
        finally:
            if writer is not None:
                writer.close()
    return _summary(
        path if "://" not in os.fspath(dest) else os.fspath(dest), total, tally, unmatched, preview
    )


_DISTINCT_COLUMNS = frozenset({"custom_id", "response_body", "answer", "request_id"})
"""Result columns with a new value in about every row: not dictionary-encoded (trying costs about
half the time of writing the table)."""


def _parquet_writer(path: str, schema: pa.Schema, fs: Any) -> pq.ParquetWriter:
    dictionary = [name for name in schema.names if name not in _DISTINCT_COLUMNS]
    return pq.ParquetWriter(path, schema, filesystem=fs, use_dictionary=dictionary)


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
