"""Stream requests into validated JSONL parts that respect every Batch API limit.

Every rule is checked while writing; all problems are reported together in one :class:`BatchInputError`
before anything is uploaded. Inputs over the size limits are split into several parts, never rejected.

>>> import tempfile, pathlib
>>> reqs = [{"custom_id": f"r{i}", "url": "/v1/embeddings", "body": {"model": "m", "input": "x"}} for i in range(5)]
>>> p = write_batch_input(reqs, pathlib.Path(tempfile.mkdtemp()), endpoint="/v1/embeddings", max_requests=2)
>>> [part.requests for part in p.parts]
[2, 2, 1]
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from .batch_request import BatchRequest
from .errors import OpenAIBatchError
from .templates import RequestTemplate, check_rows, is_missing
from .vocabulary import (
    MAX_EMBEDDING_INPUTS,
    MAX_FILE_BYTES,
    MAX_REQUESTS_PER_FILE,
    MODEL_REQUIRED_ENDPOINTS,
    BatchEndpoint,
    ValidEndpoint,
    as_endpoint,
)

SHOWN_PROBLEMS = 20
KEPT_PROBLEMS = 1_000
INPUTS_FILE = "inputs.parquet"
PARQUET_ROWS = 10_000
PARQUET_BYTES = 4_000_000
"""Rows are flushed to ``inputs.parquet`` every PARQUET_ROWS rows or PARQUET_BYTES of request JSON, whichever first."""
_BUFFER = 1 << 20


class InputProblem(BaseModel):
    """One thing wrong with one input line."""

    line: int
    custom_id: str | None = None
    field: str | None = None
    code: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (
            f" (custom_id {self.custom_id!r})" if self.custom_id is not None else ""
        )
        field = f", field {self.field!r}" if self.field else ""
        return f"{where}{field}: {self.message}. {self.fix}"


class BatchInputError(OpenAIBatchError, ValueError):
    """The input breaks the Batch API's rules; ``problems`` lists each one (first :data:`KEPT_PROBLEMS`)."""

    def __init__(self, problems: list[InputProblem], total: int | None = None) -> None:
        self.problems = problems
        self.total = total if total is not None else len(problems)
        shown = "\n".join(f"  - {p}" for p in problems[:SHOWN_PROBLEMS])
        rest = self.total - min(len(problems), SHOWN_PROBLEMS)
        more = f"\n  … and {rest} more problem(s)" if rest > 0 else ""
        super().__init__(
            f"batch input is invalid ({self.total} problem(s)); nothing was uploaded:\n{shown}{more}"
        )


class InputPart(BaseModel):
    """One JSONL file ready to upload."""

    index: int
    path: Path
    requests: int
    bytes: int
    sha256: str
    model: str | None
    embedding_inputs: int = 0


class PreparedInput(BaseModel):
    """The validated input of one batch job, as one or more parts."""

    endpoint: ValidEndpoint
    model: str | None
    parts: list[InputPart]
    requests: int
    bytes: int
    content_hash: str
    inputs_path: Path | None = None
    preview: list[dict[str, Any]] = []

    def custom_ids(self) -> Iterator[str]:
        """Every custom_id, part by part, read back from disk."""
        for part in self.parts:
            for line in read_jsonl_input(part.path):
                yield line["custom_id"]


def read_jsonl_input(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield each non-blank line of a JSONL file as a dict; an unparsable line raises :class:`BatchInputError`."""
    for lineno, item in _parse_lines(Path(path)):
        if isinstance(item, InputProblem):
            raise BatchInputError([item])
        yield item


def _parse_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | InputProblem]]:
    with path.open("rb", buffering=_BUFFER) as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                yield (
                    lineno,
                    InputProblem(
                        line=lineno,
                        code="invalid_json_line",
                        message=f"not valid JSON ({e})",
                        fix="Write one JSON object per line (JSONL)",
                    ),
                )
                continue
            if not isinstance(obj, dict):
                yield (
                    lineno,
                    InputProblem(
                        line=lineno,
                        code="invalid_json_line",
                        message=f"a line must be a JSON object, got {type(obj).__name__}",
                        fix="Write one JSON object per line (JSONL)",
                    ),
                )
                continue
            yield lineno, obj


def count_embedding_inputs(body: dict[str, Any]) -> int:
    """Inputs in an embeddings body: a string or a token array counts 1, a list of them counts each.

    >>> count_embedding_inputs({"input": ["a", "b"]}), count_embedding_inputs({"input": [1, 2, 3]})
    (2, 1)
    """
    value = body.get("input")
    if isinstance(value, list) and value and isinstance(value[0], (str, list)):
        return len(value)
    return 1 if value is not None else 0


class _PartWriter:
    """Writes lines into numbered parts, rolling over before a limit would be passed."""

    def __init__(self, out_dir: Path, max_requests: int, max_bytes: int, max_inputs: int) -> None:
        self.out_dir, self.max_requests, self.max_bytes, self.max_inputs = (
            out_dir,
            max_requests,
            max_bytes,
            max_inputs,
        )
        self.parts: list[InputPart] = []
        self._file: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._requests = self._bytes = self._inputs = 0
        self.model: str | None = None

    def write(self, line: bytes, inputs: int) -> None:
        if self._file is not None and (
            self._requests + 1 > self.max_requests
            or self._bytes + len(line) > self.max_bytes
            or self._inputs + inputs > self.max_inputs
        ):
            self.close()
        if self._file is None:
            path = self.out_dir / f"part-{len(self.parts):05d}.jsonl"
            self._file = path.open("wb", buffering=_BUFFER)
        self._file.write(line)
        self._hash.update(line)
        self._requests += 1
        self._bytes += len(line)
        self._inputs += inputs

    def close(self) -> None:
        if self._file is None:
            return
        self._file.close()
        self.parts.append(
            InputPart(
                index=len(self.parts),
                path=Path(self._file.name),
                requests=self._requests,
                bytes=self._bytes,
                sha256=self._hash.hexdigest(),
                model=self.model,
                embedding_inputs=self._inputs,
            )
        )
        self._file, self._hash = None, hashlib.sha256()
        self._requests = self._bytes = self._inputs = 0

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            Path(self._file.name).unlink(missing_ok=True)
            self._file = None
        for part in self.parts:
            part.path.unlink(missing_ok=True)


class _RowsWriter:
    """Streams the source rows, each with its custom_id, to ``inputs.parquet`` in record batches.

    The schema is the union of every row's columns: a column missing from some rows is null there, a column that is
    null in the first rows takes the type seen later, and integers meet floats as floats. Chunks are written as they
    come; when a chunk widens the schema a new segment file is started, and the segments are rewritten into one
    table under the final schema at :meth:`close`. Types that cannot be reconciled raise a :class:`ValueError`
    naming the column and the line.

    A row column named ``custom_id`` is kept as ``input_custom_id`` unless it is ``id_column`` (the column the
    custom_ids were taken from), since ``custom_id`` holds the request's id.
    """

    def __init__(self, path: Path, id_column: str | None = None) -> None:
        self.path = path
        self.id_column = id_column
        self._ids: list[str] = []
        self._rows: list[dict[str, Any]] = []
        self._lines: list[int] = []
        self._bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._segments: list[Path] = []

    def add(self, custom_id: str, row: dict[str, Any], size: int, line: int = 0) -> None:
        if "custom_id" in row:
            keep = self.id_column != "custom_id"
            row = {
                ("input_custom_id" if k == "custom_id" else k): v
                for k, v in row.items()
                if keep or k != "custom_id"
            }
        self._ids.append(custom_id)
        self._rows.append(row)
        self._lines.append(line or len(self._lines) + 1)
        self._bytes += size
        if len(self._rows) >= PARQUET_ROWS or self._bytes >= PARQUET_BYTES:
            self.flush()

    def _table(self) -> pa.Table:
        names: dict[str, None] = {}
        first = self._rows[0].keys()
        for row in self._rows:
            if row.keys() != first:
                names.update(dict.fromkeys(row))
        names = {**dict.fromkeys(first), **names}
        names.pop("custom_id", None)  # renamed by add(); a row cannot override the request's id
        arrays = [pa.array(self._ids, pa.string())]
        for name in names:
            arrays.append(_column(name, [row.get(name) for row in self._rows], self._lines))
        return pa.Table.from_arrays(arrays, names=["custom_id", *names])

    def flush(self) -> None:
        if not self._rows:
            return
        table = self._table()
        fitted = _fit(table, self._writer.schema) if self._writer is not None else None
        if fitted is not None:
            table = fitted
        else:  # the first chunk, or one with a new column or a wider type: continue in a new segment
            schema = table.schema
            if self._writer is not None:
                schema = _unify(self._writer.schema, table, self._lines)
                self._writer.close()
                table = _fit(table, schema)
                assert table is not None
            segment = self.path.with_name(f".{self.path.name}.{len(self._segments)}.tmp")
            self._segments.append(segment)
            self._writer = pq.ParquetWriter(segment, schema)
        self._writer.write_table(table)  # type: ignore[union-attr]
        self._ids, self._rows, self._lines, self._bytes = [], [], [], 0

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for segment in self._segments:
            segment.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)

    def close(self) -> Path:
        self.flush()
        if self._writer is None:
            pq.write_table(pa.table({"custom_id": pa.array([], pa.string())}), self.path)
            return self.path
        self._writer.close()
        schema = self._writer.schema  # the last segment's schema holds every earlier one
        self._writer = None
        if len(self._segments) == 1:
            os.replace(self._segments[0], self.path)
        else:
            with pq.ParquetWriter(self.path, schema) as out:
                for segment in self._segments:
                    for batch in pq.ParquetFile(segment).iter_batches(batch_size=PARQUET_ROWS):
                        out.write_table(_fit(pa.Table.from_batches([batch]), schema))  # type: ignore[arg-type]
                    segment.unlink()
        self._segments = []
        return self.path


def _column(name: str, values: list[Any], lines: list[int]) -> pa.Array:
    """One input column as an Arrow array; NaN/NaT count as nulls; mixed types raise a ValueError naming a line."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
        error = e
    present = [(i, v) for i, v in enumerate(values) if not is_missing(v)]
    if not present:
        raise ValueError(
            f"input rows do not fit one table schema: column {name!r} ({error})"
        ) from error
    i0, v0 = present[0]
    bad = next(((i, v) for i, v in present if type(v) is not type(v0)), present[-1])
    raise ValueError(
        f"input rows do not fit one table schema: column {name!r} holds {type(v0).__name__} {v0!r:.40} on line "
        f"{lines[i0]} but {type(bad[1]).__name__} {bad[1]!r:.40} on line {lines[bad[0]]} ({error}); "
        "give every row the same column types"
    ) from error


def _fit(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """``table`` cast to ``schema`` (absent columns as nulls), or None if it has a column or a type ``schema`` lacks."""
    if not set(table.column_names) <= set(schema.names):
        return None
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type != field.type:
            if not pa.types.is_null(column.type):
                try:
                    wider = (
                        pa.unify_schemas(
                            [pa.schema([field]), pa.schema([(field.name, column.type)])],
                            promote_options="permissive",
                        )
                        .field(0)
                        .type
                    )
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    return None
                if wider != field.type:
                    return None
            column = column.cast(field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _unify(schema: pa.Schema, table: pa.Table, lines: list[int]) -> pa.Schema:
    """The schema holding both ``schema`` and ``table``'s columns, or a ValueError naming the clashing column."""
    try:
        return pa.unify_schemas([schema, table.schema], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        for field in table.schema:
            if field.name in schema.names:
                try:
                    pa.unify_schemas(
                        [pa.schema([schema.field(field.name)]), pa.schema([field])],
                        promote_options="permissive",
                    )
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    valid = table.column(field.name).is_valid().to_pylist()
                    line = lines[valid.index(True)] if True in valid else lines[0]
                    raise ValueError(
                        f"input rows do not fit one table schema: column {field.name!r} is {schema.field(field.name).type} "
                        f"in earlier rows but {field.type} on line {line}; give every row the same column types"
                    ) from e
        raise ValueError(
            f"input rows do not fit one table schema ({e}); give every row the same column types"
        ) from e


def _problem(
    lineno: int, cid: Any, field: str | None, code: str, message: str, fix: str
) -> InputProblem:
    return InputProblem(
        line=lineno,
        custom_id=cid if isinstance(cid, str) else None,
        field=field,
        code=code,
        message=message,
        fix=fix,
    )


def _check(lineno: int, req: dict[str, Any], endpoint: str) -> list[InputProblem]:
    """Per-line rules that need no state: required fields, method, url, body shape, streaming."""
    problems = []
    cid = req.get("custom_id")
    for field in ("custom_id", "url", "body"):
        if req.get(field) in (None, ""):
            problems.append(
                _problem(
                    lineno,
                    cid,
                    field,
                    "missing_required_parameter",
                    f"`{field}` is missing",
                    f"Give every line a `{field}`",
                )
            )
    if cid is not None and not isinstance(cid, str):
        problems.append(
            _problem(
                lineno,
                None,
                "custom_id",
                "invalid_request",
                f"custom_id must be a string, got {type(cid).__name__} {cid!r}",
                "Convert custom_id to a string",
            )
        )
    if req.get("method", "POST") != "POST":
        problems.append(
            _problem(
                lineno,
                cid,
                "method",
                "invalid_request",
                f"method is {req.get('method')!r}",
                'Use "method": "POST"',
            )
        )
    url = req.get("url")
    if url not in (None, "") and url != endpoint:
        problems.append(
            _problem(
                lineno,
                cid,
                "url",
                "invalid_url",
                f"url {url!r} differs from the batch endpoint {endpoint!r}",
                "Send every line of a batch to the same endpoint",
            )
        )
    body = req.get("body")
    if body not in (None, "") and not isinstance(body, dict):
        problems.append(
            _problem(
                lineno,
                cid,
                "body",
                "invalid_request",
                f"body must be a JSON object, got {type(body).__name__}",
                "Put the request parameters in an object",
            )
        )
    elif isinstance(body, dict) and body.get("stream"):
        problems.append(
            _problem(
                lineno,
                cid,
                "body.stream",
                "streaming_unsupported",
                "streaming is not supported in a batch",
                "Remove `stream` from the body",
            )
        )
    return problems


def write_batch_input(
    requests: Iterable[BatchRequest | dict[str, Any]],
    out_dir: Path,
    *,
    endpoint: BatchEndpoint | str,
    rows: Iterable[dict[str, Any]] | None = None,
    max_requests: int = MAX_REQUESTS_PER_FILE,
    max_bytes: int = MAX_FILE_BYTES,
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS,
) -> PreparedInput:
    """Validate ``requests`` and write them as JSONL parts in ``out_dir``.

    ``rows`` (the source rows, in the same order) are also written with their custom_id to ``inputs.parquet``.
    Raises :class:`BatchInputError` listing every problem; no part is left behind then.
    """
    if rows is None:
        items: Iterable[tuple[int, Any, dict[str, Any] | None]] = (
            (i, r, None) for i, r in enumerate(requests, 1)
        )
    else:
        items = ((i, r, row) for i, (r, row) in enumerate(_zip_rows(requests, rows), 1))
    return _write(
        items,
        Path(out_dir),
        as_endpoint(endpoint),
        rows is not None,
        max_requests,
        max_bytes,
        max_embedding_inputs,
    )


def _zip_rows(
    requests: Iterable[Any], rows: Iterable[dict[str, Any]]
) -> Iterator[tuple[Any, dict[str, Any]]]:
    try:
        yield from zip(requests, rows, strict=True)
    except ValueError as e:
        if "zip()" not in str(e):
            raise
        raise ValueError(
            "`rows` and `requests` differ in length; give exactly one row per request"
        ) from None


def prepare_rows(
    rows: Any,
    template: RequestTemplate,
    out_dir: Path,
    *,
    max_requests: int = MAX_REQUESTS_PER_FILE,
    max_bytes: int = MAX_FILE_BYTES,
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS,
) -> PreparedInput:
    """Build requests from ``rows`` with ``template`` and write them, plus ``inputs.parquet``, in one pass.

    >>> import tempfile, pathlib
    >>> t = RequestTemplate(endpoint="/v1/moderations", model="omni-moderation-latest", prompt="{text}")
    >>> prepare_rows([{"text": "hi"}], t, pathlib.Path(tempfile.mkdtemp())).requests
    1
    """
    return _write(
        _template_items(rows, template),
        Path(out_dir),
        template.endpoint,
        True,
        max_requests,
        max_bytes,
        max_embedding_inputs,
        id_column=template.custom_id_column,
    )


def _template_items(
    rows: Any, template: RequestTemplate
) -> Iterator[tuple[int, BatchRequest | InputProblem, dict[str, Any]]]:
    for i, (row, request, problems) in enumerate(check_rows(rows, template), 1):
        if request is not None:
            yield i, request, row
        for p in problems:
            yield (
                i,
                InputProblem(
                    line=i,
                    custom_id=p.custom_id,
                    field=p.field,
                    code="missing_value",
                    message=p.message,
                    fix=p.fix,
                ),
                row,
            )


def prepare_jsonl(
    path: str | os.PathLike[str],
    out_dir: Path,
    *,
    endpoint: BatchEndpoint | str | None = None,
    max_requests: int = MAX_REQUESTS_PER_FILE,
    max_bytes: int = MAX_FILE_BYTES,
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS,
) -> PreparedInput:
    """Validate an existing JSONL input file and rewrite it as parts (split if over a limit).

    Without ``endpoint``, the first line's url is taken as the endpoint.
    """
    path = Path(path)
    if endpoint is None:
        first = next((obj for _, obj in _parse_lines(path) if isinstance(obj, dict)), None)
        if first is None or not isinstance(first.get("url"), str):
            raise BatchInputError(
                [
                    InputProblem(
                        line=1,
                        field="url",
                        code="empty_file" if first is None else "missing_required_parameter",
                        message=f"{path} has no request with a url",
                        fix="Pass `endpoint=` or add requests to the file",
                    )
                ]
            )
        endpoint = first["url"]
    try:
        ep = as_endpoint(endpoint)
    except ValueError as e:
        raise BatchInputError(
            [
                InputProblem(
                    line=1,
                    field="url",
                    code="invalid_url",
                    message=str(e),
                    fix="Use a batch endpoint",
                )
            ]
        ) from None
    items = ((i, obj, None) for i, obj in _parse_lines(path))
    return _write(items, Path(out_dir), ep, False, max_requests, max_bytes, max_embedding_inputs)


def _write(
    items: Iterable[
        tuple[int, BatchRequest | dict[str, Any] | InputProblem, dict[str, Any] | None]
    ],
    out_dir: Path,
    endpoint: BatchEndpoint,
    with_rows: bool,
    max_requests: int,
    max_bytes: int,
    max_inputs: int,
    id_column: str | None = None,
) -> PreparedInput:
    out_dir.mkdir(parents=True, exist_ok=True)
    url = endpoint
    is_embeddings = endpoint == "/v1/embeddings"
    parts = _PartWriter(out_dir, max_requests, max_bytes, max_inputs if is_embeddings else 1 << 62)
    rows_out = _RowsWriter(out_dir / INPUTS_FILE, id_column) if with_rows else None
    seen: dict[
        int, int
    ] = {}  # hash(custom_id) -> first line; ids are not kept, so memory stays small
    problems: list[InputProblem] = []
    total_problems = 0
    model_line = 0
    preview: list[dict[str, Any]] = []
    count = 0

    def report(new: list[InputProblem]) -> None:
        nonlocal total_problems
        total_problems += len(new)
        problems.extend(new[: max(0, KEPT_PROBLEMS - len(problems))])

    try:
        for lineno, item, row in items:
            if isinstance(item, InputProblem):
                report([item])
                continue
            req = (
                {
                    "custom_id": item.custom_id,
                    "method": item.method,
                    "url": item.url,
                    "body": item.body,
                }
                if isinstance(item, BatchRequest)
                else item
            )
            found = _check(lineno, req, url)
            cid = req.get("custom_id")
            if isinstance(cid, str) and cid:
                key = hash(cid)
                first = seen.setdefault(key, lineno)
                if first != lineno:
                    found.append(
                        _problem(
                            lineno,
                            cid,
                            "custom_id",
                            "duplicate_custom_id",
                            f"custom_id {cid!r} is already used on line {first}",
                            "Give every request a unique custom_id",
                        )
                    )
            body = req.get("body")
            inputs = 0
            if isinstance(body, dict):
                model = body.get("model")
                if model in (None, "") and endpoint in MODEL_REQUIRED_ENDPOINTS:
                    found.append(
                        _problem(
                            lineno,
                            cid,
                            "body.model",
                            "missing_required_parameter",
                            f"`body.model` is missing ({url} needs a model)",
                            "Give every request a `model` (the same one on every line)",
                        )
                    )
                elif model_line == 0:
                    parts.model, model_line = model, lineno
                elif model != parts.model:
                    found.append(
                        _problem(
                            lineno,
                            cid,
                            "body.model",
                            "model_mismatch",
                            f"model {model!r} differs from {parts.model!r} (line {model_line})",
                            "Use one model per batch; split the input by model",
                        )
                    )
                if is_embeddings:
                    inputs = count_embedding_inputs(body)
                    if inputs > max_inputs:
                        found.append(
                            _problem(
                                lineno,
                                cid,
                                "body.input",
                                "too_many_inputs",
                                f"{inputs} embedding inputs in one request; the limit is {max_inputs}",
                                "Split this request into smaller ones",
                            )
                        )
            line = (
                orjson.dumps(
                    {"custom_id": cid, "method": "POST", "url": req.get("url"), "body": body}
                )
                + b"\n"
            )
            if len(line) > max_bytes:
                found.append(
                    _problem(
                        lineno,
                        cid,
                        None,
                        "line_too_large",
                        f"the request is {len(line):,} bytes; a file holds at most {max_bytes:,}",
                        "Shorten this request",
                    )
                )
            if found:
                report(found)
                continue
            count += 1
            if total_problems == 0:
                parts.write(line, inputs)
                if rows_out is not None and row is not None:
                    rows_out.add(cid, row, len(line), lineno)
                if len(preview) < 5:
                    preview.append(orjson.loads(line))
        if count == 0 and total_problems == 0:
            report(
                [
                    InputProblem(
                        line=0,
                        code="empty_file",
                        message="the input has no requests",
                        fix="Give at least one row or request",
                    )
                ]
            )
        if total_problems:
            raise BatchInputError(problems, total_problems)
        parts.close()
        inputs_path = rows_out.close() if rows_out is not None else None
    except BaseException:
        parts.discard()
        if rows_out is not None:
            rows_out.discard()
        raise
    content = hashlib.sha256(
        url.encode() + b"".join(p.sha256.encode() for p in parts.parts)
    ).hexdigest()
    return PreparedInput(
        endpoint=endpoint,
        model=parts.model,
        parts=parts.parts,
        requests=count,
        bytes=sum(p.bytes for p in parts.parts),
        content_hash=content,
        inputs_path=inputs_path,
        preview=preview,
    )
