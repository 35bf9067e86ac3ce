"""The results table: output and error files joined to the inputs by custom_id, as Parquet.

Every input custom_id gets exactly one row, whatever order the result lines come in:
``succeeded``, ``failed``, ``expired``, ``cancelled`` or ``missing`` (absent from both files of a
batch that neither expired nor was cancelled). Result files are read twice, never loaded: a first
pass indexes the byte offset of each custom_id's line, the join then reads each line back in input
order.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from openai.types import Batch
from pydantic import BaseModel

from .pricing import cost_usd
from .storage import atomic_output, resolve
from .vocabulary import BatchEndpoint, as_endpoint

STATUSES = ("succeeded", "failed", "expired", "cancelled", "missing")
JOIN_BATCH_ROWS = 1_024
_BUFFER = 1 << 20
TOKEN_COLUMNS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
USAGE_FIELDS = (*TOKEN_COLUMNS, "calls")
"""Per-model tallies: the token columns, then the number of answered requests."""
_OFFSET_BITS = 40


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


def result_schema(endpoint: BatchEndpoint | str) -> pa.Schema:
    """The columns :func:`collect_results` adds to the input columns."""
    answer = pa.list_(pa.float32()) if as_endpoint(endpoint) == "/v1/embeddings" else pa.string()
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
    first = (body.get("results") or [{}])[0]
    flagged = sorted(k for k, v in (first.get("categories") or {}).items() if v)
    return orjson.dumps({"flagged": bool(first.get("flagged")), "categories": flagged}).decode()


_TEXT_ANSWERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "/v1/chat/completions": _chat_answer,
    "/v1/completions": _completion_answer,
    "/v1/responses": _responses_answer,
    "/v1/moderations": _moderation_answer,
}
"""How each endpoint's text answer is read from its response body."""


def _text_answer(endpoint: BatchEndpoint, body: dict[str, Any]) -> str | None:
    read = _TEXT_ANSWERS.get(endpoint)
    return None if read is None else read(body)


def _embedding(body: dict[str, Any]) -> np.ndarray | None:
    data = body.get("data") or []
    if len(data) != 1:
        return None
    vector = data[0].get("embedding")
    if isinstance(vector, str):
        return np.frombuffer(base64.b64decode(vector), dtype="<f4")
    return np.asarray(vector, dtype=np.float32)


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


def _is_success(line: dict[str, Any]) -> bool:
    response = line.get("response")
    return isinstance(response, dict) and response.get("status_code") == 200


@dataclass(frozen=True)
class _Outcome:
    """What one result line (or its absence) says about a request: the result columns of its row."""

    status: str
    status_code: Any = None
    error_code: Any = None
    error_message: Any = None
    response_body: str | None = None
    answer: Any = None
    request_id: Any = None
    usage: tuple[int | None, ...] = (None, None, None, None)
    model: Any = None
    """The model that answered (successes only)."""


def _outcome(line: dict[str, Any] | None, endpoint: BatchEndpoint, absent_status: str) -> _Outcome:
    if line is None:
        return _Outcome(absent_status)
    response, error = line.get("response"), line.get("error")
    if isinstance(response, dict):
        return _response_outcome(response, endpoint)
    if isinstance(error, dict):
        code = error.get("code")
        status = {"batch_expired": "expired", "batch_cancelled": "cancelled"}.get(
            code or "", "failed"
        )
        return _Outcome(status, error_code=code, error_message=error.get("message"))
    return _Outcome(
        "failed",
        error_code="malformed_result_line",
        error_message="result line has neither response nor error",
    )


def _response_outcome(response: dict[str, Any], endpoint: BatchEndpoint) -> _Outcome:
    code, request_id = response.get("status_code"), response.get("request_id")
    raw_body = response.get("body")
    body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else {}
    if code != 200:
        raw_error = body.get("error")
        e: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        return _Outcome(
            "failed",
            status_code=code,
            error_code=e.get("code") or e.get("type") or f"http_{code}",
            error_message=e.get("message"),
            response_body=orjson.dumps(body).decode(),
            request_id=request_id,
        )
    usage = _usage(body)
    answer, body = _answer(endpoint, body)
    return _Outcome(
        "succeeded",
        status_code=code,
        response_body=orjson.dumps(body).decode(),
        answer=answer,
        request_id=request_id,
        usage=usage,
        model=body.get("model"),
    )


def _answer(endpoint: BatchEndpoint, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The answer in a success's ``body``, and the body to keep (without an embedding vector, which
    the answer holds)."""
    if endpoint != "/v1/embeddings":
        return _text_answer(endpoint, body), body
    vector = _embedding(body)
    if vector is not None:
        first = {k: v for k, v in body["data"][0].items() if k != "embedding"}
        body = {**body, "data": [first]}
    return vector, body


class _Rows:
    """Accumulates result columns for one record batch."""

    def __init__(self, endpoint: BatchEndpoint) -> None:
        self.endpoint = endpoint
        self.cols: dict[str, list[Any]] = {name: [] for name in result_schema(endpoint).names}
        self.counts = dict.fromkeys(STATUSES, 0)
        self.tokens_by_model: dict[str, list[int]] = {}

    def add(
        self, custom_id: str, line: dict[str, Any] | None, batch_id: str | None, absent_status: str
    ) -> None:
        o = _outcome(line, self.endpoint, absent_status)
        self.counts[o.status] += 1
        if isinstance(o.model, str) and o.usage[0] is not None:
            totals = self.tokens_by_model.setdefault(o.model, [0] * len(USAGE_FIELDS))
            for i, value in enumerate(o.usage):
                totals[i] += value or 0
            totals[-1] += 1
        for name, cell in (
            ("custom_id", custom_id),
            ("status", o.status),
            ("status_code", o.status_code),
            ("error_code", o.error_code),
            ("error_message", o.error_message),
            ("response_body", o.response_body),
            ("answer", o.answer),
            ("batch_id", batch_id),
            ("request_id", o.request_id),
        ):
            self.cols[name].append(cell)
        for name, tokens in zip(TOKEN_COLUMNS, o.usage, strict=True):
            self.cols[name].append(tokens)

    def table(self) -> pa.Table:
        schema = result_schema(self.endpoint)
        arrays = []
        for field in schema:
            values = self.cols[field.name]
            if field.name == "answer" and self.endpoint == "/v1/embeddings":
                arrays.append(_vectors(values))
            else:
                arrays.append(pa.array(values, type=field.type))
            values.clear()
        return pa.Table.from_arrays(arrays, schema=schema)


def _vectors(values: list[np.ndarray | None]) -> pa.Array:
    lengths = np.array([0 if v is None else len(v) for v in values], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)]).astype(np.int32)
    flat = (
        np.concatenate([v for v in values if v is not None])
        if any(v is not None for v in values)
        else np.array([], np.float32)
    )
    mask = pa.array([v is None for v in values])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32()), mask=mask)


def _batch_for_file(path: Path, batches: list[Batch]) -> str | None:
    for b in batches:
        if any(key and key in path.name for key in (b.id, b.output_file_id, b.error_file_id)):
            return b.id
    return batches[0].id if len(batches) == 1 else None


def _index(files: list[Path]) -> dict[str, int]:
    """custom_id -> (file number, byte offset) of its line, preferring a success when a custom_id
    repeats."""
    index: dict[str, int] = {}
    for n, path in enumerate(files):
        offset = 0
        with path.open("rb", buffering=_BUFFER) as f:
            for raw in f:
                if raw.strip():
                    try:
                        line = orjson.loads(raw)
                        cid = line["custom_id"]
                    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
                        raise ValueError(
                            f"{path}: byte {offset}: not a batch result line ({e}); "
                            "is the file complete? Download it again"
                        ) from None
                    key = (n << _OFFSET_BITS) | offset
                    if cid not in index or (_is_success(line) and not _line_ok(index[cid], files)):
                        index[cid] = key
                offset += len(raw)
    return index


def _line_ok(key: int, files: list[Path]) -> bool:
    with files[key >> _OFFSET_BITS].open("rb") as f:
        f.seek(key & ((1 << _OFFSET_BITS) - 1))
        return _is_success(orjson.loads(f.readline()))


def _absent_status(batch_id: str | None, by_id: dict[str, Batch], batches: list[Batch]) -> str:
    owners = [by_id[batch_id]] if batch_id in by_id else batches
    states = {b.status for b in owners}
    if states == {"cancelled"} or states == {"cancelling"}:
        return "cancelled"
    if states == {"expired"}:
        return "expired"
    return "missing"


def _input_batches(
    prepared_inputs_path: Path | None,
    request_ids: Iterable[str | tuple[str, str]] | None,
    known: list[str],
) -> Iterator[tuple[pa.Table | None, list[str], list[str | None]]]:
    """Yield (input columns or None, custom_ids, owning batch ids) in chunks."""
    owners: dict[str, str] = {}
    if prepared_inputs_path is not None:
        items = iter(request_ids or ())
        first = next(items, None)
        if isinstance(first, tuple):  # plain ids add nothing to the inputs table: do not read them
            owners = dict([first, *items])  # type: ignore[list-item]
        for rb in pq.ParquetFile(prepared_inputs_path).iter_batches(batch_size=JOIN_BATCH_ROWS):
            table = pa.Table.from_batches([rb])
            chunk = [str(x) for x in table.column("custom_id").to_pylist()]
            yield table.drop_columns(["custom_id"]), chunk, [owners.get(i) for i in chunk]
        return
    ids: list[str] = []
    own: list[str | None] = []
    for item in request_ids if request_ids is not None else known:
        cid, owner = item if isinstance(item, tuple) else (item, None)
        ids.append(cid)
        own.append(owner)
        if len(ids) >= JOIN_BATCH_ROWS:
            yield None, ids, own
            ids, own = [], []
    if ids:
        yield None, ids, own


def collect_results(
    *,
    output_files: list[Path],
    error_files: list[Path],
    prepared_inputs_path: Path | None,
    request_ids: Iterable[str | tuple[str, str]] | None,
    batches: list[Batch],
    endpoint: BatchEndpoint | str,
    dest: str | os.PathLike[str],
) -> ResultsSummary:
    """Join result lines to the inputs and write a Parquet table to ``dest`` (local path or
    ``s3://…`` URI).

    Rows come from ``prepared_inputs_path`` (``inputs.parquet``, input columns kept), else
    ``request_ids``, else (with neither, e.g. for a follow-up merged later) the custom_ids found in
    the result files. ``request_ids`` items may be ``(custom_id, batch_id)`` pairs, telling which
    batch each request went to; result files are matched to batches by the file id in their name (as
    :meth:`BatchClient.download_results` names them; a batch id in the name works too). Embedding
    vectors go to ``answer`` (float32) and are not repeated in ``response_body``.
    """
    ep = as_endpoint(endpoint)
    files = [Path(p) for p in [*output_files, *error_files]]
    file_batch = [_batch_for_file(p, batches) for p in files]
    by_id = {b.id: b for b in batches}
    index = _index(files)
    handles: list[IO[bytes]] = []
    path = resolve(dest)[1]
    rows = _Rows(ep)
    pool = pa.default_memory_pool()
    writer: pq.ParquetWriter | None = None
    total = 0
    preview: list[dict[str, Any]] = []
    with atomic_output(dest) as (fs, tmp):
        try:
            handles.extend(p.open("rb") for p in files)
            for inputs, ids, owners in _input_batches(
                prepared_inputs_path, request_ids, list(index)
            ):
                for cid, owner in zip(ids, owners, strict=True):
                    key = index.pop(cid, None)
                    if key is None:
                        rows.add(cid, None, owner, _absent_status(owner, by_id, batches))
                        continue
                    f = handles[key >> _OFFSET_BITS]
                    f.seek(key & ((1 << _OFFSET_BITS) - 1))
                    rows.add(
                        cid,
                        orjson.loads(f.readline()),
                        file_batch[key >> _OFFSET_BITS] or owner,
                        "missing",
                    )
                table = rows.table()
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
                    writer = pq.ParquetWriter(tmp, table.schema, filesystem=fs)
                writer.write_table(table)
                # Arrow's allocator (mimalloc) keeps freed chunks for reuse; hand them back so the
                # join's memory stays flat (50k chat results: peak RSS growth ~109 MB without this,
                # see benchmarks/bench_core_results.py).
                pool.release_unused()
                total += table.num_rows
                if len(preview) < 5:
                    preview.extend(table.slice(0, 5 - len(preview)).to_pylist())
            if writer is None:
                writer = pq.ParquetWriter(tmp, result_schema(ep), filesystem=fs)
        finally:
            for h in handles:
                h.close()
            if writer is not None:
                writer.close()
    return _summary(
        path if "://" not in os.fspath(dest) else os.fspath(dest), total, rows, len(index), preview
    )


def _summary(
    path: str, total: int, rows: _Rows, unmatched: int, preview: list[dict[str, Any]]
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
