"""The Dagster layer: resource, asset factory, sensor and checks (the only place importing dagster)."""

from .component import OpenAIBatchComponent, OpenAIBatchSensorComponent
from .pipeline import BatchJobConfig, OpenAIBatchPipeline, ResultsConfig, openai_batch_assets
from .resource import OpenAIBatchResource, OpenAIConfigurationError
from .sensor import openai_batch_sensor

__all__ = [
    "BatchJobConfig",
    "OpenAIBatchComponent",
    "OpenAIBatchPipeline",
    "OpenAIBatchResource",
    "OpenAIBatchSensorComponent",
    "OpenAIConfigurationError",
    "ResultsConfig",
    "openai_batch_assets",
    "openai_batch_sensor",
]
