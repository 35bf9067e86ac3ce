"""`OpenAIBatchComponent`: the YAML form builds the same graph as `openai_batch_assets`, and bad
YAML fails at load naming the file and the field."""

from __future__ import annotations

import importlib
import json
import re
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg
import jsonschema
import pytest
import yaml

from dagster_openai_batch import (
    OpenAIBatchComponent,
    OpenAIBatchPipeline,
    RequestTemplate,
    openai_batch_assets,
)
from dagster_openai_batch.dagster.component import load_pipelines_from_defs_folder
from dagster_openai_batch.dagster.stage_records import InputFileRecord
from dagster_openai_batch.demo import definitions as demo


def graph_facts(defs: dg.Definitions, pipeline: OpenAIBatchPipeline) -> dict[str, Any]:
    """Everything a user sees of one pipeline's graph, in comparable form."""
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assets = {}
    for key in pipeline.asset_keys:
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": repr(node.partitions_def),
            "checks": sorted(c.to_user_string() for c in node.check_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "description": node.description,
            "resources": sorted(graph.assets_def_for_key(key).required_resource_keys),
        }
    jobs = {
        name: {
            "assets": sorted(
                k.to_user_string() for k in repo.get_job(name).asset_layer.executable_asset_keys
            ),
            "partitions": repr(repo.get_job(name).partitions_def),
        }
        for name in (pipeline.submit_job.name, pipeline.results_job.name)
    }
    schedules = {s.name: (s.cron_schedule, s.job_name) for s in repo.schedule_defs}
    return {"assets": assets, "jobs": jobs, "schedules": schedules}


def test_yaml_demo_pipeline_matches_the_python_factory(resource):
    python = openai_batch_assets(
        name="review_embeddings",
        source=demo.daily_reviews,
        template=RequestTemplate(
            endpoint="/v1/embeddings",
            model="text-embedding-3-small",
            prompt="{text}",
            body={"dimensions": 256},
            custom_id_column="review_id",
        ),
        partitions_def=demo.DAILY,
        schedule=True,
    )
    common = dg.Definitions(assets=[demo.daily_reviews], resources={"openai_batch": resource})
    from_python = dg.Definitions.merge(python.definitions(), common)
    from_yaml = dg.Definitions.merge(demo.YAML_DEFS, common)

    facts = graph_facts(from_yaml, demo.review_embeddings)
    assert facts == graph_facts(from_python, python)
    assert facts["assets"]["review_embeddings/input_file"]["deps"] == ["daily_reviews"]
    assert facts["schedules"] == {
        "review_embeddings_schedule": ("0 0 * * *", "review_embeddings_submit")
    }


def test_demo_has_one_sensor_over_both_pipelines():
    repo = demo.defs.get_repository_def()
    assert [s.name for s in repo.sensor_defs] == ["openai_batch_sensor"]
    (sensor,) = repo.sensor_defs
    assert sorted(t.job_name for t in sensor.targets) == [
        "review_embeddings_results",
        "review_labels_results",
    ]
    # The YAML file carries a code reference in the UI.
    input_file = repo.assets_defs_by_key[dg.AssetKey(["review_embeddings", "input_file"])]
    references = input_file.specs_by_key[input_file.key].metadata["dagster/code_references"]
    assert any(str(r.file_path).endswith("defs.yaml") for r in references.code_references)


_counter = iter(range(10_000))


def defs_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    attributes: str,
    files: dict[str, str] | None = None,
) -> ModuleType:
    """A package of one ``pipeline/defs.yaml`` with ``attributes`` (and ``files``), imported."""
    package = tmp_path / f"component_defs_{next(_counter)}"
    (package / "pipeline").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    body = textwrap.indent(textwrap.dedent(attributes).strip(), "  ")
    (package / "pipeline" / "defs.yaml").write_text(
        f"type: dagster_openai_batch.OpenAIBatchComponent\nattributes:\n{body}\n"
    )
    for name, text in (files or {}).items():
        (package / "pipeline" / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(package.name)


def load_error(module: ModuleType) -> str:
    """The messages of the load error and its causes."""
    with pytest.raises(Exception, match=r"defs\.yaml") as caught:
        load_pipelines_from_defs_folder(module)
    messages, error = [], caught.value
    while error is not None:
        messages.append(str(error))
        error = error.__cause__
    return "\n".join(messages)


GOOD = """
    name: qa
    source: questions
    endpoint: /v1/chat/completions
    model: gpt-4o-mini
    messages: [{role: user, content: "{question}"}]
"""


BAD_YAML = {
    # id: (attributes, where it is reported: "field at" or "field at defs.yaml:line", problem)
    "unknown-field": (GOOD + "    colour: red", "colour at", "Extra inputs are not permitted"),
    "endpoint": (
        GOOD.replace("/v1/chat/completions", "/v1/chat"),
        "endpoint at defs.yaml:5",
        "is not one of",
    ),
    "messages-on-embeddings": (
        GOOD.replace("/v1/chat/completions", "/v1/embeddings"),
        "messages at defs.yaml:7",
        "only applies to chat completions and responses",
    ),
    "two-partitionings": (
        GOOD + "    partitions: {daily: {start_date: '2026-01-01'}, static: [a]}",
        "partitions at defs.yaml:8",
        "exactly one of hourly",
    ),
    "partition-field": (
        GOOD + "    partitions: {daily: {start: '2026-01-01'}}",
        "start at",
        "Extra inputs",
    ),
    "schedule-unpartitioned": (
        GOOD + "    schedule: true",
        "schedule at defs.yaml:8",
        "needs time partitions",
    ),
    "bad-cron": (GOOD + "    schedule: every day", "schedule at", "not a cron string"),
    "max-failed-share": (
        GOOD + "    max_failed_share: 2",
        "max_failed_share",
        "less than or equal",
    ),
    "jsonl-with-template": (
        GOOD.replace("source: questions", "jsonl_path: missing.jsonl"),
        "model at defs.yaml:6",
        "does not apply with `jsonl_path`",
    ),
    "no-model": (
        GOOD.replace("model: gpt-4o-mini", ""),
        "model at defs.yaml:2",
        "give `source` and `model`, or `jsonl_path`",
    ),
    "no-source": (
        GOOD.replace("source: questions", ""),
        "source at defs.yaml:2",
        "give `source` and `model`, or `jsonl_path`",
    ),
    "source-and-jsonl": (
        GOOD + "    jsonl_path: requests.jsonl",
        "source at defs.yaml:4",
        "does not apply with `jsonl_path`",
    ),
    "bad-name": (GOOD.replace("name: qa", "name: q-a"), "name at", "should match pattern"),
}


@pytest.mark.parametrize(("attributes", "where", "problem"), BAD_YAML.values(), ids=BAD_YAML)
def test_bad_yaml_fails_at_load_naming_file_line_and_field(
    tmp_path, monkeypatch, attributes, where, problem
):
    message = load_error(defs_folder(tmp_path, monkeypatch, attributes))
    assert "pipeline/defs.yaml" in message
    field, _, line = where.removesuffix(" at").partition(" at defs.yaml:")
    assert re.search(rf"{field}\S* at \S*pipeline/defs.yaml:{line}", message), message
    assert problem in message


def test_jsonl_component_with_its_own_sensor(tmp_path, monkeypatch):
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "m", "input": "hi"},
    }
    module = defs_folder(
        tmp_path,
        monkeypatch,
        """
        name: prepared
        jsonl_path: requests.jsonl
        endpoint: /v1/embeddings
        partitions: {static: [eu, us]}
        sensor: {name: prepared_sensor, minimum_interval_seconds: 10}
        max_failed_share: 0.2
        """,
        files={"requests.jsonl": json.dumps(line) + "\n"},
    )
    defs, (pipeline,) = load_pipelines_from_defs_folder(module)
    assert [k.to_user_string() for k in pipeline.asset_keys] == [
        "prepared/input_file",
        "prepared/batch_job",
        "prepared/results",
    ]
    assert pipeline.partitions_def == dg.StaticPartitionsDefinition(["eu", "us"])
    (sensor,) = defs.sensors or []
    assert (sensor.name, sensor.minimum_interval_seconds) == ("prepared_sensor", 10)
    assert pipeline.results_job in list(defs.jobs or [])


def test_readme_yaml_is_the_demo_file():
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    demo_yaml = (root / "dagster_openai_batch/demo/defs/review_embeddings/defs.yaml").read_text()
    assert f"```yaml\n{demo_yaml}```" in readme


def defs_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> ModuleType:
    """A package holding ``files`` (``folder/defs.yaml`` texts and data files); imported."""
    package = tmp_path / f"component_tree_{next(_counter)}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(package.name)


def pipeline_yaml(name: str, extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
        type: dagster_openai_batch.OpenAIBatchComponent
        attributes:
          name: {name}
          source: rows.csv
          endpoint: /v1/embeddings
          model: text-embedding-3-small
          prompt: "{{text}}"
          custom_id_column: id
        """
    ) + textwrap.indent(textwrap.dedent(extra), "  ")


ROWS_CSV = "id,text\n001,first\n002,second\n"
SENSOR_YAML = "type: dagster_openai_batch.OpenAIBatchSensorComponent\nattributes: {}\n"


DAGSTER_MODELS = {
    "Asset Spec Update Kwargs",
    *(
        f"{kind}PartitionsDefinitionModel"
        for kind in ("Hourly", "Daily", "Weekly", "TimeWindow", "Static")
    ),
}


def test_every_attribute_is_described():
    from dagster_openai_batch import OpenAIBatchComponent, OpenAIBatchSensorComponent

    for component in (OpenAIBatchComponent, OpenAIBatchSensorComponent):
        schema = component.get_model_cls().model_json_schema()  # type: ignore[union-attr]
        models = [schema, *schema.get("$defs", {}).values()]
        # Dagster's own models (the asset attributes of `translation`) are Dagster's to describe.
        models = [m for m in models if m["title"] not in DAGSTER_MODELS]
        undescribed = [
            f"{model['title']}.{name}"
            for model in models
            for name, field in model["properties"].items()
            if not field.get("description")
        ]
        assert undescribed == []


@pytest.mark.parametrize(
    "case",
    [
        "endpoint",
        "messages-on-embeddings",
        "two-partitionings",
        "schedule-unpartitioned",
        "bad-cron",
        "jsonl-with-template",
        "no-model",
        "no-source",
        "source-and-jsonl",
        "bad-name",
    ],
)
def test_the_json_schema_dg_check_yaml_uses_states_the_same_rules(case):
    import jsonschema
    import yaml

    from dagster_openai_batch import OpenAIBatchComponent

    schema = OpenAIBatchComponent.get_model_cls().model_json_schema()  # type: ignore[union-attr]
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(yaml.safe_load(textwrap.dedent(GOOD)))) == []
    attributes, _, _ = BAD_YAML[case]
    assert list(validator.iter_errors(yaml.safe_load(textwrap.dedent(attributes)))) != []


def test_shared_sensor_component_watches_pipelines_without_their_own(
    tmp_path, monkeypatch, resource
):
    module = defs_tree(
        tmp_path,
        monkeypatch,
        {
            "a/defs.yaml": pipeline_yaml("a", "resource: {emulator_dir: emu}\n"),
            "a/rows.csv": ROWS_CSV,
            "b/defs.yaml": pipeline_yaml("b", "resource: {emulator_dir: emu}\n"),
            "b/rows.csv": ROWS_CSV,
            "c/defs.yaml": pipeline_yaml("c", "sensor: {}\n"),
            "c/rows.csv": ROWS_CSV,
            "d/defs.yaml": pipeline_yaml("d", "sensor: {}\n"),
            "d/rows.csv": ROWS_CSV,
            "sensor/defs.yaml": SENSOR_YAML,
        },
    )
    defs, pipelines = load_pipelines_from_defs_folder(module)
    repo = defs.get_repository_def()
    targets = {s.name: sorted(t.job_name for t in s.targets) for s in repo.sensor_defs}
    assert targets == {
        "openai_batch_sensor": ["a_results", "b_results"],
        "c_sensor": ["c_results"],  # sensors named after their pipeline never clash
        "d_sensor": ["d_results"],
    }
    # Two YAML files with the same settings declare one resource.
    assert isinstance((defs.resources or {})["openai_batch"], type(resource))
    assert sorted(p.name for p in pipelines) == ["a", "b", "c", "d"]


def test_different_resource_settings_under_one_key_fail_naming_both(tmp_path, monkeypatch):
    module = defs_tree(
        tmp_path,
        monkeypatch,
        {
            "a/defs.yaml": pipeline_yaml("a", "resource: {emulator_dir: emu}\n"),
            "a/rows.csv": ROWS_CSV,
            "b/defs.yaml": pipeline_yaml("b", "resource: {emulator_dir: other}\n"),
            "b/rows.csv": ROWS_CSV,
        },
    )
    message = load_error(module)
    assert (
        "pipelines 'a' and 'b' declare different settings for resource key 'openai_batch'"
        in (message)
        or "pipelines 'b' and 'a'" in message
    )


@pytest.mark.parametrize(
    ("file", "write"),
    [
        ("rows.csv", lambda path: path.write_text(ROWS_CSV)),
        (
            "rows.jsonl",
            lambda path: path.write_text(
                '{"id": "001", "text": "first"}\n\n{"id": "002", "text": "second"}\n'
            ),
        ),
        (
            "rows.parquet",
            lambda path: __import__("pyarrow.parquet").parquet.write_table(
                __import__("pyarrow").table({"id": ["001", "002"], "text": ["first", "second"]}),
                path,
            ),
        ),
    ],
    ids=["csv", "jsonl", "parquet"],
)
def test_source_file_of_rows_per_partition(tmp_path, monkeypatch, instance, resource, file, write):
    suffix = Path(file).suffix
    module = defs_tree(
        tmp_path,
        monkeypatch,
        {
            "p/defs.yaml": pipeline_yaml("p", "partitions: {static: [eu, us]}\n").replace(
                "source: rows.csv", f"source: data/{{partition_key}}{suffix}"
            )
        },
    )
    folder = Path(module.__file__).parent / "p" / "data"  # type: ignore[arg-type]
    folder.mkdir()
    write(folder / f"eu{suffix}")
    _, (pipeline,) = load_pipelines_from_defs_folder(module)
    result = dg.materialize(
        [pipeline.input_file],
        partition_key="eu",
        resources={"openai_batch": resource},
        instance=instance,
    )
    (materialization,) = result.asset_materializations_for_node(pipeline.input_file.op.name)
    assert InputFileRecord.read(materialization.metadata).requests == 2
    # Every file keeps the ids as written (CSV cells are read as text: no 001 -> 1).
    assert "001" in str(materialization.metadata)
    with pytest.raises(dg.Failure, match=r"No file of rows at .*/us"):
        dg.materialize(
            [pipeline.input_file],
            partition_key="us",
            resources={"openai_batch": resource},
            instance=instance,
        )


def test_yaml_translation_and_execution_reach_the_assets(tmp_path, monkeypatch, resource):
    extra = """\
    sensor: {}
    translation:
      key: "llm/{{ props.pipeline }}/{{ props.stage }}"
      owners: [team:ml]
      tags: {stage: "{{ props.stage }}"}
      automation_condition: "{{ dg.AutomationCondition.eager() }}"
    execution:
      batch_job: {pool: one_at_a_time}
      results: {retry_policy: {max_retries: 2, delay: 5, backoff: exponential}}
    """
    module = defs_tree(
        tmp_path,
        monkeypatch,
        {"t/defs.yaml": pipeline_yaml("t", extra), "t/rows.csv": ROWS_CSV},
    )
    attributes = yaml.safe_load((tmp_path / module.__name__ / "t" / "defs.yaml").read_text())
    schema = OpenAIBatchComponent.get_model_cls().model_json_schema()
    jsonschema.validate(attributes["attributes"], schema)  # what `dg check yaml` checks
    defs, (pipeline,) = load_pipelines_from_defs_folder(module)
    defs = dg.Definitions.merge(defs, dg.Definitions(resources={"openai_batch": resource}))
    graph = defs.resolve_asset_graph()
    assert [k.to_user_string() for k in pipeline.asset_keys] == [
        "llm/t/input_file",
        "llm/t/batch_job",
        "llm/t/results",
    ]
    assert graph.get(pipeline.results.key).parent_keys == {pipeline.batch_job.key}
    for asset in pipeline.assets:
        spec = asset.specs_by_key[asset.key]
        assert spec.owners == ["team:ml"]
        assert spec.tags["stage"] == asset.key.path[-1]
        assert spec.automation_condition == dg.AutomationCondition.eager()
    assert pipeline.batch_job.op.pool == "one_at_a_time"
    assert pipeline.input_file.op.pool is None
    assert pipeline.results.op.retry_policy == dg.RetryPolicy(
        max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL
    )
