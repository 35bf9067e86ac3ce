"""What one stage hands the next: small facts kept in materialization metadata.

Stages run in different processes (and, with Kubernetes, on different machines), so the batch
file ids and batch ids travel through Dagster's event log, not through local files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, MetadataValue


def metadata_values(metadata: Mapping[str, MetadataValue]) -> dict[str, Any]:
    """Plain Python values of a metadata mapping."""
    return {key: value.value for key, value in metadata.items()}


def latest_metadata(
    instance: DagsterInstance,
    asset_key: AssetKey,
    partition_key: str | None,
    *,
    matching: Mapping[str, Any] | None = None,
    search_depth: int = 50,
) -> dict[str, Any] | None:
    """Metadata of the newest materialization of ``asset_key`` (for ``partition_key``).

    With ``matching``, the newest one whose metadata has those values (e.g. given batch ids).
    """
    records = instance.fetch_materializations(
        AssetRecordsFilter(
            asset_key=asset_key,
            asset_partitions=[partition_key] if partition_key is not None else None,
        ),
        limit=search_depth if matching else 1,
    ).records
    for record in records:
        materialization = record.asset_materialization
        if materialization is None:
            continue
        values = metadata_values(materialization.metadata)
        if not matching or all(values.get(k) == v for k, v in matching.items()):
            return values
    return None
