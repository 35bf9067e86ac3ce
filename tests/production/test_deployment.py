"""Production-shaped deployment, as the README's "Deploy" section describes it, on one machine.

Every piece is the real thing a deployment runs, each in its own process:
- PostgreSQL (Debian's server, a throw-away cluster) as the run, event-log and schedule storage;
- ``dagster-daemon run``: the sensors and the ``QueuedRunCoordinator`` with the README's tag and
  pool limits;
- the default run launcher: every run in its own process, steps in the multiprocess executor;
- the OpenAI emulator over HTTP, reached through ``base_url`` like any compatible service;
- an S3-compatible object store for the results tables and the IO manager. It is moto's server, a
  stand-in for S3: no real S3-compatible server can be installed from the package registries here.

Submissions go through the ``dagster`` CLI. The sensors alone collect the results, and downstream
assets in another run read them back from the object store.
"""

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import openai
import pytest
import sqlalchemy as sa
from dagster._core.scheduler.instigation import InstigatorType, TickStatus  # no public tick API
from production_services import (
    BIN,
    emulator_server,
    object_store,
    postgres_bin,
    postgres_server,
)

from dagster_openai_batch import BatchResults
from dagster_openai_batch.dagster.stage_records import BatchJobRecord, ResultsRecord, latest_record

HERE = Path(__file__).resolve().parent
README = (HERE.parents[1] / "README.md").read_text()
DAGSTER_YAML = re.findall(r"```yaml\n(.*?)```", README.split("\n## Deploy\n", 1)[1], re.S)[0]
BUCKET = "openai-batch-results"
EXPECTED_ROWS = {("tickets", "eu"): 30, ("tickets", "us"): 20, ("transcripts", None): 12}
EXPECTED_BATCHES = {("tickets", "eu"): 2, ("tickets", "us"): 1, ("transcripts", None): 1}
SENSORS = ("openai_batch_sensor", "transcripts_sensor")
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}

pytestmark = pytest.mark.skipif(
    postgres_bin() is None and not os.environ.get("CI"),
    reason="needs Debian's postgresql (apt-get install postgresql; .ci/run does)",
)


@pytest.mark.production
@pytest.mark.timeout(900)
def test_deployment_on_postgres_daemon_queue_and_object_store(tmp_path: Path, monkeypatch):
    key = f"sk-proj-deploy-{uuid.uuid4().hex}"
    with (
        postgres_server() as pg_url,
        object_store(tmp_path, BUCKET) as s3_env,
        emulator_server(tmp_path / "emulator", tmp_path, key) as base_url,
    ):
        home = tmp_path / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DAGSTER_"))},
            **s3_env,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": pg_url,
            "OPENAI_API_KEY": key,
            "OPENAI_BASE_URL": base_url,
            "DAGSTER_OPENAI_BATCH_STORAGE": f"s3://{BUCKET}/global",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        _create_storage(env)
        with _daemon(env, tmp_path / "daemon.log") as daemon:
            _launch(
                env,
                ("tickets_submit", "eu"),
                ("tickets_submit", "us"),
                ("transcripts_submit", None),
            )
            with dg.DagsterInstance.get() as instance:
                _wait(instance, daemon, lambda: _results_runs_done(instance, 3), tmp_path)
                _launch(env, ("reports", None))
                _wait(instance, daemon, lambda: _runs_done(instance, "reports", 1), tmp_path)
                _print_timeline(instance)
                _check_runs(instance)
                _check_results(instance, base_url, key)
                _check_reports(instance)
                _check_sensors_green(instance)
        _check_key_not_stored(pg_url, key)


def _create_storage(env: dict[str, str]) -> None:
    """The README's first step: create the tables once, before the processes that share them start
    (each would create them on first use, and two at once can collide on a fresh database)."""
    subprocess.run([BIN / "dagster", "instance", "migrate"], cwd=HERE, env=env, check=True)


def _launch(env: dict[str, str], *runs: tuple[str, str | None]) -> None:
    """Submit runs from the CLI, at once: the queued run coordinator queues them, the daemon
    launches them."""
    launches = []
    for job, partition in runs:
        tags = ["--tags", f'{{"dagster/partition": "{partition}"}}'] if partition else []
        launches.append(
            subprocess.Popen(
                [BIN / "dagster", "job", "launch", "-w", "workspace.yaml", "-j", job, *tags],
                cwd=HERE,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for launch in launches:
        output, _ = launch.communicate(timeout=300)
        assert launch.returncode == 0, output[-3000:]


class _daemon:
    """``dagster-daemon run`` in its own process group, stopped with SIGINT (then SIGKILL)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log

    def __enter__(self) -> subprocess.Popen[bytes]:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [BIN / "dagster-daemon", "run", "-w", "workspace.yaml"],
                cwd=HERE,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.process

    def __exit__(self, *_: object) -> None:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _wait(instance, daemon, done, tmp_path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
        runs = [(r.job_name, r.status.value) for r in instance.get_runs()]
        assert time.monotonic() < deadline, f"runs: {runs}; see {tmp_path}/daemon.log"
        time.sleep(1)


def _results_runs_done(instance: dg.DagsterInstance, count: int) -> bool:
    runs = instance.get_runs(dg.RunsFilter(tags={"openai_batch/stage": "results"}))
    submits = [r for r in instance.get_runs() if r.job_name.endswith("_submit")]
    return len(runs) >= count and all(r.status in FINISHED for r in [*runs, *submits])


def _runs_done(instance: dg.DagsterInstance, job: str, count: int) -> bool:
    runs = instance.get_runs(dg.RunsFilter(job_name=job))
    return len(runs) >= count and all(r.status in FINISHED for r in runs)


def _print_timeline(instance: dg.DagsterInstance) -> None:
    records = instance.get_run_records()
    start = min(r.create_timestamp.timestamp() for r in records)
    for r in sorted(records, key=lambda r: r.create_timestamp):
        print(
            f"{r.dagster_run.job_name:22} created +{r.create_timestamp.timestamp() - start:5.1f}s "
            f"started +{(r.start_time or 0) - start:5.1f}s ended +{(r.end_time or 0) - start:5.1f}s"
        )


def _check_runs(instance: dg.DagsterInstance) -> None:
    """Every run succeeded, went through the queue and ran its steps in the multiprocess executor;
    each results run was requested by a sensor; the submission pool has the README's limit."""
    runs = instance.get_runs()
    by_job: dict[str, int] = {}
    for run in runs:
        by_job[run.job_name] = by_job.get(run.job_name, 0) + 1
        assert run.status == dg.DagsterRunStatus.SUCCESS, (run.job_name, run.status)
        assert instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)
        engine = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        assert any("multiprocess" in (e.message or "") for e in engine), run.job_name
    assert by_job == {
        "tickets_submit": 2,
        "transcripts_submit": 1,
        "tickets_results": 2,
        "transcripts_results": 1,
        "reports": 1,
    }
    for run in instance.get_runs(dg.RunsFilter(tags={"openai_batch/stage": "results"})):
        assert run.tags["dagster/sensor_name"] in SENSORS
    pool = instance.event_log_storage.get_concurrency_info("openai_batch_submit")
    assert pool.slot_count == 1


def _check_results(instance: dg.DagsterInstance, base_url: str, key: str) -> None:
    """Every request answered once, one batch per part, tables on the object store."""
    batch_ids: set[str] = set()
    for (pipeline, partition), rows in EXPECTED_ROWS.items():
        job = _latest(instance, [pipeline, "batch_job"], partition, BatchJobRecord)
        assert len(job.batch_id_list) == EXPECTED_BATCHES[pipeline, partition]
        batch_ids.update(job.batch_id_list)
        record = _latest(instance, [pipeline, "results"], partition, ResultsRecord)
        root = "global" if pipeline == "tickets" else "transcripts"
        assert record.results_uri.startswith(f"s3://{BUCKET}/{root}/{pipeline}/")
        assert record.rows == rows
        assert record.counts["succeeded"] == rows
        table = BatchResults(uri=record.results_uri, rows=rows, counts={}).to_arrow()
        ids = table.column("custom_id").to_pylist()
        assert len(ids) == len(set(ids)) == rows
    client = openai.OpenAI(api_key=key, base_url=base_url)
    batches = list(client.batches.list(limit=100))
    assert {b.id for b in batches} == batch_ids  # one batch per part, none paid twice
    assert {b.status for b in batches} == {"completed"}


def _latest(instance, path: list[str], partition: str | None, record_type):
    record = latest_record(instance, dg.AssetKey(path), partition, record_type)
    assert record is not None, (path, partition)
    return record


def _check_reports(instance: dg.DagsterInstance) -> None:
    """The downstream assets, in their own run, loaded the handles and read the tables."""
    tickets = instance.get_latest_materialization_event(dg.AssetKey("ticket_report"))
    metadata = tickets.asset_materialization.metadata
    assert metadata["rows"].value == 50
    assert all(u.startswith(f"s3://{BUCKET}/global/") for u in metadata["uris"].value.split(","))
    transcripts = instance.get_latest_materialization_event(dg.AssetKey("transcript_report"))
    metadata = transcripts.asset_materialization.metadata
    assert metadata["rows"].value == 12
    assert metadata["table_uri"].value.startswith(f"s3://{BUCKET}/transcripts/")


def _check_sensors_green(instance: dg.DagsterInstance) -> None:
    seen = set()
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1000)
        failed = [t.error.message for t in ticks if t.status == TickStatus.FAILURE and t.error]
        assert failed == [], (state.instigator_name, failed)
        assert [t for t in ticks if t.status == TickStatus.FAILURE] == []
        if ticks:
            seen.add(state.instigator_name)
    assert seen == set(SENSORS)


def _check_key_not_stored(pg_url: str, key: str) -> None:
    """The API key is nowhere in the instance's database (runs, events, ticks, cursors)."""
    engine = sa.create_engine(pg_url)
    with engine.connect() as connection:
        tables = connection.execute(
            sa.text("select tablename from pg_tables where schemaname = 'public'")
        ).scalars()
        dumped = 0
        for table in list(tables):
            text = connection.execute(
                sa.text(f"select coalesce(string_agg(t::text, ''), '') from \"{table}\" t")
            ).scalar_one()
            dumped += len(text)
            assert key not in text, table
    engine.dispose()
    assert dumped > 10_000  # the database really holds the deployment's history


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
