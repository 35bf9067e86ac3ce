"""A batch's state at a given time, computed from its stored timestamps, pace and fault decisions.

No background thread runs batches. A read computes where the batch is at `now`; when that requires
work (validating the input, writing the result files) the reader claims the work in SQLite and does
it, so any process sharing the data dir computes the same state and only one writes the result
files.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from typing import Any

from .config import Pace
from .service_rules import TERMINAL


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
    """What a batch's random draws are keyed by: its input's identity (batches made before it: the
    batch id)."""
    return str(row["plan"].get("draw_key") or row["id"])


def failed_positions(key: str, seed: int, rate: float, total: int, refused: list[int]) -> list[int]:
    """Processing positions whose request fails individually, sorted: those drawn at
    `Faults.request_error_rate` (deterministic) and those of the `refused` input indices."""
    drawn: set[int] = set()
    if rate > 0:
        rng = random.Random(f"{seed}:{key}:request-errors")
        drawn = {p for p in range(total) if rng.random() < rate}
    if refused:
        position = {index: pos for pos, index in enumerate(processing_order(key, seed, total))}
        drawn.update(position[i] for i in refused)
    return sorted(drawn)


def processing_order(key: str, seed: int, total: int) -> list[int]:
    """Input indices in the order the batch processes them; output files follow it (real order is
    arbitrary)."""
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
    pace = Pace.model_validate(row["plan"]["pace"])
    run = _run(row, pace, now)
    if run is None:
        return View(
            status="validating", times={"created_at": row["created_at"]}, needs_validation=True
        )
    times: dict[str, float] = {}
    status = "validating"
    for t, name in run.events:
        if t <= now:
            times[f"{name}_at"] = t
            status = name
    terminal_at = times.get(f"{status}_at") if status in TERMINAL else None
    if status in TERMINAL or status == "cancelling":
        done = run.processed_at_end
    else:
        done = _processed(now, row["created_at"] + pace.validating_seconds, run.total, pace)
    return View(
        status=status, times=times, processed=done, total=run.total, terminal_at=terminal_at
    )


@dataclass
class _Run:
    """A batch's timeline as planned: (time, status) events, its request count, and how many
    requests it has processed when it ends."""

    events: list[tuple[float, str]]
    total: int = 0
    processed_at_end: int = 0


def _processed(t: float, t_v: float, total: int, pace: Pace) -> int:
    """Requests processed by `t` when processing starts at `t_v`."""
    if t < t_v:
        return 0
    spr = pace.seconds_per_request
    return total if spr == 0 else min(total, int((t - t_v) / spr))


def _cancel_events(t: float, pace: Pace) -> list[tuple[float, str]]:
    return [(t, "cancelling"), (t + pace.cancelling_seconds, "cancelled")]


def _run(row: dict[str, Any], pace: Pace, now: float) -> _Run | None:
    """The batch's timeline, or None when its validation must be done first."""
    created, expires, validation = row["created_at"], row["plan"]["expires_at"], row["validation"]
    cancel_t = math.inf if row["cancel_at"] is None else row["cancel_at"]
    t_v = created + pace.validating_seconds
    start = [(created, "validating")]
    if cancel_t < t_v and cancel_t <= expires:  # cancelled while validating: nothing ran
        return _Run(start + _cancel_events(cancel_t, pace))
    if expires < t_v:  # window over before validation ended (only with a tiny expire_after_seconds)
        return _Run([*start, (expires, "expired")])
    if now < t_v:
        return _Run(start)
    if validation is None:
        return None
    if validation["errors"]:
        return _Run([*start, (t_v, "failed")])
    return _processing_run(row, pace, start, t_v, cancel_t)


def _processing_run(
    row: dict[str, Any], pace: Pace, start: list[tuple[float, str]], t_v: float, cancel_t: float
) -> _Run:
    """The timeline of a validated batch: it runs until it is done, cancelled or expires."""
    expires = row["plan"]["expires_at"]
    total = row["validation"]["total"]
    t_fin = t_v + total * pace.seconds_per_request
    t_done = math.inf if row["plan"]["stuck_finalizing"] else t_fin + pace.finalizing_seconds
    events = [*start, (t_v, "in_progress")]
    end = min(cancel_t, expires, t_done)
    if t_fin <= end:
        events.append((t_fin, "finalizing"))
    if cancel_t == end and cancel_t < math.inf:
        events += _cancel_events(cancel_t, pace)
    elif expires == end:
        events.append((expires, "expired"))
    else:
        events.append((t_done, "completed"))
    return _Run(events, total, _processed(end, t_v, total, pace))
