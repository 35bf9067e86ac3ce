"""Fixtures for the Dagster layer: a real (temporary, persistent) instance and the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from dagster_openai_batch import OpenAIBatchResource


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


@pytest.fixture
def emulator_dir(tmp_path: Path) -> Path:
    return tmp_path / "emulator"


@pytest.fixture
def resource(emulator_dir: Path) -> OpenAIBatchResource:
    return OpenAIBatchResource(emulator_dir=str(emulator_dir), emulator_pace="fast")
