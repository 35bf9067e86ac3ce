"""The Batch API vocabulary agrees with the SDK's types, and endpoints are checked clearly."""

from typing import get_args, get_type_hints

import pytest
from openai.types import Batch
from openai.types.batch_create_params import BatchCreateParams
from pydantic import ValidationError

from dagster_openai_batch.core import RequestTemplate
from dagster_openai_batch.core.vocabulary import (
    ADOPTABLE_STATUSES,
    ANSWER_ENDPOINTS,
    BATCH_ENDPOINTS,
    BATCH_STATUSES,
    CANCELLABLE_STATUSES,
    DEFAULT_MODELS,
    MODEL_REQUIRED_ENDPOINTS,
    RESULT_FILE_STATUSES,
    TERMINAL_STATUSES,
    BatchEndpoint,
    BatchStatus,
    as_endpoint,
)

SDK_ENDPOINTS = set(get_args(get_type_hints(BatchCreateParams)["endpoint"]))
SDK_STATUSES = set(get_args(Batch.model_fields["status"].annotation))


def test_endpoints_are_the_sdks() -> None:
    assert set(get_args(BatchEndpoint)) == set(BATCH_ENDPOINTS) == SDK_ENDPOINTS
    assert ANSWER_ENDPOINTS <= SDK_ENDPOINTS
    assert set(DEFAULT_MODELS) <= SDK_ENDPOINTS
    assert SDK_ENDPOINTS - set(DEFAULT_MODELS) == MODEL_REQUIRED_ENDPOINTS


def test_statuses_are_the_sdks() -> None:
    assert set(get_args(BatchStatus)) == set(BATCH_STATUSES) == SDK_STATUSES
    groups = (CANCELLABLE_STATUSES, ADOPTABLE_STATUSES, TERMINAL_STATUSES, RESULT_FILE_STATUSES)
    assert all(group <= SDK_STATUSES for group in groups)
    assert not CANCELLABLE_STATUSES & TERMINAL_STATUSES
    assert RESULT_FILE_STATUSES < TERMINAL_STATUSES
    assert {"cancelling"} == SDK_STATUSES - CANCELLABLE_STATUSES - TERMINAL_STATUSES


def test_unknown_endpoint_names_the_allowed_ones() -> None:
    assert as_endpoint("/v1/responses") == "/v1/responses"
    with pytest.raises(ValueError, match="unknown batch endpoint '/v1/chat'; use one of: /v1/resp"):
        as_endpoint("/v1/chat")
    with pytest.raises(ValidationError, match="unknown batch endpoint '/v1/chat'"):
        RequestTemplate(endpoint="/v1/chat", model="m", prompt="{x}")  # type: ignore[arg-type]
