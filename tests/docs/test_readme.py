"""Every Python example in the README runs, and the demo's Dagster definitions load and validate."""

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_a_two_command_quickstart():
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", quickstart, flags=re.S)
    assert len(commands) == 2
    assert "dagster-openai-batch demo" in commands[0]
    assert "pytest" in commands[1]
    assert "pytest" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_example_runs(index: int, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = PYTHON_BLOCKS[index].replace("/tmp/", f"{tmp_path}/")
    namespace: dict = {"__name__": f"readme_example_{index}"}
    exec(compile(code, f"README.md[python block {index}]", "exec"), namespace)
    defs = namespace.get("defs")
    if isinstance(defs, dg.Definitions):
        # The example's pipeline really runs: submit, let the sensor collect, read the table.
        from pipeline_helpers import recorded, run_sensor_until_idle

        from dagster_openai_batch.dagster.stage_records import ResultsRecord

        os.environ.pop("OPENAI_API_KEY", None)
        with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
            graph = defs.resolve_asset_graph()
            submit = [key for key in graph.get_all_asset_keys() if key.path[-1] != "results"]
            job = defs.resolve_implicit_global_asset_job_def()
            assert job.execute_in_process(instance=instance, asset_selection=submit).success
            _, runs = run_sensor_until_idle(defs, instance)
            assert len(runs) == 1
            results_key = next(k for k in graph.get_all_asset_keys() if k.path[-1] == "results")
            assert recorded(instance, results_key, ResultsRecord).status_succeeded >= 1


def test_definitions_py_validates_with_the_dagster_cli(tmp_path: Path):
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    env.pop("OPENAI_API_KEY", None)
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_every_public_name_imports():
    import dagster_openai_batch

    for name in dagster_openai_batch.__all__:
        assert getattr(dagster_openai_batch, name) is not None, name


def test_readme_pool_command_limits_submissions(tmp_path: Path):
    """The README's `dagster instance concurrency set ...` line, run as written, limits
    batch_job's pool."""
    section = README.split("**Two submissions at the same moment pay once.**", 1)[1]
    command = re.findall(r"```bash\n\s*(.*?)\n\s*```", section, flags=re.S)[0].split()
    assert command[:4] == ["dagster", "instance", "concurrency", "set"]
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), *command[1:]], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr

    from dagster_openai_batch.demo.definitions import review_labels

    pool, limit = command[4], int(command[5])
    assert review_labels.batch_job.op.pool == pool
    os.environ["DAGSTER_HOME"] = str(tmp_path)
    try:
        with dg.DagsterInstance.get() as instance:
            limits = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
            assert limits[pool] == limit
    finally:
        del os.environ["DAGSTER_HOME"]
