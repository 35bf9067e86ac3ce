"""The stage records: typed metadata under ``openai_batch/`` keys, written and read in one place,
and an instance written by the previous version (flat keys) still read by the sensor and assets."""

from pathlib import Path

import dagster as dg
import pytest
from pipeline_helpers import recorded, run_sensor_until_idle
from submitter import PIPELINE, definitions, submit

from dagster_openai_batch import OpenAIBatchResource
from dagster_openai_batch.dagster.stage_records import (
    NAMESPACE,
    BatchJobRecord,
    BatchStatusRecord,
    InputFileRecord,
    ResultsRecord,
    StageRecordError,
    latest_record,
    with_legacy_keys,
)
from dagster_openai_batch.emulator import Emulator


def result_ids(instance: dg.DagsterInstance, partition: str) -> list[str]:
    import pyarrow.parquet as pq

    uri = recorded(instance, PIPELINE.results.key, ResultsRecord, partition).results_uri
    return pq.read_table(uri, columns=["custom_id"]).column("custom_id").to_pylist()


def stored_metadata(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str
) -> dict[str, dg.MetadataValue]:
    (record,) = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    assert record.asset_materialization is not None
    return dict(record.asset_materialization.metadata)


# ---------------------------------------------------------------- what the stages write


def test_every_key_the_stages_write_is_namespaced_and_reads_back(instance, resource):
    assert submit(instance, resource, "a").success
    _, runs = run_sensor_until_idle(definitions(resource), instance)
    assert len(runs) == 1
    for key, record_type in (
        (PIPELINE.input_file.key, InputFileRecord),
        (PIPELINE.batch_job.key, BatchJobRecord),
        (PIPELINE.results.key, ResultsRecord),
    ):
        metadata = stored_metadata(instance, key, "a")
        # Besides ours: Dagster's standard table keys, and usage under Insights' `openai.` keys.
        ours = {k for k in metadata if not k.startswith(("dagster/", "openai."))}
        assert ours, key
        assert [k for k in ours if not k.startswith(f"{NAMESPACE}/")] == []
        record = record_type.read(metadata)
        assert set(dict(record)) == ours  # nothing written outside the record
        assert record_type.read(dict(record)) == record
    results = recorded(instance, PIPELINE.results.key, ResultsRecord, "a")
    job = recorded(instance, PIPELINE.batch_job.key, BatchJobRecord, "a")
    assert results.counts == {
        "succeeded": 30,
        "failed": 0,
        "expired": 0,
        "cancelled": 0,
        "missing": 0,
    }
    assert results.covered_batch_ids == results.batch_id_list == job.batch_id_list
    assert results.content_hash == job.content_hash
    observation = instance.fetch_observations(PIPELINE.batch_job.key, limit=1).records[0]
    observed = BatchStatusRecord.read(observation.asset_observation.metadata)
    assert observed.batch_id_list == job.batch_id_list
    assert observed.status == "completed"
    assert observed.requests_completed == 30


def test_a_malformed_value_is_one_clear_error():
    with pytest.raises(StageRecordError, match="batch_ids"):
        BatchJobRecord.read({BatchJobRecord.key("batch_ids"): "batch_1,batch_2"})
    with pytest.raises(ValueError, match="expected a list of ids"):
        BatchJobRecord(batch_ids=dg.MetadataValue.json([1, None]))
    with pytest.raises(KeyError):
        BatchJobRecord.key("batch_id")
    assert BatchJobRecord.key("batch_ids") == "openai_batch/batch_ids"


# ---------------------------------------------------------------- the previous version's keys


def legacy_input_file(record: InputFileRecord) -> dict[str, object]:
    """``input_file``'s metadata as the previous version wrote it (flat keys)."""
    return {
        "backend": record.backend,
        "endpoint": record.endpoint,
        "model": record.model,
        "file_ids": dg.MetadataValue.json(record.file_id_list),
        "parts": record.parts,
        "requests": record.requests,
        "bytes": record.bytes,
        "content_hash": record.content_hash,
        "storage_uri": record.storage_uri,
        "part_uris": dg.MetadataValue.json(record.part_uri_list),
        "inputs_uri": record.inputs_uri,
        "preview": record.preview,
    }


def legacy_batch_job(record: BatchJobRecord) -> dict[str, object]:
    """``batch_job``'s metadata as the previous version wrote it (flat keys)."""
    return {
        "batch_ids": dg.MetadataValue.json(record.batch_id_list),
        "status": record.status,
        "progress": record.progress,
        "requests_total": record.requests_total,
        "requests_completed": record.requests_completed,
        "requests_failed": record.requests_failed,
        "model": record.model,
        "expires_at": record.expires_at,
        "backend": record.backend,
        "endpoint": record.endpoint,
        "adopted": record.adopted,
        "content_hash": record.content_hash,
        "requests": record.requests,
        "expected_rows": record.expected_rows,
        "inputs_uri": record.inputs_uri,
        "part_uris": dg.MetadataValue.json(record.part_uri_list),
        "followup_of": record.followup_of,
    }


def legacy_results(record: ResultsRecord, rows: int) -> dict[str, object]:
    """``results``' metadata as the previous version wrote it (flat keys)."""
    return {
        "backend": record.backend,
        "results_uri": dg.MetadataValue.path(record.results_uri),
        "dagster/row_count": rows,
        **{f"status_{status}": n for status, n in record.counts.items()},
        "input_tokens": record.input_tokens,
        "cached_tokens": record.cached_tokens,
        "output_tokens": record.output_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "batch_ids": dg.MetadataValue.json(record.batch_id_list),
        "cost_usd": dg.MetadataValue.float(record.cost_usd or 0.0),
        "cost_note": record.cost_note,
        "source_batch_ids": dg.MetadataValue.json(record.covered_batch_ids),
        "content_hash": record.content_hash,
    }


def report(instance: dg.DagsterInstance, key: dg.AssetKey, metadata: dict[str, object]) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=key, partition="a", metadata=metadata)
    )


def submitted_elsewhere(
    tmp_path: Path, resource: OpenAIBatchResource, **config: object
) -> tuple[InputFileRecord, BatchJobRecord]:
    """Batches really submitted (on the shared emulator) from a scratch instance: the records
    an upgraded instance would hold, before they are rewritten in the previous version's keys."""
    (tmp_path / "scratch").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "scratch")) as scratch:
        assert submit(scratch, resource, "a", **config).success
        return (
            recorded(scratch, PIPELINE.input_file.key, InputFileRecord, "a"),
            recorded(scratch, PIPELINE.batch_job.key, BatchJobRecord, "a"),
        )


def test_legacy_keys_are_read_only_without_namespaced_ones():
    old = {"batch_ids": dg.MetadataValue.json(["batch_1"]), "dagster/row_count": 3}
    assert with_legacy_keys(old) == {"openai_batch/batch_ids": old["batch_ids"]}
    assert BatchJobRecord.read(old).batch_id_list == ["batch_1"]
    new = {**BatchJobRecord(batch_ids=dg.MetadataValue.json(["batch_2"])), "batch_ids": "x"}
    assert with_legacy_keys(new) is new
    assert BatchJobRecord.read(new).batch_id_list == ["batch_2"]


def test_the_sensor_and_results_read_a_batch_job_of_the_previous_version(
    instance, resource, tmp_path
):
    uploaded, job = submitted_elsewhere(tmp_path, resource)
    report(instance, PIPELINE.input_file.key, legacy_input_file(uploaded))
    report(instance, PIPELINE.batch_job.key, legacy_batch_job(job))

    defs = definitions(resource)
    _, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    assert instance.get_run_by_id(runs[0]).status == dg.DagsterRunStatus.SUCCESS
    assert sorted(result_ids(instance, "a")) == sorted(f"a{i}" for i in range(30))
    collected = recorded(instance, PIPELINE.results.key, ResultsRecord, "a")
    assert collected.batch_id_list == job.batch_id_list

    # Results recorded by the previous version count as collected: no second run.
    report(instance, PIPELINE.results.key, legacy_results(collected, rows=30))
    assert latest_record(instance, PIPELINE.results.key, "a", ResultsRecord) == (
        collected.model_copy(update={"preview": None, "column_schema": None})
    )
    _, again = run_sensor_until_idle(defs, instance, cursor=None)
    assert again == []


def test_a_plain_rerun_adopts_a_batch_set_recorded_by_the_previous_version(
    instance, resource, emulator_dir, tmp_path
):
    # Made with new_batches, the set is found only through the record (its batches' key names
    # the run that made them, which the re-run is not).
    uploaded, job = submitted_elsewhere(tmp_path, resource, new_batches=True)
    report(instance, PIPELINE.input_file.key, legacy_input_file(uploaded))
    report(instance, PIPELINE.batch_job.key, legacy_batch_job(job))
    client = Emulator(emulator_dir).openai_client()
    before = {b.id for b in client.batches.list(limit=100).data}
    assert before == set(job.batch_id_list)

    rerun = dg.materialize(
        [PIPELINE.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
        partition_key="a",
    )
    assert rerun.success
    adopted = recorded(instance, PIPELINE.batch_job.key, BatchJobRecord, "a")
    assert adopted.batch_id_list == job.batch_id_list
    assert adopted.adopted == 3
    # The legacy input_file record holds no cost estimate: everything else is handed on as it was.
    estimates = {"estimated_input_tokens", "estimated_cost_min_usd", "estimated_cost_max_usd"}
    handed_on = {k: v for k, v in adopted.handed_on().items() if k not in estimates}
    assert handed_on == {k: v for k, v in job.handed_on().items() if k not in estimates}
    assert {b.id for b in client.batches.list(limit=100).data} == before  # nothing paid twice
