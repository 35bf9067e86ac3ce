"""The Dagster layer: resource, asset factory, translator, sensor, checks and component.

The only part of the package importing dagster.
"""

from .batch_watch import OpenAIBatchWatch, openai_batch_watch, openai_batch_watch_sensor
from .component import OpenAIBatchComponent, OpenAIBatchSensorComponent
from .file_cleanup import openai_batch_cleanup_job
from .pipeline import (
    BatchJobConfig,
    OpenAIBatchPipeline,
    PipelineDefinitionError,
    ResultsConfig,
    openai_batch_assets,
)
from .resource import OpenAIBatchResource, OpenAIConfigurationError
from .sensor import openai_batch_sensor
from .translator import OpenAIBatchStageProps, OpenAIBatchTranslator, StageExecution
from .watch_component import OpenAIBatchWatchComponent

__all__ = [
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
]
