"""Queue-aware submission and cost before spending, through Dagster against the emulator: parts
that do not fit their model's queue wait and the sensor submits them as batches finish; a batch
failed with ``token_limit_exceeded`` is resubmitted once there is room; a budget refuses before
any batch is created."""

import time
from collections import Counter
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
from dagster_openai_batch.core.client import IDEMPOTENCY_KEY
from dagster_openai_batch.dagster.stage_records import (
    BatchJobRecord,
    InputFileRecord,
    ResultsRecord,
)
from dagster_openai_batch.demo import queue_flow
from dagster_openai_batch.emulator import Emulator

ROWS = [{"id": f"q{i}", "question": f"Explain the number {i} in one line."} for i in range(30)]
MODEL = "gpt-4o-mini"


@dg.asset
def questions() -> list[dict]:
    return ROWS


PIPELINE = openai_batch_assets(
    name="qa",
    source=questions,
    template=RequestTemplate(
        endpoint="/v1/chat/completions",
        model=MODEL,
        messages=[{"role": "user", "content": "{question}"}],
        custom_id_column="id",
    ),
    max_requests_per_file=10,  # three parts, one batch each
)


def definitions(resource: OpenAIBatchResource) -> dg.Definitions:
    return dg.Definitions.merge(
        PIPELINE.definitions(),
        dg.Definitions(
            assets=[questions],
            sensors=[openai_batch_sensor([PIPELINE])],
            resources={"openai_batch": resource},
        ),
    )


def materialize(
    instance: dg.DagsterInstance, resource: OpenAIBatchResource, *, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [questions, PIPELINE.input_file, PIPELINE.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
        run_config=run_config,
        raise_on_error=False,
    )


def part_tokens(instance: dg.DagsterInstance, emulator_dir: Path) -> list[int]:
    """Each part's estimate, as input_file records it (materialized with an unlimited queue)."""
    resource = OpenAIBatchResource(emulator_dir=str(emulator_dir), emulator_pace="fast")
    assert dg.materialize(
        [questions, PIPELINE.input_file],
        instance=instance,
        resources={"openai_batch": resource},
    ).success
    return recorded(instance, PIPELINE.input_file.key, InputFileRecord).part_token_list


def batches_by_part(emulator_dir: Path) -> Counter[str]:
    """How many batches the service holds per idempotency key (a part's attempt)."""
    listed = Emulator(emulator_dir).openai_client().batches.list(limit=100).data
    return Counter((b.metadata or {})[IDEMPOTENCY_KEY] for b in listed)


def test_parts_wait_for_the_queue_and_the_sensor_submits_them_as_it_frees(instance, emulator_dir):
    tokens = part_tokens(instance, emulator_dir)
    assert len(tokens) == 3
    limit = max(tokens) + min(tokens) // 2  # one part at a time fits, two do not
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        queue_token_budget={MODEL: limit},
        emulator_faults={"token_limits": {MODEL: limit}},  # the service enforces the same limit
    )
    assert materialize(instance, resource).success
    job = recorded(instance, PIPELINE.batch_job.key, BatchJobRecord)
    assert len(job.batch_id_list) == 1
    assert job.parts == 3
    assert job.waiting == f"2 of 3 parts waiting: {MODEL} queue {tokens[0]:,}/{limit:,} tokens"

    _, runs = run_sensor_until_idle(definitions(resource), instance)
    assert len(runs) == 1  # one results run, once every part ran
    final = recorded(instance, PIPELINE.batch_job.key, BatchJobRecord)
    assert len(final.batch_id_list) == 3
    assert final.waiting == ""
    results = recorded(instance, PIPELINE.results.key, ResultsRecord)
    assert results.batch_id_list == final.batch_id_list
    assert results.status_succeeded == 30
    table = pq.read_table(results.results_uri, columns=["custom_id"])
    assert sorted(table.column("custom_id").to_pylist()) == sorted(r["id"] for r in ROWS)
    per_part = batches_by_part(emulator_dir)
    assert sorted(per_part.values()) == [1, 1, 1]  # nothing paid twice, no token-limit failure
    # The estimate is conservative: never below what the batches were billed.
    assert results.estimated_input_tokens == sum(tokens) >= results.input_tokens
    assert results.estimate_vs_actual.startswith(f"input tokens: estimated ≤ {sum(tokens):,}")

    # Re-running batch_job afterwards adopts all three: still nothing paid twice.
    assert materialize(instance, resource).success
    assert recorded(instance, PIPELINE.batch_job.key, BatchJobRecord).adopted == 3
    assert sorted(batches_by_part(emulator_dir).values()) == [1, 1, 1]


def test_token_limit_failures_are_resubmitted_once_there_is_room(instance, emulator_dir):
    tokens = part_tokens(instance, emulator_dir)
    limit = max(tokens) + 5  # the service takes one part at a time; the library is not told
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        emulator_faults={"token_limits": {MODEL: limit}},
    )
    assert materialize(instance, resource).success
    assert len(recorded(instance, PIPELINE.batch_job.key, BatchJobRecord).batch_id_list) == 3

    _, runs = run_sensor_until_idle(definitions(resource), instance)
    assert len(runs) == 1
    final = recorded(instance, PIPELINE.batch_job.key, BatchJobRecord)
    assert final.attempt_list[0] == 1
    assert final.attempt_list[1:] == [2, 2]  # each refused part tried once more, when it fit
    results = recorded(instance, PIPELINE.results.key, ResultsRecord)
    assert results.status_succeeded == 30
    per_part = batches_by_part(emulator_dir)
    assert len(per_part) == 5  # 3 first attempts + 2 second ones
    assert set(per_part.values()) == {1}


def test_a_budget_refuses_before_any_batch_is_created(instance, emulator_dir):
    resource = OpenAIBatchResource(emulator_dir=str(emulator_dir), emulator_pace="fast")
    config = {"ops": {"qa__batch_job": {"config": {"max_estimated_cost_usd": 0.0001}}}}
    result = materialize(instance, resource, run_config=config)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error.message)
    assert "No batch created, nothing paid" in message
    assert "max_estimated_cost_usd = 0.0001 USD" in message
    assert batches_by_part(emulator_dir) == Counter()
    source = recorded(instance, PIPELINE.input_file.key, InputFileRecord)
    assert 0 < source.estimated_cost_min_usd < source.estimated_cost_max_usd  # type: ignore[operator]
    # A budget above the estimate lets it through.
    config["ops"]["qa__batch_job"]["config"]["max_estimated_cost_usd"] = 1.0
    assert materialize(instance, resource, run_config=config).success
    assert len(batches_by_part(emulator_dir)) == 3


def test_a_part_that_can_never_fit_the_queue_is_refused_before_any_batch(instance, emulator_dir):
    tokens = part_tokens(instance, emulator_dir)
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        queue_token_budget={MODEL: min(tokens) - 1},
    )
    result = materialize(instance, resource)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "could never run" in str(failure.step_failure_data.error.message)
    assert batches_by_part(emulator_dir) == Counter()


@pytest.mark.parametrize("cap", [2])
def test_the_hourly_creation_cap_makes_parts_wait(instance, emulator_dir, cap):
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir), emulator_pace="fast", batch_creations_per_hour=cap
    )
    assert materialize(instance, resource).success
    job = recorded(instance, PIPELINE.batch_job.key, BatchJobRecord)
    assert len(job.batch_id_list) == cap
    assert job.waiting == f"1 of 3 parts waiting: {cap:,}/{cap:,} batch creations in the last hour"


def test_a_lost_tick_and_a_reset_cursor_pay_nothing_twice(instance, emulator_dir):
    tokens = part_tokens(instance, emulator_dir)
    limit = max(tokens) + min(tokens) // 2
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        queue_token_budget={MODEL: limit},
        emulator_faults={"token_limits": {MODEL: limit}},
    )
    assert materialize(instance, resource).success
    defs = definitions(resource)
    sensor = defs.resolve_sensor_def("openai_batch_sensor")
    deadline = time.monotonic() + 60
    while sum(batches_by_part(emulator_dir).values()) < 2:  # until a tick submits a waiting part
        assert time.monotonic() < deadline
        time.sleep(0.2)
        with dg.build_sensor_context(
            instance=instance, definitions=defs, resources=defs.resources
        ) as context:
            tick = sensor(context)  # the daemon dies: neither its cursor nor its records are saved
        assert isinstance(tick, dg.SensorResult)
        assert "of 3 parts waiting: gpt-4o-mini queue" in str(tick.skip_reason)  # shown in the UI
    # A re-run of batch_job meanwhile adopts both parts that exist (the one the lost tick made
    # included) and submits the last one only if the queue has room.
    assert materialize(instance, resource).success
    assert recorded(instance, PIPELINE.batch_job.key, BatchJobRecord).adopted == 2

    _, runs = run_sensor_until_idle(defs, instance)  # from no cursor at all
    assert len(runs) == 1
    assert sorted(batches_by_part(emulator_dir).values()) == [1, 1, 1]
    assert recorded(instance, PIPELINE.results.key, ResultsRecord).status_succeeded == 30


def test_the_queue_flow_prints_parts_that_waited_and_went_through(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # restored after the test
    queue_flow.main(tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert "2 of 3 parts waiting: gpt-4o-mini queue" in lines[1]
    submitted = [line for line in lines if "sensor submitted a waiting part" in line]
    assert len(submitted) == 2
    assert "3/3 parts have a batch" in submitted[-1]
    assert sum("sensor launched the results run" in line for line in lines) == 1
    assert "results: 30 rows, 30 succeeded" in lines


def test_cancelling_while_parts_wait_records_their_requests_as_cancelled(instance, emulator_dir):
    tokens = part_tokens(instance, emulator_dir)
    limit = max(tokens) + min(tokens) // 2  # one part at a time
    resource = OpenAIBatchResource(
        emulator_dir=str(emulator_dir),
        emulator_pace="fast",
        queue_token_budget={MODEL: limit},
        emulator_faults={"token_limits": {MODEL: limit}},
    )
    assert materialize(instance, resource).success
    first = recorded(instance, PIPELINE.batch_job.key, BatchJobRecord)
    assert len(first.batch_id_list) == 1
    assert first.waiting

    # results refuses a submission whose parts still wait: it would record them as never run.
    early = dg.materialize(
        [PIPELINE.results],
        instance=instance,
        resources={"openai_batch": resource},
        selection=[PIPELINE.results],
        raise_on_error=False,
    )
    assert not early.success
    assert "still wait for the queue" in str(early.get_step_failure_events()[0].event_specific_data)

    cancel = dg.materialize(
        [questions, PIPELINE.input_file, PIPELINE.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
        selection=[PIPELINE.batch_job],
        run_config={"ops": {PIPELINE.batch_job.op.name: {"config": {"cancel": True}}}},
    )
    assert cancel.success
    _, runs = run_sensor_until_idle(definitions(resource), instance)
    assert len(runs) == 1
    results = recorded(instance, PIPELINE.results.key, ResultsRecord)
    table = pq.read_table(results.results_uri, columns=["custom_id", "status", "batch_id"])
    assert sorted(table.column("custom_id").to_pylist()) == sorted(r["id"] for r in ROWS)
    rows = table.to_pylist()
    never_sent = [r for r in rows if r["batch_id"] is None]
    assert len(never_sent) == 20
    assert {r["status"] for r in never_sent} == {"cancelled"}
    assert {r["batch_id"] for r in rows if r["batch_id"]} == set(first.batch_id_list)
    assert results.status_cancelled + results.status_succeeded == 30
    # The waiting parts never became batches, then or later.
    assert sum(batches_by_part(emulator_dir).values()) == 1
