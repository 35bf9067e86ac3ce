"""The service-side files the library leaves behind: which ones a finished batch set no longer
needs, and which ones nothing references any more (orphans); listing and deleting them.

Files the library created are recognized by what it puts on them: an input upload's name starts
with ``dagster-openai-batch-`` (:func:`~.client.upload_filename`), and a result file belongs to a
batch whose metadata carries the library's idempotency key.

>>> plan = CleanupPlan(orphans=[], kept={"referenced": 2})
>>> print(plan.report())
No orphaned files (kept: 2 referenced).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import openai
from openai.types import Batch, FileObject

from .client import IDEMPOTENCY_KEY, MAX_SCAN_PAGES, UPLOAD_PREFIX, BatchClient, BatchClientError
from .vocabulary import TERMINAL_STATUSES

FILE_PURPOSES = ("batch", "batch_output")
"""Purposes of batch inputs and of result (output and error) files."""
DEFAULT_MIN_AGE_SECONDS = 3600
"""Files younger than this are never orphans: a run may have uploaded them and not yet recorded
them."""


@dataclass(frozen=True)
class _Use:
    """How batches use one file: the batches, and whether one is ours."""

    batches: list[Batch] = field(default_factory=list)

    @property
    def ours(self) -> bool:
        return any(IDEMPOTENCY_KEY in (b.metadata or {}) for b in self.batches)

    @property
    def in_flight(self) -> bool:
        return any(b.status not in TERMINAL_STATUSES for b in self.batches)


def _file_uses(batches: Iterable[Batch]) -> dict[str, _Use]:
    """Every file id the batches name (input, output, error) → the batches naming it."""
    uses: dict[str, _Use] = {}
    for batch in batches:
        for file_id in (batch.input_file_id, batch.output_file_id, batch.error_file_id):
            if file_id:
                uses.setdefault(file_id, _Use()).batches.append(batch)
    return uses


@dataclass(frozen=True)
class CleanupPlan:
    """The orphans found, and how many files were kept for each reason."""

    orphans: list[FileObject]
    kept: Mapping[str, int]
    """Files kept by reason: ``referenced``, ``in flight``, ``too young``, ``not ours``."""

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.orphans)

    def report(self) -> str:
        """One line per orphan (id, filename, bytes, created), then the total and what was
        kept."""
        kept = ", ".join(f"{n} {why}" for why, n in sorted(self.kept.items()) if n) or "none"
        if not self.orphans:
            return f"No orphaned files (kept: {kept})."
        lines = [
            f"{f.id}  {f.filename}  {f.bytes:,} bytes  created "
            f"{datetime.fromtimestamp(f.created_at, UTC):%Y-%m-%d %H:%M} UTC"
            for f in self.orphans
        ]
        lines.append(
            f"{len(self.orphans)} orphaned file(s), {self.bytes:,} bytes in all (kept: {kept})."
        )
        return "\n".join(lines)


def plan_cleanup(
    client: BatchClient,
    *,
    referenced_file_ids: Collection[str],
    referenced_batch_ids: Collection[str],
    min_age_seconds: float = DEFAULT_MIN_AGE_SECONDS,
    include_foreign: bool = False,
    max_batch_pages: int = MAX_SCAN_PAGES,
    now: float | None = None,
) -> CleanupPlan:
    """The files of purpose ``batch``/``batch_output`` that can go: created by the library (or
    any, with ``include_foreign``), referenced by no recorded file id or batch id (a batch made from
    a recorded input file counts as recorded), used by no batch still in flight, and older than
    ``min_age_seconds``.

    Batches are read from the newest ``max_batch_pages`` pages; a result file whose batch is older
    than that is not known to be the library's (kept unless ``include_foreign``), and an input file
    used by such a batch is treated as unused.
    """
    now = time.time() if now is None else now
    batches = list(client.recent_batches(max_batch_pages))
    uses = _file_uses(batches)
    # A batch made from a recorded input counts as recorded too: a run killed between creating it
    # and recording it adopts it when run again, and then needs its result files.
    referenced_batches = set(referenced_batch_ids) | {
        b.id for b in batches if b.input_file_id in referenced_file_ids
    }
    orphans: list[FileObject] = []
    kept: Counter[str] = Counter()
    for purpose in FILE_PURPOSES:
        for f in client.list_files(purpose):
            use = uses.get(f.id, _Use())
            ours = f.filename.startswith(UPLOAD_PREFIX) if purpose == "batch" else use.ours
            if f.id in referenced_file_ids or any(b.id in referenced_batches for b in use.batches):
                kept["referenced"] += 1
            elif use.in_flight:
                kept["in flight"] += 1
            elif not (ours or include_foreign):
                kept["not ours"] += 1
            elif f.created_at > now - min_age_seconds:
                kept["too young"] += 1
            else:
                orphans.append(f)
    return CleanupPlan(orphans=orphans, kept=dict(kept))


def spent_files(
    client: BatchClient,
    batches: Iterable[Batch],
    *,
    inputs: bool,
    results: bool,
    max_batch_pages: int = 10,
) -> list[str]:
    """The files of finished ``batches`` that can be deleted once their results are stored: with
    ``inputs`` their input files, unless a batch among the newest ``max_batch_pages`` pages still
    in flight uses one (identical uploads are shared); with ``results`` their output and error
    files.

    Raises ``ValueError`` if a batch is not finished.
    """
    batches = list(batches)
    running = [b.id for b in batches if b.status not in TERMINAL_STATUSES]
    if running:
        raise ValueError(f"batches {running} are still running: their files are in use")
    spent: list[str] = []
    if inputs:
        wanted = {b.input_file_id for b in batches if b.input_file_id}
        busy = {
            b.input_file_id
            for b in client.recent_batches(max_batch_pages)
            if b.input_file_id in wanted and b.status not in TERMINAL_STATUSES
        }
        spent += sorted(wanted - busy)
    if results:
        spent += [f for b in batches for f in (b.output_file_id, b.error_file_id) if f]
    return list(dict.fromkeys(spent))


@dataclass(frozen=True)
class Deletion:
    """What a round of deletions did: deleted now, already gone, or failed (file id → why)."""

    deleted: list[str]
    gone: list[str]
    failed: dict[str, str]


def delete_files(client: BatchClient, file_ids: Iterable[str]) -> Deletion:
    """Delete every file, whatever happens to the others (a failure is reported, not raised)."""
    deleted: list[str] = []
    gone: list[str] = []
    failed: dict[str, str] = {}
    for file_id in file_ids:
        try:
            (deleted if client.delete_file(file_id) else gone).append(file_id)
        except (BatchClientError, openai.APIError) as error:
            failed[file_id] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return Deletion(deleted=deleted, gone=gone, failed=failed)
