"""File lifecycle through Dagster's APIs against the emulator: expiry options reach the service,
spent files are deleted once results are recorded (and nothing is lost: a resubmission still
works, a second collection says why it cannot), and the ``cleanup`` command finds, and on
request deletes, the files no materialization references."""

import importlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
from pipeline_helpers import recorded, run_sensor_until_idle

from dagster_openai_batch import (
    OpenAIBatchResource,
    RequestTemplate,
    openai_batch_assets,
    openai_batch_cleanup_job,
    openai_batch_sensor,
)
from dagster_openai_batch.cli import main
from dagster_openai_batch.dagster.component import load_pipelines_from_defs_folder
from dagster_openai_batch.dagster.stage_records import (
    BatchJobRecord,
    InputFileRecord,
    ResultsRecord,
)
from dagster_openai_batch.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
ROWS = [{"id": f"q{i}", "question": f"Explain {i} in one line."} for i in range(25)]
TEMPLATE = RequestTemplate(
    endpoint="/v1/chat/completions",
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "{question}"}],
    custom_id_column="id",
)


@dg.asset
def questions() -> list[dict]:
    return ROWS


def _defs(pipeline, resource: OpenAIBatchResource) -> dg.Definitions:
    return dg.Definitions.merge(
        pipeline.definitions(),
        dg.Definitions(
            assets=[questions],
            sensors=[openai_batch_sensor([pipeline], minimum_interval_seconds=1)],
            resources={"openai_batch": resource},
        ),
    )


def _submit(pipeline, resource, instance, **config) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [questions, pipeline.input_file, pipeline.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
        selection=[pipeline.batch_job] if config else None,
        run_config={"ops": {pipeline.batch_job.op.name: {"config": config}}} if config else None,
    )


def _live_ids(emulator_dir: Path) -> set[str]:
    client = Emulator(emulator_dir).openai_client()
    return {
        f.id for purpose in ("batch", "batch_output") for f in client.files.list(purpose=purpose)
    }


def _deleted(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[list[str]]:
    """The ``deleted_files`` of every observation of ``key``, oldest first."""
    records = instance.fetch_observations(key, limit=10, ascending=True).records
    return [r.asset_observation.metadata["openai_batch/deleted_files"].value for r in records]


def test_spent_files_are_deleted_once_results_are_recorded(instance, emulator_dir: Path):
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        emulator_faults={"request_error_rate": 0.3, "seed": 3},
        input_file_expires_after_seconds=7200,
        output_expires_after_seconds=86400,
    )
    pipeline = openai_batch_assets(
        name="qa",
        source=questions,
        template=TEMPLATE,
        delete_input_files=True,
        delete_result_files=True,
    )
    defs = _defs(pipeline, resource)
    assert _submit(pipeline, resource, instance).success
    client = Emulator(emulator_dir).openai_client()
    (input_id,) = recorded(instance, pipeline.input_file.key, InputFileRecord).file_id_list
    uploaded = client.files.retrieve(input_id)
    assert uploaded.expires_at - uploaded.created_at == 7200  # the option reached the service
    _, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    results = recorded(instance, pipeline.results.key, ResultsRecord)
    assert results.rows == 25
    assert results.status_failed > 0
    (batch_id,) = results.batch_id_list
    batch = client.batches.retrieve(batch_id)
    spent = [input_id, batch.output_file_id, batch.error_file_id]
    assert _deleted(instance, pipeline.results.key) == [spent]
    assert _live_ids(emulator_dir) == set()

    # Collecting the same set again cannot work: it fails, saying why and where the answers are.
    again = dg.materialize(
        [pipeline.results],
        instance=instance,
        resources={"openai_batch": resource},
        raise_on_error=False,
    )
    assert not again.success
    (failure,) = again.get_step_failure_events()
    message = failure.step_failure_data.error.message
    assert "is gone from the service" in message
    assert results.results_uri in message

    # A resubmission reads what was sent from storage, not from the deleted input file.
    assert _submit(pipeline, resource, instance, resubmit_failed=True).success
    followup = recorded(instance, pipeline.batch_job.key, BatchJobRecord)
    assert followup.followup_of == results.results_uri
    _, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    merged = recorded(instance, pipeline.results.key, ResultsRecord)
    assert merged.rows == 25
    assert merged.status_failed < results.status_failed
    assert len(_deleted(instance, pipeline.results.key)) == 2
    assert _live_ids(emulator_dir) == set()

    # Submitting the same input again uploads it again, and still pays nothing twice: the batch
    # made from it is adopted although its input file is gone.
    paid = client.batches.list(limit=100).data
    assert _submit(pipeline, resource, instance).success
    assert client.batches.list(limit=100).data == paid
    assert recorded(instance, pipeline.batch_job.key, BatchJobRecord).adopted == 1


def test_files_stay_by_default(instance, emulator_dir: Path, resource: OpenAIBatchResource):
    pipeline = openai_batch_assets(name="qa", source=questions, template=TEMPLATE)
    assert _submit(pipeline, resource, instance).success
    run_sensor_until_idle(_defs(pipeline, resource), instance)
    assert recorded(instance, pipeline.results.key, ResultsRecord).rows == 25
    assert len(_live_ids(emulator_dir)) == 2  # the input and the output
    assert _deleted(instance, pipeline.results.key) == []


def test_cleanup_lists_then_deletes_what_no_materialization_references(
    instance, tmp_path: Path, emulator_dir: Path, resource, monkeypatch, capsys
):
    pipeline = openai_batch_assets(name="qa", source=questions, template=TEMPLATE)
    assert _submit(pipeline, resource, instance).success
    run_sensor_until_idle(_defs(pipeline, resource), instance)
    kept = _live_ids(emulator_dir)
    # Another instance (e.g. one wiped since) used the same service: its files are orphans here.
    other = openai_batch_assets(
        name="other",
        source=questions,
        template=TEMPLATE.model_copy(
            update={"messages": [{"role": "user", "content": "Again: {question}"}]}
        ),
    )
    (tmp_path / "other_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "other_home")) as elsewhere:
        assert _submit(other, resource, elsewhere).success
        run_sensor_until_idle(_defs(other, resource), elsewhere)
    orphans = _live_ids(emulator_dir) - kept
    assert len(orphans) == 2

    monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)
    args = ["cleanup", "--emulator-dir", str(emulator_dir), "--min-age-hours", "0"]
    assert main(args) == 0
    dry_run = capsys.readouterr().out
    assert {line.split()[0] for line in dry_run.splitlines()[:2]} == orphans
    assert "2 orphaned file(s)" in dry_run
    assert "Dry run: nothing deleted" in dry_run
    assert _live_ids(emulator_dir) == kept | orphans

    assert main([*args, "--delete"]) == 0
    assert "Deleted 2 file(s)." in capsys.readouterr().out
    assert _live_ids(emulator_dir) == kept
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("No orphaned files (kept: 2 referenced)")
    # Files younger than an hour are left by default: a run may not have recorded them yet.
    assert main(args[:3]) == 0


def test_readme_cleanup_command_runs(tmp_path: Path, instance, emulator_dir: Path):
    """The README's cleanup command, run as written (a dry run: it lists and deletes nothing)."""
    section = (ROOT / "README.md").read_text().split("### Files left on the service", 1)[1]
    command = re.findall(r"```bash\n\s*(.*?)\n\s*```", section, flags=re.S)[0].split()
    assert command[:2] == ["dagster-openai-batch", "cleanup"]
    assert "--delete" not in command
    Emulator(emulator_dir).openai_client().files.create(
        file=("dagster-openai-batch-x.jsonl", b'{"a": 1}\n'), purpose="batch"
    )
    env = {**os.environ, "DAGSTER_HOME": instance.root_directory}
    script = Path(sys.executable).parent / "dagster-openai-batch"
    run = subprocess.run(
        [str(script), *command[1:], "--emulator-dir", str(emulator_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "kept: 1 too young" in run.stdout


def test_yaml_options_reach_the_service(tmp_path: Path, monkeypatch, instance, emulator_dir):
    package = tmp_path / "lifecycle_defs"
    (package / "t").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "t" / "rows.csv").write_text("id,text\n001,first\n002,second\n")
    (package / "t" / "defs.yaml").write_text(
        textwrap.dedent(
            f"""\
            type: dagster_openai_batch.OpenAIBatchComponent
            attributes:
              name: t
              source: rows.csv
              endpoint: /v1/embeddings
              model: text-embedding-3-small
              prompt: "{{text}}"
              custom_id_column: id
              sensor: {{name: openai_batch_sensor, minimum_interval_seconds: 1}}
              delete_input_files: true
              delete_result_files: true
              resource:
                emulator_dir: {emulator_dir}
                emulator_pace: fast
                input_file_expires_after_seconds: 3600
                output_expires_after_seconds: 7200
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    defs, (pipeline,) = load_pipelines_from_defs_folder(importlib.import_module(package.name))
    job = defs.resolve_implicit_global_asset_job_def()
    submit = [pipeline.input_file.key, pipeline.batch_job.key]
    assert job.execute_in_process(instance=instance, asset_selection=submit).success
    (input_id,) = recorded(instance, pipeline.input_file.key, InputFileRecord).file_id_list
    uploaded = Emulator(emulator_dir).openai_client().files.retrieve(input_id)
    assert uploaded.expires_at - uploaded.created_at == 3600
    _, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    assert recorded(instance, pipeline.results.key, ResultsRecord).status_succeeded == 2
    (deleted,) = _deleted(instance, pipeline.results.key)
    assert deleted[0] == input_id
    assert len(deleted) == 2  # the input and the output (nothing failed: no error file)
    assert _live_ids(emulator_dir) == set()


def test_an_expiry_out_of_range_is_refused_when_the_resource_is_built(emulator_dir):
    with pytest.raises(ValueError, match="output_expires_after_seconds"):
        OpenAIBatchResource(emulator_dir=str(emulator_dir), output_expires_after_seconds=60)


def test_cleanup_job_dry_run_then_delete(instance, emulator_dir: Path, resource):
    client = Emulator(emulator_dir).openai_client()
    ours = client.files.create(
        file=("dagster-openai-batch-x.jsonl", b'{"a": 1}\n'), purpose="batch"
    )
    foreign = client.files.create(file=("theirs.jsonl", b'{"a": 1}\n'), purpose="batch")
    job = openai_batch_cleanup_job()
    defs = dg.Definitions(jobs=[job], resources={"openai_batch": resource})

    def run(**config) -> dict:
        result = defs.resolve_job_def(job.name).execute_in_process(
            instance=instance, run_config={"ops": {job.name: {"config": config}}}
        )
        assert result.success
        (materialized,) = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
        entries = materialized.event_specific_data.metadata
        return {key: getattr(value, "value", value) for key, value in entries.items()}

    assert run(min_age_hours=0) == {
        "openai_batch/orphans": [ours.id],
        "openai_batch/orphan_bytes": ours.bytes,
    }
    assert _live_ids(emulator_dir) == {ours.id, foreign.id}
    assert run(min_age_hours=0, delete=True)["openai_batch/deleted_files"] == [ours.id]
    assert run(min_age_hours=0, include_foreign=True, delete=True)[
        "openai_batch/deleted_files"
    ] == [foreign.id]
    assert _live_ids(emulator_dir) == set()
