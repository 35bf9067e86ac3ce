"""dagster-openai-batch: the OpenAI Batch API as Dagster assets, with an offline emulator.

Public API: the request models and template (core), the resource, the asset factory, the sensor and
the component (Dagster layer). The emulator lives in `dagster_openai_batch.emulator`.

Names are imported on first use, so ``python -m dagster_openai_batch.emulator`` (which needs
none of them) starts without importing Dagster.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from .core.writer import (
        BatchInputError,
        InputPart,
        InputProblem,
        PreparedInput,
        prepare_jsonl,
        prepare_rows,
    )
    from .dagster import (
        BatchJobConfig,
        OpenAIBatchComponent,
        OpenAIBatchPipeline,
        OpenAIBatchResource,
        OpenAIBatchSensorComponent,
        OpenAIConfigurationError,
        ResultsConfig,
        openai_batch_assets,
        openai_batch_sensor,
    )

_MODULES = {
    ".core.client": ["BatchClient", "BatchClientError"],
    ".core.models": [
        "MAX_EMBEDDING_INPUTS",
        "MAX_FILE_BYTES",
        "MAX_REQUESTS_PER_FILE",
        "BatchEndpoint",
        "BatchRequest",
    ],
    ".core.storage": ["BatchResults"],
    ".core.templates": ["RequestTemplate", "build_requests", "iter_rows"],
    ".core.writer": [
        "BatchInputError",
        "InputPart",
        "InputProblem",
        "PreparedInput",
        "prepare_jsonl",
        "prepare_rows",
    ],
    ".dagster": [
        "BatchJobConfig",
        "OpenAIBatchComponent",
        "OpenAIBatchPipeline",
        "OpenAIBatchResource",
    "OpenAIBatchSensorComponent",
        "OpenAIBatchSensorComponent",
        "OpenAIConfigurationError",
        "ResultsConfig",
        "openai_batch_assets",
        "openai_batch_sensor",
    ],
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}
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
    "OpenAIBatchSensorComponent",
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
