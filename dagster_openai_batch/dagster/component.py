"""`OpenAIBatchComponent`: one batch pipeline declared in a ``defs.yaml``.

The component only parses and checks the YAML; the assets, checks, jobs and schedule come from
`openai_batch_assets` and the optional sensor from `openai_batch_sensor`, exactly as in Python.

Example ``defs/review_embeddings/defs.yaml``::

    type: dagster_openai_batch.OpenAIBatchComponent
    attributes:
      name: review_embeddings
      source: daily_reviews
      endpoint: /v1/embeddings
      model: text-embedding-3-small
      prompt: "{text}"
      body: {dimensions: 256}
      custom_id_column: review_id
      partitions:
        daily: {start_date: "2026-11-01"}
      schedule: true
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Self

import dagster as dg
from dagster.components.core.component_tree import ComponentTree
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator

from ..core.templates import RequestTemplate
from .pipeline import RESOURCE_KEY, OpenAIBatchPipeline, openai_batch_assets
from .sensor import openai_batch_sensor

# `model` (the OpenAI model, as in the API) shadows the inherited classmethod `Resolvable.model`,
# which dagster only calls on the class, where the classmethod still wins.
warnings.filterwarnings("ignore", 'Field name "model" in "OpenAIBatchComponent"', UserWarning)

Endpoint = Literal[
    "/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations"
]


class TimeWindowPartitions(dg.Resolvable, dg.Model):
    """A time partitioning: ``{start_date: "2026-11-01", end_offset: 0, timezone: UTC}``."""

    start_date: str
    end_offset: int = 0
    timezone: str | None = None


class PartitionsModel(dg.Resolvable, dg.Model):
    """Exactly one of ``hourly``, ``daily``, ``weekly``, ``monthly`` or ``static`` (a key list)."""

    hourly: TimeWindowPartitions | None = None
    daily: TimeWindowPartitions | None = None
    weekly: TimeWindowPartitions | None = None
    monthly: TimeWindowPartitions | None = None
    static: list[str] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PartitionsModel:
        given = [name for name, value in self if value is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of hourly, daily, weekly, monthly, static (got {given or 'none'})"
            )
        return self

    def build(self) -> dg.PartitionsDefinition:
        """The Dagster partitions definition."""
        if self.static is not None:
            return dg.StaticPartitionsDefinition(self.static)
        cls, window = next(
            (cls, window)
            for cls, window in (
                (dg.HourlyPartitionsDefinition, self.hourly),
                (dg.DailyPartitionsDefinition, self.daily),
                (dg.WeeklyPartitionsDefinition, self.weekly),
                (dg.MonthlyPartitionsDefinition, self.monthly),
            )
            if window is not None
        )
        kwargs: dict[str, Any] = {"start_date": window.start_date, "end_offset": window.end_offset}
        if window.timezone:
            kwargs["timezone"] = window.timezone
        return cls(**kwargs)


class SensorModel(dg.Resolvable, dg.Model):
    """The sensor watching this pipeline's batches."""

    name: str = "openai_batch_sensor"
    minimum_interval_seconds: int = Field(default=30, ge=1)


class OpenAIBatchComponent(dg.Component, dg.Resolvable, dg.Model):
    """One OpenAI batch pipeline, ``<name>/input_file → <name>/batch_job → <name>/results``.

    Rows come from the ``source`` asset through the template (``model`` with ``messages`` or
    ``prompt``, ``body`` extras, ``custom_id_column``), or ready requests from ``jsonl_path``
    (relative to the YAML file's folder). Give ``sensor`` for a sensor watching this pipeline alone;
    leave it out to watch several pipelines with one `openai_batch_sensor` (see `build_pipeline`).
    """

    name: str = Field(description="Key prefix and group of the three assets.")
    endpoint: Endpoint = Field(description="The batch endpoint.")
    source: str | None = Field(default=None, description="Upstream asset key, e.g. `a/b`.")
    jsonl_path: str | None = Field(default=None, description="A JSONL request file instead.")
    model: str | None = None  # type: ignore[assignment]  # the OpenAI model (see the filter above)
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    body: dict[str, Any] = Field(default_factory=dict)
    custom_id_column: str | None = None
    partitions: PartitionsModel | None = None
    schedule: bool | str = Field(default=False, description="True, or a cron string.")
    sensor: SensorModel | None = None
    max_failed_share: float = Field(default=0.05, ge=0, le=1)
    wait: bool = False
    group_name: str | None = None
    resource_key: str = RESOURCE_KEY
    storage: str | None = None

    _pipeline: OpenAIBatchPipeline | None = PrivateAttr(default=None)

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> Self:
        try:
            return super().load(attributes, context)
        except ValidationError as e:
            raise _error(context, _problems(e)) from None

    def _error(self, context: dg.ComponentLoadContext, field: str, problem: str) -> ValueError:
        return _error(context, f"`{field}`: {problem}")

    def _template(self, context: dg.ComponentLoadContext) -> RequestTemplate | None:
        if self.jsonl_path is not None:
            for field in ("model", "messages", "prompt", "custom_id_column"):
                if getattr(self, field) is not None:
                    raise self._error(context, field, "does not apply with `jsonl_path`")
            return None
        if self.model is None:
            raise self._error(context, "model", "required unless `jsonl_path` is given")
        try:
            return RequestTemplate(
                endpoint=self.endpoint,  # type: ignore[arg-type]
                model=self.model,
                messages=self.messages,
                prompt=self.prompt,
                body=self.body,
                custom_id_column=self.custom_id_column,
            )
        except ValidationError as e:
            raise _error(context, _problems(e)) from None

    def build_pipeline(self, context: dg.ComponentLoadContext) -> OpenAIBatchPipeline:
        """The pipeline (built once per component), e.g. to share one sensor with other pipelines."""
        if self._pipeline is not None:
            return self._pipeline
        if (self.source is None) == (self.jsonl_path is None):
            raise self._error(context, "source", "give exactly one of `source` and `jsonl_path`")
        template = self._template(context)
        source: str | Path
        if self.jsonl_path is not None:
            source = context.path / self.jsonl_path
            if not source.is_file():
                raise self._error(context, "jsonl_path", f"no file at {source}")
        else:
            source = self.source  # type: ignore[assignment]
        try:
            self._pipeline = openai_batch_assets(
                name=self.name,
                source=dg.AssetKey.from_user_string(source) if isinstance(source, str) else source,
                template=template,
                endpoint=self.endpoint,
                partitions_def=self.partitions.build() if self.partitions else None,
                group_name=self.group_name,
                resource_key=self.resource_key,
                storage=self.storage,
                wait=self.wait,
                max_failed_share=self.max_failed_share,
                schedule=self.schedule,
            )
        except (ValueError, dg.DagsterInvalidDefinitionError) as e:
            raise _error(context, str(e)) from None
        return self._pipeline

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        pipeline = self.build_pipeline(context)
        if self.sensor is None:
            return pipeline.definitions()
        sensor = openai_batch_sensor(
            [pipeline],
            name=self.sensor.name,
            minimum_interval_seconds=self.sensor.minimum_interval_seconds,
        )
        return dg.Definitions.merge(pipeline.definitions(), dg.Definitions(sensors=[sensor]))


def _error(context: dg.ComponentLoadContext, problem: str) -> ValueError:
    return ValueError(f"{context.path / 'defs.yaml'}: {problem}")


def _problems(error: ValidationError) -> str:
    """``field: message`` for each problem of a validation error."""
    return "; ".join(
        f"`{'.'.join(map(str, e['loc'])) or 'attributes'}`: {e['msg'].removeprefix('Value error, ')}"
        for e in error.errors()
    )


def load_pipelines_from_defs_folder(
    defs_module: ModuleType,
) -> tuple[dg.Definitions, list[OpenAIBatchPipeline]]:
    """Load every component under ``defs_module`` (a package of ``*/defs.yaml`` folders).

    Returns the folder's definitions and the pipelines of its `OpenAIBatchComponent`s, holding the
    very assets and jobs of those definitions, so one `openai_batch_sensor` can watch them together
    with pipelines declared in Python.
    """
    package_dir = Path(defs_module.__file__ or "").parent
    tree = ComponentTree.from_module(defs_module=defs_module, project_root=package_dir.parent)
    definitions = tree.build_defs()
    assets = {a.key: a for a in definitions.assets or [] if isinstance(a, dg.AssetsDefinition)}
    jobs = {j.name: j for j in definitions.jobs or []}
    schedules = {s.name: s for s in definitions.schedules or []}
    pipelines = []
    for component in tree.get_all_components(OpenAIBatchComponent):
        built = component.build_pipeline(tree.load_context)
        pipelines.append(
            replace(
                built,
                input_file=assets[built.input_file.key],
                batch_job=assets[built.batch_job.key],
                results=assets[built.results.key],
                submit_job=jobs[built.submit_job.name],
                results_job=jobs[built.results_job.name],
                schedules=[schedules[s.name] for s in built.schedules],  # type: ignore[misc]
            )
        )
    return definitions, pipelines
