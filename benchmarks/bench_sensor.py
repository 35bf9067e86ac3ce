"""How much one `openai_batch_sensor` tick costs with 1,000 batches in flight.

The emulator serves over real HTTP in this process (a WSGI wrapper counts the API calls it
receives); the sensor runs on a real temporary Dagster instance holding 1,000 ``batch_job``
materializations (one per partition, one batch each). Prints API calls and seconds per tick:

- tick 1: reads the 1,000 new batch sets from the event log, looks at every batch, observes
  progress;
- tick 2: steady state, nothing changed (no observation);
- tick 3: every batch has finished (the emulator writes the result files while answering):
  1,000 observations and ``batches_accepted`` check evaluations, 1,000 results runs requested.

Beside them, the bare-SDK baseline: one ``batches.retrieve`` per batch, the least a watcher that
looks at every batch must do.

``--postgres`` keeps the instance in a throw-away PostgreSQL server (Debian's ``postgresql``
package, as in ``tests/production``) instead of SQLite, as a deployment does.

Usage: python benchmarks/bench_sensor.py [--batches 1000] [--postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import openai

from dagster_openai_batch import (
    OpenAIBatchResource,
    RequestTemplate,
    openai_batch_assets,
    openai_batch_sensor,
)
from dagster_openai_batch.dagster.sensor import SensorCursor
from dagster_openai_batch.dagster.stage_records import BatchJobRecord
from dagster_openai_batch.emulator import Emulator, EmulatorConfig, Pace
from dagster_openai_batch.emulator.server import serve


class CountingEmulator(Emulator):
    """The emulator, counting the HTTP requests it answers (the sensor's API calls)."""

    calls = 0

    def wsgi_app(self):  # type: ignore[override]
        app = super().wsgi_app()

        def counted(environ, start_response):  # type: ignore[no-untyped-def]
            CountingEmulator.calls += 1
            return app(environ, start_response)

        return counted


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def bench_instance(tmp: str, postgres: bool) -> Iterator[dg.DagsterInstance]:
    """A temporary instance on SQLite, or on a throw-away PostgreSQL server."""
    if not postgres:
        with dg.instance_for_test(temp_dir=tmp) as instance:
            yield instance
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "production"))
    from production_services import postgres_server

    with (
        postgres_server() as url,
        dg.instance_for_test(
            temp_dir=tmp, overrides={"storage": {"postgres": {"postgres_url": url}}}
        ) as instance,
    ):
        yield instance


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--postgres", action="store_true", help="instance on PostgreSQL")
    args = parser.parse_args()

    partitions = dg.StaticPartitionsDefinition([f"p{i:04d}" for i in range(args.batches)])
    pipeline = openai_batch_assets(
        name="bench",
        partitions_def=partitions,
        source=lambda: [],
        template=RequestTemplate(
            endpoint="/v1/embeddings", model="text-embedding-3-small", prompt="{t}"
        ),
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        bench_instance(tmp, args.postgres) as instance,
    ):
        print(f"instance storage: {'PostgreSQL' if args.postgres else 'SQLite'}")
        clock = Clock()
        pace = Pace(
            validating_seconds=60,
            seconds_per_request=0.01,
            finalizing_seconds=1,
            cancelling_seconds=1,
        )
        emulator = CountingEmulator(Path(tmp) / "emulator", EmulatorConfig(pace=pace), clock=clock)
        with serve(emulator) as url:
            client = emulator.openai_client()
            lines = b"".join(
                b'{"custom_id":"r%d","method":"POST","url":"/v1/embeddings",'
                b'"body":{"model":"text-embedding-3-small","input":"hello %d"}}\n' % (i, i)
                for i in range(3)
            )
            file = client.files.create(file=("in.jsonl", lines), purpose="batch")
            started = time.perf_counter()
            for partition in partitions.get_partition_keys():
                batch = client.batches.create(
                    input_file_id=file.id, endpoint="/v1/embeddings", completion_window="24h"
                )
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(
                        asset_key=pipeline.batch_job.key,
                        partition=partition,
                        metadata={**BatchJobRecord(batch_ids=dg.MetadataValue.json([batch.id]))},
                    )
                )
            elapsed = time.perf_counter() - started
            print(f"setup: {args.batches} batches created and recorded in {elapsed:.1f}s")
            ids = [b.id for b in client.batches.list(limit=100)]
            http = openai.OpenAI(api_key="sk-bench", base_url=url)
            started = time.perf_counter()
            for batch_id in ids:
                http.batches.retrieve(batch_id)
            print(
                f"bare SDK baseline: {len(ids)} batches.retrieve calls, "
                f"{time.perf_counter() - started:.2f}s"
            )

            resource = OpenAIBatchResource(api_key="sk-bench", base_url=url)
            sensor = openai_batch_sensor([pipeline])
            cursor = None
            for label, advance in (
                ("new batch sets", 0),
                ("steady state", 1),
                ("all finished", 120),
            ):
                clock.now += advance
                CountingEmulator.calls = 0
                started = time.perf_counter()
                with dg.build_sensor_context(
                    instance=instance, cursor=cursor, resources={"openai_batch": resource}
                ) as context:
                    result = sensor(context)
                seconds = time.perf_counter() - started
                cursor = result.cursor
                in_flight = len(SensorCursor.model_validate_json(cursor).in_flight)
                print(
                    f"tick ({label}): {CountingEmulator.calls} API calls, {seconds:.2f}s, "
                    f"{len(result.asset_events)} asset events, "
                    f"{len(result.run_requests)} runs requested, {in_flight} still in flight"
                )


if __name__ == "__main__":
    main()
