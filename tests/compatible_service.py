"""A test double of an OpenAI-compatible batch service: a gateway in front of the emulator.

It answers over real HTTP with the variations compatible services (LiteLLM, Groq, Azure) show
(``docs: README "Azure OpenAI and compatible services"``): base64 ids, no ``usage`` on a batch,
``request_counts`` null, ``""`` for an absent file id, no optional timestamps, a completion window
longer than 24 h, result lines without ``id``, an error file always present (empty when nothing
failed) and, optionally, ``batch_cancelled`` error lines for the never-run requests of a cancelled
batch. The emulator behind it stays the one source of truth.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from dagster_openai_batch.emulator import Emulator

_EMPTY = "file-gateway-errors-"
"""Prefix of the error files the gateway makes up for batches that have none."""
_OPTIONAL_TIMES = (
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


def encode(native_id: str) -> str:
    """A LiteLLM-style id: the service's own id, base64 (URL-safe, unpadded)."""
    return base64.urlsafe_b64encode(native_id.encode()).decode().rstrip("=")


def decode(value: str) -> str:
    """The emulator's id behind a gateway id (anything else is returned unchanged)."""
    try:
        native = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return value
    return native if native.startswith(("batch_", "file-")) else value


class CompatibleGateway:
    """The WSGI gateway: rewrites ids and shapes both ways; records the windows it was sent."""

    def __init__(self, emulator: Emulator, *, cancelled_lines: bool = False) -> None:
        self.inner = emulator.wsgi_app()
        self.cancelled_lines = cancelled_lines
        self.windows: list[str] = []
        """The ``completion_window`` of every create received."""
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        segments = [decode(s) for s in request.path.split("/")]
        made_up = next((s for s in segments if s.startswith(_EMPTY)), None)
        if made_up is not None:
            return self._made_up_error_file(made_up, segments[-1] == "content")(
                environ, start_response
            )
        environ = dict(environ)
        environ["PATH_INFO"] = "/".join(segments)
        query = [(k, decode(v)) for k, v in parse_qsl(environ.get("QUERY_STRING", ""))]
        environ["QUERY_STRING"] = urlencode(query)
        if request.method == "POST" and request.path.rstrip("/").endswith("/batches"):
            body = orjson.loads(request.get_data())
            with self._lock:
                self.windows.append(body["completion_window"])
            body["input_file_id"] = decode(body["input_file_id"])
            body["completion_window"] = "24h"  # what the emulator offers
            data = orjson.dumps(body)
            environ["wsgi.input"] = io.BytesIO(data)
            environ["CONTENT_LENGTH"] = str(len(data))
        response = Response.from_app(self.inner, environ)
        if segments[-1] == "content" and response.status_code == 200:
            response.set_data(_without_line_ids(response.get_data()))
        elif "json" in (response.content_type or "") and response.status_code == 200:
            payload = orjson.loads(response.get_data())
            response.set_data(orjson.dumps(self._reshape(payload)))
        return response(environ, start_response)

    def _reshape(self, payload: Any) -> Any:
        if not isinstance(payload, dict):
            return payload
        kind = payload.get("object")
        if kind == "list":
            payload["data"] = [self._reshape(item) for item in payload.get("data") or []]
            for name in ("first_id", "last_id"):
                if payload.get(name):
                    payload[name] = encode(payload[name])
        elif kind == "file":
            if payload.get("purpose") == "batch_output":  # its size without the lines' ids
                content = self._get(f"/v1/files/{payload['id']}/content")
                payload["bytes"] = len(_without_line_ids(content))
            payload["id"] = encode(payload["id"])
        elif kind == "batch":
            self._reshape_batch(payload)
        return payload

    def _reshape_batch(self, batch: dict[str, Any]) -> None:
        native = batch["id"]
        batch["id"] = encode(native)
        batch["input_file_id"] = encode(batch["input_file_id"])
        batch["output_file_id"] = encode(batch["output_file_id"]) if batch["output_file_id"] else ""
        if batch["error_file_id"]:
            batch["error_file_id"] = encode(batch["error_file_id"])
        elif batch["status"] in ("completed", "expired", "cancelled"):
            batch["error_file_id"] = encode(_EMPTY + native)  # always an error file
        else:
            batch["error_file_id"] = ""
        batch["request_counts"] = None
        batch.pop("usage", None)
        for name in _OPTIONAL_TIMES:
            batch.pop(name, None)
        batch["completion_window"] = self.windows[-1] if self.windows else "24h"

    def _made_up_error_file(self, file_id: str, content: bool) -> Response:
        """The error file of a batch that has none: empty, or the never-run requests of a
        cancelled batch as ``batch_cancelled`` lines."""
        batch_id = file_id.removeprefix(_EMPTY)
        lines = b"".join(self._cancelled_lines(batch_id)) if self.cancelled_lines else b""
        if content:
            return Response(lines, content_type="application/octet-stream")
        return Response(
            orjson.dumps(
                {
                    "id": encode(file_id),
                    "object": "file",
                    "bytes": len(lines),
                    "created_at": 0,
                    "filename": "errors.jsonl",
                    "purpose": "batch_output",
                    "status": "processed",
                }
            ),
            content_type="application/json",
        )

    def _cancelled_lines(self, batch_id: str) -> Iterator[bytes]:
        batch = self._get_json(f"/v1/batches/{batch_id}")
        if batch["status"] != "cancelled":
            return
        done = set()
        if batch["output_file_id"]:
            done = {line["custom_id"] for line in self._get_lines(batch["output_file_id"])}
        for line in self._get_lines(batch["input_file_id"]):
            if line["custom_id"] not in done:
                error = {"code": "batch_cancelled", "message": "Batch was cancelled."}
                yield (
                    orjson.dumps({"custom_id": line["custom_id"], "response": None, "error": error})
                    + b"\n"
                )

    def _get(self, path: str) -> bytes:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "gateway",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "HTTP_AUTHORIZATION": "Bearer sk-gateway",
        }
        return bytes(Response.from_app(self.inner, environ).get_data())

    def _get_json(self, path: str) -> Any:
        return orjson.loads(self._get(path))

    def _get_lines(self, file_id: str) -> list[dict[str, Any]]:
        raw = self._get(f"/v1/files/{file_id}/content")
        return [orjson.loads(line) for line in raw.splitlines() if line.strip()]


def _without_line_ids(data: bytes) -> bytes:
    """Result lines without their ``id`` (input files, which have none, pass unchanged)."""
    out = []
    for raw in data.splitlines(keepends=True):
        if raw.strip():
            line = orjson.loads(raw)
            line.pop("id", None)
            raw = orjson.dumps(line) + b"\n"
        out.append(raw)
    return b"".join(out)


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextmanager
def serve_gateway(gateway: CompatibleGateway) -> Iterator[str]:
    """Serve ``gateway`` over HTTP on a free local port; yields its base URL (ending in /v1)."""
    server = make_server("127.0.0.1", 0, gateway, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
