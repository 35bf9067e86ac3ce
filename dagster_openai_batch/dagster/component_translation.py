"""The translator in YAML: ``translation`` (asset attributes) and ``execution`` (op settings).

``translation`` follows Dagster's components convention: asset attributes, templated with
``props`` (an `OpenAIBatchStageProps`) and ``spec`` (the default spec)::

    translation:
      key: "llm/{{ props.pipeline }}/{{ props.stage }}"
      owners: [team:ml]
      tags: {stage: "{{ props.stage }}"}

``execution`` sets the op of each stage; a key left out keeps the default::

    execution:
      batch_job: {pool: openai_batch_submit}
      results: {retry_policy: {max_retries: 2, delay: 5}, op_tags: {dagster/priority: "3"}}
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal

import dagster as dg
from dagster.components.utils.translation import TranslationFnResolver
from pydantic import Field

from .translator import OpenAIBatchStageProps, OpenAIBatchTranslator, StageExecution

StageTranslationFn = Callable[[dg.AssetSpec, OpenAIBatchStageProps], dg.AssetSpec]

ResolvedStageTranslation = Annotated[
    StageTranslationFn,
    TranslationFnResolver[OpenAIBatchStageProps](lambda props: {"props": props}),
]


class RetryPolicyModel(dg.Resolvable, dg.Model):
    """A `dagster.RetryPolicy`: how often and after how long a failed op is retried."""

    max_retries: int = Field(default=1, ge=0, description="Retries after the first attempt.")
    delay: float | None = Field(default=None, ge=0, description="Seconds before a retry.")
    backoff: Literal["linear", "exponential"] | None = Field(
        default=None, description="How the delay grows with each attempt."
    )
    jitter: Literal["full", "plus_minus"] | None = Field(
        default=None, description="Randomness added to the delay."
    )

    def build(self) -> dg.RetryPolicy:
        """The Dagster retry policy."""
        return dg.RetryPolicy(
            max_retries=self.max_retries,
            delay=self.delay,
            backoff=dg.Backoff(self.backoff.upper()) if self.backoff else None,
            jitter=dg.Jitter(self.jitter.upper()) if self.jitter else None,
        )


class StageExecutionModel(dg.Resolvable, dg.Model):
    """The op settings of one stage; a field left out keeps the default."""

    pool: str | None = Field(
        default=None, description="Concurrency pool of the stage's op (null: none)."
    )
    retry_policy: RetryPolicyModel | None = Field(
        default=None, description="Retry policy of the stage's op."
    )
    op_tags: dict[str, Any] | None = Field(default=None, description="Tags of the stage's op.")

    def apply(self, execution: StageExecution) -> StageExecution:
        """``execution`` with the fields given in YAML."""
        changes: dict[str, Any] = {
            name: getattr(self, name) for name in self.model_fields_set if name != "retry_policy"
        }
        if "retry_policy" in self.model_fields_set:
            changes["retry_policy"] = self.retry_policy.build() if self.retry_policy else None
        return execution.replace(**changes)


class ExecutionModel(dg.Resolvable, dg.Model):
    """Op settings per stage."""

    input_file: StageExecutionModel | None = Field(
        default=None, description="Op settings of input_file."
    )
    batch_job: StageExecutionModel | None = Field(
        default=None, description="Op settings of batch_job (default pool openai_batch_submit)."
    )
    results: StageExecutionModel | None = Field(default=None, description="Op settings of results.")


class ComponentTranslator(OpenAIBatchTranslator):
    """The default translator with a component's ``translation`` and ``execution`` applied."""

    def __init__(
        self,
        translation: StageTranslationFn | None = None,
        execution: ExecutionModel | None = None,
    ) -> None:
        self.translation = translation
        self.execution = execution

    def get_asset_spec(self, props: OpenAIBatchStageProps) -> dg.AssetSpec:
        spec = super().get_asset_spec(props)
        return self.translation(spec, props) if self.translation else spec

    def get_execution(self, props: OpenAIBatchStageProps) -> StageExecution:
        execution = super().get_execution(props)
        stage = getattr(self.execution, props.stage, None) if self.execution else None
        return stage.apply(execution) if stage else execution
