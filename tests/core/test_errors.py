"""Every library error is an OpenAIBatchError and still its old builtin base."""

import pytest

import dagster_openai_batch
from dagster_openai_batch.core.client import BatchClientError, DownloadError
from dagster_openai_batch.core.errors import OpenAIBatchError
from dagster_openai_batch.core.input_validation import BatchInputError, InputProblem
from dagster_openai_batch.core.result_lines import ParseProcessError, ResultLineError
from dagster_openai_batch.core.storage import StorageError
from dagster_openai_batch.core.templates import CustomIdError


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (BatchClientError("x"), RuntimeError),
        (DownloadError("x"), RuntimeError),
        (BatchInputError([InputProblem(line=1, code="c", message="m", fix="f")]), ValueError),
        (CustomIdError("x"), ValueError),
        (StorageError("x"), ValueError),
        (ResultLineError("x"), ValueError),
        (ParseProcessError("x"), RuntimeError),
    ],
)
def test_library_errors_share_one_root(error: Exception, builtin: type[Exception]) -> None:
    assert isinstance(error, OpenAIBatchError)
    assert isinstance(error, builtin)
    with pytest.raises(OpenAIBatchError):
        raise error


def test_root_is_exported() -> None:
    assert dagster_openai_batch.OpenAIBatchError is OpenAIBatchError
    assert "OpenAIBatchError" in dagster_openai_batch.__all__


def test_public_names_are_consistent() -> None:
    lazy = {name for names in dagster_openai_batch._MODULES.values() for name in names}
    assert set(dagster_openai_batch.__all__) == lazy
    assert dagster_openai_batch.__all__ == sorted(dagster_openai_batch.__all__, key=_ruff_order)


def _ruff_order(name: str) -> tuple[int, str]:
    """RUF022's isort-style order: CONSTANTS, then Classes, then functions."""
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


def test_dagster_layer_errors_share_the_root() -> None:
    from dagster_openai_batch import OpenAIConfigurationError, PipelineDefinitionError
    from dagster_openai_batch.dagster.sensor import SensorTickError
    from dagster_openai_batch.dagster.stage_records import StageRecordError

    for error, builtin in (
        (OpenAIConfigurationError, ValueError),
        (PipelineDefinitionError, ValueError),
        (StageRecordError, ValueError),
        (SensorTickError, RuntimeError),
    ):
        assert issubclass(error, OpenAIBatchError)
        assert issubclass(error, builtin)
    with pytest.raises(PipelineDefinitionError, match="unknown batch endpoint '/v1/nope'"):
        dagster_openai_batch.openai_batch_assets(
            name="bad", source="rows.jsonl", endpoint="/v1/nope"
        )
