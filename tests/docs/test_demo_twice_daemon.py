"""The README's flow, twice, then the real daemon: `demo`, `demo` again on the same home, a new day
submitted from the `dagster` CLI, and `dagster-daemon run` collecting it — every command exits 0
and no sensor tick fails."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from dagster._core.scheduler.instigation import InstigatorType, TickStatus  # no public tick API

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAY = "2026-11-20"


def _instigator_ticks(instance: dg.DagsterInstance, name: str) -> list:
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == name:
            return list(
                instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=200)
            )
    return []


def test_demo_twice_then_the_daemon_collects_a_new_day_with_every_tick_green(tmp_path: Path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "DAGSTER_HOME")}
    for attempt in range(2):
        demo = subprocess.run(
            [str(BIN / "dagster-openai-batch"), "demo", "--home", str(home)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert demo.returncode == 0, f"demo #{attempt + 1}: {demo.stderr[-3000:]}"
        assert "review_labels: 300 rows (succeeded 300)" in demo.stdout
        assert "Traceback" not in demo.stderr

    env = {**env, "DAGSTER_HOME": str(home), "DAGSTER_OPENAI_BATCH_EMULATOR_PACE": "fast"}
    submit = subprocess.run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-f",
            "definitions.py",
            "--partition",
            DAY,
            "--select",
            "daily_reviews,review_embeddings/input_file,review_embeddings/batch_job",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert submit.returncode == 0, submit.stderr[-3000:]

    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            deadline = time.monotonic() + 240
            finished = {
                dg.DagsterRunStatus.SUCCESS,
                dg.DagsterRunStatus.FAILURE,
                dg.DagsterRunStatus.CANCELED,
            }
            while True:
                ticks = _instigator_ticks(instance, "openai_batch_sensor")
                runs = instance.get_runs(
                    dg.RunsFilter(
                        job_name="review_embeddings_results", tags={"dagster/partition": DAY}
                    )
                )
                if runs and all(r.status in finished for r in runs) and len(ticks) >= 3:
                    break
                assert daemon.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, (
                    f"{len(ticks)} ticks, runs {[r.status for r in runs]}; see {log}"
                )
                time.sleep(1)
            failed = [t for t in ticks if t.status == TickStatus.FAILURE]
            assert failed == [], [t.error.message for t in failed if t.error]
            assert len(runs) == 1
            assert runs[0].status == dg.DagsterRunStatus.SUCCESS
            assert runs[0].tags.get("dagster/sensor_name") == "openai_batch_sensor"
            results = instance.get_latest_materialization_event(
                dg.AssetKey(["review_embeddings", "results"])
            )
            assert results is not None
            assert results.dagster_event.partition == DAY
    finally:
        del os.environ["DAGSTER_HOME"]
        os.killpg(daemon.pid, signal.SIGINT)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
