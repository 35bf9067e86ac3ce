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
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson
from pydantic import BaseModel

from .batch_request import BatchRequest
from .input_validation import BatchInputError, InputChecker, InputProblem, RenderedLine
from .inputs_table import INPUTS_FILE, InputsTableWriter
from .service_profile import OPENAI_PROFILE, ServiceProfile
from .templates import LineRenderer, RequestTemplate, iter_rows, row_checker
from .vocabulary import RETIRED_ENDPOINTS, BatchEndpoint, ValidEndpoint, as_endpoint

PREVIEW_REQUESTS = 5
"""Requests kept in :attr:`PreparedInput.preview`."""
_BUFFER = 1 << 20
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
    return _write(
        items,
        Path(out_dir),
        as_endpoint(endpoint),
        rows is not None,
        _Limits.of(profile, max_requests, max_bytes, max_embedding_inputs),
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
    return _write(
        _template_items(rows, template),
        Path(out_dir),
        template.endpoint,
        True,
        _Limits.of(profile, max_requests, max_bytes, max_embedding_inputs),
        id_column=template.custom_id_column,
    )


def _template_items(
    rows: Any, template: RequestTemplate
) -> Iterator[tuple[int, RenderedLine | dict[str, Any] | InputProblem, dict[str, Any]]]:
    check = row_checker(template)
    renderer = LineRenderer.of(template)
    lines = renderer.line if renderer is not None and renderer.same_shape else None
    url = template.endpoint
    for i, row in enumerate(iter_rows(rows), 1):
        cid, problems = check(row)
        if problems:
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
        elif lines is not None:
            yield i, RenderedLine(cid, lines(cid, row)), row  # type: ignore[arg-type]
        else:
            body = template.render_body(row)
            yield i, {"custom_id": cid, "method": "POST", "url": url, "body": body}, row


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
    return _write(items, Path(out_dir), ep, False, limits)


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


_Item = tuple[
    int, BatchRequest | dict[str, Any] | RenderedLine | InputProblem, dict[str, Any] | None
]
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


def _write(
    items: Iterable[_Item],
    out_dir: Path,
    endpoint: BatchEndpoint,
    with_rows: bool,
    limits: _Limits,
    id_column: str | None = None,
) -> PreparedInput:
    """Check every item and, while none has a problem, write the parts (and ``inputs.parquet``)."""
    _refuse_retired(endpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    checker = InputChecker(
        endpoint,
        max_bytes=limits.max_bytes,
        max_inputs=limits.max_inputs,
        model_names_known=limits.model_names_known,
    )
    part_inputs = limits.max_inputs if endpoint == "/v1/embeddings" else _NO_LIMIT
    parts = _PartWriter(out_dir, limits.max_requests, limits.max_bytes, part_inputs)
    rows_out = InputsTableWriter(out_dir / INPUTS_FILE, id_column) if with_rows else None
    preview: list[dict[str, Any]] = []
    try:
        for lineno, item, row in items:
            checked = checker.check(lineno, item)
            if checked is None or checker.total_problems:
                continue  # after a problem nothing more is written: the input will be refused
            parts.model = checker.model
            parts.write(checked.line, checked.inputs)
            if rows_out is not None and row is not None:
                rows_out.add(checked.custom_id, row, len(checked.line), lineno)
            if len(preview) < PREVIEW_REQUESTS:
                preview.append(orjson.loads(checked.line))
        checker.finish()
        parts.close()
        inputs_path = rows_out.close() if rows_out is not None else None
    except BaseException:
        parts.discard()
        if rows_out is not None:
            rows_out.discard()
        raise
    return _prepared(endpoint, parts, checker, inputs_path, preview)


def _prepared(
    endpoint: BatchEndpoint,
    parts: _PartWriter,
    checker: InputChecker,
    inputs_path: Path | None,
    preview: list[dict[str, Any]],
) -> PreparedInput:
    content = hashlib.sha256(
        endpoint.encode() + b"".join(p.sha256.encode() for p in parts.parts)
    ).hexdigest()
    return PreparedInput(
        endpoint=endpoint,
        model=parts.model,
        parts=parts.parts,
        requests=checker.requests,
        bytes=sum(p.bytes for p in parts.parts),
        content_hash=content,
        inputs_path=inputs_path,
        preview=preview,
        warnings=checker.warnings,
    )
