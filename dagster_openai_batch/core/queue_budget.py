"""Room in the service's batch queue: enqueued tokens per model and creations per hour.

OpenAI fails a batch with ``token_limit_exceeded`` when the model's enqueued tokens (of every batch
validating, in progress or finalizing) would pass the project's limit, and refuses (429) more than
2,000 batch creations an hour. :class:`BatchQueue` reads what is in flight from one scan of the
batch list — each batch this library creates carries its own token estimate and model in its
metadata — and admits parts while they fit; the others wait.

>>> queue = BatchQueue(limits={"gpt-4o-mini": 1_000}, enqueued={"gpt-4o-mini": 700})
>>> queue.admit("gpt-4o-mini", 200) is None
True
>>> queue.admit("gpt-4o-mini", 200)
'gpt-4o-mini queue 900/1,000 tokens'
>>> queue.admit("text-embedding-3-small", 10**9) is None  # no limit set for the model
True
"""

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from openai.types import Batch

from .errors import OpenAIBatchError

TOKENS_KEY = "dagster_openai_batch_tokens"
"""Batch metadata: the batch's estimated enqueued input tokens."""
MODEL_KEY = "dagster_openai_batch_model"
"""Batch metadata: the model name its requests use (what the queue limit is keyed by)."""
QUEUED_STATUSES = frozenset({"validating", "in_progress", "finalizing"})
"""Statuses whose batches hold tokens in their model's queue."""
CREATIONS_PER_HOUR = 2_000
QUEUE_WINDOW_SECONDS = 24 * 3600
"""How far back in-flight batches are looked for (a batch ends within its 24 h window)."""
_LIMIT = re.compile(r"Limit:\s*([\d,]+)")


class QueueBudgetError(OpenAIBatchError, ValueError):
    """A part can never fit its model's queue (its own estimate exceeds the limit)."""


def queue_metadata(model: str, tokens: int) -> dict[str, str]:
    """What a batch carries so that any later scan counts it in its model's queue."""
    return {MODEL_KEY: model[:512], TOKENS_KEY: str(tokens)}


def token_limit_of(batch: Batch) -> int | None:
    """The limit a batch that failed with ``token_limit_exceeded`` names (0 when it names none),
    or None when it did not fail that way."""
    errors = batch.errors.data if batch.status == "failed" and batch.errors else None
    for error in errors or []:
        if error.code == "token_limit_exceeded":
            found = _LIMIT.search(error.message or "")
            return int(found.group(1).replace(",", "")) if found else 0
    return None


def _tokens(batch: Batch) -> tuple[str, int] | None:
    meta = batch.metadata or {}
    try:
        return meta[MODEL_KEY], int(meta[TOKENS_KEY])
    except (KeyError, ValueError):
        return None  # not made by this library: its tokens are unknown


@dataclass
class BatchQueue:
    """What the queue holds and allows: ``limits`` (model → enqueued tokens), the tokens
    ``enqueued`` per model, and the batches ``created`` in the last hour out of
    ``creations_per_hour``. :meth:`admit` counts what it admits."""

    limits: Mapping[str, int] = field(default_factory=dict)
    enqueued: dict[str, int] = field(default_factory=dict)
    created: int = 0
    creations_per_hour: int = CREATIONS_PER_HOUR

    @classmethod
    def scan(
        cls,
        batches: Iterable[Batch],
        *,
        limits: Mapping[str, int],
        creations_per_hour: int = CREATIONS_PER_HOUR,
        now: float | None = None,
    ) -> "BatchQueue":
        """The queue as ``batches`` (the newest of the batch list, back to a day ago) show it."""
        now = time.time() if now is None else now
        queue = cls(limits=limits, creations_per_hour=creations_per_hour)
        for batch in batches:
            if (batch.created_at or 0) > now - 3600:
                queue.created += 1
            found = _tokens(batch)
            if found is not None and batch.status in QUEUED_STATUSES:
                model, tokens = found
                queue.enqueued[model] = queue.enqueued.get(model, 0) + tokens
        return queue

    def check_fits(self, model: str, tokens: int, what: str) -> None:
        """Raise :class:`QueueBudgetError` when ``tokens`` alone exceed the model's limit."""
        limit = self.limits.get(model)
        if limit is not None and tokens > limit:
            raise QueueBudgetError(
                f"{what} holds an estimated {tokens:,} input tokens, more than the {model} queue "
                f"limit of {limit:,} enqueued tokens: it could never run. Split the input into "
                "smaller parts (max_requests_per_file) or raise queue_token_budget if the "
                "project's limit is higher."
            )

    def admit(self, model: str, tokens: int) -> str | None:
        """None when a batch of ``tokens`` may be created now (it is then counted); otherwise why
        it must wait."""
        if self.created >= self.creations_per_hour:
            return f"{self.created:,}/{self.creations_per_hour:,} batch creations in the last hour"
        limit = self.limits.get(model)
        used = self.enqueued.get(model, 0)
        if limit is not None and used + tokens > limit:
            return f"{model} queue {used:,}/{limit:,} tokens"
        self.enqueued[model] = used + tokens
        self.created += 1
        return None
