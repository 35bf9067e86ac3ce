"""Batch input files: validated JSONL parts that respect every Batch API limit, written in one pass.

:func:`prepare_rows` (rows and a template), :func:`write_batch_input` (requests) and
:func:`prepare_jsonl` (an existing JSONL file) check every line with an
:class:`~.input_validation.InputChecker` while writing; all problems are reported together in one
:class:`BatchInputError` before anything is uploaded, and no part is left behind then. Inputs over
the size limits are split into several parts, never rejected.

>>> import tempfile, pathlib
>>> reqs = [
...     {"custom_id": f"r{i}", "url": "/v1/embeddings", "body": {"model": "m", "input": "x"}}
...     for i in range(5)
... ]
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> p = write_batch_input(reqs, out, endpoint="/v1/embeddings", max_requests=2)
>>> [part.requests for part in p.parts]
[2, 2, 1]
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

import orjson
from pydantic import BaseModel

from .batch_request import BatchRequest
from .input_validation import BatchInputError, InputChecker, InputProblem
from .inputs_table import INPUTS_FILE, InputsTableWriter
from .service_profile import OPENAI_PROFILE, ServiceProfile
from .templates import LineRenderer, RequestTemplate, RowProblem, iter_rows, row_checker
from .vocabulary import RETIRED_ENDPOINTS, BatchEndpoint, ValidEndpoint, as_endpoint

PREVIEW_REQUESTS = 5
"""Requests kept in :attr:`PreparedInput.preview`."""
_BUFFER = 1 << 20
_PENDING_LINES = 4_096
_CHUNK_ROWS = 1_024
"""Rows of a same-shape template rendered and checked together."""
_NO_LIMIT = 1 << 62


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
    warnings: list[str] = []
    """What may go wrong but was not refused (a model the library does not know), also logged
    once on the ``dagster_openai_batch`` logger."""

    def custom_ids(self) -> Iterator[str]:
        """Every custom_id, part by part, read back from disk."""
        for part in self.parts:
            for line in read_jsonl_input(part.path):
                yield line["custom_id"]


def read_jsonl_input(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield each non-blank line of a JSONL file as a dict; an unparsable line raises
    :class:`BatchInputError`."""
    for _, item in _parse_lines(Path(path)):
        if isinstance(item, InputProblem):
            raise BatchInputError([item])
        yield item


def _parse_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | InputProblem]]:
    with path.open("rb", buffering=_BUFFER) as f:
        for lineno, raw in enumerate(f, 1):
            if raw.isspace() or not raw:
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


class _PartWriter:
    """Writes lines into numbered parts, rolling over before a limit would be passed; lines are
    written and hashed :data:`_PENDING_LINES` at a time."""

    def __init__(self, out_dir: Path, max_requests: int, max_bytes: int, max_inputs: int) -> None:
        self.out_dir, self.max_requests, self.max_bytes, self.max_inputs = (
            out_dir,
            max_requests,
            max_bytes,
            max_inputs,
        )
        self.parts: list[InputPart] = []
        self._file: IO[bytes] | None = None
        self._pending: list[bytes] = []
        self._hash = hashlib.sha256()
        self._requests = self._bytes = self._inputs = 0
        self.model: str | None = None

    def write(self, line: bytes, inputs: int) -> None:
        size = len(line)
        if self._requests and (
            self._requests == self.max_requests
            or self._bytes + size > self.max_bytes
            or self._inputs + inputs > self.max_inputs
        ):
            self.close()
        self._pending.append(line)
        self._requests += 1
        self._bytes += size
        self._inputs += inputs
        if len(self._pending) == _PENDING_LINES:
            self._flush()

    def write_many(self, lines: list[bytes], sizes: list[int], inputs: int) -> None:
        """:meth:`write` each line (``inputs`` embedding inputs each) in turn, at once when the
        part holds them all."""
        size, count = sum(sizes), len(lines)
        if (
            self._requests + count > self.max_requests
            or self._bytes + size > self.max_bytes
            or self._inputs + inputs * count > self.max_inputs
        ):
            for line in lines:
                self.write(line, inputs)
            return
        self._pending += lines
        self._requests += count
        self._bytes += size
        self._inputs += inputs * count
        if len(self._pending) >= _PENDING_LINES:
            self._flush()

    def _flush(self) -> None:
        if self._file is None:
            path = self.out_dir / f"part-{len(self.parts):05d}.jsonl"
            self._file = path.open("wb", buffering=0)
        data = b"".join(self._pending)
        self._file.write(data)
        self._hash.update(data)
        self._pending.clear()

    def close(self) -> None:
        if not self._requests:
            return
        self._flush()
        assert self._file is not None
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


def write_batch_input(
    requests: Iterable[BatchRequest | dict[str, Any]],
    out_dir: Path,
    *,
    endpoint: BatchEndpoint | str,
    rows: Iterable[dict[str, Any]] | None = None,
    profile: ServiceProfile = OPENAI_PROFILE,
    max_requests: int | None = None,
    max_bytes: int | None = None,
    max_embedding_inputs: int | None = None,
) -> PreparedInput:
    """Validate ``requests`` and write them as JSONL parts in ``out_dir``.

    ``rows`` (the source rows, in the same order) are also written with their custom_id to
    ``inputs.parquet``. The parts keep the limits of ``profile`` (OpenAI's by default; Azure's
    holds 100,000 requests per file), or the ``max_*`` given where smaller. Raises
    :class:`BatchInputError` listing every problem; no part is left behind then.
    """
    if rows is None:
        items: Iterable[tuple[int, Any, dict[str, Any] | None]] = (
            (i, r, None) for i, r in enumerate(requests, 1)
        )
    else:
        items = ((i, r, row) for i, (r, row) in enumerate(_zip_rows(requests, rows), 1))
    limits = _Limits.of(profile, max_requests, max_bytes, max_embedding_inputs)
    return _write(
        items, _InputWriter(Path(out_dir), as_endpoint(endpoint), limits, rows is not None)
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
    profile: ServiceProfile = OPENAI_PROFILE,
    max_requests: int | None = None,
    max_bytes: int | None = None,
    max_embedding_inputs: int | None = None,
) -> PreparedInput:
    """Build requests from ``rows`` with ``template`` and write them, plus ``inputs.parquet``, in
    one pass.

    >>> import tempfile, pathlib
    >>> t = RequestTemplate(
    ...     endpoint="/v1/moderations", model="omni-moderation-latest", prompt="{text}"
    ... )
    >>> prepare_rows([{"text": "hi"}], t, pathlib.Path(tempfile.mkdtemp())).requests
    1
    """
    limits = _Limits.of(profile, max_requests, max_bytes, max_embedding_inputs)
    out = _InputWriter(Path(out_dir), template.endpoint, limits, True, template.custom_id_column)
    check_row = row_checker(template)
    renderer = LineRenderer.of(template)
    if renderer is None or not renderer.same_shape:
        return _write(_template_items(rows, template, check_row), out)
    return _write_rendered(iter_rows(rows), check_row, renderer.line, out)


def _write_rendered(
    rows: Iterator[dict[str, Any]],
    check_row: Callable[[dict[str, Any]], str | list[RowProblem]],
    render: Callable[[str, dict[str, Any]], bytes],
    out: _InputWriter,
) -> PreparedInput:
    """Write the rows of a template whose lines all have the same shape: each row's line is
    rendered as bytes and, once one has passed every rule, only what varies is checked, a chunk of
    rows at a time (one by one in a chunk with a problem or a part boundary)."""
    with out:
        checker, lineno = out.checker, 1
        for chunk in _chunks(rows):
            ids = list(map(check_row, chunk))  # custom_ids, or the problems of a row
            lines = None
            if not checker.total_problems and all(map(_is_str, ids)):
                valid = cast(list[str], ids)
                lines = list(map(render, valid, chunk))
                if checker.check_rendered_many(lineno, valid, lines):
                    out.write_many(valid, lines, checker.shape_inputs, chunk)
                    lineno += len(chunk)
                    continue
            for i, (cid, row) in enumerate(zip(ids, chunk, strict=True)):
                if not isinstance(cid, str):
                    checker.report([_missing_value(lineno + i, p) for p in cid])
                    continue
                line = lines[i] if lines is not None else render(cid, row)
                if checker.check_rendered(lineno + i, cid, line) and not checker.total_problems:
                    out.write(cid, line, checker.shape_inputs, row)
            lineno += len(chunk)
        return out.finish()


_is_str = str.__instancecheck__  # isinstance(x, str), for map()


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    while chunk := list(itertools.islice(rows, _CHUNK_ROWS)):
        yield chunk


def _missing_value(lineno: int, problem: RowProblem) -> InputProblem:
    return InputProblem(
        line=lineno,
        custom_id=problem.custom_id,
        field=problem.field,
        code="missing_value",
        message=problem.message,
        fix=problem.fix,
    )


def _template_items(
    rows: Any,
    template: RequestTemplate,
    check_row: Callable[[dict[str, Any]], str | list[RowProblem]],
) -> Iterator[tuple[int, dict[str, Any] | InputProblem, dict[str, Any]]]:
    url = template.endpoint
    for i, row in enumerate(iter_rows(rows), 1):
        cid = check_row(row)
        if isinstance(cid, str):
            body = template.render_body(row)
            yield i, {"custom_id": cid, "method": "POST", "url": url, "body": body}, row
        else:
            for p in cid:
                yield i, _missing_value(i, p), row


def prepare_jsonl(
    path: str | os.PathLike[str],
    out_dir: Path,
    *,
    endpoint: BatchEndpoint | str | None = None,
    profile: ServiceProfile = OPENAI_PROFILE,
    max_requests: int | None = None,
    max_bytes: int | None = None,
    max_embedding_inputs: int | None = None,
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
    limits = _Limits.of(profile, max_requests, max_bytes, max_embedding_inputs)
    return _write(items, _InputWriter(Path(out_dir), ep, limits, False))


class _Limits(NamedTuple):
    """The limits one input is written under: the service profile's, or the caller's where smaller
    (``max_requests=`` splits sooner; a file is never larger than the service takes)."""

    max_requests: int
    max_bytes: int
    max_inputs: int
    model_names_known: bool

    @classmethod
    def of(
        cls,
        profile: ServiceProfile,
        max_requests: int | None,
        max_bytes: int | None,
        max_inputs: int | None,
    ) -> _Limits:
        return cls(
            min(profile.max_requests_per_file, max_requests or profile.max_requests_per_file),
            min(profile.max_file_bytes, max_bytes or profile.max_file_bytes),
            min(profile.max_embedding_inputs, max_inputs or profile.max_embedding_inputs),
            profile.model_names_known,
        )


_Item = tuple[int, BatchRequest | dict[str, Any] | InputProblem, dict[str, Any] | None]
"""(line number, the request or why there is none, its source row or None)."""


def _refuse_retired(endpoint: BatchEndpoint) -> None:
    """A clear refusal, before anything is written or uploaded, for an endpoint that is gone."""
    retired = RETIRED_ENDPOINTS.get(endpoint)
    if retired is not None and datetime.now(UTC).date() >= retired:
        raise BatchInputError(
            [
                InputProblem(
                    line=1,
                    field="url",
                    code="endpoint_retired",
                    message=f"{endpoint} batches are refused since {retired:%Y-%m-%d}: the "
                    "service behind that endpoint has shut down (the SDK still lists it)",
                    fix="Send these requests to an endpoint that is still served",
                )
            ]
        )


class _InputWriter:
    """One input being checked and written: its checker, parts, ``inputs.parquet`` and preview.

    A context manager: when an exception leaves it (a refused input among them), nothing written
    is left behind.
    """

    def __init__(
        self,
        out_dir: Path,
        endpoint: BatchEndpoint,
        limits: _Limits,
        with_rows: bool,
        id_column: str | None = None,
    ) -> None:
        _refuse_retired(endpoint)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.endpoint = endpoint
        self.checker = InputChecker(
            endpoint,
            max_bytes=limits.max_bytes,
            max_inputs=limits.max_inputs,
            model_names_known=limits.model_names_known,
        )
        part_inputs = limits.max_inputs if endpoint == "/v1/embeddings" else _NO_LIMIT
        self.parts = _PartWriter(out_dir, limits.max_requests, limits.max_bytes, part_inputs)
        self.rows = InputsTableWriter(out_dir / INPUTS_FILE, id_column) if with_rows else None
        self.preview: list[dict[str, Any]] = []

    def __enter__(self) -> _InputWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.parts.discard()
            if self.rows is not None:
                self.rows.discard()

    def write(self, custom_id: str, line: bytes, inputs: int, row: dict[str, Any] | None) -> None:
        """Write a line that passed every check (and its source row, if any)."""
        self.parts.write(line, inputs)
        if self.rows is not None and row is not None:
            self.rows.add(custom_id, row, len(line))
        if len(self.preview) < PREVIEW_REQUESTS:
            self.preview.append(orjson.loads(line))
            self.parts.model = self.checker.model  # set by the first line that passed

    def write_many(
        self, ids: Sequence[str], lines: list[bytes], inputs: int, rows: list[dict[str, Any]]
    ) -> None:
        """:meth:`write` each line in turn (lines that passed every check, with their rows)."""
        if len(self.preview) < PREVIEW_REQUESTS:
            for cid, line, row in zip(ids, lines, rows, strict=True):
                self.write(cid, line, inputs, row)
            return
        sizes = list(map(len, lines))
        self.parts.write_many(lines, sizes, inputs)
        if self.rows is not None:
            self.rows.add_many(ids, rows, sizes)

    def finish(self) -> PreparedInput:
        """Raise the problems found, if any; else close the parts and describe them."""
        self.checker.finish()
        self.parts.close()
        inputs_path = self.rows.close() if self.rows is not None else None
        parts = self.parts.parts
        content = hashlib.sha256(
            self.endpoint.encode() + b"".join(p.sha256.encode() for p in parts)
        ).hexdigest()
        return PreparedInput(
            endpoint=self.endpoint,
            model=self.parts.model,
            parts=parts,
            requests=self.checker.requests,
            bytes=sum(p.bytes for p in parts),
            content_hash=content,
            inputs_path=inputs_path,
            preview=self.preview,
            warnings=self.checker.warnings,
        )


def _write(items: Iterable[_Item], out: _InputWriter) -> PreparedInput:
    """Check every item and, while none has a problem, write it (and its row)."""
    with out:
        check = out.checker.check
        for lineno, item, row in items:
            checked = check(lineno, item)
            # after a problem nothing more is written: the input will be refused
            if checked is not None and not out.checker.total_problems:
                out.write(checked.custom_id, checked.line, checked.inputs, row)
        return out.finish()
