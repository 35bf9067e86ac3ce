"""An in-process httpx2 transport: calls the WSGI app directly, streaming both bodies."""

from __future__ import annotations

import io
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import anyio.to_thread
import httpx2
from anyio import from_thread


class _BodyReader(io.RawIOBase):
    """`wsgi.input` fed lazily from a chunk source (None marks the end)."""

    def __init__(self, next_chunk: Callable[[], bytes | None]) -> None:
        self._next_chunk = next_chunk
        self._buffer = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer and not self._eof:
            chunk = self._next_chunk()
            if chunk is None:
                self._eof = True
            else:
                self._buffer = bytes(chunk)
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def _sync_source(chunks: Iterable[bytes]) -> Callable[[], bytes | None]:
    it = iter(chunks)
    return lambda: next(it, None)


def _async_source(chunks: AsyncIterator[bytes]) -> Callable[[], bytes | None]:
    """Pull the next chunk of an async body from the worker thread running the app, via the event
    loop."""

    async def pull() -> bytes | None:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return None

    return lambda: from_thread.run(pull)


def _environ(request: httpx2.Request, wsgi_input: io.RawIOBase) -> dict[str, Any]:
    port = request.url.port or {"http": 80, "https": 443}[request.url.scheme]
    environ: dict[str, Any] = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.url.scheme,
        "wsgi.input": io.BufferedReader(wsgi_input, 256 * 1024),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        # Bodies without Content-Length (chunked uploads) are read to the end of the stream.
        "wsgi.input_terminated": "Content-Length" not in request.headers,
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": request.url.path,
        "QUERY_STRING": request.url.query.decode("ascii"),
        "SERVER_NAME": request.url.host,
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    for key, value in request.headers.raw:
        name = key.decode("latin-1").upper().replace("-", "_")
        if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = "HTTP_" + name
        environ[name] = value.decode("latin-1")
    return environ


class _Call:
    """One WSGI invocation: status, headers and the body iterator, turning aborted bodies into
    httpx2 errors."""

    def __init__(self, app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> None:
        self.status = 500
        self.headers: list[tuple[str, str]] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[..., Any]:
            self.status, self.headers = int(status.split()[0]), headers
            return lambda _: None

        self._result = app(environ, start_response)
        self._iter = iter(self._result)
        self._expected = next(
            (int(v) for k, v in self.headers if k.lower() == "content-length"), None
        )
        self._sent = 0
        try:
            self.first = next(self._iter, b"")
        except ConnectionError:
            self.close()
            raise httpx2.RemoteProtocolError(
                "Server disconnected without sending a response."
            ) from None
        self._sent = len(self.first)

    def next_chunk(self) -> bytes | None:
        """The next body chunk, None at the end; a body cut short raises like a real dropped
        connection."""
        try:
            chunk = next(self._iter, None)
        except ConnectionError:
            chunk = None
            self._expected = max(self._expected or 0, self._sent + 1)
        if chunk is None:
            if self._expected is not None and self._sent < self._expected:
                raise httpx2.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                    f" (received {self._sent} bytes, expected {self._expected})"
                )
            return None
        self._sent += len(chunk)
        return chunk

    def close(self) -> None:
        """Release the WSGI iterable (closes open files)."""
        close = getattr(self._result, "close", None)
        if close is not None:
            close()


class _SyncStream(httpx2.SyncByteStream):
    def __init__(self, call: _Call) -> None:
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        if self._call.first:
            yield self._call.first
        while (chunk := self._call.next_chunk()) is not None:
            yield chunk

    def close(self) -> None:
        self._call.close()


class _AsyncStream(httpx2.AsyncByteStream):
    def __init__(self, call: _Call) -> None:
        self._call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._call.first:
            yield self._call.first
        while (chunk := await anyio.to_thread.run_sync(self._call.next_chunk)) is not None:
            yield chunk

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._call.close)


class EmulatorTransport(httpx2.BaseTransport, httpx2.AsyncBaseTransport):
    """Serve httpx2 requests (sync or async) by calling a WSGI app in process, without sockets."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        reader = _BodyReader(_sync_source(request.stream))  # type: ignore[arg-type]
        call = _Call(self.app, _environ(request, reader))
        return httpx2.Response(call.status, headers=call.headers, stream=_SyncStream(call))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        reader = _BodyReader(_async_source(request.stream.__aiter__()))  # type: ignore[union-attr]
        call = await anyio.to_thread.run_sync(_Call, self.app, _environ(request, reader))
        return httpx2.Response(call.status, headers=call.headers, stream=_AsyncStream(call))
