"""The WSGI application: routing, auth, faults, parsing and responses for all nine operations."""

from __future__ import annotations

import contextlib
import logging
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.formparser import parse_form_data
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .batches import Batches, check_expires_after
from .config import EmulatorConfig
from .errors import ApiError, invalid_value, not_found
from .faults import FaultPlan, LostKind
from .flavour import FLAVOURS
from .service_rules import MAX_UPLOAD_BYTES
from .store import Store
from .validation import UploadSink, upload_content_error

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_INPUT_TTL = 30 * 24 * 3600
_CHUNK = 256 * 1024
_log = logging.getLogger(__name__)
_RETRY_AFTER_MS = "10"

_OPERATIONS = (
    ("/files", "POST", "files.create"),
    ("/files", "GET", "files.list"),
    ("/files/<file_id>", "GET", "files.retrieve"),
    ("/files/<file_id>", "DELETE", "files.delete"),
    ("/files/<file_id>/content", "GET", "files.content"),
    ("/batches", "POST", "batches.create"),
    ("/batches", "GET", "batches.list"),
    ("/batches/<batch_id>", "GET", "batches.retrieve"),
    ("/batches/<batch_id>/cancel", "POST", "batches.cancel"),
)
# Azure serves the same operations under /openai/v1 (OpenAI-style clients) and under /openai with
# an `api-version` query parameter (`openai.AzureOpenAI`).
_AZURE_VERSIONED = "/openai"
_PREFIXES = {"openai": ("/v1",), "azure": ("/openai/v1", _AZURE_VERSIONED)}
_ROUTES = {
    flavour: Map(
        [
            Rule(prefix + path, methods=[method], endpoint=operation)
            for prefix in prefixes
            for path, method, operation in _OPERATIONS
        ],
        strict_slashes=False,
    )
    for flavour, prefixes in _PREFIXES.items()
}
_AZURE_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a"
    " valid key for an active subscription and use a correct regional API endpoint for your"
    " resource."
)

_FAULT_ERRORS = {
    429: (
        "Rate limit reached for requests. Please try again shortly.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status=status, mimetype="application/json")


def _limit(request: Request, default: int, maximum: int) -> int:
    raw = request.args.get("limit")
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise invalid_value(
            "limit", f"Invalid 'limit': expected an integer, got '{raw}'.", "invalid_type"
        ) from None
    # The API's usual wording and codes for integer bounds (seen for `n`, `max_tokens` and list
    # `limit`s).
    if value < 1:
        raise invalid_value(
            "limit",
            "Invalid 'limit': integer below minimum value. Expected a value >= 1, but got"
            f" {value} instead.",
            "integer_below_min_value",
        )
    if value > maximum:
        raise invalid_value(
            "limit",
            f"Invalid 'limit': integer above maximum value. Expected a value <= {maximum},"
            f" but got {value} instead.",
            "integer_above_max_value",
        )
    return value


def _drop_connection(environ: dict[str, Any]) -> None:
    """Make the peer see the connection die (HTTP server), then abort the response."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    raise ConnectionAbortedError("emulated connection drop")


# Lost responses answered by a gateway follow what clients of the real service get from its
# Cloudflare/nginx front, not the spec (which describes only 200s, and JSON errors elsewhere): an
# HTML page, no OpenAI error body, no x-request-id. The service behind it has already carried the
# call out.
_GATEWAY_TITLES = {502: "502 Bad Gateway", 504: "504 Gateway Time-out"}


class _LostResponse(Response):
    """What the client gets instead of the response of a call the service carried out."""


def _lost_response(kind: LostKind, environ: dict[str, Any]) -> Response:
    """A gateway error page, or (kind "drop") a response whose body drops the connection before
    anything is sent."""
    if kind == "drop":

        def body() -> Iterator[bytes]:
            _drop_connection(environ)
            # Unreachable: makes this a generator, so the drop happens when the body is sent.
            yield b""

        return _LostResponse(body(), direct_passthrough=True)
    title = _GATEWAY_TITLES[kind]
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
    )
    response = _LostResponse(page, status=kind, content_type="text/html")
    response.headers["cf-ray"] = f"{uuid.uuid4().hex[:16]}-SJC"
    return response


class EmulatorApp:
    """WSGI callable serving the OpenAI Files and Batches API from a `Store`."""

    def __init__(
        self, store: Store, config: EmulatorConfig, clock: Callable[[], float], faults: FaultPlan
    ) -> None:
        self.store, self.config, self.clock, self.faults = store, config, clock, faults
        self.batches = Batches(store, config, clock, faults)
        self.flavour = FLAVOURS[config.flavour]

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except ApiError as err:
            response = _json(err.body(), err.status)
            response.headers.update(err.headers)
        except (
            Exception
        ):  # a bug must still look like an OpenAI 500 to clients, and be visible in the log
            _log.exception("emulator error on %s %s", request.method, request.path)
            response = _json(
                ApiError(
                    500,
                    "The server had an error while processing your request.",
                    type="server_error",
                ).body(),
                500,
            )
        if not isinstance(response, _LostResponse):
            response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        adapter = _ROUTES[self.config.flavour].bind_to_environ(request.environ)
        try:
            operation, args = adapter.match()
        except (NotFound, MethodNotAllowed):
            raise ApiError(404, f"Invalid URL ({request.method} {request.path})") from None
        except HTTPException as exc:  # e.g. a redirect; not expected with strict_slashes=False
            raise ApiError(exc.code or 400, exc.description or "Bad request") from None
        if self.config.flavour == "azure":
            self._authenticate_azure(request)
        else:
            self._authenticate(request)
        status = self.faults.http_fault(operation)
        if status is not None:
            message, kind, code = _FAULT_ERRORS.get(status, _FAULT_ERRORS[500])
            # retry-after-ms is sent on every injected error (not only 429) so SDK retries stay fast
            # in tests.
            raise ApiError(
                status,
                message,
                type=kind,
                code=code,
                headers={"retry-after-ms": _RETRY_AFTER_MS, "retry-after": "1"},
            )
        handler = getattr(self, "_" + operation.replace(".", "_"))
        result: Response = handler(request, **args)
        lost = self.faults.lost_response(operation)
        return result if lost is None else _lost_response(lost, request.environ)

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization"
                " header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if self.config.api_key is not None and token != self.config.api_key:
            shown = token[:3] + "*" * 4 + token[-4:] if len(token) > 8 else "*" * len(token)
            raise ApiError(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at"
                " https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    def _authenticate_azure(self, request: Request) -> None:
        """Azure: an `api-key` header (or a Bearer token); versioned routes need `api-version`."""
        header = request.headers.get("Authorization", "")
        token = request.headers.get("api-key") or (
            header[7:].strip() if header.lower().startswith("bearer ") else ""
        )
        if not token or (self.config.api_key is not None and token != self.config.api_key):
            raise ApiError(401, _AZURE_DENIED, code="401")
        versioned = not request.path.startswith(_AZURE_VERSIONED + "/v1/")
        if versioned and not request.args.get("api-version"):
            raise ApiError(404, "Resource not found", code="404")

    # -- files ---------------------------------------------------------------------------------

    def _file_json(self, row: dict[str, Any]) -> dict[str, Any]:
        expires = row["expires_at"]
        return {
            "id": row["id"],
            "object": "file",
            "bytes": row["bytes"],
            "created_at": int(row["created_at"]),
            "expires_at": None if expires is None else int(expires),
            "filename": row["filename"],
            "purpose": row["purpose"],
            "status": "processed",
            "status_details": None,
        }

    def _files_create(self, request: Request) -> Response:
        sinks: list[UploadSink] = []

        def factory(**_: Any) -> UploadSink:
            sinks.append(UploadSink(self.store.temp_path()))
            return sinks[-1]

        try:
            _, form, files = parse_form_data(
                request.environ,
                stream_factory=factory,  # type: ignore[arg-type]
                max_form_memory_size=1 << 20,
                silent=False,
            )
            for sink in sinks:
                sink.finish()
            upload = files.get("file")
            if upload is None:
                raise ApiError(
                    400,
                    "Missing required parameter: 'file'.",
                    param="file",
                    code="missing_required_parameter",
                )
            stream: object = upload.stream  # one of the sinks (see the stream factory)
            sink = next(s for s in sinks if s is stream)
            return self._store_upload(form, upload.filename or "file", sink)
        finally:
            for s in sinks:
                s.close()
                s.path.unlink(missing_ok=True)

    def _store_upload(self, form: Any, filename: str, sink: UploadSink) -> Response:
        purpose = form.get("purpose")
        if purpose is None:
            raise ApiError(
                400,
                "Missing required parameter: 'purpose'.",
                param="purpose",
                code="missing_required_parameter",
            )
        if purpose not in FILE_PURPOSES:
            raise invalid_value(
                "purpose",
                f"Invalid value for 'purpose': '{purpose}'. Supported values are: "
                + ", ".join(f"'{p}'" for p in FILE_PURPOSES)
                + ".",
            )
        expires_after = None
        if "expires_after[anchor]" in form or "expires_after[seconds]" in form:
            expires_after = check_expires_after(
                {
                    "anchor": form.get("expires_after[anchor]"),
                    "seconds": form.get("expires_after[seconds]"),
                },
                "expires_after",
            )
        # The emulator applies the Batch API's 200 MB cap to every upload (the general limit is 512
        # MB).
        if sink.size > MAX_UPLOAD_BYTES:
            raise ApiError(
                400,
                f"File is too large: {sink.size} bytes. The Batch API accepts files of at most"
                f" {MAX_UPLOAD_BYTES} bytes (200 MB).",
                param="file",
            )
        if purpose == "batch":
            if not filename.endswith(".jsonl"):
                raise ApiError(400, "Invalid file format for Batch API. Must be .jsonl")
            if not sink.valid_utf8:
                raise ApiError(
                    400,
                    "Invalid file encoding for Batch API: the file must be UTF-8 encoded.",
                    param="file",
                )
            reason = self.flavour.checks_upload_content and upload_content_error(sink.path)
            if reason:
                raise ApiError(
                    400,
                    f"Invalid file format for Batch API ({reason}). Must be .jsonl with one JSON"
                    " request per line.",
                    param="file",
                )
        now = self.clock()
        ttl = (
            expires_after["seconds"]
            if expires_after
            else BATCH_INPUT_TTL
            if purpose == "batch"
            else None
        )
        row = self.store.add_file(
            sink.path,
            filename=filename,
            purpose=purpose,
            size=sink.size,
            created_at=now,
            expires_at=None if ttl is None else now + ttl,
        )
        return _json(self._file_json(row))

    def _files_list(self, request: Request) -> Response:
        order = request.args.get("order", "desc")
        if order not in ("asc", "desc"):
            raise invalid_value(
                "order",
                f"Invalid value for 'order': '{order}'. Supported values are: 'asc', 'desc'.",
            )
        rows, has_more = self.store.list_files(
            now=self.clock(),
            purpose=request.args.get("purpose"),
            after=request.args.get("after"),
            limit=_limit(request, 10_000, 10_000),
            ascending=order == "asc",
        )
        data = [self._file_json(r) for r in rows]
        return _json(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": has_more,
            }
        )

    def _get_file(self, file_id: str) -> dict[str, Any]:
        row = self.store.get_file(file_id, now=self.clock())
        if row is None:
            raise not_found("File", file_id)
        return row

    def _files_retrieve(self, request: Request, file_id: str) -> Response:
        return _json(self._file_json(self._get_file(file_id)))

    def _files_delete(self, request: Request, file_id: str) -> Response:
        # Whether OpenAI refuses to delete the input of a batch still running is not documented;
        # the emulator deletes it, and the batch runs on from its own copy (see Batches.create).
        if not self.store.delete_file(file_id, now=self.clock()):
            raise not_found("File", file_id)
        return _json({"id": file_id, "object": "file", "deleted": True})

    def _files_content(self, request: Request, file_id: str) -> Response:
        row = self._get_file(file_id)
        fault = self.faults.download_fault()
        fh = open(self.store.blob_path(file_id), "rb")  # noqa: SIM115 - closed by the body generator
        size = row["bytes"]
        environ = request.environ

        def body() -> Iterator[bytes]:
            with fh:
                if fault == "drop":
                    _drop_connection(environ)
                budget = size // 2 if fault == "truncate" else size
                while budget > 0 and (chunk := fh.read(min(_CHUNK, budget))):
                    budget -= len(chunk)
                    yield chunk
                if fault == "truncate":
                    _drop_connection(environ)

        response = Response(body(), mimetype="application/octet-stream", direct_passthrough=True)
        response.headers["Content-Length"] = str(size)
        return response

    # -- batches -----------------------------------------------------------------------------------

    def _batches_create(self, request: Request) -> Response:
        try:
            body = orjson.loads(request.get_data(cache=False))
        except orjson.JSONDecodeError:
            raise ApiError(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you"
                " aren't using your HTTP library correctly.)",
            ) from None
        return _json(self.batches.create(body))

    def _batches_list(self, request: Request) -> Response:
        return _json(self.batches.list(request.args.get("after"), _limit(request, 20, 100)))

    def _batches_retrieve(self, request: Request, batch_id: str) -> Response:
        return _json(self.batches.retrieve(batch_id))

    def _batches_cancel(self, request: Request, batch_id: str) -> Response:
        return _json(self.batches.cancel(batch_id))
