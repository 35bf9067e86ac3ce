"""The three assets and the sensor, driven through Dagster's own APIs on a real instance."""

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from pipeline_helpers import recorded, run_sensor_until_idle, table_metadata

from dagster_openai_batch import (
    BatchResults,
    OpenAIBatchResource,
    RequestTemplate,
    openai_batch_assets,
    openai_batch_sensor,
)
from dagster_openai_batch.dagster.stage_records import (
    BatchJobRecord,
    BatchStatusRecord,
    InputFileRecord,
    ResultsRecord,
)
from dagster_openai_batch.emulator import Emulator

ROWS = [{"id": f"q{i}", "question": f"What is {i} + {i}?"} for i in range(25)]


@dg.asset
def questions() -> list[dict]:
    return ROWS


def chat_pipeline(name: str = "qa", **kwargs) -> object:
    return openai_batch_assets(
        name=name,
        source=questions,
        template=RequestTemplate(
            endpoint="/v1/chat/completions",
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "{question}"}],
            custom_id_column="id",
        ),
        **kwargs,
    )


def build_defs(
    pipeline, resource: OpenAIBatchResource, extra_assets=(questions,)
) -> dg.Definitions:
    return dg.Definitions.merge(
        pipeline.definitions(),
        dg.Definitions(
            assets=list(extra_assets),
            sensors=[openai_batch_sensor([pipeline], minimum_interval_seconds=1)],
            resources={"openai_batch": resource},
        ),
    )


def submit(pipeline, resource, instance, partition: str | None = None, source=questions):
    return dg.materialize(
        [source, pipeline.input_file, pipeline.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
        partition_key=partition,
    )


def test_lineage_keys_group_and_kind(resource):
    pipeline = chat_pipeline()
    defs = build_defs(pipeline, resource)
    graph = defs.resolve_asset_graph()
    keys = [k.to_user_string() for k in pipeline.asset_keys]
    assert keys == ["qa/input_file", "qa/batch_job", "qa/results"]
    assert graph.get(pipeline.batch_job.key).parent_keys == {pipeline.input_file.key}
    assert graph.get(pipeline.results.key).parent_keys == {pipeline.batch_job.key}
    assert graph.get(pipeline.input_file.key).parent_keys == {questions.key}
    assert pipeline.results.specs_by_key[pipeline.results.key].kinds == {"openai"}
    assert pipeline.input_file.group_names_by_key[pipeline.input_file.key] == "qa"


def test_end_to_end_sensor_materializes_results_once(instance, resource):
    pipeline = chat_pipeline()
    defs = build_defs(pipeline, resource)
    result = submit(pipeline, resource, instance)
    assert result.success
    uploaded = recorded(instance, pipeline.input_file.key, InputFileRecord)
    assert uploaded.requests == 25
    assert uploaded.parts == 1
    assert uploaded.file_id_list[0].startswith("file-")
    assert uploaded.backend == "emulator"
    job = recorded(instance, pipeline.batch_job.key, BatchJobRecord)
    assert job.status.removeprefix("when batch_job ran: ") in {
        "validating",
        "in_progress",
        "finalizing",
        "completed",
    }

    cursor, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    run = instance.get_run_by_id(runs[0])
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/run_key"].startswith(job.batch_id_list[0] + "@")

    results = recorded(instance, pipeline.results.key, ResultsRecord)
    table_meta = table_metadata(instance, pipeline.results.key)
    assert table_meta.row_count == 25
    assert results.status_succeeded == 25
    assert results.rows == 25
    assert results.covered_batch_ids == job.batch_id_list
    assert results.input_tokens > 0
    assert results.output_tokens > 0
    assert isinstance(results.cost_usd, float)
    assert results.cost_usd > 0
    table = pq.read_table(results.results_uri)
    assert sorted(table.column("custom_id").to_pylist()) == sorted(r["id"] for r in ROWS)
    assert set(table.column("question").to_pylist()) == {r["question"] for r in ROWS}
    assert all(table.column("answer").to_pylist())
    assert results.column_schema is not None
    columns = {c.name: c.type for c in results.column_schema.value.columns}
    assert {"custom_id", "question", "status", "answer", "input_tokens"} <= set(columns)

    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [
            dg.AssetCheckKey(pipeline.results.key, name)
            for name in (
                "every_request_accounted_once",
                "failed_share_below_threshold",
                "no_expired_requests_left",
            )
        ]
    )
    assert len(checks) == 3
    for execution in checks.values():
        assert execution.status.value == "SUCCEEDED"
    accounted = checks[dg.AssetCheckKey(pipeline.results.key, "every_request_accounted_once")]
    assert accounted.event is not None
    assert accounted.event.dagster_event is not None
    metadata = accounted.event.dagster_event.event_specific_data.metadata
    assert metadata["unique_custom_ids"].value == metadata["rows"].value == 25

    # Progress was observed on batch_job for the UI.
    observations = instance.fetch_observations(pipeline.batch_job.key, limit=10).records
    assert observations
    observed = BatchStatusRecord.read(observations[0].asset_observation.metadata)
    assert observed.status == "completed"
    assert observed.batch_id_list == job.batch_id_list

    # Later ticks, and a sensor whose cursor was lost, never request the same batch twice.
    cursor, again = run_sensor_until_idle(defs, instance, cursor=cursor)
    assert again == []
    _, after_reset = run_sensor_until_idle(defs, instance, cursor=None)
    assert after_reset == []


def test_retried_batch_job_adopts_instead_of_paying_twice(instance, resource, emulator_dir):
    pipeline = chat_pipeline()
    submit(pipeline, resource, instance)
    first = recorded(instance, pipeline.batch_job.key, BatchJobRecord)
    again = dg.materialize(
        [questions, pipeline.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
        selection=[pipeline.batch_job],
    )
    assert again.success
    second = recorded(instance, pipeline.batch_job.key, BatchJobRecord)
    assert second.batch_id_list == first.batch_id_list
    assert second.adopted == 1
    client = Emulator(emulator_dir).openai_client()
    assert len(client.batches.list(limit=100).data) == 1
    forced = dg.materialize(
        [questions, pipeline.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
        selection=[pipeline.batch_job],
        run_config={"ops": {pipeline.batch_job.op.name: {"config": {"new_batches": True}}}},
    )
    assert forced.success
    forced_job = recorded(instance, pipeline.batch_job.key, BatchJobRecord)
    assert forced_job.batch_id_list != first.batch_id_list
    assert len(client.batches.list(limit=100).data) == 2


def test_bad_rows_fail_before_any_upload(instance, resource, emulator_dir):
    pipeline = openai_batch_assets(
        name="qa",
        source=questions,
        template=RequestTemplate(
            endpoint="/v1/chat/completions",
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "{missing_column}"}],
            custom_id_column="id",
        ),
    )
    result = dg.materialize(
        [questions, pipeline.input_file],
        instance=instance,
        resources={"openai_batch": resource},
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert "missing_column" in failure.message
    assert "question" in failure.message
    client = Emulator(emulator_dir).openai_client()
    assert client.files.list().data == []


def test_wait_true_blocks_until_finished(instance, resource):
    pipeline = chat_pipeline(wait=True)
    submit(pipeline, resource, instance)
    status = recorded(instance, pipeline.batch_job.key, BatchJobRecord).status
    assert status == "when batch_job ran: completed"  # wait=True: batch_job returned once finished
    result = dg.materialize(
        [pipeline.results],
        instance=instance,
        resources={"openai_batch": resource},
    )
    assert result.success
    handle = result.output_for_node(pipeline.results_op_name)
    assert handle.rows == 25
    assert handle.to_pandas()["status"].eq("succeeded").all()
    assert handle.to_polars().height == 25


def test_partitioned_pipeline_one_batch_set_per_partition(instance, resource):
    daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")

    @dg.asset(partitions_def=daily)
    def day_rows(context: dg.AssetExecutionContext) -> list[dict]:
        return [{"id": f"{context.partition_key}-{i}", "question": f"q{i}"} for i in range(5)]

    pipeline = openai_batch_assets(
        name="daily_qa",
        source=day_rows,
        partitions_def=daily,
        schedule=True,
        template=RequestTemplate(
            endpoint="/v1/embeddings",
            model="text-embedding-3-small",
            prompt="{question}",
            custom_id_column="id",
        ),
    )
    defs = build_defs(pipeline, resource, extra_assets=(day_rows,))
    assert defs.resolve_schedule_def("daily_qa_schedule").cron_schedule == "0 0 * * *"
    for day in ("2026-01-01", "2026-01-02"):
        assert submit(pipeline, resource, instance, partition=day, source=day_rows).success
    _, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 2
    for day in ("2026-01-01", "2026-01-02"):
        results = recorded(instance, pipeline.results.key, ResultsRecord, day)
        table = pq.read_table(results.results_uri)
        assert sorted(table.column("custom_id").to_pylist()) == [f"{day}-{i}" for i in range(5)]
        vectors = table.column("answer").to_pylist()
        assert len(vectors[0]) == 1536


def test_jsonl_file_source(instance, resource, tmp_path: Path):
    import orjson

    path = tmp_path / "requests.jsonl"
    path.write_bytes(
        b"".join(
            orjson.dumps(
                {
                    "custom_id": f"e{i}",
                    "method": "POST",
                    "url": "/v1/embeddings",
                    "body": {"model": "text-embedding-3-small", "input": f"text {i}"},
                }
            )
            + b"\n"
            for i in range(7)
        )
    )
    pipeline = openai_batch_assets(
        name="from_file", source=path, endpoint="/v1/embeddings", wait=True
    )
    result = dg.materialize(
        pipeline.assets, instance=instance, resources={"openai_batch": resource}
    )
    assert result.success
    assert table_metadata(instance, pipeline.results.key).row_count == 7
    assert recorded(instance, pipeline.results.key, ResultsRecord).status_succeeded == 7


def test_factory_rejects_inconsistent_arguments():
    with pytest.raises(ValueError, match="template"):
        openai_batch_assets(name="x", source=questions)
    with pytest.raises(ValueError, match="needs endpoint="):
        openai_batch_assets(name="x", source="requests.JSONL")
    with pytest.raises(ValueError, match="unknown batch endpoint"):
        openai_batch_assets(name="x", source="x.jsonl", endpoint="/v1/nope")


def test_storage_uri_works_like_a_local_path(instance, resource, tmp_path: Path):
    """Tables go through pyarrow.fs, so a URI (here file://, in production s3:// or gs://) works."""
    storage = f"file://{tmp_path}/bucket/openai"
    pipeline = chat_pipeline(wait=True, storage=storage)
    result = dg.materialize(
        [questions, *pipeline.assets], instance=instance, resources={"openai_batch": resource}
    )
    assert result.success
    results = recorded(instance, pipeline.results.key, ResultsRecord)
    assert results.results_uri.startswith(storage)
    handle = result.output_for_node(pipeline.results_op_name)
    assert handle.to_arrow().num_rows == 25
    assert list((tmp_path / "bucket" / "openai" / "qa" / "all" / "results").glob("*.parquet"))


def test_fsspec_storage_and_the_deployments_io_manager(instance, resource, tmp_path: Path):
    """A scheme pyarrow has no filesystem for goes through fsspec (here ``memory://``; ``az://``
    with adlfs), and ``results_io_manager_key`` stores the handle through the deployment's IO
    manager, from which a downstream asset in another run loads it."""
    storage = "memory://openai-batch-test/root"
    pipeline = chat_pipeline(wait=True, storage=storage, results_io_manager_key="io_manager")
    io_manager = dg.FilesystemIOManager(base_dir=str(tmp_path / "io"))
    resources = {"openai_batch": resource, "io_manager": io_manager}
    assert dg.materialize([questions, *pipeline.assets], instance=instance, resources=resources)
    assert recorded(instance, pipeline.results.key, ResultsRecord).results_uri.startswith(storage)
    assert (tmp_path / "io" / "qa" / "results").is_file()  # the pickled handle

    @dg.asset(ins={"answers": dg.AssetIn(key=pipeline.results.key)})
    def answered(answers: BatchResults) -> int:
        return answers.to_arrow(["custom_id"]).num_rows

    downstream = dg.materialize(
        [answered, pipeline.results], selection=[answered], instance=instance, resources=resources
    )
    assert downstream.output_for_node("answered") == 25


def test_azure_and_compatible_backends_are_configured_not_guessed():
    azure = OpenAIBatchResource(
        api_key="k",
        azure_endpoint="https://example.openai.azure.com",
        api_version="2025-04-01-preview",
    )
    assert azure.backend == "azure"
    import openai

    assert isinstance(azure.build_openai_client(), openai.AzureOpenAI)
    with pytest.raises(Exception, match="api_version"):
        OpenAIBatchResource(
            api_key="k", azure_endpoint="https://example.openai.azure.com"
        ).build_openai_client()
    assert (
        OpenAIBatchResource(api_key="k", base_url="http://localhost:8000/v1").backend
        == "compatible"
    )
    assert OpenAIBatchResource(api_key="k").backend == "openai"
    assert (
        OpenAIBatchResource(api_key="k").dashboard_url("batch_1")
        == "https://platform.openai.com/batches/batch_1"
    )


def test_input_split_into_several_batches_is_joined_back_whole(instance, resource):
    pipeline = chat_pipeline(max_requests_per_file=10)
    defs = build_defs(pipeline, resource)
    assert submit(pipeline, resource, instance).success
    assert recorded(instance, pipeline.input_file.key, InputFileRecord).parts == 3
    batch_ids = recorded(instance, pipeline.batch_job.key, BatchJobRecord).batch_id_list
    assert len(batch_ids) == 3
    _, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    assert (
        instance.get_run_by_id(runs[0])
        .tags["dagster/run_key"]
        .startswith("+".join(batch_ids) + "@")
    )
    table = pq.read_table(recorded(instance, pipeline.results.key, ResultsRecord).results_uri)
    assert sorted(table.column("custom_id").to_pylist()) == sorted(r["id"] for r in ROWS)
    assert set(table.column("batch_id").to_pylist()) == set(batch_ids)


def test_empty_source_materializes_nothing_and_fails_nothing(instance, resource, emulator_dir):
    @dg.asset(name="questions")
    def no_questions() -> list[dict]:
        return []

    pipeline = chat_pipeline()
    result = dg.materialize(
        [no_questions, pipeline.input_file, pipeline.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
    )
    assert result.success
    assert instance.get_latest_materialization_event(pipeline.input_file.key) is None
    assert instance.get_latest_materialization_event(pipeline.batch_job.key) is None
    assert Emulator(emulator_dir).openai_client().files.list().data == []
