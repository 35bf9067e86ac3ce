"""Helpers shared by the Dagster-layer tests."""

from __future__ import annotations

import time
from typing import TypeVar

import dagster as dg
from dagster._core.definitions.metadata import TableMetadataSet

from dagster_openai_batch.dagster.sensor import SensorCursor
from dagster_openai_batch.dagster.stage_records import StageRecord, latest_metadata, latest_record
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


R = TypeVar("R", bound=StageRecord)


def recorded(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    record_type: type[R],
    partition: str | None = None,
) -> R:
    """The record of the newest materialization of ``key`` (which must exist)."""
    found = latest_record(instance, key, partition, record_type)
    assert found is not None, f"{key.to_user_string()} was never materialized"
    return found


def table_metadata(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None
) -> TableMetadataSet:
    """Dagster's standard table metadata (row count, column schema) of the newest
    materialization of ``key``."""
    found = latest_metadata(instance, key, partition)
    assert found is not None, f"{key.to_user_string()} was never materialized"
    return TableMetadataSet.extract(found)
