"""Deterministic fault decisions for API calls and downloads, and queues of injected failures."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Literal, get_args

from .config import Faults

_HTTP_FAULT_STATUSES = (429, 500, 503)

LostKind = Literal["drop", 502, 504]
"""How a response is lost: the connection dies without a response, or a gateway answers 502 /
504."""
LOST_KINDS: tuple[LostKind, ...] = get_args(LostKind)
MUTATING_OPERATIONS = ("batches.create", "batches.cancel", "files.create")
"""The calls whose response `Faults.lost_response_rate` and `FaultPlan.inject_lost_response` may
lose."""


@dataclass
class _Injection:
    status: int
    times: int
    operation: str | None


@dataclass
class _LostInjection:
    kind: LostKind
    times: int
    operation: str


class FaultPlan:
    """Decides, call by call, whether an API call or a download misbehaves.

    The n-th call of an emulator instance gets the n-th draw of a generator seeded with
    `Faults.seed`, so a run with the same seed and the same call sequence fails the same calls.
    """

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._http_rng = random.Random(f"{faults.seed}:http")
        self._download_rng = random.Random(f"{faults.seed}:download")
        self._lost_rng = random.Random(f"{faults.seed}:lost")
        self._not_ready_rng = random.Random(f"{faults.seed}:file-not-ready")
        self._queue: list[_Injection] = []
        self._lost_queue: list[_LostInjection] = []

    def inject(self, status: int, times: int = 1, operation: str | None = None) -> None:
        """Make the next `times` calls of `operation` (any operation if None) answer `status`."""
        with self._lock:
            self._queue.append(_Injection(status, times, operation))

    def inject_lost_response(
        self, operation: str = "batches.create", kind: LostKind = "drop", times: int = 1
    ) -> None:
        """Carry out the next `times` successful calls of `operation`, then lose their response the
        `kind` way."""
        if operation not in MUTATING_OPERATIONS:
            raise ValueError(f"operation must be one of {MUTATING_OPERATIONS}, got {operation!r}")
        if kind not in LOST_KINDS:
            raise ValueError(f"kind must be one of {LOST_KINDS}, got {kind!r}")
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        with self._lock:
            self._lost_queue.append(_LostInjection(kind, times, operation))

    def http_fault(self, operation: str) -> int | None:
        """The error status this call must answer, or None to serve it normally."""
        with self._lock:
            for item in self._queue:
                if item.operation in (None, operation):
                    item.times -= 1
                    if item.times <= 0:
                        self._queue.remove(item)
                    return item.status
            if (
                self.faults.http_error_rate
                and self._http_rng.random() < self.faults.http_error_rate
            ):
                return self._http_rng.choice(_HTTP_FAULT_STATUSES)
        return None

    def file_not_ready(self, age: float) -> bool:
        """Whether a batch create naming a file uploaded `age` seconds ago answers "Cannot find
        file": the n-th create within `file_not_ready_seconds` of its upload gets the n-th draw."""
        f = self.faults
        if not f.file_not_ready_rate or age >= f.file_not_ready_seconds:
            return False
        with self._lock:
            return self._not_ready_rng.random() < f.file_not_ready_rate

    def download_fault(self) -> str | None:
        """ "drop" (no response at all), "truncate" (body cut short) or None for a file content
        download."""
        f = self.faults
        if not (f.download_drop_rate or f.download_truncate_rate):
            return None
        with self._lock:
            draw = self._download_rng.random()
        if draw < f.download_drop_rate:
            return "drop"
        if draw < f.download_drop_rate + f.download_truncate_rate:
            return "truncate"
        return None

    def lost_response(self, operation: str) -> LostKind | None:
        """How the response of a call that was just carried out is lost, or None to send it.

        Asked only after the call succeeded (errors are never lost); the injection queue comes
        first, then the n-th successful mutating call it does not serve gets the n-th draw of a
        generator seeded with `seed`.
        """
        if operation not in MUTATING_OPERATIONS:
            return None
        with self._lock:
            for item in self._lost_queue:
                if item.operation == operation:
                    item.times -= 1
                    if item.times <= 0:
                        self._lost_queue.remove(item)
                    return item.kind
            rate = self.faults.lost_response_rate
            if rate and self._lost_rng.random() < rate:
                return self._lost_rng.choice(LOST_KINDS)
        return None
