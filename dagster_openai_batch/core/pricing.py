"""Batch API prices per model, and the cost of a token count.

Prices are USD per 1M tokens at **batch rates** (50% of the standard rates), from
openai.com/api/pricing as of 2025-10. Check them against the current page before relying on a
figure; an unknown model gives no figure at all.

>>> million = 1_000_000
>>> cost_usd("gpt-4o-mini-2024-07-18", input_tokens=million, cached_tokens=0, output_tokens=million)
0.375
>>> cost_usd("my-finetune", input_tokens=1, cached_tokens=0, output_tokens=1) is None
True
"""

from __future__ import annotations

import re

from pydantic import BaseModel


class Price(BaseModel):
    """USD per 1M tokens at batch rates."""

    input: float
    cached_input: float
    output: float


def _p(standard_input: float, standard_cached: float, standard_output: float) -> Price:
    return Price(
        input=standard_input / 2, cached_input=standard_cached / 2, output=standard_output / 2
    )


# Standard (non-batch) list prices, halved by _p. Dated 2025-10.
BATCH_PRICES: dict[str, Price] = {
    "gpt-5": _p(1.25, 0.125, 10.00),
    "gpt-5-mini": _p(0.25, 0.025, 2.00),
    "gpt-5-nano": _p(0.05, 0.005, 0.40),
    "gpt-4.1": _p(2.00, 0.50, 8.00),
    "gpt-4.1-mini": _p(0.40, 0.10, 1.60),
    "gpt-4.1-nano": _p(0.10, 0.025, 0.40),
    "gpt-4o": _p(2.50, 1.25, 10.00),
    "gpt-4o-mini": _p(0.15, 0.075, 0.60),
    "gpt-4-turbo": _p(10.00, 10.00, 30.00),
    "gpt-3.5-turbo": _p(0.50, 0.50, 1.50),
    "o1": _p(15.00, 7.50, 60.00),
    "o1-mini": _p(1.10, 0.55, 4.40),
    "o3": _p(2.00, 0.50, 8.00),
    "o3-mini": _p(1.10, 0.55, 4.40),
    "o4-mini": _p(1.10, 0.275, 4.40),
    "text-embedding-3-small": _p(0.02, 0.02, 0.0),
    "text-embedding-3-large": _p(0.13, 0.13, 0.0),
    "text-embedding-ada-002": _p(0.10, 0.10, 0.0),
    "omni-moderation-latest": _p(0.0, 0.0, 0.0),
    "omni-moderation": _p(0.0, 0.0, 0.0),
    "text-moderation-latest": _p(0.0, 0.0, 0.0),
}

_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


def price_for(model: str) -> Price | None:
    """The batch price of ``model`` (a dated snapshot maps to its family), or None if unknown."""
    name = model.lower()
    if name in BATCH_PRICES:
        return BATCH_PRICES[name]
    return BATCH_PRICES.get(_SNAPSHOT.sub("", name))


def cost_usd(
    model: str, *, input_tokens: int, cached_tokens: int, output_tokens: int
) -> float | None:
    """Cost in USD of the given usage for ``model`` at batch rates; None when the model is not in
    the table."""
    price = price_for(model)
    if price is None:
        return None
    uncached = max(input_tokens - cached_tokens, 0)
    return (
        uncached * price.input + cached_tokens * price.cached_input + output_tokens * price.output
    ) / 1_000_000
