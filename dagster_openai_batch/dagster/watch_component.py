"""YAML component `OpenAIBatchWatchComponent`: watch and collect batches created elsewhere, by id.

The component only parses the YAML; the assets, job and sensor come from `openai_batch_watch` and
`openai_batch_watch_sensor`, exactly as in Python.

Example ``defs/imported_batches/defs.yaml``::

    type: dagster_openai_batch.OpenAIBatchWatchComponent
    attributes:
      name: imported_batches
      batch_ids: [batch_abc123, batch_def456]
      inputs: questions.csv  # optional: rows joined to the answers by custom_id
      custom_id_column: question_id
"""

import dagster as dg
from pydantic import Field

from .batch_watch import Inputs, OpenAIBatchWatch, openai_batch_watch, openai_batch_watch_sensor
from .component_attributes import (
    NAME_PATTERN,
    ResourceModel,
    SensorModel,
    is_row_file,
    restore_descriptions,
    shared_resource,
)
from .pipeline import RESOURCE_KEY


class OpenAIBatchWatchComponent(dg.Component, dg.Resolvable, dg.Model):
    """Batches created elsewhere (a script, the dashboard, a lost run), watched and collected by id.

    ``<name>/batch`` records each batch's status, counts, file ids and ``results_available`` as
    observations; ``<name>/results`` holds its results table once it finishes. Both are
    partitioned by batch id: ``batch_ids`` here, or partitions added in the UI.
    """

    name: str = Field(
        pattern=NAME_PATTERN,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="Key prefix and group of the two assets, name of their partitions and prefix "
        "of the job (`<name>_results`).",
        examples=["imported_batches"],
    )
    batch_ids: list[str] = Field(
        default_factory=list,
        description="Batches to watch (the sensor adds them as partitions); more can be added "
        "as partitions in the UI.",
        examples=[["batch_abc123"]],
    )
    inputs: str | None = Field(
        default=None,
        description="Source rows whose columns join each request's row by custom_id: an "
        "upstream asset key (`a/b`), or a CSV, Parquet or JSONL file of rows (relative to this "
        "folder; `{partition_key}` is replaced by the batch id). Without: no input columns.",
        examples=["raw/questions", "questions.csv"],
    )
    custom_id_column: str = Field(
        default="custom_id", description="The column of `inputs` holding each row's custom_id."
    )
    sensor: SensorModel | None = Field(
        default_factory=SensorModel,
        description="The sensor observing the batches and collecting their results (default "
        "`<name>_sensor`); `null` when a Python `openai_batch_watch_sensor` watches them.",
    )
    resource: ResourceModel | None = Field(
        default=None,
        description="The OpenAI connection under `resource_key`, declared once per code location "
        "(here, in another component with the same settings, or in Python).",
    )
    resource_key: str = Field(
        default=RESOURCE_KEY,
        pattern=NAME_PATTERN,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="Resource key of the OpenAIBatchResource that can see the batches.",
    )
    storage: str | None = Field(
        default=None,
        description="Directory or URI for the results tables; default "
        "`$DAGSTER_OPENAI_BATCH_STORAGE`, else `<Dagster storage>/openai_batch`.",
    )
    group_name: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="Asset group (default: `name`).",
    )
    max_failed_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="The `failed_share` check of results fails above this share of failed "
        "requests.",
    )

    def build_watch(self, context: dg.ComponentLoadContext) -> OpenAIBatchWatch:
        try:
            return openai_batch_watch(
                self.name,
                batch_ids=self.batch_ids,
                resource_key=self.resource_key,
                storage=self.storage,
                group_name=self.group_name,
                max_failed_share=self.max_failed_share,
                inputs=self._inputs(context),
                custom_id_column=self.custom_id_column,
            )
        except ValueError as e:
            raise ValueError(f"{context.path / 'defs.yaml'}: {e}") from None

    def _inputs(self, context: dg.ComponentLoadContext) -> Inputs | None:
        if self.inputs is None or not is_row_file(self.inputs):
            return self.inputs
        path = context.path / self.inputs
        if "{partition_key}" not in self.inputs and not path.is_file():
            raise ValueError(f"{context.path / 'defs.yaml'}: `inputs`: no file of rows at {path}")
        return path

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        watch = self.build_watch(context)
        parts = [watch.definitions()]
        if self.sensor is not None:
            sensor = openai_batch_watch_sensor(
                [watch],
                name=self.sensor.name or f"{self.name}_sensor",
                minimum_interval_seconds=self.sensor.minimum_interval_seconds,
            )
            parts.append(dg.Definitions(sensors=[sensor]))
        if self.resource is not None:
            resource = shared_resource(self.resource.settings(context.project_root))
            parts.append(dg.Definitions(resources={self.resource_key: resource}))
        return dg.Definitions.merge(*parts)


restore_descriptions(OpenAIBatchWatchComponent, OpenAIBatchWatchComponent.model())
