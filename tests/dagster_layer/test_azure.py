"""The library end to end against the emulator's Azure OpenAI flavour: deployment names as
models, ``api-version`` and ``/openai/v1/`` routes, an error file always present (empty), ``""``
file ids, null request counts while validating, result lines without ``id``."""

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from pipeline_helpers import recorded, run_sensor_until_idle

from dagster_openai_batch import (
    OpenAIBatchResource,
    RequestTemplate,
    openai_batch_assets,
    openai_batch_sensor,
)
from dagster_openai_batch.dagster.stage_records import BatchJobRecord, ResultsRecord
from dagster_openai_batch.emulator import Emulator, EmulatorConfig, Pace
from dagster_openai_batch.emulator.server import serve

ROWS = [{"id": f"q{i}", "question": f"What is {i} + {i}?"} for i in range(25)]


@dg.asset
def questions() -> list[dict]:
    return ROWS


PIPELINE = openai_batch_assets(
    name="azure_qa",
    source=questions,
    template=RequestTemplate(
        endpoint="/v1/chat/completions",
        model="gpt-4o-mini",  # the deployment's name (Azure's portal names it after the model)
        messages=[{"role": "user", "content": "{question}"}],
        custom_id_column="id",
    ),
)


def run_pipeline(resource: OpenAIBatchResource, instance: dg.DagsterInstance) -> ResultsRecord:
    submitted = dg.materialize(
        [questions, PIPELINE.input_file, PIPELINE.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
    )
    assert submitted.success
    defs = dg.Definitions.merge(
        PIPELINE.definitions(),
        dg.Definitions(
            assets=[questions],
            sensors=[openai_batch_sensor([PIPELINE], minimum_interval_seconds=1)],
            resources={"openai_batch": resource},
        ),
    )
    _, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    assert instance.get_run_by_id(runs[0]).status == dg.DagsterRunStatus.SUCCESS
    results = recorded(instance, PIPELINE.results.key, ResultsRecord)
    assert results.rows == results.status_succeeded == 25
    assert results.status_failed == 0  # the empty error file Azure always writes is no failure
    table = pq.read_table(results.results_uri, columns=["custom_id", "status"]).to_pydict()
    assert sorted(table["custom_id"]) == sorted(r["id"] for r in ROWS)
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(PIPELINE.batch_job.key, "batches_accepted")]
    )
    assert all(c.status.value == "SUCCEEDED" for c in check.values())
    return results


def test_azure_flavour_in_process_through_the_resource(tmp_path: Path, instance) -> None:
    resource = OpenAIBatchResource(
        emulator_dir=str(tmp_path / "emu"), emulator_pace="fast", service="azure"
    )
    assert resource.service_profile.max_requests_per_file == 100_000
    run_pipeline(resource, instance)
    job = recorded(instance, PIPELINE.batch_job.key, BatchJobRecord)
    assert len(job.batch_id_list) == 1


@pytest.mark.parametrize("route", ["v1", "api-version"])
def test_azure_flavour_over_http_with_each_client(tmp_path: Path, instance, route: str) -> None:
    emulator = Emulator(tmp_path / "emu", EmulatorConfig(pace=Pace.fast(), flavour="azure"))
    with serve(emulator) as url:
        root = url.removesuffix("/openai/v1")
        if route == "v1":  # Azure's v1 API, with the plain OpenAI client; a local address does
            # not say it is Azure, so service= does
            resource = OpenAIBatchResource(
                api_key="azure-key", base_url=f"{root}/openai/v1/", service="azure"
            )
        else:  # AzureOpenAI: /openai/... with ?api-version=
            resource = OpenAIBatchResource(
                api_key="azure-key", azure_endpoint=root, api_version="2025-04-01-preview"
            )
        assert resource.backend == "azure"
        run_pipeline(resource, instance)
