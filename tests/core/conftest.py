"""Fixtures for the core tests: an emulator on a fake clock that `BatchClient` advances when it
sleeps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx2
import openai
import pytest

from dagster_openai_batch.core import BatchClient
from dagster_openai_batch.emulator import EMULATOR_BASE_URL, Emulator, EmulatorConfig, Faults


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Counting:
    """An `openai.OpenAI` over the emulator in process, counting the HTTP requests it makes."""

    def __init__(self, emu: Emulator) -> None:
        self.requests: list[str] = []
        http = httpx2.Client(
            transport=emu.transport(),
            event_hooks={"request": [lambda r: self.requests.append(f"{r.method} {r.url.path}")]},
        )
        self.openai = openai.OpenAI(
            api_key="sk-secret-test-key-123", base_url=EMULATOR_BASE_URL, http_client=http
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_emu(tmp_path: Path, clock: FakeClock) -> Callable[..., Emulator]:
    def make(**faults: object) -> Emulator:
        return Emulator(tmp_path / "emu", EmulatorConfig(faults=Faults(**faults)), clock=clock)

    return make


@pytest.fixture
def emu(make_emu: Callable[..., Emulator]) -> Emulator:
    return make_emu()


@pytest.fixture
def counting(emu: Emulator) -> Counting:
    return Counting(emu)


@pytest.fixture
def bc(counting: Counting, clock: FakeClock) -> BatchClient:
    return BatchClient(counting.openai, sleep=clock.sleep, clock=clock, backoff=0.01)


@pytest.fixture
def make_client(
    make_emu: Callable[..., Emulator], clock: FakeClock
) -> Callable[..., tuple[BatchClient, Counting]]:
    """A fresh emulator with the given faults, and a `BatchClient` (plus its request log) over
    it."""

    def make(download_retries: int = 5, **faults: object) -> tuple[BatchClient, Counting]:
        counting = Counting(make_emu(**faults))
        return BatchClient(
            counting.openai,
            sleep=clock.sleep,
            clock=clock,
            backoff=0.01,
            download_retries=download_retries,
        ), counting

    return make
