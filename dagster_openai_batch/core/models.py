"""Request models, endpoints and the service limits of the OpenAI Batch API.

>>> BatchRequest(custom_id="r1", url=BatchEndpoint.EMBEDDINGS, body={"model": "m", "input": "hi"}).method
'POST'
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

MAX_REQUESTS_PER_FILE = 50_000
"""Requests per input file (service limit)."""
MAX_FILE_BYTES = 200_000_000
"""Bytes per input file. The service says 200 MB; we stay at 200 * 10**6 to be safe either way."""
MAX_EMBEDDING_INPUTS = 50_000
"""Embedding inputs (strings or token arrays) across all requests of one embeddings batch."""
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512


class BatchEndpoint(StrEnum):
    """Endpoints a batch may target (``Batch.endpoint`` and every line's ``url``)."""

    RESPONSES = "/v1/responses"
    CHAT_COMPLETIONS = "/v1/chat/completions"
    EMBEDDINGS = "/v1/embeddings"
    COMPLETIONS = "/v1/completions"
    MODERATIONS = "/v1/moderations"
    IMAGES_GENERATIONS = "/v1/images/generations"
    IMAGES_EDITS = "/v1/images/edits"
    VIDEOS = "/v1/videos"


class BatchRequest(BaseModel):
    """One line of a batch input file: ``{custom_id, method, url, body}``."""

    model_config = ConfigDict(frozen=True)

    custom_id: str
    method: Literal["POST"] = "POST"
    url: str
    body: dict[str, Any]


def as_endpoint(endpoint: BatchEndpoint | str) -> BatchEndpoint:
    """Coerce ``endpoint`` to a :class:`BatchEndpoint`, naming the allowed values if it is not one."""
    try:
        return BatchEndpoint(endpoint)
    except ValueError:
        allowed = ", ".join(e.value for e in BatchEndpoint)
        raise ValueError(f"unknown batch endpoint {endpoint!r}; use one of: {allowed}") from None
