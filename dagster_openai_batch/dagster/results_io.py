"""`BatchResultsIOManager`: downstream assets get the results as a `BatchResults` handle.

The Parquet table ``results`` wrote is the one stored copy: the handle is rebuilt from the
results record (`ResultsRecord`) instead of being pickled beside it, so the asset page shows one
location and a downstream asset reads what the record says, in any process.
"""

from typing import Any

import dagster as dg

from ..core.storage import BatchResults
from .stage_records import ResultsRecord, latest_record


class BatchResultsIOManager(dg.IOManager):
    """Stores nothing (the table is already written); loads the handle from the record."""

    def handle_output(self, context: dg.OutputContext, obj: BatchResults) -> None:
        return None

    def load_input(self, context: dg.InputContext) -> BatchResults | dict[str, BatchResults]:
        if not context.has_asset_partitions:
            return _handle(context, None)
        keys = context.asset_partition_keys
        if len(keys) == 1:
            return _handle(context, keys[0])
        return {key: _handle(context, key) for key in keys}


def _handle(context: dg.InputContext, partition: str | None) -> BatchResults:
    record = latest_record(context.instance, context.asset_key, partition, ResultsRecord)
    if record is None:
        where = f" for partition {partition!r}" if partition is not None else ""
        raise dg.Failure(
            f"{context.asset_key.to_user_string()} has no materialization{where} yet: the "
            "openai_batch_sensor materializes it when the batches finish."
        )
    return BatchResults(uri=record.results_uri, rows=record.rows, counts=record.counts)


@dg.io_manager
def batch_results_io_manager(_: Any) -> BatchResultsIOManager:
    """The IO manager of every ``results`` asset (attached by `openai_batch_assets`)."""
    return BatchResultsIOManager()
