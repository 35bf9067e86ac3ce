"""Batches created elsewhere, watched and collected by id (`openai_batch_watch`), in every state.

The batches are made with the official SDK against the emulator, as a script would make them, and
put in each state by their pace, faults and the emulator's injectable clock; the watch's sensor
and assets run through Dagster's own APIs on a real instance.
"""

import importlib
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import orjson
import pyarrow.parquet as pq
import pytest
from pipeline_helpers import recorded

from dagster_openai_batch import (
    OpenAIBatchResource,
    OpenAIBatchWatchComponent,
    PipelineDefinitionError,
    RequestTemplate,
    openai_batch_assets,
    openai_batch_watch,
    openai_batch_watch_sensor,
)
from dagster_openai_batch.dagster.batch_watch import OpenAIBatchWatch, WatchCursor
from dagster_openai_batch.dagster.stage_records import ResultsRecord, WatchedBatchRecord
from dagster_openai_batch.demo.run import launch_run_requests
from dagster_openai_batch.emulator import Emulator, EmulatorConfig, Faults, Pace

REQUESTS = 10
SLOW = 3600.0
"""Seconds: a phase this long outlasts the test."""


def _lines(model: str = "gpt-4o-mini") -> bytes:
    return b"".join(
        orjson.dumps(
            {
                "custom_id": f"q{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": model, "messages": [{"role": "user", "content": f"Say {i}"}]},
            }
        )
        + b"\n"
        for i in range(REQUESTS)
    )


class Script:
    """Someone else's script: makes batches with the SDK, on the emulator's (movable) clock."""

    def __init__(self, emulator_dir: Path) -> None:
        self.emulator_dir = emulator_dir
        self.now = time.time() - 100  # batches made 100 s ago have had time to run

    def _client(self, pace: Pace, faults: Faults | None = None) -> Emulator:
        config = EmulatorConfig(pace=pace, faults=faults or Faults())
        return Emulator(self.emulator_dir, config, clock=lambda: self.now)

    def batch(
        self,
        pace: Pace,
        faults: Faults | None = None,
        *,
        model: str = "gpt-4o-mini",
        cancel_after: float | None = None,
        ago: float = 100,
    ) -> str:
        self.now = time.time() - ago
        client = self._client(pace, faults).openai_client()
        upload = client.files.create(file=("script.jsonl", _lines(model)), purpose="batch")
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        client.batches.retrieve(batch.id)  # validated at its own time, as the service would
        if cancel_after is not None:
            self.now += cancel_after
            client.batches.cancel(batch.id)
        return batch.id


def _pace(
    validating: float = 0.0,
    per_request: float = 1.0,
    finalizing: float = 0.0,
    cancelling: float = 0.0,
) -> Pace:
    return Pace(
        validating_seconds=validating,
        seconds_per_request=per_request,
        finalizing_seconds=finalizing,
        cancelling_seconds=cancelling,
    )


@pytest.fixture
def script(emulator_dir: Path) -> Script:
    return Script(emulator_dir)


@pytest.fixture
def states(script: Script) -> dict[str, str]:
    """A foreign batch id in each state."""
    return {
        "validating": script.batch(_pace(validating=SLOW), ago=0),
        "in_progress": script.batch(_pace(per_request=SLOW), ago=0),
        "finalizing": script.batch(_pace(), Faults(stuck_finalizing=True)),
        "completed": script.batch(_pace()),
        "failed": script.batch(_pace(), model="no-such-model"),
        "expired": script.batch(_pace(), Faults(expire_after_seconds=3.5)),
        "cancelling": script.batch(_pace(per_request=SLOW, cancelling=SLOW), cancel_after=1),
        "cancelled": script.batch(_pace(), cancel_after=4.5),
        "unknown": "batch_never_made_anywhere",
    }


def _defs(watch: OpenAIBatchWatch, resource: OpenAIBatchResource) -> dg.Definitions:
    return dg.Definitions.merge(
        watch.definitions(),
        dg.Definitions(
            sensors=[openai_batch_watch_sensor([watch])],
            resources={"openai_batch": resource},
        ),
    )


Tick = Callable[[str | None], tuple[str | None, dg.SensorResult, list[str]]]


@pytest.fixture
def tick_of() -> Callable[..., Tick]:
    def make(
        defs: dg.Definitions,
        instance: dg.DagsterInstance,
        sensor_name: str = "openai_batch_watch_sensor",
    ) -> Tick:
        sensor = defs.resolve_sensor_def(sensor_name)

        def tick(cursor: str | None) -> tuple[str | None, dg.SensorResult, list[str]]:
            """One tick, its effects applied in the daemon's order."""
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
            ) as context:
                result = sensor(context)
            assert isinstance(result, dg.SensorResult)
            for event in result.asset_events:
                instance.report_runless_asset_event(event)
            for request in result.dynamic_partitions_requests or []:
                assert isinstance(request, dg.AddDynamicPartitionsRequest)
                instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
            runs = launch_run_requests(
                defs, instance, result.run_requests or [], sensor_name=sensor.name
            )
            return result.cursor, result, runs

        return tick

    return make


def _observed(instance: dg.DagsterInstance, key: dg.AssetKey, batch_id: str) -> WatchedBatchRecord:
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[batch_id]), limit=1
    ).records
    assert records, f"no observation of {batch_id}"
    observation = records[0].asset_observation
    assert observation is not None
    return WatchedBatchRecord.read(observation.metadata)


def test_a_foreign_batch_in_every_state_is_watched_and_collected_once(
    states, resource, instance, tick_of
):
    watch = openai_batch_watch("imported", batch_ids=list(states.values()))
    defs = _defs(watch, resource)
    tick = tick_of(defs, instance)

    cursor, first, runs = tick(None)  # the declared ids become partitions
    assert runs == []
    assert first.asset_events == []
    assert set(instance.get_dynamic_partitions("imported")) == set(states.values())

    cursor, _, runs = tick(cursor)
    assert len(runs) == 3  # completed, expired, cancelled: the ones with result files
    seen = {state: _observed(instance, watch.batch.key, i) for state, i in states.items()}
    for state in ("validating", "in_progress", "finalizing", "completed", "failed", "expired"):
        assert seen[state].status == state, state
    assert seen["cancelling"].status == "cancelling"
    assert seen["cancelled"].status == "cancelled"
    assert seen["unknown"].status == "unknown"
    assert "does not know batch 'batch_never_made_anywhere'" in seen["unknown"].problem
    assert [s for s, r in seen.items() if r.results_available] == [
        "completed",
        "expired",
        "cancelled",
    ]
    assert seen["completed"].output_file_id
    assert seen["completed"].input_file_id
    assert seen["completed"].requests_completed == REQUESTS
    assert seen["completed"].endpoint == "/v1/chat/completions"
    assert seen["failed"].errors is not None
    assert "no-such-model" in seen["failed"].errors.value
    assert seen["in_progress"].expires_at is not None

    def results(state: str) -> ResultsRecord:
        return recorded(instance, watch.results.key, ResultsRecord, states[state])

    assert results("completed").counts == {
        "succeeded": REQUESTS,
        "failed": 0,
        "expired": 0,
        "cancelled": 0,
        "missing": 0,
    }
    expired, cancelled = results("expired").counts, results("cancelled").counts
    assert (expired["succeeded"], expired["expired"]) == (3, REQUESTS - 3)
    assert (cancelled["succeeded"], cancelled["cancelled"]) == (4, REQUESTS - 4)
    assert results("completed").cost_usd is not None
    assert results("completed").output_tokens > 0
    for state in ("completed", "expired", "cancelled"):
        assert results(state).rows == REQUESTS
        assert results(state).batch_id_list == [states[state]]
    checks = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(watch.results.key, "every_request_accounted_once"), limit=10
    )
    assert len(checks) == 3
    assert all(c.status.value == "SUCCEEDED" for c in checks)

    # Later ticks, a cursor reset included: nothing collected twice, nothing observed again for
    # nothing, the unknown id never failing the tick.
    observed = len(instance.fetch_observations(watch.batch.key, limit=100).records)
    cursor, third, runs = tick(cursor)
    assert runs == []
    assert third.asset_events == []
    _, reset, runs = tick(None)
    assert runs == []
    assert {e.partition for e in reset.asset_events} == {
        states[s] for s in ("validating", "in_progress", "finalizing", "failed", "cancelling")
    } | {states["unknown"]}
    assert len(instance.fetch_observations(watch.batch.key, limit=100).records) == observed + 6
    assert len(instance.get_runs()) == 3
    assert WatchCursor.model_validate_json(cursor or "{}").seen


def _failure(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    return result.get_step_failure_events()[0].event_specific_data.error.message


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        ("in_progress", "it is still in_progress. The openai_batch_watch_sensor collects it"),
        ("failed", "it failed before running any request: "),
        ("unknown", "the emulator service does not know batch 'batch_never_made_anywhere'"),
    ],
)
def test_materializing_a_batch_with_nothing_to_collect_says_why(
    script, resource, instance, state, problem
):
    ids = {
        "in_progress": lambda: script.batch(_pace(per_request=SLOW), ago=0),
        "failed": lambda: script.batch(_pace(), model="no-such-model"),
        "unknown": lambda: "batch_never_made_anywhere",
    }
    batch_id = ids[state]()
    watch = openai_batch_watch("imported")
    instance.add_dynamic_partitions("imported", [batch_id])
    result = dg.materialize(
        [watch.batch, watch.results],
        selection=[watch.results.key],
        partition_key=batch_id,
        instance=instance,
        resources={"openai_batch": resource},
        raise_on_error=False,
    )
    assert problem in _failure(result)
    assert _observed(instance, watch.batch.key, batch_id).status == state
    assert instance.get_materialized_partitions(watch.results.key) == set()


def test_without_its_input_file_a_batch_is_collected_from_its_result_files(
    script, emulator_dir, resource, instance
):
    batch_id = script.batch(_pace())
    client = Emulator(emulator_dir).openai_client()
    client.files.delete(client.batches.retrieve(batch_id).input_file_id)
    watch = openai_batch_watch("imported")
    instance.add_dynamic_partitions("imported", [batch_id])
    result = dg.materialize(
        [watch.batch, watch.results],
        selection=[watch.results.key],
        partition_key=batch_id,
        instance=instance,
        resources={"openai_batch": resource},
    )
    assert recorded(instance, watch.results.key, ResultsRecord, batch_id).status_succeeded == 10
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("from its result files (input file" in m and "404" in m for m in logged)


def test_a_pipeline_asked_for_a_batch_it_never_submitted_points_at_the_watch(
    script, resource, instance
):
    foreign = script.batch(_pace())
    pipeline = openai_batch_assets(
        name="labels",
        source=lambda: [{"id": "a", "text": "hi"}],
        template=RequestTemplate(
            endpoint="/v1/chat/completions",
            model="gpt-4o-mini",
            prompt="{text}",
            custom_id_column="id",
        ),
    )
    result = dg.materialize(
        pipeline.assets,
        selection=[pipeline.results.key],
        instance=instance,
        resources={"openai_batch": resource},
        run_config={"ops": {pipeline.results_op_name: {"config": {"batch_ids": [foreign]}}}},
        raise_on_error=False,
    )
    message = _failure(result)
    assert f"labels/batch_job never submitted batches ['{foreign}']" in message
    assert "openai_batch_watch" in message


def test_bad_batch_ids_fail_at_definition():
    with pytest.raises(PipelineDefinitionError, match=r"\['batch one'\] are not batch ids"):
        openai_batch_watch("imported", batch_ids=["batch_ok", "batch one"])


def test_yaml_component_watches_and_collects(script, emulator_dir, instance, tick_of, tmp_path):
    batch_id = script.batch(_pace())
    package = tmp_path / "watch_defs"
    (package / "imported").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "imported" / "defs.yaml").write_text(
        textwrap.dedent(
            f"""\
            type: dagster_openai_batch.OpenAIBatchWatchComponent
            attributes:
              name: imported
              batch_ids: [{batch_id}]
              inputs: questions.csv
              custom_id_column: question_id
              resource: {{emulator_dir: {emulator_dir}, emulator_pace: fast}}
            """
        )
    )
    rows = [f"q{i},topic q{i}" for i in range(5)] + ["elsewhere,another batch's row"]
    (package / "imported" / "questions.csv").write_text("\n".join(["question_id,topic", *rows]))
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("watch_defs")
        defs = dg.ComponentTree.from_module(defs_module=module, project_root=tmp_path).build_defs()
    finally:
        sys.path.remove(str(tmp_path))
    tick = tick_of(defs, instance, "imported_sensor")
    cursor, _, _ = tick(None)
    _, _, runs = tick(cursor)
    assert len(runs) == 1
    results = recorded(instance, dg.AssetKey(["imported", "results"]), ResultsRecord, batch_id)
    assert results.status_succeeded == REQUESTS
    table = pq.read_table(results.results_uri)
    assert table.column_names[:3] == ["custom_id", "question_id", "topic"]
    assert table.column("topic").to_pylist()[:2] == ["topic q0", "topic q1"]
    assert table.column("topic").null_count == REQUESTS - 5  # rows given for q0..q4 only


def test_rows_of_an_upstream_asset_join_the_answers_by_custom_id(script, resource, instance):
    batch_id = script.batch(_pace())

    @dg.asset
    def questions() -> list[dict]:
        rows = [{"question_id": f"q{i}", "words": i} for i in range(REQUESTS - 2)]
        return [*rows, {"question_id": "elsewhere", "words": -1}]

    watch = openai_batch_watch("imported", inputs=questions, custom_id_column="question_id")
    instance.add_dynamic_partitions("imported", [batch_id])
    assert dg.materialize([questions], instance=instance).success
    dg.materialize(
        [questions, watch.batch, watch.results],
        selection=[watch.results.key],
        partition_key=batch_id,
        instance=instance,
        resources={"openai_batch": resource},
    )
    results = recorded(instance, watch.results.key, ResultsRecord, batch_id)
    table = pq.read_table(results.results_uri).sort_by("custom_id")
    assert table.column("custom_id").to_pylist() == [f"q{i}" for i in range(REQUESTS)]
    assert table.column("words").to_pylist() == [*range(REQUESTS - 2), None, None]
    assert results.status_succeeded == REQUESTS


def test_every_yaml_attribute_is_described():
    schema = OpenAIBatchWatchComponent.get_model_cls().model_json_schema()  # type: ignore[union-attr]
    models = [schema, *schema.get("$defs", {}).values()]
    undescribed = [
        f"{model['title']}.{name}"
        for model in models
        for name, field in model.get("properties", {}).items()
        if not field.get("description")
    ]
    assert undescribed == []
