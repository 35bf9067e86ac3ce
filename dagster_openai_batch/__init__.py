"""dagster-openai-batch: the OpenAI Batch API as Dagster assets, with an offline emulator.

Public API: the request models and template (core), the resource, the asset factory and the sensor
(Dagster layer). The emulator lives in `dagster_openai_batch.emulator`.
"""

from .core.client import BatchClient, BatchClientError
from .core.models import (
    MAX_EMBEDDING_INPUTS,
    MAX_FILE_BYTES,
    MAX_REQUESTS_PER_FILE,
    BatchEndpoint,
    BatchRequest,
)
from .core.storage import BatchResults
from .core.templates import RequestTemplate, build_requests, iter_rows
from .core.writer import BatchInputError, InputPart, InputProblem, PreparedInput, prepare_jsonl, prepare_rows
from .dagster import (
    BatchJobConfig,
    OpenAIBatchComponent,
    OpenAIBatchPipeline,
    OpenAIBatchResource,
    OpenAIConfigurationError,
    ResultsConfig,
    openai_batch_assets,
    openai_batch_sensor,
)

__all__ = [
    "MAX_EMBEDDING_INPUTS",
    "MAX_FILE_BYTES",
    "MAX_REQUESTS_PER_FILE",
    "BatchClient",
    "BatchClientError",
    "BatchEndpoint",
    "BatchInputError",
    "BatchJobConfig",
    "BatchRequest",
    "BatchResults",
    "InputPart",
    "InputProblem",
    "OpenAIBatchComponent",
    "OpenAIBatchPipeline",
    "OpenAIBatchResource",
    "OpenAIConfigurationError",
    "PreparedInput",
    "RequestTemplate",
    "ResultsConfig",
    "build_requests",
    "iter_rows",
    "openai_batch_assets",
    "openai_batch_sensor",
    "prepare_jsonl",
    "prepare_rows",
]
