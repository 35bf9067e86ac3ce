"""Upload checks, and the validation of a batch's whole input file before it runs (streamed)."""

from __future__ import annotations

import codecs
import contextlib
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import BaseModel

from .config import EmulatorConfig
from .flavour import FLAVOURS
from .models import resolve
from .request_rules import refusal, required_parameters
from .service_rules import DEFAULT_MODELS, MAX_EMBEDDING_INPUTS, MAX_UPLOAD_BYTES

# The real service lists several line errors; we stop after this many (the count it shows is not
# documented).
MAX_REPORTED_ERRORS = 10


class UploadSink:
    """File-like sink for one multipart file part: writes to disk up to the size limit, checks UTF-8
    on the fly.

    Past the limit it keeps counting (so the request body is still drained) but stops writing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed in finish()
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.size = 0
        self.valid_utf8 = True

    def write(self, chunk: bytes) -> int:
        """Consume one chunk of the uploaded file."""
        self.size += len(chunk)
        if self.size <= MAX_UPLOAD_BYTES:
            self._fh.write(chunk)
        if self.valid_utf8:
            try:
                self._decoder.decode(chunk)
            except UnicodeDecodeError:
                self.valid_utf8 = False
        return len(chunk)

    def seek(self, *args: int) -> int:
        """werkzeug rewinds the stream after parsing; nothing to do for a sink."""
        return 0

    def finish(self) -> None:
        """Close the file and settle the UTF-8 check for a truncated final sequence."""
        self._fh.close()
        if self.valid_utf8:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self.valid_utf8 = False

    def close(self) -> None:
        """Close the underlying file (idempotent)."""
        self._fh.close()


def upload_content_error(path: Path) -> str | None:
    """Why a batch file is refused at upload (empty, or no line is a JSON object), or None.

    Reads up to the first JSON object line, so a well-formed file costs one line.
    """
    any_line = False
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            any_line = True
            with contextlib.suppress(orjson.JSONDecodeError):
                if isinstance(orjson.loads(raw), dict):
                    return None
    return "no line is a JSON object" if any_line else "the file is empty"


class LineError(BaseModel):
    """One entry of `errors.data` of a failed batch."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None


class ValidationResult(BaseModel):
    """What validation found: either errors, or the request count, model and estimated token
    total."""

    errors: list[LineError] = []
    total: int = 0
    model: str | None = None
    name: str | None = None
    """The model (or deployment) name the requests used: what `Faults.token_limits` is keyed by."""
    tokens: int = 0
    """Estimated input tokens: `estimate_tokens` of each line, summed."""
    refused: list[int] = []


class _Context:
    """What validating one file needs and accumulates, line by line."""

    def __init__(self, endpoint: str, config: EmulatorConfig) -> None:
        self.endpoint, self.config = endpoint, config
        self.flavour = FLAVOURS[config.flavour]
        self.seen: set[str] = set()
        self.name: str | None = None  # the first line's model (or deployment) name
        self.model: str | None = None  # what it resolves to
        self.embedding_inputs = 0
        self.refused: list[int] = []  # requests (0-based) the endpoint will answer with a 400

    def resolve(self, name: str) -> str | None:
        """The snapshot `name` resolves to, or None if the batch endpoint does not serve it."""
        config = self.config
        if self.flavour.deployments:
            deployed = config.azure_deployments.get(name)
            if deployed is None:
                return None
            name = deployed
        return resolve(self.endpoint, name, config.extra_models, config.accept_any_model)


def _check_line(lineno: int, raw: bytes, ctx: _Context, index: int) -> list[LineError]:
    """The errors of one input line (none: its custom_id, model and inputs are counted in
    ``ctx``)."""
    try:
        req = orjson.loads(raw)
    except orjson.JSONDecodeError:
        req = None
    if not isinstance(req, dict):
        return [
            LineError(
                code="invalid_json_line",
                message="This line is not parseable as valid JSON.",
                line=lineno,
            )
        ]
    errors = _request_errors(req, ctx)
    if not errors:
        errors = [e for e in (_model_error(req["body"], ctx), _duplicate_error(req, ctx)) if e]
    if errors:
        return [LineError(code=c, message=m, param=p, line=lineno) for c, m, p in errors]
    ctx.seen.add(req["custom_id"])
    if refusal(ctx.endpoint, req["body"]) is not None:
        ctx.refused.append(index)
    if ctx.endpoint == "/v1/embeddings":
        inputs = req["body"].get("input")
        ctx.embedding_inputs += (
            len(inputs) if isinstance(inputs, list) and not _is_token_list(inputs) else 1
        )
    return []


_Error = tuple[str, str, str]
"""(code, message, param) of a line error."""


def _request_errors(req: dict[str, Any], ctx: _Context) -> list[_Error]:
    """The errors in the line's fields, method, url and body (each missing field its own)."""
    missing = [f for f in ("custom_id", "method", "url", "body") if req.get(f) is None]
    if missing:
        return [
            ("missing_required_parameter", f"Missing required parameter: '{f}'.", f)
            for f in missing
        ]
    if not isinstance(req["custom_id"], str):
        return [("invalid_request", "'custom_id' must be a string.", "custom_id")]
    if req["method"] != "POST":
        return [("invalid_request", "Only POST requests are supported.", "method")]
    if req["url"] != ctx.endpoint:
        return [
            (
                ctx.flavour.invalid_url_code,
                "The URL provided for this request does not match the batch endpoint"
                f" ({ctx.endpoint}).",
                "url",
            )
        ]
    body = req["body"]
    if not isinstance(body, dict):
        return [("invalid_request", "'body' must be a JSON object.", "body")]
    if body.get("stream") is True:
        return [
            ("streaming_unsupported", "Streaming is not supported in the Batch API.", "body.stream")
        ]
    return [
        ("invalid_request", f"Missing required parameter: 'body.{f}'.", f"body.{f}")
        for f in required_parameters(ctx.endpoint)
        if body.get(f) is None
    ]


def _model_error(body: dict[str, Any], ctx: _Context) -> _Error | None:
    """An error in the line's model; the first line's model becomes the batch's."""
    name = body.get("model") or DEFAULT_MODELS.get(ctx.endpoint, "")
    model = ctx.resolve(name) if isinstance(name, str) else None
    if model is None:
        message = ctx.flavour.unknown_model_message.format(model=name, endpoint=ctx.endpoint)
        return "model_not_found", message, "body.model"
    if ctx.name is None:
        ctx.name, ctx.model = name, model
    elif name != ctx.name:
        return (
            "model_mismatch",
            f"All requests in a batch must use the same model; expected '{ctx.name}', got"
            f" '{name}'.",
            "body.model",
        )
    return None


def _duplicate_error(req: dict[str, Any], ctx: _Context) -> _Error | None:
    custom_id = req["custom_id"]
    if custom_id not in ctx.seen:
        return None
    return (
        "duplicate_custom_id",
        f"The custom_id '{custom_id}' is used more than once in this file.",
        "custom_id",
    )


def _is_token_list(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(v, int) for v in value)


def estimate_tokens(nbytes: int) -> int:
    """Token estimate used throughout the emulator: about one token per four characters."""
    return max(1, nbytes // 4)


def validate_batch_input(path: Path, endpoint: str, config: EmulatorConfig) -> ValidationResult:
    """Validate a batch input file, reading one line at a time (memory does not grow with file
    size)."""
    errors: list[LineError] = []
    ctx = _Context(endpoint, config)
    limit = ctx.flavour.max_requests_per_file
    total = tokens = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue  # blank lines (e.g. a trailing newline) are ignored rather than rejected
            total += 1
            tokens += estimate_tokens(len(raw))
            if total > limit:
                errors = [
                    LineError(
                        code="too_many_tasks",
                        message=f"The batch input file contains more than {limit:,} requests.",
                    )
                ]
                break
            if len(errors) < MAX_REPORTED_ERRORS:
                errors += _check_line(lineno, raw, ctx, total - 1)
    if errors:
        return ValidationResult(errors=errors[:MAX_REPORTED_ERRORS])
    if total == 0:
        return ValidationResult(errors=[_empty_error(path, ctx)])
    if ctx.embedding_inputs > MAX_EMBEDDING_INPUTS:
        return ValidationResult(
            errors=[
                LineError(
                    code="too_many_tasks",
                    message=f"An embeddings batch may contain at most {MAX_EMBEDDING_INPUTS:,} "
                    "inputs in all;"
                    f" this one has {ctx.embedding_inputs:,}.",
                )
            ]
        )
    return ValidationResult(
        total=total, model=ctx.model, name=ctx.name, tokens=tokens, refused=ctx.refused
    )


def _empty_error(path: Path, ctx: _Context) -> LineError:
    """An input without requests: Azure tells an empty file from one of blank lines."""
    if ctx.flavour.deployments and path.stat().st_size:
        return LineError(code="empty_batch", message="The batch input file contains no requests.")
    return LineError(code="empty_file", message="The batch input file is empty.")


def token_limit_result(name: str, limit: int) -> ValidationResult:
    """A batch that would take its model's queue past `limit` enqueued tokens fails validation."""
    return ValidationResult(
        errors=[
            LineError(
                code="token_limit_exceeded",
                message=f"Enqueued token limit reached for {name} in organization "
                f"org-emulator. Limit: {limit:,} enqueued tokens. Please try again once some "
                "in_progress batches have been completed.",
            )
        ]
    )


def missing_file_result(file_id: str) -> ValidationResult:
    """A batch whose input file does not exist fails in validation, not at create."""
    return ValidationResult(
        errors=[
            LineError(
                code="invalid_request", message=f"Cannot find file {file_id}.", param="file_id"
            )
        ]
    )
