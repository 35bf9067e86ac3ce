"""Helpers shared by the Dagster-layer tests."""

from __future__ import annotations

import time
from typing import Any

import dagster as dg

from dagster_openai_batch.dagster.handoff import latest_metadata
from dagster_openai_batch.dagster.sensor import SensorCursor
from dagster_openai_batch.demo.run import evaluate_sensor_once


def run_sensor_until_idle(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    cursor: str | None = None,
    timeout: float = 60,
) -> tuple[str | None, list[str]]:
    """Tick the sensor (applying its effects like the daemon) until no batch is in flight."""
    launched: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        cursor, runs = evaluate_sensor_once(defs, instance, cursor)
        launched += runs
        if not cursor or not SensorCursor.model_validate_json(cursor).in_flight:
            return cursor, launched
        assert time.monotonic() < deadline, "batches never finished"
        time.sleep(0.2)


def results_metadata(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None
) -> dict[str, Any]:
    found = latest_metadata(instance, key, partition)
    assert found is not None, f"{key.to_user_string()} was never materialized"
    return found
