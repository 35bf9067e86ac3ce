"""Time-driven batch state: everything is computed from the stored timestamps, pace and fault decisions.

No background thread runs batches. A read computes where the batch is at `now`; when that requires work
(validating the input, writing the result files) the reader claims the work in SQLite and does it, so any
process sharing the data dir computes the same state and only one writes the result files.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from typing import Any

from ..core.vocabulary import TERMINAL_STATUSES
from .config import Pace


@dataclass
class View:
    """A batch as seen at one instant."""

    status: str
    times: dict[str, float] = field(default_factory=dict)  # *_at timestamps that have happened
    processed: int = 0  # requests finished (succeeded or failed) so far
    total: int = 0
    needs_validation: bool = False
    terminal_at: float | None = (
        None  # when the batch reached a terminal state (result files are due)
    )


def draw_key(row: dict[str, Any]) -> str:
    """What a batch's random draws are keyed by: its input's identity (batches made before it: the batch id)."""
    return str(row["plan"].get("draw_key") or row["id"])


def failed_positions(key: str, seed: int, rate: float, total: int) -> list[int]:
    """Processing positions whose request fails individually (Faults.request_error_rate), deterministic."""
    if rate <= 0:
        return []
    rng = random.Random(f"{seed}:{key}:request-errors")
    return [p for p in range(total) if rng.random() < rate]


def processing_order(key: str, seed: int, total: int) -> list[int]:
    """Input indices in the order the batch processes them; output files follow it (real order is arbitrary)."""
    order = list(range(total))
    random.Random(f"{seed}:{key}:order").shuffle(order)
    return order


def counts(validation: dict[str, Any] | None, processed: int) -> tuple[int, int]:
    """(completed, failed) among the first `processed` requests."""
    if not validation or validation.get("errors"):
        return 0, 0
    failed = bisect.bisect_left(validation["failed_positions"], processed)
    return processed - failed, failed


def view(row: dict[str, Any], now: float) -> View:
    """Where the batch stands at `now` (ignoring whether its result files exist yet)."""
    plan = row["plan"]
    pace = Pace.model_validate(plan["pace"])
    created, expires, cancel = row["created_at"], plan["expires_at"], row["cancel_at"]
    t_v = created + pace.validating_seconds
    inf = math.inf
    cancel_t = inf if cancel is None else cancel
    events: list[tuple[float, str]] = [(created, "validating")]
    validation = row["validation"]
    total = processed_at_end = 0
    spr = pace.seconds_per_request

    def processed(t: float) -> int:
        if t < t_v:
            return 0
        return total if spr == 0 else min(total, int((t - t_v) / spr))

    first = min(cancel_t, expires, t_v)
    if cancel_t == first and cancel_t < t_v:  # cancelled while validating: nothing ran
        events += [(cancel_t, "cancelling"), (cancel_t + pace.cancelling_seconds, "cancelled")]
    elif (
        expires < t_v
    ):  # window over before validation ended (only with a tiny expire_after_seconds)
        events.append((expires, "expired"))
    elif now < t_v:
        pass
    elif validation is None:
        return View(status="validating", times={"created_at": created}, needs_validation=True)
    elif validation["errors"]:
        events.append((t_v, "failed"))
    else:
        total = validation["total"]
        t_fin = t_v + total * spr
        t_done = inf if plan["stuck_finalizing"] else t_fin + pace.finalizing_seconds
        events.append((t_v, "in_progress"))
        end = min(cancel_t, expires, t_done)
        if t_fin <= end:
            events.append((t_fin, "finalizing"))
        if cancel_t == end and cancel_t < inf:
            events += [(cancel_t, "cancelling"), (cancel_t + pace.cancelling_seconds, "cancelled")]
        elif expires == end:
            events.append((expires, "expired"))
        else:
            events.append((t_done, "completed"))
        processed_at_end = processed(end)
    times: dict[str, float] = {}
    status = "validating"
    for t, name in events:
        if t <= now:
            times[f"{name}_at"] = t
            status = name
    terminal_at = times.get(f"{status}_at") if status in TERMINAL_STATUSES else None
    done = processed_at_end if status in TERMINAL_STATUSES or status == "cancelling" else processed(now)
    return View(status=status, times=times, processed=done, total=total, terminal_at=terminal_at)
