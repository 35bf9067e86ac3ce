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
            assert len(runs) == 4
            assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
            assert sum("dagster/run_key" in run.tags for run in runs) == 2
    finally:
        del os.environ["DAGSTER_HOME"]
