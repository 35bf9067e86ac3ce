"""Everything the second time, and on a bad day: re-submissions, cursor resets, concurrent ticks,
two submissions at once from two processes, a submission killed with SIGKILL, and the newest
submission winning whatever the order runs finish in."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from pipeline_helpers import recorded, run_sensor_until_idle
from submitter import PIPELINE, definitions, submit

from dagster_openai_batch import OpenAIBatchResource
from dagster_openai_batch.dagster.sensor import SensorCursor
from dagster_openai_batch.dagster.stage_records import BatchJobRecord, ResultsRecord
from dagster_openai_batch.demo.run import SENSOR_NAME, evaluate_sensor_once
from dagster_openai_batch.emulator import Emulator

HERE = Path(__file__).parent
KEY = "dagster_openai_batch_key"


def emulator_batches(emulator_dir: Path) -> list:
    client = Emulator(emulator_dir).openai_client()
    found, page = [], client.batches.list(limit=100)
    while True:
        found += page.data
        if not page.has_next_page():
            return found
        page = page.get_next_page()


def paid_per_key(emulator_dir: Path, partition: str) -> dict[str, list[str]]:
    """Batches that cost money (not cancelled before running, not failed validation), by
    idempotency key."""
    paid: dict[str, list[str]] = {}
    for b in emulator_batches(emulator_dir):
        meta = b.metadata or {}
        if meta.get("dagster_partition") != partition:
            continue
        ran = (
            b.request_counts is not None
            and (b.request_counts.completed + b.request_counts.failed) > 0
        )
        if b.status == "failed" or (b.status in ("cancelling", "cancelled") and not ran):
            continue
        paid.setdefault(meta[KEY], []).append(b.id)
    return paid


def result_ids(instance: dg.DagsterInstance, partition: str) -> list[str]:
    uri = recorded(instance, PIPELINE.results.key, ResultsRecord, partition).results_uri
    return pq.read_table(uri, columns=["custom_id"]).column("custom_id").to_pylist()


def submitted_ids(instance: dg.DagsterInstance, partition: str) -> list[str]:
    """The batch ids of the partition's latest ``batch_job``."""
    return recorded(instance, PIPELINE.batch_job.key, BatchJobRecord, partition).batch_id_list


def collected_ids(instance: dg.DagsterInstance, partition: str) -> list[str]:
    """The batch ids the partition's latest ``results`` collected."""
    return recorded(instance, PIPELINE.results.key, ResultsRecord, partition).batch_id_list


def test_resubmitting_a_partition_again_and_again_keeps_the_sensor_green(instance, resource):
    defs = definitions(resource)
    cursor = None
    seen_sets = []
    for round_ in range(3):
        # round 0: first submission; 1: a deliberate paid re-run;
        # 2: a plain re-run (adopts round 1's batches)
        config = {"new_batches": True} if round_ == 1 else {}
        assert submit(instance, resource, "a", **config).success
        seen_sets.append(submitted_ids(instance, "a"))
        cursor, runs = run_sensor_until_idle(defs, instance, cursor=cursor)
        assert len(runs) == (0 if round_ == 2 else 1)
        assert all(instance.get_run_by_id(r).status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert sorted(result_ids(instance, "a")) == sorted(f"a{i}" for i in range(30))
    assert seen_sets[2] == seen_sets[1] != seen_sets[0]
    assert collected_ids(instance, "a") == seen_sets[1]
    # the sensor validated each finished set in its results run: one evaluation per run, no conflict
    check = PIPELINE.accepted_check_key
    history = instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
    assert len(history) == 2
    assert all(r.run_id for r in history)

    # a cursor reset, and two ticks at once: nothing new, nothing fails
    _, runs = evaluate_sensor_once(defs, instance, None)
    assert runs == []
    outcomes: list[object] = []
    sensor = defs.resolve_sensor_def(SENSOR_NAME)

    def tick() -> None:
        with dg.build_sensor_context(
            instance=instance, cursor=None, definitions=defs, resources=defs.resources
        ) as context:
            outcomes.append(sensor(context))

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(o, dg.SensorResult) and not o.run_requests for o in outcomes)


def test_a_malformed_record_and_an_unknown_batch_never_block_the_others(instance, resource):
    key = BatchJobRecord.key("batch_ids")
    for metadata in (
        {key: "batch_1,batch_2"},
        {key: dg.MetadataValue.json([1, None])},
        {**BatchJobRecord(batch_ids=dg.MetadataValue.json(["batch_unknown"]))},
        {"batch_ids": "batch_3,batch_4"},  # the same, as written before the records
    ):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=PIPELINE.batch_job.key, partition="b", metadata=metadata
            )
        )
    assert submit(instance, resource, "a").success
    _, runs = run_sensor_until_idle(definitions(resource), instance)
    assert len(runs) == 1
    assert sorted(result_ids(instance, "a")) == sorted(f"a{i}" for i in range(30))


def test_an_unreadable_cursor_starts_again_safely(instance, resource):
    defs = definitions(resource)
    assert submit(instance, resource, "a").success
    _, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    _, again = evaluate_sensor_once(defs, instance, '{"in_flight": "garbage"}')
    assert again == []


def test_an_older_set_is_never_collected_over_the_newest(instance, emulator_dir):
    slow = OpenAIBatchResource(emulator_dir=str(emulator_dir), emulator_pace="realistic")
    defs = definitions(slow)
    assert submit(instance, slow, "a").success  # set A: several seconds
    older = submitted_ids(instance, "a")
    fast = slow.model_copy(update={"emulator_pace": "fast"})
    assert submit(instance, fast, "a", new_batches=True).success  # set B: newer, finishes first
    newer = submitted_ids(instance, "a")
    _, runs = run_sensor_until_idle(defs, instance, timeout=60)
    assert len(runs) == 1
    assert collected_ids(instance, "a") == newer

    # Collecting A explicitly is refused (it would overwrite B's answers), unless asked for.
    def collect(**config: object) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [PIPELINE.results],
            instance=instance,
            resources={"openai_batch": fast},
            partition_key="a",
            raise_on_error=False,
            run_config={
                "ops": {PIPELINE.results_op_name: {"config": {"batch_ids": older, **config}}}
            },
        )

    deadline = time.monotonic() + 60
    while not all(
        b.status in ("cancelled", "completed")
        for b in emulator_batches(emulator_dir)
        if b.id in older
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    refused = collect()
    assert not refused.success
    message = refused.get_step_failure_events()[0].event_specific_data.error.message
    assert "newer batch_job submission" in message
    assert "allow_superseded" in message
    assert collected_ids(instance, "a") == newer
    assert collect(allow_superseded=True).success


def _launch(home: Path, emulator_dir: Path, partition: str) -> tuple[subprocess.Popen, Path]:
    """Start a submission in another process, its stderr in a file of ``home`` (a pipe nobody
    reads while the test waits on the other process fills up and blocks it mid-step, holding
    the pool's slot)."""
    log = home / f"submitter-{next(_launches)}.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "submitter.py"), str(emulator_dir), partition],
            cwd=HERE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "DAGSTER_HOME": str(home)},
        )
    return proc, log


_launches = itertools.count()


@pytest.mark.parametrize("pool_limit", [None, 1], ids=["no-pool-limit", "pool-limit-1"])
def test_two_processes_submitting_the_same_partition_at_once_pay_once(
    instance, resource, emulator_dir, pool_limit
):
    if pool_limit is not None:
        instance.event_log_storage.set_concurrency_slots("openai_batch_submit", pool_limit)
    home = Path(instance.root_directory)
    assert submit(instance, resource, "b").success  # warm the emulator and the instance
    procs = [_launch(home, emulator_dir, "a") for _ in range(2)]
    for proc, log in procs:
        proc.wait(timeout=240)
        assert proc.returncode == 0, log.read_text()[-2000:]
    paid = paid_per_key(emulator_dir, "a")
    assert len(paid) == 3, paid
    assert all(len(ids) == 1 for ids in paid.values()), paid
    created = [
        b
        for b in emulator_batches(emulator_dir)
        if (b.metadata or {}).get("dagster_partition") == "a"
    ]
    print(f"pool limit {pool_limit}: {len(created)} batches created for 3 parts")
    if pool_limit == 1:
        assert len(created) == 3  # one submission at a time: the second adopted the first's batches
    _, runs = run_sensor_until_idle(definitions(resource), instance)
    assert sorted(result_ids(instance, "a")) == sorted(f"a{i}" for i in range(30))
    assert all(instance.get_run_by_id(r).status == dg.DagsterRunStatus.SUCCESS for r in runs)


def test_a_submission_killed_after_creating_then_rerun_pays_once(instance, resource, emulator_dir):
    home = Path(instance.root_directory)
    proc, _ = _launch(home, emulator_dir, "a")
    deadline = time.monotonic() + 240
    while not any(
        (b.metadata or {}).get("dagster_partition") == "a" for b in emulator_batches(emulator_dir)
    ):
        assert proc.poll() is None or time.monotonic() < deadline, (
            "the submission ended without creating"
        )
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # at once, wherever it is: before, during or after recording
    proc.wait(timeout=30)
    assert submit(instance, resource, "a").success  # the re-run
    paid = paid_per_key(emulator_dir, "a")
    assert len(paid) == 3, paid
    assert all(len(ids) == 1 for ids in paid.values()), paid
    submitted = submitted_ids(instance, "a")
    assert sorted(submitted) == sorted(ids[0] for ids in paid.values())
    run_sensor_until_idle(definitions(resource), instance)
    assert sorted(result_ids(instance, "a")) == sorted(f"a{i}" for i in range(30))
    assert SensorCursor().in_flight == []


def test_the_api_key_never_reaches_the_instance(instance, emulator_dir):
    secret = "sk-proj-SECRET-do-not-store-0123456789"
    resource = OpenAIBatchResource(
        api_key=secret,
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        emulator_faults={"lost_response_rate": 0.3, "http_error_rate": 0.1, "seed": 5},
    )
    assert submit(instance, resource, "a").success
    assert submit(instance, resource, "a", cancel=True).success
    run_sensor_until_idle(definitions(resource), instance)
    needle = secret.encode()
    leaks = [
        path
        for path in Path(instance.root_directory).rglob("*")
        if path.is_file() and needle in path.read_bytes()
    ]
    assert leaks == []


def test_a_tick_that_cannot_reach_the_service_writes_nothing_and_says_so_in_one_sentence(
    instance, emulator_dir
):
    fine = OpenAIBatchResource(emulator_dir=str(emulator_dir), emulator_pace="fast")
    assert submit(instance, fine, "a").success
    down = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        max_retries=1,
        emulator_faults={"http_error_rate": 1.0},
    )
    events_before = len(instance.fetch_observations(PIPELINE.batch_job.key, limit=100).records)
    with pytest.raises(Exception, match=r"Could not look at 3 in-flight batch\(es\)") as raised:
        evaluate_sensor_once(definitions(down), instance, None)
    message = str(raised.value)
    assert "Could not look at 3 in-flight batch(es)" in message
    assert "next tick tries again" in message
    assert "\n" not in message
    assert ".." not in message
    assert raised.value.__cause__ is None
    assert (
        len(instance.fetch_observations(PIPELINE.batch_job.key, limit=100).records) == events_before
    )
    _, runs = run_sensor_until_idle(
        definitions(fine), instance
    )  # the service is back: collected as usual
    assert len(runs) == 1
