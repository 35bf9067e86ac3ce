"""The sensor and the assets when batches expire, are cancelled, fail validation or lose
requests."""

import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from pipeline_helpers import recorded, run_sensor_until_idle, table_metadata

from dagster_openai_batch import (
    OpenAIBatchResource,
    RequestTemplate,
    openai_batch_assets,
    openai_batch_sensor,
)
from dagster_openai_batch.core.resubmit import count_resubmittable
from dagster_openai_batch.dagster.sensor import SensorCursor
from dagster_openai_batch.dagster.stage_records import (
    BatchJobRecord,
    BatchStatusRecord,
    ResultsRecord,
)
from dagster_openai_batch.demo.run import evaluate_sensor_once
from dagster_openai_batch.emulator import Emulator

ROWS = [{"id": f"q{i}", "question": f"Explain {i} in one line."} for i in range(25)]


@dg.asset
def questions() -> list[dict]:
    return ROWS


PIPELINE_TEMPLATE = RequestTemplate(
    endpoint="/v1/chat/completions",
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "{question}"}],
    custom_id_column="id",
)
PIPELINE = openai_batch_assets(name="qa", source=questions, template=PIPELINE_TEMPLATE)


def setup(resource: OpenAIBatchResource, instance: dg.DagsterInstance) -> dg.Definitions:
    defs = dg.Definitions.merge(
        PIPELINE.definitions(),
        dg.Definitions(
            assets=[questions],
            sensors=[openai_batch_sensor([PIPELINE])],
            resources={"openai_batch": resource},
        ),
    )
    result = dg.materialize(
        [questions, PIPELINE.input_file, PIPELINE.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
    )
    assert result.success
    return defs


def check_results(instance: dg.DagsterInstance) -> dict[str, bool]:
    keys = [
        dg.AssetCheckKey(PIPELINE.results.key, name)
        for name in (
            "every_request_accounted_once",
            "failed_share_below_threshold",
            "no_expired_requests_left",
        )
    ]
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    return {key.name: records[key].event.dagster_event.event_specific_data.passed for key in keys}


def statuses(results: ResultsRecord) -> list[str]:
    return pq.read_table(results.results_uri, columns=["status"]).column("status").to_pylist()


def latest_job(instance: dg.DagsterInstance) -> BatchJobRecord:
    return recorded(instance, PIPELINE.batch_job.key, BatchJobRecord)


def latest_results(instance: dg.DagsterInstance) -> ResultsRecord:
    return recorded(instance, PIPELINE.results.key, ResultsRecord)


def latest_observation(instance: dg.DagsterInstance) -> BatchStatusRecord:
    observed = instance.fetch_observations(PIPELINE.batch_job.key, limit=1).records[0]
    return BatchStatusRecord.read(observed.asset_observation.metadata)


def resubmit(resource, instance, source=questions, **config) -> dg.ExecuteInProcessResult:
    """Materialize batch_job with ``resubmit_failed: true`` (and any other config)."""
    return dg.materialize(
        [source, PIPELINE.input_file, PIPELINE.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
        selection=[PIPELINE.batch_job],
        raise_on_error=False,
        run_config={
            "ops": {PIPELINE.batch_job.op.name: {"config": {"resubmit_failed": True, **config}}}
        },
    )


def test_expired_batch_gets_results_with_partial_output(instance, emulator_dir):
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        emulator_faults={"expire_after_seconds": 0.51},
    )  # mid-processing
    defs = setup(resource, instance)
    time.sleep(0.2)
    _, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    results = latest_results(instance)
    found = statuses(results)
    assert len(found) == 25
    assert set(found) == {"succeeded", "expired"}
    assert results.status_expired == found.count("expired") > 0
    checks = check_results(instance)
    assert checks == {
        "every_request_accounted_once": True,
        "failed_share_below_threshold": True,
        "no_expired_requests_left": False,
    }


def test_cancelled_batch_gets_results_for_the_finished_part(instance, emulator_dir):
    resource = OpenAIBatchResource(emulator_dir=str(emulator_dir), emulator_pace="realistic")
    defs = setup(resource, instance)
    batch_id = latest_job(instance).batch_id_list[0]
    Emulator(emulator_dir).openai_client().batches.cancel(batch_id)
    _, runs = run_sensor_until_idle(defs, instance, timeout=30)
    assert len(runs) == 1
    assert statuses(latest_results(instance)) == ["cancelled"] * 25
    assert latest_observation(instance).status == "cancelled"


def test_batch_failing_validation_gets_a_red_check_run_and_no_results(instance, emulator_dir):
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        emulator_faults={"token_limits": {"gpt-4o-mini": 50}},
    )
    defs = setup(resource, instance)
    cursor, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1  # batches_accepted alone: nothing to download
    assert instance.get_latest_materialization_event(PIPELINE.results.key) is None
    assert SensorCursor.model_validate_json(cursor).in_flight == []
    observed = latest_observation(instance)
    assert observed.status == "failed"
    assert observed.errors is not None
    assert "token_limit_exceeded" in observed.errors.value
    check = dg.AssetCheckKey(PIPELINE.batch_job.key, "batches_accepted")
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
    assert latest.event.dagster_event.event_specific_data.passed is False
    looked_up = dg.materialize(
        [questions, PIPELINE.input_file, PIPELINE.batch_job, PIPELINE.accepted_check],
        instance=instance,
        resources={"openai_batch": resource},
        selection=dg.AssetSelection.checks(PIPELINE.accepted_check),
    )
    evaluation = looked_up.get_asset_check_evaluations()[0]
    assert evaluation.passed is False
    looked = BatchStatusRecord.read(evaluation.metadata)
    assert looked.errors is not None
    assert "token_limit_exceeded" in looked.errors.value


def test_failed_requests_resubmitted_and_merged_back(instance, emulator_dir):
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        emulator_faults={"request_error_rate": 0.4, "seed": 3},
    )
    defs = setup(resource, instance)
    cursor, _ = run_sensor_until_idle(defs, instance)
    first = latest_results(instance)
    assert first.status_failed > 0
    assert check_results(instance)["failed_share_below_threshold"] is False

    assert resubmit(resource, instance).success
    job = latest_job(instance)
    assert job.followup_of == first.results_uri
    retryable = count_resubmittable(first.results_uri)  # 429/5xx only: 400s would fail again
    assert 0 < retryable < first.status_failed
    assert job.requests == retryable
    assert job.expected_rows == 25
    _, runs = run_sensor_until_idle(defs, instance, cursor=cursor)
    assert len(runs) == 1
    merged = latest_results(instance)
    table = pq.read_table(merged.results_uri)
    assert sorted(table.column("custom_id").to_pylist()) == sorted(r["id"] for r in ROWS)
    assert merged.status_failed < first.status_failed
    assert merged.status_succeeded + merged.status_failed == 25
    assert merged.covered_batch_ids == [*first.batch_id_list, *job.batch_id_list]
    assert "question" in table.column_names
    assert check_results(instance)["every_request_accounted_once"] is True


def test_misconfigured_resource_fails_fast_without_leaking_the_key(instance, monkeypatch):
    with pytest.raises(Exception, match="OPENAI_API_KEY"):
        OpenAIBatchResource().build_openai_client()
    secret = "sk-test-SECRET-0123456789"
    resource = OpenAIBatchResource(
        api_key=secret, base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_seconds=2
    )
    result = dg.materialize(
        [questions, PIPELINE.input_file],
        instance=instance,
        resources={"openai_batch": resource},
        raise_on_error=False,
    )
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error
    text = error.to_string()
    assert "127.0.0.1:9" in text
    assert secret not in text
    for record in instance.get_records_for_run(result.run_id).records:
        assert secret not in str(record.event_log_entry)


def test_sensor_progress_observations_and_restart(instance, emulator_dir):
    resource = OpenAIBatchResource(emulator_dir=str(emulator_dir), emulator_pace="realistic")
    defs = setup(resource, instance)
    cursor, launched = evaluate_sensor_once(defs, instance, None)
    assert launched == []
    state = SensorCursor.model_validate_json(cursor)
    assert len(state.in_flight) == 1
    assert state.in_flight[0].progress.startswith("validating")
    # A restarted sensor (same stored cursor) neither re-reads the batch_job event nor loses it.
    cursor2, _ = evaluate_sensor_once(defs, instance, cursor)
    assert len(SensorCursor.model_validate_json(cursor2).in_flight) == 1
    observations = instance.fetch_observations(PIPELINE.batch_job.key, limit=10).records
    assert len(observations) == 1  # progress unchanged: no new observation


def test_sensor_drops_a_batch_the_service_no_longer_knows(instance, resource):
    """A batch id that 404s (deleted project, wrong backend) must not wedge the sensor forever."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=PIPELINE.batch_job.key,
            metadata={**BatchJobRecord(batch_ids=dg.MetadataValue.json(["batch_doesnotexist"]))},
        )
    )
    defs = setup(resource, instance)
    real = latest_job(instance).batch_id_list
    cursor, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    assert instance.get_run_by_id(runs[0]).tags["dagster/run_key"].startswith(real[0] + "@")
    assert SensorCursor.model_validate_json(cursor).in_flight == []


def test_cancel_through_batch_job_config_then_partial_results(instance, emulator_dir):
    resource = OpenAIBatchResource(emulator_dir=str(emulator_dir), emulator_pace="realistic")
    defs = setup(resource, instance)
    submitted = latest_job(instance)
    cancel = dg.materialize(
        [questions, PIPELINE.input_file, PIPELINE.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
        selection=[PIPELINE.batch_job],
        run_config={"ops": {PIPELINE.batch_job.op.name: {"config": {"cancel": True}}}},
    )
    assert cancel.success
    after = latest_job(instance)
    assert after.batch_id_list == submitted.batch_id_list
    assert after.status == "when batch_job ran: cancelling"
    assert after.requests == 25
    assert after.part_uri_list == submitted.part_uri_list
    assert after.handed_on() == submitted.handed_on()
    _, runs = run_sensor_until_idle(defs, instance, timeout=30)
    assert len(runs) == 1  # the two batch_job materializations share one run key
    assert statuses(latest_results(instance)) == ["cancelled"] * 25


def test_superseded_batch_set_is_not_collected_over_newer_results(instance, emulator_dir):
    """A slow old batch finishing after a newer one must not overwrite the newer results."""
    slow = OpenAIBatchResource(emulator_dir=str(emulator_dir), emulator_pace="realistic")
    defs = setup(slow, instance)  # batch A: several seconds
    cursor, _ = evaluate_sensor_once(defs, instance, None)

    @dg.asset(name="questions")
    def new_questions() -> list[dict]:
        return [{"id": f"n{i}", "question": f"New question {i}"} for i in range(5)]

    fast = slow.model_copy(update={"emulator_pace": "fast"})
    submitted = dg.materialize(
        [new_questions, PIPELINE.input_file, PIPELINE.batch_job],
        instance=instance,
        resources={"openai_batch": fast},
    )
    assert submitted.success  # batch B: new content, finishes first
    newer_ids = latest_job(instance).batch_id_list
    _, runs = run_sensor_until_idle(defs, instance, cursor=cursor, timeout=30)
    assert len(runs) == 1  # only B's results; A finished later and was superseded
    assert latest_results(instance).batch_id_list == newer_ids
    assert table_metadata(instance, PIPELINE.results.key).row_count == 5


def test_failed_results_run_is_retried_after_batch_job_rematerializes(instance, resource, tmp_path):
    defs = setup(resource, instance)
    inputs = Path(latest_job(instance).inputs_uri)
    hidden = tmp_path / "hidden.parquet"
    inputs.rename(hidden)  # the results run cannot read the inputs: it fails
    cursor, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    assert instance.get_run_by_id(runs[0]).status == dg.DagsterRunStatus.FAILURE
    hidden.rename(inputs)
    again = dg.materialize(
        [questions, PIPELINE.input_file, PIPELINE.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
        selection=[PIPELINE.batch_job],
    )
    assert again.success
    assert latest_job(instance).adopted == 1
    _, runs = run_sensor_until_idle(defs, instance, cursor=cursor)
    assert len(runs) == 1
    assert instance.get_run_by_id(runs[0]).status == dg.DagsterRunStatus.SUCCESS


def test_results_materialized_in_the_same_run_are_not_collected_again(instance, resource):
    defs = setup(resource, instance)
    time.sleep(1.0)
    assert dg.materialize(
        [PIPELINE.results], instance=instance, resources={"openai_batch": resource}
    ).success
    _, runs = run_sensor_until_idle(defs, instance)
    assert runs == []


def test_resubmit_with_nothing_failed_is_a_successful_no_op(instance, resource):
    defs = setup(resource, instance)
    run_sensor_until_idle(defs, instance)

    def latest_run_id() -> str:
        return instance.get_latest_materialization_event(PIPELINE.batch_job.key).run_id

    before = latest_run_id()
    result = resubmit(resource, instance)
    assert result.success
    assert latest_run_id() == before  # nothing resent: batch_job left as it was


def test_resubmit_never_mixes_results_of_other_input_content(instance, emulator_dir):
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        emulator_faults={"request_error_rate": 0.4, "seed": 3},
    )
    defs = setup(resource, instance)
    run_sensor_until_idle(defs, instance)  # results of content A, with failures

    @dg.asset(name="questions")
    def other_questions() -> list[dict]:
        return [{"id": f"q{i}", "question": f"A different question {i}"} for i in range(25)]

    assert dg.materialize(
        [other_questions, PIPELINE.input_file],
        instance=instance,
        resources={"openai_batch": resource},
    ).success  # content B, no results yet
    result = resubmit(resource, instance, source=other_questions)
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.message
    assert "qa/results has no materialization" in error
    assert "content_hash" in error


def test_permanent_failures_resent_only_when_asked(instance, emulator_dir):
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        emulator_faults={"request_error_rate": 0.4, "seed": 3},
    )
    defs = setup(resource, instance)
    run_sensor_until_idle(defs, instance)
    first = latest_results(instance)
    assert resubmit(resource, instance, include_permanent_failures=True).success
    assert latest_job(instance).requests == first.status_failed


def test_sensor_misconfiguration_fails_the_tick_with_one_clear_message(instance, resource):
    secret = "sk-test-SECRET-0123456789"
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=PIPELINE.batch_job.key,
            metadata={**BatchJobRecord(batch_ids=dg.MetadataValue.json(["batch_1", "batch_2"]))},
        )
    )
    cases = [
        (
            OpenAIBatchResource(api_key=secret, base_url="http://127.0.0.1:9/v1", max_retries=0),
            "cannot reach",
        ),
        (OpenAIBatchResource(), "OPENAI_API_KEY"),
    ]
    for bad, expected in cases:
        defs = dg.Definitions.merge(
            PIPELINE.definitions(),
            dg.Definitions(
                assets=[questions],
                sensors=[openai_batch_sensor([PIPELINE])],
                resources={"openai_batch": bad},
            ),
        )
        # Any exception: its message is looked for along the cause chain below.
        with pytest.raises(Exception) as raised:  # noqa: PT011
            evaluate_sensor_once(defs, instance, None)
        text = "".join(
            str(e) for e in (raised.value, raised.value.__cause__, raised.value.__context__) if e
        )
        assert expected in text
        assert secret not in text


def test_file_not_ready_after_upload_is_retried_and_paid_once(instance, emulator_dir):
    """The real service can refuse a create with 400 "Cannot find file" right after the upload:
    batch_job waits and creates again (a 400 created nothing), and one batch exists."""
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        emulator_faults={"file_not_ready_rate": 1.0, "file_not_ready_seconds": 1.5},
    )
    defs = setup(resource, instance)
    [batch_id] = latest_job(instance).batch_id_list
    assert [b.id for b in Emulator(emulator_dir).openai_client().batches.list()] == [batch_id]
    _, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    assert latest_results(instance).status_succeeded == len(ROWS)


def test_hourly_creation_cap_fails_clearly_and_the_rerun_pays_only_the_rest(instance, emulator_dir):
    """Past the organization's batch creations per hour, the create is refused with a 429:
    batch_job fails saying so; run again once there is room, it adopts what was created and
    creates only the missing part."""
    capped = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        emulator_faults={"batch_creations_per_hour": 1},
    )
    pipeline = openai_batch_assets(
        name="qa",
        source=questions,
        template=PIPELINE_TEMPLATE,
        max_requests_per_file=15,  # 25 rows: two files, two batches
    )
    submit = [questions, pipeline.input_file, pipeline.batch_job]
    failed = dg.materialize(
        submit, instance=instance, resources={"openai_batch": capped}, raise_on_error=False
    )
    assert not failed.success
    message = failed.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "per hour" in message, message
    client = Emulator(emulator_dir).openai_client()
    assert len(client.batches.list().data) == 1

    room = OpenAIBatchResource(emulator_dir=str(emulator_dir), emulator_pace="fast")
    assert dg.materialize(submit, instance=instance, resources={"openai_batch": room}).success
    job = recorded(instance, pipeline.batch_job.key, BatchJobRecord)
    assert len(job.batch_id_list) == 2
    assert sorted(b.id for b in client.batches.list().data) == sorted(job.batch_id_list)
