"""`OpenAIBatchTranslator`: the asset spec and execution settings of each of the three stages.

Subclass it, as with ``DagsterFivetranTranslator`` or ``DagsterSlingTranslator``, to change keys,
groups, owners, tags, descriptions, ``automation_condition``, freshness, the concurrency ``pool``,
``retry_policy`` or op tags of ``input_file``, ``batch_job`` and ``results``:

>>> import dagster as dg
>>> from dagster_openai_batch import (
...     OpenAIBatchTranslator, RequestTemplate, StageExecution, openai_batch_assets)
>>> class MyTranslator(OpenAIBatchTranslator):
...     def get_asset_spec(self, props):
...         spec = super().get_asset_spec(props)
...         return spec.replace_attributes(
...             key=dg.AssetKey(["llm", props.pipeline, props.stage]), owners=["team:ml"])
...     def get_execution(self, props):
...         execution = super().get_execution(props)
...         if props.stage == "results":
...             return execution.replace(retry_policy=dg.RetryPolicy(max_retries=2))
...         return execution
>>> pipeline = openai_batch_assets(
...     name="tagging", source="tickets", translator=MyTranslator(),
...     template=RequestTemplate(endpoint="/v1/chat/completions", model="gpt-4o-mini",
...                              prompt="Tag: {text}"))
>>> [key.to_user_string() for key in pipeline.asset_keys]
['llm/tagging/input_file', 'llm/tagging/batch_job', 'llm/tagging/results']
>>> pipeline.results.op.retry_policy.max_retries
2

The factory links the stages to each other and to the source itself; ``deps`` in a returned spec
add further upstream assets. The pipeline's ``partitions_def`` always applies.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Self

import dagster as dg

Stage = Literal["input_file", "batch_job", "results"]
STAGES: tuple[Stage, ...] = ("input_file", "batch_job", "results")

_DESCRIPTIONS: dict[Stage, str] = {
    "input_file": "JSONL batch input of {name}: built from the rows, validated, split, uploaded.",
    "batch_job": "OpenAI batches of {name}: created (or adopted, never paid twice); returns at "
    "once.",
    "results": "Answers of {name}: one row per request, joined to the inputs by custom_id.",
}


@dataclass(frozen=True)
class OpenAIBatchStageProps:
    """What the translator knows of one stage of one pipeline."""

    pipeline: str
    """The pipeline's ``name``."""
    stage: Stage
    endpoint: str
    """The batch endpoint, e.g. ``/v1/chat/completions``."""
    source_key: dg.AssetKey | None
    """The upstream asset of the rows (``None`` for a function or a JSONL file)."""
    group_name: str
    """The factory's ``group_name`` (default: the pipeline's name)."""
    pool: str | None
    """The factory's ``pool`` for ``batch_job``; ``None`` for the other stages."""


@dataclass(frozen=True)
class StageExecution:
    """How a stage's op runs: its concurrency pool, retry policy and op tags."""

    pool: str | None = None
    retry_policy: dg.RetryPolicy | None = None
    op_tags: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


class OpenAIBatchTranslator:
    """Turns each stage's `OpenAIBatchStageProps` into an asset spec and execution settings."""

    def get_asset_spec(self, props: OpenAIBatchStageProps) -> dg.AssetSpec:
        """The stage's asset: key ``<pipeline>/<stage>``, the pipeline's group, kind ``openai``."""
        return dg.AssetSpec(
            key=dg.AssetKey([props.pipeline, props.stage]),
            group_name=props.group_name,
            description=_DESCRIPTIONS[props.stage].format(name=props.pipeline),
            kinds={"openai"},
        )

    def get_execution(self, props: OpenAIBatchStageProps) -> StageExecution:
        """The stage's op settings: ``batch_job`` runs in the factory's ``pool``."""
        return StageExecution(pool=props.pool)
