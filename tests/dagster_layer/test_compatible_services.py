"""A whole pipeline, sensor included, against an OpenAI-compatible service with its own shapes.

The service is `tests/compatible_service.py`'s gateway in front of the emulator, over real HTTP:
base64 ids, no batch ``usage``, ``request_counts`` null, ``""`` file ids, no optional timestamps,
a 7-day window, result lines without ``id``, an error file always present.
"""

import logging
import re
import textwrap
from pathlib import Path

import dagster as dg
import openai
import pyarrow.parquet as pq
import pytest
import yaml
from compatible_service import CompatibleGateway, decode, serve_gateway
from openai.types import Batch
from pipeline_helpers import recorded, run_sensor_until_idle

from dagster_openai_batch import (
    OpenAIBatchResource,
    RequestTemplate,
    openai_batch_assets,
    openai_batch_sensor,
)
from dagster_openai_batch.dagster.asset_bodies import batch_status
from dagster_openai_batch.dagster.component_attributes import ResourceModel
from dagster_openai_batch.dagster.resource import OpenAIConfigurationError
from dagster_openai_batch.dagster.stage_records import (
    BatchJobRecord,
    InputFileRecord,
    ResultsRecord,
)
from dagster_openai_batch.emulator import Emulator, EmulatorConfig, Pace

ROWS = [{"id": f"q{i}", "question": f"What is {i} + {i}?"} for i in range(25)]


@dg.asset
def questions() -> list[dict]:
    return ROWS


PIPELINE = openai_batch_assets(
    name="qa",
    source=questions,
    template=RequestTemplate(
        endpoint="/v1/chat/completions",
        model="llama-3.1-8b-instant",  # a compatible service's own model: not refused
        messages=[{"role": "user", "content": "{question}"}],
        custom_id_column="id",
    ),
)


def defs_for(resource: OpenAIBatchResource) -> dg.Definitions:
    return dg.Definitions.merge(
        PIPELINE.definitions(),
        dg.Definitions(
            assets=[questions],
            sensors=[openai_batch_sensor([PIPELINE], minimum_interval_seconds=1)],
            resources={"openai_batch": resource},
        ),
    )


def submit(instance: dg.DagsterInstance, resource: OpenAIBatchResource, **config: bool) -> None:
    result = dg.materialize(
        [questions, PIPELINE.input_file, PIPELINE.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
        selection=[PIPELINE.batch_job] if config else None,
        run_config={"ops": {PIPELINE.batch_job.op.name: {"config": config}}} if config else None,
    )
    assert result.success


def results_table(instance: dg.DagsterInstance) -> dict[str, list]:
    results = recorded(instance, PIPELINE.results.key, ResultsRecord)
    table = pq.read_table(results.results_uri, columns=["custom_id", "status"]).to_pydict()
    assert sorted(table["custom_id"]) == sorted(r["id"] for r in ROWS)  # each exactly once
    return table


def test_a_compatible_service_with_its_own_shapes_end_to_end(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    gateway = CompatibleGateway(
        Emulator(tmp_path / "emu", EmulatorConfig(pace=Pace.fast(), accept_any_model=True))
    )
    with serve_gateway(gateway) as url:
        resource = OpenAIBatchResource(api_key="sk-test", base_url=url, completion_window="7d")
        assert resource.backend == "compatible"
        submit(instance, resource)
        job = recorded(instance, PIPELINE.batch_job.key, BatchJobRecord)
        [batch_id] = job.batch_id_list
        assert not batch_id.startswith("batch_")
        assert decode(batch_id).startswith("batch_")  # the gateway's base64 id, kept as it is
        _, runs = run_sensor_until_idle(defs_for(resource), instance)
    assert len(runs) == 1
    assert instance.get_run_by_id(runs[0]).status == dg.DagsterRunStatus.SUCCESS
    assert gateway.windows == ["7d"]
    results = recorded(instance, PIPELINE.results.key, ResultsRecord)
    assert results.status_succeeded == 25
    assert results.rows == 25
    assert results.input_tokens > 0  # from each answer's usage: the batch itself has none
    assert results.covered_batch_ids == [batch_id]
    assert set(results_table(instance)["status"]) == {"succeeded"}


@pytest.mark.parametrize("cancelled_lines", [True, False], ids=["error_lines", "absent"])
def test_never_run_requests_of_a_cancelled_batch_are_cancelled_once(
    instance: dg.DagsterInstance, tmp_path: Path, cancelled_lines: bool
) -> None:
    """Whether the service writes ``batch_cancelled`` lines for them or leaves them out."""
    emulator = Emulator(
        tmp_path / "emu", EmulatorConfig(pace=Pace.realistic(), accept_any_model=True)
    )
    gateway = CompatibleGateway(emulator, cancelled_lines=cancelled_lines)
    with serve_gateway(gateway) as url:
        resource = OpenAIBatchResource(api_key="sk-test", base_url=url)
        submit(instance, resource)
        submit(instance, resource, cancel=True)  # while it validates: nothing has run
        _, runs = run_sensor_until_idle(defs_for(resource), instance, timeout=30)
    assert len(runs) == 1
    assert instance.get_run_by_id(runs[0]).status == dg.DagsterRunStatus.SUCCESS
    assert results_table(instance)["status"] == ["cancelled"] * 25
    results = recorded(instance, PIPELINE.results.key, ResultsRecord)
    assert results.status_cancelled == 25


def test_the_resource_picks_the_profile_of_its_backend(tmp_path: Path) -> None:
    azure = OpenAIBatchResource(
        api_key="sk-test",
        azure_endpoint="https://my-resource.openai.azure.com",
        api_version="2025-04-01-preview",
    )
    assert azure.service_profile.max_requests_per_file == 100_000
    assert not azure.service_profile.model_names_known  # a deployment name is no model name
    v1 = OpenAIBatchResource(api_key="sk-test", base_url="https://x.openai.azure.com/openai/v1/")
    assert v1.backend == "azure"  # Azure's v1 API, with the plain OpenAI client
    assert isinstance(v1.build_openai_client(), openai.OpenAI)
    gateway = OpenAIBatchResource(
        api_key="sk-test", base_url="https://llm-gateway.example.com/v1", service="azure"
    )
    assert gateway.service_profile.max_requests_per_file == 100_000
    offline_azure = OpenAIBatchResource(emulator_dir=str(tmp_path), service="azure")
    assert offline_azure.backend == "emulator"  # the emulator, under Azure's limits
    assert offline_azure.service_profile.max_requests_per_file == 100_000
    groq = OpenAIBatchResource(
        api_key="sk-test", base_url="https://api.groq.com/openai/v1", completion_window="7d"
    )
    assert (groq.backend, groq.service_profile.completion_window) == ("compatible", "7d")
    with pytest.raises(OpenAIConfigurationError, match="takes only '24h'"):
        OpenAIBatchResource(api_key="sk-test", completion_window="7d").build_openai_client()


def test_the_readme_yaml_resource_is_an_azure_one(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Azure OpenAI and compatible services", 1)[1]
    block = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)[0]
    attributes = yaml.safe_load(textwrap.dedent(block))
    settings = ResourceModel.model_validate(attributes["resource"]).settings(tmp_path)
    resource = OpenAIBatchResource(**settings)
    assert resource.backend == "azure"
    assert resource.service_profile.max_requests_per_file == 100_000
    groq = yaml.safe_load(
        textwrap.dedent(block.split("# Groq instead:", 1)[1].replace("# ", "").replace("#", ""))
    )
    groq_settings = ResourceModel.model_validate(groq["resource"]).settings(tmp_path)
    assert OpenAIBatchResource(**groq_settings).service_profile.completion_window == "7d"


def test_progress_of_batches_without_counts_or_times(tmp_path: Path) -> None:
    """What the sensor records for batches as a bare compatible service returns them: the SDK
    leaves every missing field None."""
    bare = [
        Batch.construct(id="b1", status="in_progress", endpoint="/v1/chat/completions"),
        Batch.construct(id="b2", status="completed", output_file_id="", error_file_id=""),
    ]
    resource = OpenAIBatchResource(api_key="sk-test", base_url="http://localhost:4000/v1")
    status = batch_status(resource, bare)
    assert (status.status, status.progress) == ("completed,in_progress", "not started")
    assert (status.elapsed, status.expected_finish, status.finished_at) == ("", None, None)
    done = batch_status(resource, bare[1:])
    assert (done.status, done.finished_at) == ("completed", None)


def test_an_unknown_model_is_warned_about_in_the_run_log(
    instance: dg.DagsterInstance, resource: OpenAIBatchResource
) -> None:
    pipeline = openai_batch_assets(
        name="unknown_model",
        source=questions,
        template=RequestTemplate(
            endpoint="/v1/chat/completions", model="gpt-7-preview", prompt="{question}"
        ),
    )
    result = dg.materialize(
        [questions, pipeline.input_file],
        instance=instance,
        resources={"openai_batch": resource},
    )
    assert result.success  # warned, not refused
    warnings = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level == logging.WARNING
    ]
    assert any("'gpt-7-preview' is not in this library's catalogue" in w for w in warnings)


@dg.asset
def many_rows() -> list[dict]:
    return [{"id": i, "text": "hi"} for i in range(100_001)]


def test_input_file_splits_at_the_limit_of_the_resource_service(
    instance: dg.DagsterInstance, emulator_dir: Path
) -> None:
    pipeline = openai_batch_assets(
        name="big",
        source=many_rows,
        template=RequestTemplate(
            endpoint="/v1/chat/completions",
            model="gpt-4o-mini",
            prompt="{text}",
            custom_id_column="id",
        ),
    )
    parts = {}
    for service in ("azure", "openai"):
        resource = OpenAIBatchResource(emulator_dir=str(emulator_dir), service=service)
        result = dg.materialize(
            [many_rows, pipeline.input_file],
            instance=instance,
            resources={"openai_batch": resource},
        )
        assert result.success
        parts[service] = recorded(instance, pipeline.input_file.key, InputFileRecord).parts
    assert parts == {"azure": 2, "openai": 3}  # 100,000 + 1 on Azure; 50,000 + 50,000 + 1
