"""The Batch API's vocabulary: its endpoints, batch statuses and service limits.

The endpoints and statuses are the ``openai`` SDK's own (``BatchCreateParams["endpoint"]`` and
``Batch.status``): the tuples are read from the SDK's types, and the ``Literal`` types spell the
same values out so that a string literal type-checks (a test checks that both still agree).

>>> as_endpoint("/v1/embeddings")
'/v1/embeddings'
>>> sorted(TERMINAL_STATUSES - RESULT_FILE_STATUSES)
['failed']
"""

from datetime import date
from typing import Annotated, Final, Literal, TypeGuard, get_args, get_type_hints

from openai.types import Batch
from openai.types.batch_create_params import BatchCreateParams
from pydantic import BeforeValidator

# ---------------------------------------------------------------------------------------- endpoints

BatchEndpoint = Literal[
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
]
"""An endpoint a batch may target (``Batch.endpoint`` and every input line's ``url``)."""

BATCH_ENDPOINTS: Final[tuple[BatchEndpoint, ...]] = get_args(
    get_type_hints(BatchCreateParams)["endpoint"]
)
"""Every batch endpoint, in the SDK's order."""

AnswerEndpoint = Literal[
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
]
"""An endpoint whose answer the results table holds in its ``answer`` column (text, or an
embedding vector); the others keep only the whole ``response_body``."""

RETIRED_ENDPOINTS: Final[dict[str, date]] = {"/v1/videos": date(2026, 9, 24)}
"""Endpoints the SDK still offers whose service has shut down, and the day it did (the Sora API):
batches for them are refused before anything is uploaded."""

ANSWER_ENDPOINTS: Final[frozenset[AnswerEndpoint]] = frozenset(get_args(AnswerEndpoint))

DEFAULT_MODELS: Final[dict[str, str]] = {
    "/v1/moderations": "omni-moderation-latest",
    "/v1/images/generations": "dall-e-2",
    "/v1/images/edits": "dall-e-2",
    "/v1/videos": "sora-2",
}
"""The model an endpoint uses when a request's body names none."""

MODEL_REQUIRED_ENDPOINTS: Final[frozenset[BatchEndpoint]] = frozenset(
    e for e in BATCH_ENDPOINTS if e not in DEFAULT_MODELS
)
"""Endpoints whose requests must name a ``model`` (those without a default model)."""


def is_endpoint(value: object) -> TypeGuard[BatchEndpoint]:
    """Whether ``value`` is a batch endpoint."""
    return value in BATCH_ENDPOINTS


def as_endpoint(endpoint: str) -> BatchEndpoint:
    """``endpoint`` as a :data:`BatchEndpoint`, or a ``ValueError`` naming the allowed values."""
    if is_endpoint(endpoint):
        return endpoint
    allowed = ", ".join(BATCH_ENDPOINTS)
    raise ValueError(f"unknown batch endpoint {endpoint!r}; use one of: {allowed}")


ValidEndpoint = Annotated[BatchEndpoint, BeforeValidator(as_endpoint)]
"""A :data:`BatchEndpoint` field of a pydantic model: an unknown value fails with the message of
:func:`as_endpoint`."""


# ----------------------------------------------------------------------------------------- statuses

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
"""The status of a batch (``Batch.status``)."""

BATCH_STATUSES: Final[tuple[BatchStatus, ...]] = get_args(Batch.model_fields["status"].annotation)
"""Every batch status, in the SDK's order."""

CANCELLABLE_STATUSES: Final[frozenset[BatchStatus]] = frozenset(
    {"validating", "in_progress", "finalizing"}
)
"""Live batches: still to run or running. A cancel moves them to ``cancelling``."""

ADOPTABLE_STATUSES: Final[frozenset[BatchStatus]] = CANCELLABLE_STATUSES | {"completed"}
"""Batches that have, or will have, their answers: a repeated submission adopts such a batch
instead of paying for a new one."""

TERMINAL_STATUSES: Final[frozenset[BatchStatus]] = frozenset(
    {"completed", "failed", "expired", "cancelled"}
)
"""Batches that will not change any more."""

RESULT_FILE_STATUSES: Final[frozenset[BatchStatus]] = frozenset(
    {"completed", "expired", "cancelled"}
)
"""Terminal batches with result files (output and/or error file); a ``failed`` batch never ran."""

# ----------------------------------------------------------------------------------- service limits

COMPLETION_WINDOW: Final = "24h"
"""The only completion window OpenAI and Azure offer (compatible services: see
:mod:`.service_profile`)."""
MAX_REQUESTS_PER_FILE: Final = 50_000
"""Requests per input file on OpenAI (Azure's: :mod:`.service_profile`)."""
MAX_UPLOAD_BYTES: Final = 200 * 1024 * 1024
"""The largest upload the service accepts: "200 MB", read as MiB (the emulator's limit)."""
MAX_FILE_BYTES: Final = 200_000_000
"""Bytes per input file written here: "200 MB" read as 10**6 bytes, under the limit either way."""
MAX_EMBEDDING_INPUTS: Final = 50_000
"""Embedding inputs (strings or token arrays) across all requests of one embeddings batch."""
MAX_METADATA_PAIRS: Final = 16
"""Key-value pairs in a batch's ``metadata``."""
MAX_METADATA_KEY_CHARS: Final = 64
"""Characters in a ``metadata`` key."""
MAX_METADATA_VALUE_CHARS: Final = 512
"""Characters in a ``metadata`` value (always a string)."""
