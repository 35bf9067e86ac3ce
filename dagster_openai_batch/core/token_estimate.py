"""How many input tokens a batch input part puts in its model's queue, and what it may cost.

The estimate is **conservative** (never below what the service's queue counts for the part): one
token per 4 bytes of each request line (its JSON syntax included), plus one per request. Without
a tokenizer that is the whole estimate: encodings cannot be downloaded offline. When ``tiktoken``
is installed and ``TIKTOKEN_CACHE_DIR`` holds the model's encoding, the part's lines are also
counted with it, and the larger figure is kept (text that tokenizes densely, such as CJK, raises
it). It is computed from the part's size alone otherwise: no pass over the rows.

>>> estimate_tokens(bytes_=4_000, requests=10)
1010
>>> cost_range("gpt-4o-mini", input_tokens=10**6, requests=1_000, endpoint="/v1/chat/completions")
(0.075, 0.3822)
>>> cost_range("my-finetune", input_tokens=1, requests=1, endpoint="/v1/chat/completions") is None
True
"""

import os
from pathlib import Path
from typing import Any

from .pricing import price_for

BYTES_PER_TOKEN = 4
ESTIMATE_METHOD = (
    "conservative: 1 token per 4 bytes of each request line plus 1 per request (at least what "
    "the queue counts)"
)
MAX_OUTPUT_TOKENS_PER_REQUEST = 1_024
"""The output tokens per request the upper cost bound assumes (stated in the cost note)."""
NO_OUTPUT_ENDPOINTS = frozenset({"/v1/embeddings", "/v1/moderations"})
"""Endpoints whose answers are not billed as output tokens."""


def estimate_tokens(*, bytes_: int, requests: int) -> int:
    """The conservative estimate of a part of ``bytes_`` bytes holding ``requests`` requests."""
    return bytes_ // BYTES_PER_TOKEN + requests


def estimate_part_tokens(path: Path, *, bytes_: int, requests: int, model: str | None) -> int:
    """The part's estimate: :func:`estimate_tokens`, raised to the ``tiktoken`` count of its
    lines when that encoding loads from the local cache."""
    estimate = estimate_tokens(bytes_=bytes_, requests=requests)
    encoding = _local_encoding(model)
    if encoding is None:
        return estimate
    with path.open(encoding="utf-8") as lines:
        counted = sum(len(encoding.encode_ordinary(line)) for line in lines)
    return max(estimate, counted + requests)


def _local_encoding(model: str | None) -> Any:
    """The model's ``tiktoken`` encoding, only when ``tiktoken`` is installed and
    ``TIKTOKEN_CACHE_DIR`` is set (so nothing is downloaded); None otherwise."""
    if not model or not os.environ.get("TIKTOKEN_CACHE_DIR"):
        return None
    try:
        import tiktoken  # type: ignore[import-not-found]  # optional: the "tokens" extra

        return tiktoken.encoding_for_model(model)
    except Exception:  # not installed, unknown model, or the encoding is not in the cache
        return None


def cost_range(
    model: str, *, input_tokens: int, requests: int, endpoint: str
) -> tuple[float, float] | None:
    """USD at batch rates of ``input_tokens`` (low: input only; high: plus
    :data:`MAX_OUTPUT_TOKENS_PER_REQUEST` output tokens per request), or None for a model with no
    known price."""
    price = price_for(model)
    if price is None:
        return None
    low = input_tokens * price.input / 1_000_000
    output = 0 if endpoint in NO_OUTPUT_ENDPOINTS else requests * MAX_OUTPUT_TOKENS_PER_REQUEST
    return round(low, 6), round(low + output * price.output / 1_000_000, 6)


COST_NOTE = (
    f"at batch rates; low: input tokens only; high: plus {MAX_OUTPUT_TOKENS_PER_REQUEST:,} output "
    "tokens per request"
)
