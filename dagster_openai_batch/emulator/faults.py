"""Deterministic fault decisions for API calls and downloads, plus a queue of injected failures for tests."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from .config import Faults

_HTTP_FAULT_STATUSES = (429, 500, 503)


@dataclass
class _Injection:
    status: int
    times: int
    operation: str | None


class FaultPlan:
    """Decides, call by call, whether an API call or a download misbehaves.

    The n-th call of an emulator instance gets the n-th draw of a generator seeded with `Faults.seed`,
    so a run with the same seed and the same call sequence fails the same calls.
    """

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._http_rng = random.Random(f"{faults.seed}:http")
        self._download_rng = random.Random(f"{faults.seed}:download")
        self._queue: list[_Injection] = []

    def inject(self, status: int, times: int = 1, operation: str | None = None) -> None:
        """Make the next `times` calls of `operation` (any operation if None) answer `status`."""
        with self._lock:
            self._queue.append(_Injection(status, times, operation))

    def http_fault(self, operation: str) -> int | None:
        """The error status this call must answer, or None to serve it normally."""
        with self._lock:
            for item in self._queue:
                if item.operation in (None, operation):
                    item.times -= 1
                    if item.times <= 0:
                        self._queue.remove(item)
                    return item.status
            if self.faults.http_error_rate and self._http_rng.random() < self.faults.http_error_rate:
                return self._http_rng.choice(_HTTP_FAULT_STATUSES)
        return None

    def download_fault(self) -> str | None:
        """"drop" (no response at all), "truncate" (body cut short) or None for a file content download."""
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
