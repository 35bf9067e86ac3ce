"""The parts of an `OpenAIBatchComponent` YAML: nested attributes, rules, file sources.

The rules that need no Python to check (an endpoint, which fields go together) are stated twice,
side by side: as JSON schema, which ``dg check yaml`` validates (reporting the file and line), and
as the same checks in Python, which run when the YAML is loaded (``dg check defs``, ``dg dev``), so
a project never reaches `openai_batch_assets` with them broken.
"""

import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import dagster as dg
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import InitErrorDetails

from ..core.client import MAX_EXPIRY_SECONDS, MIN_EXPIRY_SECONDS
from ..core.vocabulary import AnswerEndpoint
from .resource import OpenAIBatchResource

Endpoint = AnswerEndpoint
"""The endpoints a template can build requests for."""
ENDPOINTS: list[Any] = list(get_args(AnswerEndpoint))
MESSAGE_ENDPOINTS = ["/v1/chat/completions", "/v1/responses"]
TEMPLATE_FIELDS = ("model", "messages", "prompt", "custom_id_column")
"""Fields of a request template: they do not apply to a file of ready requests (`jsonl_path`)."""
PARTITION_KINDS = ("hourly", "daily", "weekly", "monthly", "static")
ROW_FILE_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson")
NAME_PATTERN = r"^[A-Za-z0-9_]+$"
TEMPLATED = r"\{\{"  # a `{{ ... }}` template, resolved at load: checked then, not statically
CRON_PATTERN = (
    rf"{TEMPLATED}|^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$"
    r"|^\s*\S+(\s+\S+){4}\s*$"
)
DATE_PATTERN = rf"{TEMPLATED}|^\d{{4}}-\d{{2}}-\d{{2}}"


def restore_descriptions(resolvable: type[dg.Resolvable], model: type[BaseModel]) -> None:
    """Put the descriptions of ``resolvable``'s fields back into the JSON schema of ``model``
    (Dagster's derived model of it), which drops them for fields with a default."""
    fields: dict[str, Any] = getattr(resolvable, "model_fields", {})
    descriptions = {name: f.description for name, f in fields.items() if f.description}
    extra = model.model_config.get("json_schema_extra")
    if callable(extra):
        return  # already restored

    def json_schema_extra(schema: dict[str, Any]) -> None:
        schema.update(extra or {})
        for name, prop in schema.get("properties", {}).items():
            if name in descriptions:
                prop.setdefault("description", descriptions[name])

    model.model_config["json_schema_extra"] = json_schema_extra


class TimeWindowPartitions(dg.Resolvable, dg.Model):
    """A time partitioning: ``{start_date: "2026-11-01", end_offset: 0, timezone: UTC}``."""

    start_date: str = Field(
        pattern=DATE_PATTERN,
        json_schema_extra={"pattern": DATE_PATTERN},
        description='The first partition, "YYYY-MM-DD" (or "YYYY-MM-DD-HH:MM" for hourly).',
        examples=["2026-11-01"],
    )
    end_offset: int = Field(
        default=0,
        description="Extra partitions past the current one (0: the last partition is the last "
        "complete period; 1: also the current, incomplete one).",
    )
    timezone: str | None = Field(
        default=None, description="IANA timezone of the partition boundaries (default UTC)."
    )


class PartitionsModel(dg.Resolvable, dg.Model):
    """Exactly one of ``hourly``, ``daily``, ``weekly``, ``monthly`` or ``static`` (a key list)."""

    hourly: TimeWindowPartitions | None = Field(default=None, description="One batch per hour.")
    daily: TimeWindowPartitions | None = Field(default=None, description="One batch per day.")
    weekly: TimeWindowPartitions | None = Field(default=None, description="One batch per week.")
    monthly: TimeWindowPartitions | None = Field(default=None, description="One batch per month.")
    static: list[str] | None = Field(
        default=None,
        description="One batch per key of this list, e.g. [eu, us].",
        examples=[["eu", "us"]],
    )

    def kinds(self) -> list[str]:
        """The partitionings given (exactly one is valid)."""
        return [name for name, value in self if value is not None]

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
    """A sensor watching this pipeline alone (``{}`` for the defaults)."""

    name: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="The sensor's name; default ``<name>_sensor``, so pipelines never clash.",
    )
    minimum_interval_seconds: int = Field(
        default=30, ge=1, description="Seconds between two looks at the batches."
    )


class ResourceModel(dg.Resolvable, dg.Model):
    """The `OpenAIBatchResource` the pipeline's assets use (under ``resource_key``).

    Declare it once per code location: in one YAML file (pipelines sharing a key may repeat the
    same settings) or in Python (``defs/resources.py``), not both. Without ``api_key`` or
    ``emulator_dir`` the key is read from the ``OPENAI_API_KEY`` environment variable at run time.
    """

    api_key: str | None = Field(
        default=None,
        description='API key, e.g. "{{ env.OPENAI_API_KEY }}"; default: the OPENAI_API_KEY '
        "environment variable, read when the resource is used (never stored).",
    )
    organization: str | None = Field(default=None, description="OpenAI organization id.")
    project: str | None = Field(default=None, description="OpenAI project id.")
    base_url: str | None = Field(
        default=None, description="An OpenAI-compatible service's URL, e.g. http://host/v1."
    )
    azure_endpoint: str | None = Field(
        default=None, description="Azure OpenAI endpoint, e.g. https://NAME.openai.azure.com."
    )
    api_version: str | None = Field(
        default=None, description="Azure OpenAI API version (with azure_endpoint)."
    )
    service: Literal["auto", "openai", "azure", "compatible"] = Field(
        default="auto",
        description="Which kind of service base_url is when its address does not tell (Azure "
        "behind a gateway); auto: from azure_endpoint and the base_url's host.",
    )
    completion_window: str = Field(
        default="24h",
        description="How long a batch may take: 24h (OpenAI, Azure), or longer where a "
        "compatible service offers it (Groq: up to 7d).",
    )
    timeout_seconds: float = Field(default=600.0, description="HTTP timeout of one API call.")
    max_retries: int = Field(
        default=4, description="Retries of 408/409/429/5xx and connection errors, with backoff."
    )
    input_file_expires_after_seconds: int | None = Field(
        default=None,
        ge=MIN_EXPIRY_SECONDS,
        le=MAX_EXPIRY_SECONDS,
        description="The service deletes each uploaded input file this long after the upload "
        "(3600..2592000; OpenAI's default: 30 days).",
    )
    output_expires_after_seconds: int | None = Field(
        default=None,
        ge=MIN_EXPIRY_SECONDS,
        le=MAX_EXPIRY_SECONDS,
        description="The service deletes each batch's output and error files this long after "
        "they are written (3600..2592000; OpenAI's default: 30 days).",
    )
    emulator_dir: str | None = Field(
        default=None,
        description="Run offline on the emulator shipped with this package, its state in this "
        "directory (relative to the project root). No key or network needed.",
        examples=[".openai_batch_emulator"],
    )
    emulator_pace: Literal["fast", "realistic"] = Field(
        default="realistic",
        description="Emulator only: fast (a batch finishes in seconds) or realistic (a demo pace).",
    )

    def settings(self, project_root: Path) -> dict[str, Any]:
        """Keyword arguments of `OpenAIBatchResource` (a relative emulator_dir is made absolute)."""
        given = self.model_dump(exclude_unset=True)
        if self.emulator_dir is not None:
            given["emulator_dir"] = str(project_root / self.emulator_dir)
        elif self.api_key is None and self.azure_endpoint is None:
            given["api_key"] = dg.EnvVar("OPENAI_API_KEY")
        return given


_RESOURCES: dict[str, OpenAIBatchResource] = {}


def shared_resource(settings: Mapping[str, Any]) -> OpenAIBatchResource:
    """One resource object per settings, so that several YAML files may declare the same one
    (`dagster.Definitions.merge` accepts a resource key twice only for the very same object)."""
    key = json.dumps(
        {
            k: (f"env:{v.env_var_name}" if isinstance(v, dg.EnvVar) else v)
            for k, v in settings.items()
        },
        sort_keys=True,
    )
    if key not in _RESOURCES:
        _RESOURCES[key] = OpenAIBatchResource(**settings)
    return _RESOURCES[key]


# ---- Rules across fields: JSON schema for `dg check yaml`, Python for loading ----------------


def _forbidden(reason: str) -> dict[str, Any]:
    """A property schema nothing satisfies; ``dg check yaml`` reports it on the property's line
    as ``'value' should not be valid under {'description': reason}``."""
    return {"not": {"description": reason}}


ATTRIBUTE_RULES: list[Any] = [
    {  # rows through a template
        "if": {"not": {"required": ["jsonl_path"]}},
        "then": {"required": ["source", "model"]},
    },
    {  # a file of ready requests: no source, no template
        "if": {"required": ["jsonl_path"]},
        "then": {
            "properties": {
                field: _forbidden(f"`{field}` does not apply with `jsonl_path`")
                for field in ("source", *TEMPLATE_FIELDS)
            }
        },
    },
    {
        "if": {
            "required": ["endpoint"],
            "properties": {"endpoint": {"not": {"enum": MESSAGE_ENDPOINTS}}},
        },
        "then": {
            "properties": {
                "messages": _forbidden("`messages` only applies to chat completions and responses")
            }
        },
    },
    {
        "if": {"required": ["messages"]},
        "then": {"properties": {"prompt": _forbidden("give `messages` or `prompt`, not both")}},
    },
    {
        "if": {"required": ["schedule"], "properties": {"schedule": {"const": True}}},
        "then": {
            "required": ["partitions"],
            "properties": {
                "partitions": {
                    "not": {
                        "required": ["static"],
                        "description": "schedule: true needs time partitions (or a cron string)",
                    }
                }
            },
        },
    },
]
"""JSON schema rules across the attributes (``allOf``), mirrored by `attribute_problems`."""


def attribute_problems(attributes: BaseModel) -> list[tuple[str, str]]:
    """``(field, problem)`` for each rule of `ATTRIBUTE_RULES` the (unresolved) attributes break."""
    given = {name for name in attributes.model_fields_set if getattr(attributes, name) is not None}
    problems = []
    if "jsonl_path" in given:
        problems += [
            (field, "does not apply with `jsonl_path`")
            for field in ("source", *TEMPLATE_FIELDS)
            if field in given
        ]
    else:
        problems += [
            (field, "required: give `source` and `model`, or `jsonl_path` (ready requests)")
            for field in ("source", "model")
            if field not in given
        ]
    endpoint = getattr(attributes, "endpoint", None)
    if (
        isinstance(endpoint, str)
        and endpoint not in ENDPOINTS
        and not re.search(TEMPLATED, endpoint)
    ):
        problems.append(("endpoint", f"{endpoint!r} is not one of {ENDPOINTS}"))
    if "messages" in given and endpoint in ENDPOINTS and endpoint not in MESSAGE_ENDPOINTS:
        problems.append(
            ("messages", f"only applies to chat completions and responses, not {endpoint}")
        )
    if "messages" in given and "prompt" in given:
        problems.append(("prompt", "give `messages` or `prompt`, not both"))
    problems += _partition_problems(attributes)
    return problems


def _partition_problems(attributes: BaseModel) -> list[tuple[str, str]]:
    problems = []
    partitions = getattr(attributes, "partitions", None)
    kinds = [k for k in PARTITION_KINDS if getattr(partitions, k, None) is not None]
    if isinstance(partitions, BaseModel) and len(kinds) != 1:
        problems.append(
            (
                "partitions",
                f"give exactly one of {', '.join(PARTITION_KINDS)} (got {kinds or 'none'})",
            )
        )
    schedule = getattr(attributes, "schedule", None)
    if schedule is True and (partitions is None or "static" in kinds):
        problems.append(
            ("schedule", "`schedule: true` needs time partitions; or give a cron string")
        )
    if isinstance(schedule, str) and not re.search(CRON_PATTERN, schedule):
        problems.append(("schedule", f"{schedule!r} is not a cron string"))
    return problems


def raise_problems(attributes: BaseModel) -> None:
    """Raise the problems of `attribute_problems` as one pydantic error (one line per field), so
    Dagster reports each with the YAML file and line."""
    problems = attribute_problems(attributes)
    if problems:
        raise ValidationError.from_exception_data(
            type(attributes).__name__,
            [
                InitErrorDetails(
                    type="value_error",
                    loc=(field,),
                    input=getattr(attributes, field, None),
                    ctx={"error": ValueError(problem)},
                )
                for field, problem in problems
            ],
        )


# ---- Files of rows ------------------------------------------------------------------------------


def is_row_file(source: str) -> bool:
    """Whether ``source`` names a file of rows (else it is an asset key)."""
    return source.lower().endswith(ROW_FILE_SUFFIXES)


def row_file_reader(path: Path) -> Callable[[dg.AssetExecutionContext], Any]:
    """A `openai_batch_assets` source function reading the rows of a CSV, Parquet or JSONL file.

    ``{partition_key}`` in the path is replaced by the run's partition key. Files are streamed a
    record batch (or a line) at a time. CSV cells are read as text, as written.
    """

    def read_rows(context: dg.AssetExecutionContext) -> Any:
        text = str(path)
        if "{partition_key}" in text:
            text = text.replace("{partition_key}", context.partition_key)
        file = Path(text)
        if not file.is_file():
            raise dg.Failure(f"No file of rows at {file}")
        suffix = file.suffix.lower()
        if suffix == ".csv":
            return _csv_batches(file)
        if suffix in (".parquet", ".pq"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(file)
            return pa.RecordBatchReader.from_batches(
                parquet.schema_arrow, parquet.iter_batches(batch_size=10_000)
            )
        return _jsonl_rows(file)

    return read_rows


def _csv_batches(file: Path) -> Any:
    import csv

    import pyarrow as pa
    import pyarrow.csv as pacsv

    with file.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    return pacsv.open_csv(
        file,
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
        ),
    )


def _jsonl_rows(file: Path) -> Iterator[dict[str, Any]]:
    import orjson

    with file.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = orjson.loads(line)
            if not isinstance(row, dict):
                raise dg.Failure(f"{file}:{number}: a row must be a JSON object")
            yield row
