"""Submitting a ``batch_job``'s parts as the queue allows: by ``batch_job`` at once, then by the
sensor as room frees.

Parts are submitted in order while their model's queue (``queue_token_budget``) and the hourly
creation cap admit them; the rest wait, recorded in the ``batch_job`` record (``waiting``). Every
part's batch has one idempotency key, ``key_base:index`` (``:attempt:n`` for the n-th attempt
after ``token_limit_exceeded``), whoever creates it: a ``batch_job`` re-run, a repeated sensor tick,
a lost response or a reset cursor adopt the batch instead of paying for a second one. A part has
at most one live attempt: a new one is made only once the previous failed with
``token_limit_exceeded``, and only if the part can fit the limit the service stated.
"""

import hashlib
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from openai.types import Batch

from ..core.client import IDEMPOTENCY_KEY, BatchClient, BatchToCreate
from ..core.queue_budget import (
    QUEUE_WINDOW_SECONDS,
    BatchQueue,
    queue_metadata,
    token_limit_of,
)
from ..core.vocabulary import ADOPTABLE_STATUSES, BatchEndpoint
from .resource import OpenAIBatchResource
from .stage_records import BatchJobRecord

MAX_ATTEMPTS_LOOKED_UP = 20
"""How many attempts of a part are looked for among the live batches."""


def short_key(key: str) -> str:
    """Idempotency keys are metadata values (≤ 512 chars): long ones are hashed."""
    return key if len(key) <= 200 else hashlib.sha256(key.encode()).hexdigest()


def read_queue(
    resource: OpenAIBatchResource,
    client: BatchClient,
    now: float,
    *,
    horizon: float = QUEUE_WINDOW_SECONDS,
) -> "LiveQueue":
    """The queue as the service's batch list shows it now: one scan back to ``horizon`` seconds
    ago (a day covers every batch in flight; an hour, the creations the hourly cap counts)."""
    batches = client.batches_since(now - horizon)
    queue = BatchQueue.scan(
        batches,
        limits=dict(resource.queue_token_budget),
        creations_per_hour=resource.batch_creations_per_hour,
        now=now,
    )
    live: dict[str, Batch] = {}
    for batch in batches:
        key = (batch.metadata or {}).get(IDEMPOTENCY_KEY)
        if key and batch.status in ADOPTABLE_STATUSES:
            live[key] = batch
    return LiveQueue(queue, live)


@dataclass
class LiveQueue:
    """The queue's room, and the live batches by idempotency key."""

    room: BatchQueue
    live: dict[str, Batch]


@dataclass
class Submission:
    """One ``batch_job`` submission: its parts, and the batches of the first ones so far."""

    key_base: str
    file_ids: list[str]
    part_tokens: list[int]
    model: str
    endpoint: BatchEndpoint
    metadata: dict[str, str]
    batches: list[Batch] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    waiting: str = ""
    adopted: int = 0

    def key(self, index: int, attempt: int) -> str:
        suffix = f":attempt:{attempt}" if attempt > 1 else ""
        return short_key(f"{self.key_base}:{index}{suffix}")

    @property
    def complete(self) -> bool:
        """Every part has its batch, and none is to be tried again."""
        return not self.waiting and len(self.batches) == len(self.file_ids)

    def advance(self, client: BatchClient, queue: LiveQueue) -> int:
        """Create (or adopt) the batches the queue admits: first new attempts of parts whose
        batch failed with ``token_limit_exceeded``, then the waiting parts in order. Returns how
        many batches were created or adopted; ``waiting`` says what still waits and why."""
        reasons: list[str] = []
        retry = 0
        admitted: list[tuple[int, int]] = []
        """(part, attempt) of each batch to create or adopt, in order."""
        for index, batch in enumerate(self.batches):
            limit = token_limit_of(batch)
            if limit is None or not self._retryable(index, limit, queue.room):
                continue
            attempt = self._live_attempt(index, queue) or self.attempts[index] + 1
            why = None if self.key(index, attempt) in queue.live else self._admit(index, queue)
            if why is not None:
                retry += 1
                reasons.append(why)
                continue
            admitted.append((index, attempt))
        waiting = 0
        for index in range(len(self.batches), len(self.file_ids)):
            attempt = self._live_attempt(index, queue) or 1
            why = None if self.key(index, attempt) in queue.live else self._admit(index, queue)
            if why is not None:
                waiting = len(self.file_ids) - index
                reasons.append(why)
                break
            admitted.append((index, attempt))
        requests = [
            BatchToCreate(
                self.file_ids[index],
                self.key(index, attempt),
                {**self.metadata, **queue_metadata(self.model, self.part_tokens[index])},
            )
            for index, attempt in admitted
        ]
        answers = client.create_or_adopt_many(requests, endpoint=self.endpoint) if requests else []
        for (index, attempt), (batch, adopted) in zip(admitted, answers, strict=True):
            if index < len(self.batches):  # a new attempt of a part
                self.batches[index], self.attempts[index] = batch, attempt
            else:
                self.batches.append(batch)
                self.attempts.append(attempt)
            self.adopted += adopted
        self.waiting = self._describe(waiting, retry, reasons)
        return len(admitted)

    def _retryable(self, index: int, limit: int, room: BatchQueue) -> bool:
        """Whether a part whose batch failed with ``token_limit_exceeded`` (at ``limit``, 0 when
        unstated) can ever fit: the stated limit then bounds the model's queue too."""
        if limit:
            configured = room.limits.get(self.model)
            room.limits = {**room.limits, self.model: min(limit, configured or limit)}
        budget = room.limits.get(self.model)
        return budget is None or self.part_tokens[index] <= budget

    def _live_attempt(self, index: int, queue: LiveQueue) -> int | None:
        """The attempt of the part's live batch, if the service holds one."""
        for attempt in range(MAX_ATTEMPTS_LOOKED_UP, 0, -1):
            if self.key(index, attempt) in queue.live:
                return attempt
        return None

    def _admit(self, index: int, queue: LiveQueue) -> str | None:
        return queue.room.admit(self.model, self.part_tokens[index])

    def _describe(self, waiting: int, retry: int, reasons: list[str]) -> str:
        words = []
        if waiting:
            words.append(f"{waiting} of {len(self.file_ids)} parts waiting")
        if retry:
            words.append(f"{retry} part(s) to resubmit after token_limit_exceeded")
        if not words:
            return ""
        return ", ".join(words) + ": " + "; ".join(dict.fromkeys(reasons))

    @classmethod
    def of_record(
        cls, record: BatchJobRecord, batches: list[Batch], metadata: dict[str, str]
    ) -> "Submission":
        """The submission ``record`` describes, with its batches as they are now."""
        return cls(
            key_base=record.key_base,
            file_ids=record.file_id_list,
            part_tokens=record.part_token_list,
            model=record.queue_model,
            endpoint=record.endpoint,  # type: ignore[arg-type]  # written from a BatchEndpoint
            metadata=metadata,
            batches=batches,
            attempts=record.attempt_list[: len(batches)],
        )

    def record_fields(self) -> dict[str, Any]:
        """What ``batch_job``'s record holds of the submission (beside the batches' status)."""
        return {
            "waiting": self.waiting,
            "parts": len(self.file_ids),
            "file_ids": dg.MetadataValue.json(self.file_ids),
            "part_tokens": dg.MetadataValue.json(self.part_tokens),
            "attempts": dg.MetadataValue.json(self.attempts),
            "key_base": self.key_base,
            "queue_model": self.model,
        }


def has_pending_parts(record: BatchJobRecord) -> bool:
    """Whether the sensor may still have batches to create for ``record``'s submission."""
    return bool(record.key_base) and (
        bool(record.waiting) or record.part_count > len(record.batch_id_list)
    )
