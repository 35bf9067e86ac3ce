"""Shared fixtures: a fake clock and an in-process emulator on a temporary data directory."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from dagster_openai_batch.emulator import Emulator, EmulatorConfig


class FakeClock:
    """A settable clock for the emulator: `clock.advance(seconds)`."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Override in a test module (or parametrize) to change pace/faults."""
    return EmulatorConfig()


@pytest.fixture
def emulator(tmp_path: Path, clock: FakeClock, emulator_config: EmulatorConfig) -> Emulator:
    return Emulator(tmp_path / "emulator", emulator_config, clock=clock)


@pytest.fixture
def client(emulator: Emulator) -> openai.OpenAI:
    return emulator.openai_client(max_retries=0)
