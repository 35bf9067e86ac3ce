"""Offline emulator of the OpenAI Files + Batches API (WSGI core, served in process or over HTTP),
as OpenAI or as Azure OpenAI serves it.

It imports nothing from the rest of `dagster_openai_batch` (it keeps its own copy of the service's
rules) and nothing of Dagster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai

from .app import EmulatorApp
from .config import EmulatorConfig, Faults, Pace
from .faults import FaultPlan, LostKind
from .server import base_path, serve
from .store import Store
from .transport import EmulatorTransport

EMULATOR_HOST = "http://openai-emulator.local"
EMULATOR_BASE_URL = EMULATOR_HOST + "/v1"

__all__ = [
    "EMULATOR_BASE_URL",
    "EMULATOR_HOST",
    "Emulator",
    "EmulatorConfig",
    "EmulatorTransport",
    "Faults",
    "LostKind",
    "Pace",
    "serve",
]


class Emulator:
    """One emulator over a data dir; several instances (or processes) may share the same dir."""

    def __init__(
        self,
        data_dir: str | Path,
        config: EmulatorConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.config = config or EmulatorConfig()
        self.clock = clock or time.time
        self.store = Store(self.data_dir)
        self.faults = FaultPlan(self.config.faults)
        self._app = EmulatorApp(self.store, self.config, self.clock, self.faults)

    def wsgi_app(self) -> EmulatorApp:
        """The WSGI callable."""
        return self._app

    def transport(self) -> EmulatorTransport:
        """An httpx2 transport (sync and async) that calls the app in process."""
        return EmulatorTransport(self._app)

    @property
    def base_url(self) -> str:
        """The in-process base URL: `/v1`, or `/openai/v1` for the Azure flavour."""
        return EMULATOR_HOST + base_path(self.config.flavour)

    def openai_client(self, api_key: str = "sk-emulator", **kw: Any) -> openai.OpenAI:
        """An `openai.OpenAI` client wired to this emulator in process."""
        return openai.OpenAI(
            api_key=api_key,
            base_url=self.base_url,
            http_client=httpx2.Client(transport=self.transport()),
            **kw,
        )

    def async_openai_client(self, api_key: str = "sk-emulator", **kw: Any) -> openai.AsyncOpenAI:
        """An `openai.AsyncOpenAI` client wired to this emulator in process."""
        return openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            http_client=httpx2.AsyncClient(transport=self.transport()),
            **kw,
        )

    def azure_client(
        self, api_key: str = "emulator-key", api_version: str = "2025-04-01-preview", **kw: Any
    ) -> openai.AzureOpenAI:
        """An `openai.AzureOpenAI` client (`api-version` routes) wired to this emulator in process;
        the emulator must have the Azure flavour."""
        return openai.AzureOpenAI(
            api_key=api_key,
            azure_endpoint=EMULATOR_HOST,
            api_version=api_version,
            http_client=httpx2.Client(transport=self.transport()),
            **kw,
        )

    def inject(self, status: int = 500, times: int = 1, operation: str | None = None) -> None:
        """Make the next `times` API calls matching `operation` (e.g. "batches.create"; None: any)
        answer `status`."""
        self.faults.inject(status, times, operation)

    def inject_lost_response(
        self, operation: str = "batches.create", kind: LostKind = "drop", times: int = 1
    ) -> None:
        """Carry out the next `times` successful calls of `operation` (a mutating one), then lose
        each response.

        `kind` "drop": the connection dies without a response (the SDK raises `APIConnectionError`);
        502/504: a gateway's HTML error page (`InternalServerError`). The SDK retries both by
        default: the call happens again.
        """
        self.faults.inject_lost_response(operation, kind, times)
