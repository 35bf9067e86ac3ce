"""Fixtures for the Dagster layer: a real (temporary, persistent) instance and the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_openai_batch import OpenAIBatchResource
from dagster_openai_batch.demo.run import evaluate_sensor_once
from dagster_openai_batch.dagster.sensor import SensorCursor


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield instance


@pytest.fixture
def emulator_dir(tmp_path: Path) -> Path:
    return tmp_path / "emulator"


@pytest.fixture
def resource(emulator_dir: Path) -> OpenAIBatchResource:
    return OpenAIBatchResource(emulator_dir=str(emulator_dir), emulator_pace="fast")


def run_sensor_until_idle(
    defs: dg.Definitions, instance: dg.DagsterInstance, *, cursor: str | None = None, timeout: float = 60
) -> tuple[str | None, list[str]]:
    """Tick the sensor (applying its effects like the daemon) until no batch is in flight."""
    import time

    launched: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        cursor, runs = evaluate_sensor_once(defs, instance, cursor)
        launched += runs
        if not cursor or not SensorCursor.model_validate_json(cursor).in_flight:
            return cursor, launched
        assert time.monotonic() < deadline, "batches never finished"
        time.sleep(0.2)


def results_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None) -> dict[str, Any]:
    from dagster_openai_batch.dagster.handoff import latest_metadata

    found = latest_metadata(instance, key, partition)
    assert found is not None, f"{key.to_user_string()} was never materialized"
    return found
