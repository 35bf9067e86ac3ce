"""What a new user does with ``dg`` in a project laid out like ``create-dagster project`` makes:
list the components, scaffold pipelines and the shared sensor, check the YAML and the
definitions, list them, and run a scaffolded pipeline (twice) on the offline emulator.

One temporary project per module (``dg`` invocations take seconds each). The ``dg`` CLI runs in
subprocesses with this checkout first on ``PYTHONPATH``.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from dagster_openai_batch.dagster.stage_records import BatchJobRecord

DG = shutil.which("dg", path=str(Path(sys.executable).parent)) or shutil.which("dg")
REPO = Path(__file__).resolve().parents[2]
PIPELINE = "dagster_openai_batch.OpenAIBatchComponent"
SENSOR = "dagster_openai_batch.OpenAIBatchSensorComponent"
IN_PROCESS = json.dumps({"execution": {"config": {"in_process": {}}}})

pytestmark = pytest.mark.skipif(DG is None, reason="dagster-dg-cli is not installed")


class Project:
    """A dg project as ``create-dagster project proj`` lays it out (without its .venv)."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root, self.home = root, home
        self.defs = root / "src" / "proj" / "defs"
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            # This checkout, and the project's package (create-dagster installs it editable).
            "PYTHONPATH": os.pathsep.join([str(REPO), str(root / "src")]),
            "DAGSTER_HOME": str(home),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
        self.env.pop("OPENAI_API_KEY", None)

    def dg(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [DG, *args],  # type: ignore[list-item]
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if ok and done.returncode != 0:
            pytest.fail(
                f"dg {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done


def make_project(root: Path) -> None:
    """The files of ``create-dagster project proj`` (1.13) that dg reads."""
    (root / "src" / "proj" / "defs").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "proj"
            requires-python = ">=3.10,<3.15"
            version = "0.1.0"
            dependencies = ["dagster", "dagster-openai-batch"]

            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [tool.hatch.build.targets.wheel]
            force-include = { "pyproject.toml" = "pyproject.toml" }

            [tool.dg]
            directory_type = "project"

            [tool.dg.project]
            root_module = "proj"
            registry_modules = [
                "proj.components.*",
            ]
            """
        )
    )
    for package in ("src/proj", "src/proj/defs", "tests"):
        (root / package / "__init__.py").write_text("")
    (root / "src" / "proj" / "definitions.py").write_text(
        textwrap.dedent(
            """\
            from pathlib import Path

            from dagster import definitions, load_from_defs_folder


            @definitions
            def defs():
                return load_from_defs_folder(path_within_project=Path(__file__).parent)
            """
        )
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    base = tmp_path_factory.mktemp("dg")
    home = base / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    make_project(base / "proj")
    return Project(base / "proj", home)


@pytest.fixture(scope="module")
def scaffolded(project: Project) -> Project:
    """Three scaffolds: the default pipeline, an embeddings pipeline left to the shared sensor
    (``--json-params``), and the shared sensor."""
    project.dg("scaffold", "defs", PIPELINE, "my_batch")
    params = {"endpoint": "/v1/embeddings", "sensor": False, "resource": "none"}
    project.dg("scaffold", "defs", PIPELINE, "embed", "--json-params", json.dumps(params))
    project.dg("scaffold", "defs", SENSOR, "batch_sensor")
    return project


def test_list_components_shows_both_components(project: Project) -> None:
    listed = json.loads(project.dg("list", "components", "--json").stdout)
    summaries = {item["key"]: item["summary"] for item in listed["items"]}
    assert summaries[PIPELINE].startswith("One OpenAI batch pipeline")
    assert summaries[SENSOR].startswith("One sensor for every")


def test_scaffolded_files_are_commented_and_follow_the_params(scaffolded: Project) -> None:
    text = (scaffolded.defs / "my_batch" / "defs.yaml").read_text()
    assert f"type: {PIPELINE}" in text
    assert "endpoint: /v1/chat/completions" in text
    assert "  # The rows: an upstream asset key" in text
    assert (scaffolded.defs / "my_batch" / "questions.csv").read_text().startswith("id,question")
    embed = (scaffolded.defs / "embed" / "defs.yaml").read_text()
    assert "endpoint: /v1/embeddings" in embed
    assert 'model: "text-embedding-3-small"' in embed
    assert "\n  sensor:" not in embed
    assert "\n  resource:" not in embed


def test_check_yaml_and_check_defs_pass(scaffolded: Project) -> None:
    assert "All component YAML validated successfully" in scaffolded.dg("check", "yaml").stdout
    assert "All definitions loaded successfully" in scaffolded.dg("check", "defs").stdout


def test_list_defs_shows_pipelines_sensors_and_resource(scaffolded: Project) -> None:
    listed = json.loads(scaffolded.dg("list", "defs", "--json").stdout)
    assert {a["asset_key"] for a in listed["assets"]} >= {
        f"{name}/{stage}"
        for name in ("my_batch", "embed")
        for stage in ("input_file", "batch_job", "results")
    }
    assert sorted(s["name"] for s in listed["sensors"]) == [
        "my_batch_sensor",
        "openai_batch_sensor",
    ]
    assert [r["name"] for r in listed["resources"]] == ["openai_batch"]
    sources = {a["asset_key"]: a["source"] for a in listed["assets"]}
    assert sources["embed/results"].startswith("src/proj/defs/embed/defs.yaml:")


BAD = {
    # what a user gets wrong: (attributes, the line reported, the message)
    "endpoint": ("endpoint: /v1/chat", 6, "'/v1/chat' is not one of"),
    "no-model": ("", 3, "'model' is a required property"),
    "source-and-jsonl": (
        "model: gpt-4o-mini\n  jsonl_path: requests.jsonl",
        5,
        "`source` does not apply with `jsonl_path`",
    ),
}


@pytest.mark.parametrize(("extra", "line", "message"), BAD.values(), ids=BAD)
def test_check_yaml_reports_file_and_line(
    scaffolded: Project, extra: str, line: int, message: str
) -> None:
    folder = scaffolded.defs / "bad"
    folder.mkdir()
    endpoint = "" if "endpoint" in extra else "\n  endpoint: /v1/chat/completions"
    (folder / "defs.yaml").write_text(
        f"type: {PIPELINE}\n\nattributes:\n  name: bad\n  source: questions{endpoint}\n"
        f"  {extra}\n  prompt: '{{question}}'\n"
    )
    try:
        done = scaffolded.dg("check", "yaml", str(folder), ok=False)
    finally:
        shutil.rmtree(folder)
    assert done.returncode == 1
    assert re.search(rf"bad/defs\.yaml:{line} - {PIPELINE} attributes\S* ", done.stdout), (
        done.stdout
    )
    assert message in done.stdout


def results_of(home: Path, key: str) -> list[dg.AssetMaterialization]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(dg.AssetKey.from_user_string(key), limit=10)
        return [r.asset_materialization for r in records.records if r.asset_materialization]


def test_scaffolded_pipeline_runs_twice_on_the_emulator(scaffolded: Project) -> None:
    for round_ in (1, 2):
        scaffolded.dg("launch", "--job", "my_batch_submit", "--config-json", IN_PROCESS)
        deadline = time.monotonic() + 60
        while True:  # the sensor's job, done by hand: collect once the batch finished
            done = scaffolded.dg(
                "launch", "--job", "my_batch_results", "--config-json", IN_PROCESS, ok=False
            )
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            assert "Batches still running" in done.stdout + done.stderr, done.stderr[-2000:]
            time.sleep(1)
        assert done.returncode == 0, done.stderr[-3000:]
        results = results_of(scaffolded.home, "my_batch/results")
        assert len(results) == round_
    assert [r.metadata["dagster/row_count"].value for r in results] == [3, 3]
    jobs = results_of(scaffolded.home, "my_batch/batch_job")
    # The second submission adopted the first batch: nothing is paid twice.
    newest, oldest = (BatchJobRecord.read(job.metadata) for job in jobs)  # newest first
    assert newest.batch_id_list == oldest.batch_id_list
    assert (oldest.adopted, newest.adopted) == (0, len(newest.batch_id_list))
    assert (scaffolded.root / ".openai_batch_emulator").is_dir()
