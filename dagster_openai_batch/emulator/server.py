"""Serving the WSGI app over real HTTP (a threaded werkzeug server)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from . import Emulator


class _QuietHandler(WSGIRequestHandler):
    """No per-request access log lines."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def make_http_server(emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """A threaded HTTP server for the emulator (not yet serving); port 0 picks a free port."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return make_server(
        host, port, emulator.wsgi_app(), threaded=True, request_handler=_QuietHandler
    )


def base_path(flavour: str) -> str:
    """Where the API lives: `/v1`, or `/openai/v1` for the Azure flavour."""
    return "/openai/v1" if flavour == "azure" else "/v1"


def base_url(server: BaseWSGIServer, flavour: str = "openai") -> str:
    """The base URL OpenAI-style clients should use (Azure's `azure_endpoint` is its origin)."""
    return f"http://{server.host}:{server.server_port}{base_path(flavour)}"


@contextmanager
def serve(emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the emulator's HTTP server in a background thread; yields its base URL (ending in
    /v1, or /openai/v1 for the Azure flavour)."""
    server = make_http_server(emulator, host, port)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield base_url(server, emulator.config.flavour)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
