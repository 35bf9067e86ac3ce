"""`OpenAIBatchTranslator`: custom keys, ownership and op settings reach Dagster, and still run."""

import dagster as dg
from pipeline_helpers import run_sensor_until_idle

from dagster_openai_batch import (
    OpenAIBatchStageProps,
    OpenAIBatchTranslator,
    RequestTemplate,
    StageExecution,
    openai_batch_assets,
    openai_batch_sensor,
)

ROWS = [{"id": f"t{i}", "text": f"ticket {i}"} for i in range(12)]


@dg.asset
def tickets() -> list[dict]:
    return ROWS


class TeamTranslator(OpenAIBatchTranslator):
    """Everything a team sets: keys, group, owners, tags, descriptions, automation, op settings."""

    def get_asset_spec(self, props: OpenAIBatchStageProps) -> dg.AssetSpec:
        spec = super().get_asset_spec(props)
        return spec.replace_attributes(
            key=dg.AssetKey(["llm", props.pipeline, props.stage]),
            group_name="llm",
            owners=["team:ml"],
            tags={"stage": props.stage},
            description=f"{props.stage} of {props.pipeline} ({props.endpoint})",
            automation_condition=(
                dg.AutomationCondition.eager() if props.stage == "input_file" else None
            ),
        )

    def get_execution(self, props: OpenAIBatchStageProps) -> StageExecution:
        execution = super().get_execution(props)
        if props.stage == "results":
            return execution.replace(
                retry_policy=dg.RetryPolicy(max_retries=2, delay=1),
                op_tags={"dagster/priority": "5"},
                pool="openai_batch_download",
            )
        return execution


def tagging_pipeline(translator: OpenAIBatchTranslator | None = None):
    return openai_batch_assets(
        name="tagging",
        source=tickets,
        translator=translator,
        template=RequestTemplate(
            endpoint="/v1/chat/completions",
            model="gpt-4o-mini",
            prompt="Tag: {text}",
            custom_id_column="id",
        ),
    )


def test_default_translator_keeps_the_documented_defaults():
    pipeline = tagging_pipeline()
    assert [k.to_user_string() for k in pipeline.asset_keys] == [
        "tagging/input_file",
        "tagging/batch_job",
        "tagging/results",
    ]
    assert pipeline.batch_job.op.pool == "openai_batch_submit"
    assert pipeline.input_file.op.pool is None
    assert pipeline.results.op.retry_policy is None
    spec = pipeline.results.specs_by_key[pipeline.results.key]
    assert spec.group_name == "tagging"
    assert spec.kinds == {"openai"}
    assert "joined to the inputs by custom_id" in (spec.description or "")


def test_translator_sets_keys_ownership_automation_and_op_settings(resource):
    pipeline = tagging_pipeline(TeamTranslator())
    defs = dg.Definitions.merge(
        pipeline.definitions(),
        dg.Definitions(assets=[tickets], resources={"openai_batch": resource}),
    )
    graph = defs.resolve_asset_graph()
    keys = [k.to_user_string() for k in pipeline.asset_keys]
    assert keys == ["llm/tagging/input_file", "llm/tagging/batch_job", "llm/tagging/results"]
    # The factory links the translated keys to each other and to the source.
    assert graph.get(pipeline.input_file.key).parent_keys == {tickets.key}
    assert graph.get(pipeline.batch_job.key).parent_keys == {pipeline.input_file.key}
    assert graph.get(pipeline.results.key).parent_keys == {pipeline.batch_job.key}
    for asset, stage in zip(pipeline.assets, ("input_file", "batch_job", "results"), strict=True):
        spec = asset.specs_by_key[asset.key]
        assert spec.group_name == "llm"
        assert spec.owners == ["team:ml"]
        assert spec.tags["stage"] == stage
        assert spec.kinds == {"openai"}
        assert spec.description == f"{stage} of tagging (/v1/chat/completions)"
    input_spec = pipeline.input_file.specs_by_key[pipeline.input_file.key]
    assert input_spec.automation_condition == dg.AutomationCondition.eager()
    assert pipeline.batch_job.op.pool == "openai_batch_submit"
    assert pipeline.results.op.pool == "openai_batch_download"
    assert pipeline.results.op.retry_policy == dg.RetryPolicy(max_retries=2, delay=1)
    assert pipeline.results.op.tags["dagster/priority"] == "5"
    assert pipeline.accepted_check_key.asset_key == pipeline.batch_job.key


def test_translated_pipeline_runs_end_to_end_twice(instance, resource):
    pipeline = tagging_pipeline(TeamTranslator())
    defs = dg.Definitions.merge(
        pipeline.definitions(),
        dg.Definitions(
            assets=[tickets],
            sensors=[openai_batch_sensor([pipeline], minimum_interval_seconds=1)],
            resources={"openai_batch": resource},
        ),
    )
    for attempt in range(2):
        submitted = dg.materialize(
            [tickets, pipeline.input_file, pipeline.batch_job],
            instance=instance,
            resources={"openai_batch": resource},
        )
        assert submitted.success
        _, launched = run_sensor_until_idle(defs, instance)
        # One results run for the one batch set; the second submission adopts it: no new run.
        assert len(launched) == (1 if attempt == 0 else 0)
    event = instance.get_latest_materialization_event(pipeline.results.key)
    assert event is not None
    assert event.asset_materialization is not None
    assert event.asset_materialization.metadata["dagster/row_count"].value == len(ROWS)
    assert len(resource.build_openai_client().batches.list().data) == 1
