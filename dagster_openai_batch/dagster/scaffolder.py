"""``dg scaffold defs`` for the YAML components: a commented ``defs.yaml`` that loads and runs.

``dg scaffold defs dagster_openai_batch.OpenAIBatchComponent my_batch`` writes a chat-completions
pipeline over a small ``questions.csv`` (also written), running offline on the emulator; options
(``--json-params '{"endpoint": "/v1/embeddings", "source": "raw/docs"}'`` or ``--endpoint ...``)
change the endpoint, model, source, sensor and resource.
"""

import json
import re
from typing import Literal

import dagster as dg
from dagster.components import scaffold_component
from pydantic import BaseModel, Field

from .component_attributes import Endpoint

DEFAULT_MODELS: dict[str, str] = {
    "/v1/chat/completions": "gpt-4o-mini",
    "/v1/responses": "gpt-4o-mini",
    "/v1/completions": "gpt-3.5-turbo-instruct",
    "/v1/embeddings": "text-embedding-3-small",
    "/v1/moderations": "omni-moderation-latest",
}
SAMPLE_FILE = "questions.csv"
SAMPLE_ROWS = """id,question
q1,Why is the sky blue?
q2,What does a batch API cost compared with the synchronous API?
q3,Name three uses of text embeddings.
"""


class OpenAIBatchScaffoldParams(BaseModel):
    """Options of ``dg scaffold defs dagster_openai_batch.OpenAIBatchComponent``."""

    name: str | None = Field(
        default=None, description="Pipeline name (asset key prefix); default: the folder name."
    )
    endpoint: Endpoint = Field(default="/v1/chat/completions", description="The batch endpoint.")
    model: str | None = Field(
        default=None, description="The OpenAI model; default: a small model of the endpoint."
    )
    source: str | None = Field(
        default=None,
        description="An upstream asset key or a CSV/Parquet/JSONL file of rows; default: a "
        f"sample {SAMPLE_FILE} written beside defs.yaml.",
    )
    sensor: bool = Field(
        default=True,
        description="Give the pipeline a sensor of its own (false: an OpenAIBatchSensorComponent "
        "or a Python sensor watches it).",
    )
    resource: Literal["emulator", "openai", "none"] = Field(
        default="emulator",
        description="Declare the resource here: on the offline emulator, on OpenAI "
        "(OPENAI_API_KEY), or not at all (declared in another file).",
    )


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def pipeline_yaml(type_name: str, folder: str, params: OpenAIBatchScaffoldParams) -> str:
    """The ``defs.yaml`` text of a new pipeline."""
    name = params.name or re.sub(r"\W", "_", folder)
    endpoint = params.endpoint
    column = "question" if params.source is None else "text"
    chat = endpoint in ("/v1/chat/completions", "/v1/responses")
    lines = [
        f"# An OpenAI batch pipeline: {name}/input_file -> {name}/batch_job -> {name}/results.",
        "# Check it with `dg check yaml`; every attribute is described by",
        f"# `dg utils inspect-component {type_name}`.",
        f"type: {type_name}",
        "",
        "attributes:",
        f"  name: {name}",
        "  # The rows: an upstream asset key (e.g. raw/questions), or a CSV, Parquet or JSONL file",
        "  # of rows relative to this folder. (`jsonl_path` instead takes ready requests.)",
        f"  source: {_quote(params.source or SAMPLE_FILE)}",
        f"  endpoint: {endpoint}",
        f"  model: {_quote(params.model or DEFAULT_MODELS[endpoint])}",
        f"  # One request per row; {{{column}}} is replaced by the row's `{column}` column.",
    ]
    if chat:
        lines += [
            "  messages:",
            "    - role: system",
            '      content: "Answer in one sentence."',
            "    - role: user",
            f'      content: "{{{column}}}"',
        ]
    else:
        lines.append(f'  prompt: "{{{column}}}"')
    lines += [
        "  # body: {temperature: 0}            # more request fields",
        "  # The column holding each row's unique id (default: an id generated from the row).",
        f"  {'' if params.source is None else '# '}custom_id_column: id",
        '  # partitions: {daily: {start_date: "2026-01-01"}}   # one batch set per day',
        "  # schedule: true                     # submit each day when it ends",
    ]
    if params.sensor:
        lines += [
            f"  # A sensor ({name}_sensor) collects the results when the batches finish. Leave it",
            "  # out when one OpenAIBatchSensorComponent watches all pipelines of the project.",
            "  sensor: {}",
        ]
    else:
        lines.append("  # sensor: {}   # a sensor of its own (else: OpenAIBatchSensorComponent)")
    lines += _resource_lines(params.resource)
    return "\n".join(lines) + "\n"


def _resource_lines(resource: str) -> list[str]:
    intro = [
        "  # The OpenAI connection (resource key `openai_batch`), declared once per project: here",
        "  # (other pipelines may repeat the same settings) or in Python (defs/resources.py).",
    ]
    if resource == "emulator":
        return [
            *intro,
            "  # This one runs offline on the emulator shipped with dagster-openai-batch; to use",
            "  # OpenAI, write `resource: {}` and set the OPENAI_API_KEY environment variable.",
            "  resource:",
            "    emulator_dir: .openai_batch_emulator   # relative to the project root",
            "    emulator_pace: fast",
        ]
    if resource == "openai":
        return [
            *intro,
            "  # The API key is read from OPENAI_API_KEY when the assets run.",
            "  resource: {}",
        ]
    return [
        "  # The OpenAI connection (resource key `openai_batch`) is declared in another file.",
        "  # resource: {}",
    ]


class OpenAIBatchScaffolder(dg.Scaffolder[OpenAIBatchScaffoldParams]):
    """Writes a commented ``defs.yaml`` (and a sample ``questions.csv``) that runs as is."""

    @classmethod
    def get_scaffold_params(cls) -> type[OpenAIBatchScaffoldParams]:
        return OpenAIBatchScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[OpenAIBatchScaffoldParams]) -> None:
        if request.scaffold_format != "yaml" or request.append:
            scaffold_component(request, {"name": request.target_path.name})
            return
        params = request.params or OpenAIBatchScaffoldParams()
        text = pipeline_yaml(request.type_name, request.target_path.name, params)
        (request.target_path / "defs.yaml").write_text(text, encoding="utf-8")
        sample = request.target_path / SAMPLE_FILE
        if params.source is None and not sample.exists():
            sample.write_text(SAMPLE_ROWS, encoding="utf-8")


SENSOR_YAML = """\
# One sensor for every OpenAIBatchComponent pipeline of this project (except those with a
# `sensor` of their own): it launches each pipeline's results run when its batches finish.
type: {type_name}

attributes:
  name: openai_batch_sensor
  minimum_interval_seconds: 30
  # pipelines: [my_batch]    # only these pipelines (default: all)
"""


class SensorScaffoldParams(BaseModel):
    """``dg scaffold defs dagster_openai_batch.OpenAIBatchSensorComponent`` takes no options."""


class OpenAIBatchSensorScaffolder(dg.Scaffolder[SensorScaffoldParams]):
    """Writes the ``defs.yaml`` of the project's shared sensor."""

    @classmethod
    def get_scaffold_params(cls) -> type[SensorScaffoldParams]:
        return SensorScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[SensorScaffoldParams]) -> None:
        if request.scaffold_format != "yaml" or request.append:
            scaffold_component(request, {})
            return
        (request.target_path / "defs.yaml").write_text(
            SENSOR_YAML.format(type_name=request.type_name), encoding="utf-8"
        )
