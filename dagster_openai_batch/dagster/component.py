"""YAML components: `OpenAIBatchComponent` (one pipeline per ``defs.yaml``) and
`OpenAIBatchSensorComponent` (one sensor for every such pipeline of the code location).

The components only parse and check the YAML; the assets, checks, jobs and schedule come from
`openai_batch_assets` and the sensors from `openai_batch_sensor`, exactly as in Python. Start one
with ``dg scaffold defs dagster_openai_batch.OpenAIBatchComponent my_batch``.

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

import functools
import warnings
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Self

import dagster as dg
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    model_validator,
)

from ..core.templates import RequestTemplate
from .component_attributes import (
    ATTRIBUTE_RULES,
    CRON_PATTERN,
    ENDPOINTS,
    NAME_PATTERN,
    Endpoint,
    PartitionsModel,
    ResourceModel,
    SensorModel,
    TimeWindowPartitions,
    is_row_file,
    raise_problems,
    restore_descriptions,
    row_file_reader,
    shared_resource,
)
from .component_translation import (
    ComponentTranslator,
    ExecutionModel,
    ResolvedStageTranslation,
    RetryPolicyModel,
    StageExecutionModel,
)
from .pipeline import RESOURCE_KEY, OpenAIBatchPipeline, openai_batch_assets
from .scaffolder import OpenAIBatchScaffolder, OpenAIBatchSensorScaffolder
from .sensor import openai_batch_sensor

# `model` (the OpenAI model, as in the API) shadows the inherited classmethod `Resolvable.model`,
# which dagster only calls on the class, where the classmethod still wins.
warnings.filterwarnings("ignore", 'Field name "model" in "OpenAIBatchComponent"', UserWarning)

__all__ = [
    "Endpoint",
    "OpenAIBatchComponent",
    "OpenAIBatchSensorComponent",
    "PartitionsModel",
    "ResourceModel",
    "SensorModel",
    "load_pipelines_from_defs_folder",
]


@dg.scaffold_with(OpenAIBatchScaffolder)
class OpenAIBatchComponent(dg.Component, dg.Resolvable, dg.Model):
    """One OpenAI batch pipeline, ``<name>/input_file → <name>/batch_job → <name>/results``.

    Rows come from ``source`` (an upstream asset, or a CSV/Parquet/JSONL file of rows) through the
    template (``model`` with ``messages`` or ``prompt``, ``body`` extras, ``custom_id_column``), or
    ready requests from ``jsonl_path``. ``resource`` declares the OpenAI connection; ``sensor``
    adds a sensor for this pipeline alone (`OpenAIBatchSensorComponent` watches all of them).
    """

    name: str = Field(
        pattern=NAME_PATTERN,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="Key prefix and group of the three assets, and prefix of the jobs "
        "(`<name>_submit`, `<name>_results`).",
        examples=["review_labels"],
    )
    endpoint: Endpoint = Field(
        description="The batch endpoint every request goes to.",
        json_schema_extra={"enum": ENDPOINTS},
    )
    source: str | None = Field(
        default=None,
        description="Where the rows come from: an upstream asset key (`a/b`) whose value is a list "
        "of dicts or a DataFrame/Arrow table, or a CSV, Parquet or JSONL file of rows "
        "(relative to this folder; `{partition_key}` is replaced by the partition key).",
        examples=["raw/questions", "questions.csv", "data/{partition_key}.parquet"],
    )
    jsonl_path: str | None = Field(
        default=None,
        description="Instead of `source` and a template: a JSONL file of ready batch requests "
        "(relative to this folder).",
    )
    model: str | None = Field(  # type: ignore[assignment]  # see the filter above
        default=None,
        description="The OpenAI model of every request (required unless `jsonl_path`).",
        examples=["gpt-4o-mini", "text-embedding-3-small"],
    )
    messages: list[dict[str, Any]] | None = Field(
        default=None,
        description="Chat messages (chat completions and responses); `{column}` in a string is "
        "filled from the row.",
        examples=[[{"role": "user", "content": "Summarize: {text}"}]],
    )
    prompt: str | None = Field(
        default=None,
        description="The endpoint's natural input (the user message, `input` or `prompt`) with "
        "`{column}` placeholders; instead of `messages`.",
        examples=["{text}"],
    )
    body: dict[str, Any] = Field(
        default_factory=dict,
        description="More request body fields (e.g. temperature, dimensions); strings may hold "
        "`{column}` placeholders.",
        examples=[{"temperature": 0}],
    )
    custom_id_column: str | None = Field(
        default=None,
        description="Column holding each row's unique custom_id (default: generated from the row).",
    )
    partitions: PartitionsModel | None = Field(
        default=None,
        description="One batch set per partition: exactly one of hourly, daily, weekly, monthly "
        "(`{start_date: ...}`) or static (a list of keys).",
        json_schema_extra={"minProperties": 1, "maxProperties": 1},
    )
    schedule: bool | str = Field(
        default=False,
        description="`true`: submit each new time partition when it ends; a cron string: submit "
        "on that cron (unpartitioned pipelines).",
        json_schema_extra={"pattern": CRON_PATTERN},
    )
    sensor: SensorModel | None = Field(
        default=None,
        description="A sensor collecting this pipeline's results (`{}` for the defaults). Leave it "
        "out when an OpenAIBatchSensorComponent (or a Python sensor) watches the pipeline.",
    )
    resource: ResourceModel | None = Field(
        default=None,
        description="The OpenAI connection under `resource_key`, declared once per code location: "
        "here (other YAML files may repeat the same settings) or in Python (defs/resources.py).",
    )
    max_failed_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="The `failed_share` check of results fails above this share of failed "
        "requests.",
    )
    delete_input_files: bool = Field(
        default=False,
        description="Once `results` is recorded, delete the batches' input files from the "
        "service (a copy stays in `storage`; a file a batch in flight uses stays).",
    )
    delete_result_files: bool = Field(
        default=False,
        description="Once `results` is recorded, delete the batches' output and error files "
        "from the service (the results table keeps every answer).",
    )
    wait: bool = Field(
        default=False,
        description="`batch_job` blocks until the batches finish (small jobs, one run); by default "
        "it returns at once and a sensor collects the results.",
    )
    group_name: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="Asset group (default: `name`).",
    )
    resource_key: str = Field(
        default=RESOURCE_KEY,
        pattern=NAME_PATTERN,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="Resource key of the OpenAIBatchResource the assets and sensors use.",
    )
    storage: str | None = Field(
        default=None,
        description="Directory or URI (s3://…, gs://…, abfs://…, az://…) for input rows and "
        "results tables; default `$DAGSTER_OPENAI_BATCH_STORAGE`, else "
        "`<Dagster storage>/openai_batch`.",
    )
    results_io_manager_key: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="Store the BatchResults handle of `results` through this IO manager of the "
        "deployment (e.g. `io_manager`); by default it is rebuilt from the results record.",
    )
    translation: ResolvedStageTranslation | None = Field(
        default=None,
        description="Asset attributes of the three assets (key, group_name, owners, tags, "
        "description, automation_condition, freshness_policy…), templated with `props` "
        "(`props.pipeline`, `props.stage`, `props.endpoint`) and `spec` (the default spec).",
        examples=[{"key": "llm/{{ props.pipeline }}/{{ props.stage }}", "owners": ["team:ml"]}],
    )
    execution: ExecutionModel | None = Field(
        default=None,
        description="Op settings per stage (`input_file`, `batch_job`, `results`): `pool`, "
        "`retry_policy`, `op_tags`.",
        examples=[{"results": {"retry_policy": {"max_retries": 2, "delay": 5}}}],
    )

    _pipeline: OpenAIBatchPipeline | None = PrivateAttr(default=None)
    _context: dg.ComponentLoadContext | None = PrivateAttr(default=None)

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        """The attributes model: Dagster's, with the rules across fields (`ATTRIBUTE_RULES`)."""
        return _attributes_model(cls)

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> Self:
        try:
            component = super().load(attributes, context)
        except ValidationError as e:
            raise _error(context, _problems(e)) from None
        component._context = context
        return component

    def _template(self, context: dg.ComponentLoadContext) -> RequestTemplate | None:
        if self.jsonl_path is not None:
            return None
        try:
            return RequestTemplate(
                endpoint=self.endpoint,
                model=self.model,  # type: ignore[arg-type]  # checked by the attribute rules
                messages=self.messages,
                prompt=self.prompt,
                body=self.body,
                custom_id_column=self.custom_id_column,
            )
        except ValidationError as e:
            raise _error(context, _problems(e)) from None

    def _source(self, context: dg.ComponentLoadContext) -> Any:
        if self.jsonl_path is not None:
            path = context.path / self.jsonl_path
            if not path.is_file():
                raise _error(context, f"`jsonl_path`: no file at {path}")
            return path
        source: str = self.source  # type: ignore[assignment]  # checked by the attribute rules
        if not is_row_file(source):
            return dg.AssetKey.from_user_string(source)
        path = context.path / source
        if "{partition_key}" not in source and not path.is_file():
            raise _error(context, f"`source`: no file of rows at {path}")
        return row_file_reader(path)

    def build_pipeline(self, context: dg.ComponentLoadContext | None = None) -> OpenAIBatchPipeline:
        """The pipeline (built once per component), e.g. for a sensor shared by pipelines."""
        if self._pipeline is not None:
            return self._pipeline
        context = context or self._context
        if context is None:
            raise RuntimeError(f"{self.name}: build_pipeline needs the component's load context")
        try:
            self._pipeline = openai_batch_assets(
                name=self.name,
                source=self._source(context),
                template=self._template(context),
                endpoint=self.endpoint,
                partitions_def=self.partitions.build() if self.partitions else None,
                group_name=self.group_name,
                resource_key=self.resource_key,
                storage=self.storage,
                results_io_manager_key=self.results_io_manager_key,
                wait=self.wait,
                max_failed_share=self.max_failed_share,
                delete_input_files=self.delete_input_files,
                delete_result_files=self.delete_result_files,
                schedule=self.schedule,
                translator=ComponentTranslator(self.translation, self.execution),
            )
        except (ValueError, dg.DagsterInvalidDefinitionError) as e:
            raise _error(context, str(e)) from None
        return self._pipeline

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        pipeline = self.build_pipeline(context)
        parts = [pipeline.definitions()]
        if any(
            sensor.watches(self)
            for sensor in context.component_tree.get_all_components(OpenAIBatchSensorComponent)
        ):
            # The shared sensor's Definitions carry the results job: Dagster copies each
            # component's definitions (to add the YAML's code reference), so the job must come
            # from exactly one component.
            own = parts[0]
            parts = [
                dg.Definitions(
                    assets=own.assets,
                    asset_checks=own.asset_checks,
                    jobs=[job for job in own.jobs or [] if job is not pipeline.results_job],
                    schedules=own.schedules,
                    sensors=own.sensors,
                    resources=own.resources,
                )
            ]
        if self.sensor is not None:
            sensor = openai_batch_sensor(
                [pipeline],
                name=self.sensor.name or f"{self.name}_sensor",
                minimum_interval_seconds=self.sensor.minimum_interval_seconds,
            )
            parts.append(dg.Definitions(sensors=[sensor]))
        if self.resource is not None:
            parts.append(dg.Definitions(resources={self.resource_key: self._resource(context)}))
        return dg.Definitions.merge(*parts)

    def _resource(self, context: dg.ComponentLoadContext) -> Any:
        assert self.resource is not None
        settings = self.resource.settings(context.project_root)
        for other in context.component_tree.get_all_components(OpenAIBatchComponent):
            if (
                other.resource is not None
                and other.resource_key == self.resource_key
                and other.resource.settings(context.project_root) != settings
            ):
                raise _error(
                    context,
                    f"`resource`: pipelines {self.name!r} and {other.name!r} declare different "
                    f"settings for resource key {self.resource_key!r}; declare it once (one YAML "
                    "file or defs/resources.py), or give one of them another `resource_key`",
                )
        return shared_resource(settings)


@functools.cache
def _attributes_model(component: type[dg.Resolvable]) -> type[BaseModel]:
    """Dagster's attributes model of ``component`` with `ATTRIBUTE_RULES` (JSON schema, checked
    by ``dg check yaml``) and their Python twin (checked at load, with the YAML line)."""
    base: Any = component.model()

    class Rules(base):  # type: ignore[misc]
        model_config = ConfigDict(
            json_schema_extra={**base.model_config["json_schema_extra"], "allOf": ATTRIBUTE_RULES}
        )

        @model_validator(mode="after")
        def _rules(self) -> Self:
            raise_problems(self)
            return self

    # Named after the component: pydantic titles its errors with the model's name.
    model: type[BaseModel] = create_model(component.__name__, __base__=Rules)
    restore_descriptions(component, model)
    return model


@dg.scaffold_with(OpenAIBatchSensorScaffolder)
class OpenAIBatchSensorComponent(dg.Component, dg.Resolvable, dg.Model):
    """One sensor for every `OpenAIBatchComponent` pipeline of the code location.

    Watches each pipeline declared in YAML anywhere in the project's ``defs`` folder, except those
    with a ``sensor`` of their own (one sensor per resource key: more keys add
    ``<name>_<resource_key>`` sensors). Pipelines declared in Python need a Python sensor.
    """

    name: str = Field(
        default="openai_batch_sensor",
        pattern=NAME_PATTERN,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="The sensor's name.",
    )
    minimum_interval_seconds: int = Field(
        default=30, ge=1, description="Seconds between two looks at the batches."
    )
    pipelines: list[str] | None = Field(
        default=None,
        description="Only these pipelines (their `name`s); default: every pipeline without a "
        "sensor of its own.",
    )
    default_status: Literal["running", "stopped"] = Field(
        default="running",
        description="Whether the sensor runs as soon as the code location loads.",
        json_schema_extra={"enum": ["running", "stopped"]},
    )

    def watches(self, component: OpenAIBatchComponent) -> bool:
        """Whether this sensor watches the pipeline of ``component``."""
        return component.sensor is None and (
            self.pipelines is None or component.name in self.pipelines
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        components = context.component_tree.get_all_components(OpenAIBatchComponent)
        if self.pipelines is not None:
            by_name = {c.name: c for c in components}
            unknown = sorted(set(self.pipelines) - set(by_name))
            if unknown:
                raise _error(
                    context,
                    f"`pipelines`: no OpenAIBatchComponent named {unknown} "
                    f"(the project has {sorted(by_name)})",
                )
            own = sorted(name for name in self.pipelines if by_name[name].sensor is not None)
            if own:
                raise _error(context, f"`pipelines`: {own} have a `sensor` of their own")
        watched = [c for c in components if self.watches(c)]
        if not watched:
            raise _error(context, "no OpenAIBatchComponent (without a sensor of its own) to watch")
        for other in context.component_tree.get_all_components(OpenAIBatchSensorComponent):
            twice = sorted(c.name for c in watched if other is not self and other.watches(c))
            if twice:
                raise _error(
                    context,
                    f"pipelines {twice} are watched by two sensors ({self.name!r} and "
                    f"{other.name!r}); give each OpenAIBatchSensorComponent its `pipelines`",
                )
        by_key: dict[str, list[OpenAIBatchPipeline]] = {}
        for component in watched:
            pipeline = component.build_pipeline()
            by_key.setdefault(pipeline.resource_key, []).append(pipeline)
        status = dg.DefaultSensorStatus(self.default_status.upper())
        sensors = [
            openai_batch_sensor(
                pipelines,
                name=self.name if key == RESOURCE_KEY or len(by_key) == 1 else f"{self.name}_{key}",
                minimum_interval_seconds=self.minimum_interval_seconds,
                default_status=status,
            )
            for key, pipelines in sorted(by_key.items())
        ]
        return dg.Definitions(sensors=sensors)


for _resolvable in (
    TimeWindowPartitions,
    PartitionsModel,
    SensorModel,
    ResourceModel,
    RetryPolicyModel,
    StageExecutionModel,
    ExecutionModel,
    OpenAIBatchSensorComponent,
):
    restore_descriptions(_resolvable, _resolvable.model())


def _error(context: dg.ComponentLoadContext, problem: str) -> ValueError:
    return ValueError(f"{context.path / 'defs.yaml'}: {problem}")


def _problems(error: ValidationError) -> str:
    """``field: message`` for each problem of a validation error."""
    return "; ".join(
        f"`{'.'.join(map(str, e['loc'])) or 'attributes'}`: "
        + e["msg"].removeprefix("Value error, ")
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
    tree = dg.ComponentTree.from_module(defs_module=defs_module, project_root=package_dir.parent)
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
                # (the results job of a pipeline that a sensor component watches is the sensor's)
                results_job=jobs.get(built.results_job.name, built.results_job),
                schedules=[schedules[s.name] for s in built.schedules],
            )
        )
    return definitions, pipelines
