"""Upload checks, and the validation of a batch's whole input file before it runs (streamed)."""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import BaseModel

from .service_rules import (
    DEFAULT_MODELS,
    MAX_EMBEDDING_INPUTS,
    MAX_REQUESTS_PER_FILE,
    MAX_UPLOAD_BYTES,
)

# The real service lists several line errors; we stop after this many (the count it shows is not
# documented).
MAX_REPORTED_ERRORS = 10
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")


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
    tokens: int = 0


def _check_line(
    lineno: int, raw: bytes, endpoint: str, seen: set[str], state: dict[str, Any]
) -> LineError | None:
    """The first error of one input line, or None (then its custom_id and embedding inputs are
    counted in ``seen`` and ``state``)."""
    try:
        req = orjson.loads(raw)
    except orjson.JSONDecodeError:
        req = None
    if not isinstance(req, dict):
        return LineError(
            code="invalid_json_line",
            message="This line is not parseable as valid JSON.",
            line=lineno,
        )
    error = (
        _request_error(req, endpoint)
        or _model_error(req["body"], endpoint, state)
        or _duplicate_error(req["custom_id"], seen)
    )
    if error is not None:
        code, message, param = error
        return LineError(code=code, message=message, param=param, line=lineno)
    seen.add(req["custom_id"])
    if endpoint == "/v1/embeddings":
        inputs = req["body"].get("input")
        state["embedding_inputs"] += (
            len(inputs) if isinstance(inputs, list) and not _is_token_list(inputs) else 1
        )
    return None


_Error = tuple[str, str, str]
"""(code, message, param) of a line error."""


def _request_error(req: dict[str, Any], endpoint: str) -> _Error | None:
    """The first error in the line's fields, method, url and body shape."""
    for field in ("custom_id", "method", "url", "body"):
        if req.get(field) is None:
            return (
                "missing_required_parameter",
                f"Missing required parameter: '{field}'.",
                field,
            )
    if not isinstance(req["custom_id"], str):
        return "invalid_request", "'custom_id' must be a string.", "custom_id"
    if req["method"] != "POST":
        return "invalid_request", "Only POST requests are supported.", "method"
    if req["url"] != endpoint:
        return (
            "invalid_url",
            f"The URL provided for this request does not match the batch endpoint ({endpoint}).",
            "url",
        )
    if not isinstance(req["body"], dict):
        return "invalid_request", "'body' must be a JSON object.", "body"
    if req["body"].get("stream") is True:
        return (
            "streaming_unsupported",
            "Streaming is not supported in the Batch API.",
            "body.stream",
        )
    return None


def _model_error(body: dict[str, Any], endpoint: str, state: dict[str, Any]) -> _Error | None:
    """An error in the line's model; the first line's model becomes the batch's."""
    model = body.get("model") or DEFAULT_MODELS.get(endpoint)
    if model is None:
        return (
            "missing_required_parameter",
            "Missing required parameter: 'body.model'.",
            "body.model",
        )
    # The emulator knows no model catalogue: any plausible model name exists.
    if not isinstance(model, str) or not _MODEL_NAME.match(model):
        return "model_not_found", f"The model '{model}' does not exist.", "body.model"
    if state["model"] is None:
        state["model"] = model
    elif model != state["model"]:
        return (
            "model_mismatch",
            "All requests in a batch must use the same model; expected"
            f" '{state['model']}', got '{model}'.",
            "body.model",
        )
    return None


def _duplicate_error(custom_id: str, seen: set[str]) -> _Error | None:
    if custom_id not in seen:
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


def validate_batch_input(
    path: Path, endpoint: str, token_limits: dict[str, int]
) -> ValidationResult:
    """Validate a batch input file, reading one line at a time (memory does not grow with file
    size)."""
    errors: list[LineError] = []
    seen: set[str] = set()
    state: dict[str, Any] = {"model": None, "embedding_inputs": 0}
    total = tokens = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue  # blank lines (e.g. a trailing newline) are ignored rather than rejected
            total += 1
            tokens += estimate_tokens(len(raw))
            if total > MAX_REQUESTS_PER_FILE:
                errors = [
                    LineError(
                        code="too_many_tasks",
                        message="The batch input file contains more than "
                        f"{MAX_REQUESTS_PER_FILE:,} requests.",
                    )
                ]
                break
            if len(errors) < MAX_REPORTED_ERRORS and (
                err := _check_line(lineno, raw, endpoint, seen, state)
            ):
                errors.append(err)
    if errors:
        return ValidationResult(errors=errors)
    if total == 0:
        return ValidationResult(
            errors=[LineError(code="empty_file", message="The batch input file is empty.")]
        )
    if state["embedding_inputs"] > MAX_EMBEDDING_INPUTS:
        return ValidationResult(
            errors=[
                LineError(
                    code="too_many_tasks",
                    message=f"An embeddings batch may contain at most {MAX_EMBEDDING_INPUTS:,} "
                    "inputs in all;"
                    f" this one has {state['embedding_inputs']:,}.",
                )
            ]
        )
    model = state["model"]
    limit = token_limits.get(model)
    if limit is not None and tokens > limit:
        return ValidationResult(
            errors=[
                LineError(
                    code="token_limit_exceeded",
                    message=f"Enqueued token limit reached for {model} in organization "
                    f"org-emulator. Limit: {limit:,}"
                    " enqueued tokens. Please try again once some in_progress batches have been "
                    "completed.",
                )
            ]
        )
    return ValidationResult(total=total, model=model, tokens=tokens)
