"""The Quickstart's main command: the demo runs end to end offline on a real Dagster instance."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq


def test_demo_command_runs_both_pipelines_end_to_end(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "DAGSTER_HOME")}
    cli = Path(sys.executable).parent / "dagster-openai-batch"
    result = subprocess.run(
        [str(cli), "demo", "--home", str(tmp_path / "home")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("review_labels: 300 rows (succeeded 300)") for line in lines), (
        result.stdout
    )
    assert any(line.startswith("review_embeddings: 40 rows (succeeded 40)") for line in lines), (
        result.stdout
    )
    assert "backend: emulator" in result.stdout

    paths = [line.strip() for line in lines if line.strip().endswith(".parquet")]
    labels = pq.read_table(paths[0])
    assert set(labels.column("status").to_pylist()) == {"succeeded"}
    assert {"review_id", "product", "rating", "text", "answer"} <= set(labels.column_names)

    # The runs are in the instance, for `dagster dev` to show.
    os.environ["DAGSTER_HOME"] = str(tmp_path / "home")
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
            # As in the UI: the rows materialized, each pipeline's submit job launched, and the
            # results jobs launched by the sensor (tagged as its runs).
            assert sorted(run.job_name for run in runs) == [
                "__ASSET_JOB",
                "__ASSET_JOB",
                "review_embeddings_results",
                "review_embeddings_submit",
                "review_labels_results",
                "review_labels_submit",
            ]
            by_sensor = [r for r in runs if r.tags.get("dagster/sensor_name")]
            assert sorted(r.job_name for r in by_sensor) == [
                "review_embeddings_results",
                "review_labels_results",
            ]
            assert all("dagster/run_key" in r.tags for r in by_sensor)
    finally:
        del os.environ["DAGSTER_HOME"]
