"""dagster-openai-batch: the OpenAI Batch API as Dagster assets, with an offline emulator.

Public API: the request models and template (core), the resource, the asset factory, the sensor and
the component (Dagster layer). The emulator lives in `dagster_openai_batch.emulator`.

Names are imported on first use, so ``python -m dagster_openai_batch.emulator`` (which needs
none of them) starts without importing Dagster.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_names

if TYPE_CHECKING:
    from .core.batch_request import BatchRequest
    from .core.client import BatchClient, BatchClientError
    from .core.errors import OpenAIBatchError
    from .core.input_file import InputPart, PreparedInput, prepare_jsonl, prepare_rows
    from .core.input_validation import BatchInputError, InputProblem
    from .core.storage import BatchResults
    from .core.templates import RequestTemplate, build_requests, iter_rows
    from .core.vocabulary import (
        MAX_EMBEDDING_INPUTS,
        MAX_FILE_BYTES,
        MAX_REQUESTS_PER_FILE,
        BatchEndpoint,
    )
    from .dagster import (
        BatchJobConfig,
        OpenAIBatchComponent,
        OpenAIBatchPipeline,
        OpenAIBatchResource,
        OpenAIBatchSensorComponent,
        OpenAIBatchStageProps,
        OpenAIBatchTranslator,
        OpenAIBatchWatch,
        OpenAIBatchWatchComponent,
        OpenAIConfigurationError,
        PipelineDefinitionError,
        ResultsConfig,
        StageExecution,
        openai_batch_assets,
        openai_batch_cleanup_job,
        openai_batch_sensor,
        openai_batch_watch,
        openai_batch_watch_sensor,
    )

_MODULES = {
    ".core.batch_request": ["BatchRequest"],
    ".core.client": ["BatchClient", "BatchClientError"],
    ".core.errors": ["OpenAIBatchError"],
    ".core.input_file": ["InputPart", "PreparedInput", "prepare_jsonl", "prepare_rows"],
    ".core.input_validation": ["BatchInputError", "InputProblem"],
    ".core.storage": ["BatchResults"],
    ".core.templates": ["RequestTemplate", "build_requests", "iter_rows"],
    ".core.vocabulary": [
        "MAX_EMBEDDING_INPUTS",
        "MAX_FILE_BYTES",
        "MAX_REQUESTS_PER_FILE",
        "BatchEndpoint",
    ],
    ".dagster": [
        "BatchJobConfig",
        "OpenAIBatchComponent",
        "OpenAIBatchPipeline",
        "OpenAIBatchResource",
        "OpenAIBatchSensorComponent",
        "OpenAIBatchStageProps",
        "OpenAIBatchTranslator",
        "OpenAIBatchWatch",
        "OpenAIBatchWatchComponent",
        "OpenAIConfigurationError",
        "PipelineDefinitionError",
        "ResultsConfig",
        "StageExecution",
        "openai_batch_assets",
        "openai_batch_cleanup_job",
        "openai_batch_sensor",
        "openai_batch_watch",
        "openai_batch_watch_sensor",
    ],
}
__getattr__, __dir__ = lazy_names(__name__, _MODULES, globals())
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
    "OpenAIBatchError",
    "OpenAIBatchPipeline",
    "OpenAIBatchResource",
    "OpenAIBatchSensorComponent",
    "OpenAIBatchStageProps",
    "OpenAIBatchTranslator",
    "OpenAIBatchWatch",
    "OpenAIBatchWatchComponent",
    "OpenAIConfigurationError",
    "PipelineDefinitionError",
    "PreparedInput",
    "RequestTemplate",
    "ResultsConfig",
    "StageExecution",
    "build_requests",
    "iter_rows",
    "openai_batch_assets",
    "openai_batch_cleanup_job",
    "openai_batch_sensor",
    "openai_batch_watch",
    "openai_batch_watch_sensor",
    "prepare_jsonl",
    "prepare_rows",
]
