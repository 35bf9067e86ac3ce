"""File lifecycle against the emulator through the SDK: expiry options reach the service, spent
files of a finished batch set, orphans found and deleted."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from openai.types import FileObject

from dagster_openai_batch.core import BatchClient, RequestTemplate, prepare_rows
from dagster_openai_batch.core.file_lifecycle import (
    CleanupPlan,
    delete_files,
    plan_cleanup,
    spent_files,
)

CHAT = "/v1/chat/completions"
TEMPLATE = RequestTemplate(
    endpoint=CHAT, model="gpt-4o-mini", prompt="Say {word}", custom_id_column="id"
)
DAY = 86400


def _client(bc: BatchClient, **options: int) -> BatchClient:
    return BatchClient(bc.openai, sleep=bc._sleep, clock=bc._clock, backoff=0.01, **options)


def _upload(bc: BatchClient, tmp: Path, word: str) -> FileObject:
    rows = [{"id": f"r{i}", "word": f"{word}{i}"} for i in range(5)]
    return bc.upload(prepare_rows(rows, TEMPLATE, tmp / word).parts[0])


def _submit(bc: BatchClient, tmp: Path, word: str, key: str) -> tuple[FileObject, str]:
    file = _upload(bc, tmp, word)
    batch, _ = bc.create_or_adopt(input_file_id=file.id, endpoint=CHAT, idempotency_key=key)
    return file, batch.id


def _finish(bc: BatchClient, clock, batch_id: str):  # type: ignore[no-untyped-def]
    clock.now += 60
    batch = bc.retrieve(batch_id)
    assert batch.status == "completed"
    return batch


def test_expiry_options_reach_the_service(bc: BatchClient, clock, tmp_path: Path) -> None:
    expiring = _client(bc, input_expires_after=2 * 3600, output_expires_after=DAY)
    file, batch_id = _submit(expiring, tmp_path, "a", "k1")
    assert file.expires_at == int(clock.now) + 2 * 3600
    batch = _finish(expiring, clock, batch_id)
    output = bc.openai.files.retrieve(batch.output_file_id or "")
    assert output.expires_at == batch.completed_at + DAY
    # Without options the service's defaults apply: 30 days for both.
    plain_file, plain_id = _submit(bc, tmp_path, "b", "k2")
    assert plain_file.expires_at == int(clock.now) + 30 * DAY
    plain = _finish(bc, clock, plain_id)
    assert bc.openai.files.retrieve(plain.output_file_id or "").expires_at == (
        plain.completed_at + 30 * DAY
    )
    # Once expired, the result file is gone, as on the service.
    clock.now += DAY
    with pytest.raises(openai.NotFoundError):
        bc.openai.files.retrieve(batch.output_file_id or "")


@pytest.mark.parametrize("seconds", [60, 31 * DAY])
def test_expiry_out_of_range_is_refused_before_any_call(bc: BatchClient, seconds: int) -> None:
    with pytest.raises(ValueError, match="3600 \\(1 hour\\) to 2592000 \\(30 days\\)"):
        _client(bc, output_expires_after=seconds)


def test_spent_files_and_deletion(bc: BatchClient, clock, tmp_path: Path) -> None:
    file, batch_id = _submit(bc, tmp_path, "a", "k1")
    with pytest.raises(ValueError, match="still running"):
        spent_files(bc, [bc.retrieve(batch_id)], inputs=True, results=True)
    batch = _finish(bc, clock, batch_id)
    assert spent_files(bc, [batch], inputs=False, results=True) == [batch.output_file_id]
    # An identical upload is shared: its input stays while another batch still uses it.
    other = bc.openai.batches.create(input_file_id=file.id, endpoint=CHAT, completion_window="24h")
    assert spent_files(bc, [batch], inputs=True, results=False) == []
    bc.cancel(other.id)
    clock.now += 60
    spent = spent_files(bc, [batch], inputs=True, results=True)
    assert spent == [file.id, batch.output_file_id]
    done = delete_files(bc, [*spent, "file-unknown"])
    assert (done.deleted, done.gone, done.failed) == (spent, ["file-unknown"], {})
    with pytest.raises(openai.NotFoundError):
        bc.openai.files.content(batch.output_file_id or "")


def test_orphans_are_the_library_files_nothing_references(
    bc: BatchClient, clock, tmp_path: Path
) -> None:
    kept_file, kept_batch = _submit(bc, tmp_path, "a", "k1")
    orphan_file, orphan_batch = _submit(bc, tmp_path, "b", "k2")
    lone_upload = _upload(bc, tmp_path, "c")
    running_file, earlier_batch = _submit(bc, tmp_path, "d", "k4")
    clock.now += 60
    finished = [bc.retrieve(b) for b in (kept_batch, orphan_batch, earlier_batch)]
    foreign = bc.openai.files.create(file=("mine.jsonl", b'{"a": 1}\n'), purpose="batch")
    clock.now += 2 * 3600
    _upload(bc, tmp_path, "e")  # too young: a run may be about to record it
    # A batch created now from an older upload is in flight: its input stays.
    bc.openai.batches.create(input_file_id=running_file.id, endpoint=CHAT, completion_window="24h")

    def plan(**kwargs: bool) -> CleanupPlan:
        return plan_cleanup(
            bc,
            referenced_file_ids={kept_file.id},
            referenced_batch_ids={kept_batch},
            now=clock.now,
            **kwargs,
        )

    found = plan()
    outputs = [b.output_file_id for b in finished[1:]]
    assert sorted(f.id for f in found.orphans) == sorted([orphan_file.id, lone_upload.id, *outputs])
    assert found.kept == {"referenced": 2, "in flight": 1, "not ours": 1, "too young": 1}
    report = found.report()
    assert orphan_file.filename in report
    assert f"4 orphaned file(s), {found.bytes:,} bytes in all" in report
    assert foreign.id in {f.id for f in plan(include_foreign=True).orphans}

    done = delete_files(bc, [f.id for f in found.orphans])
    assert sorted(done.deleted) == sorted(f.id for f in found.orphans)
    again = plan()
    assert again.orphans == []
    assert again.report().startswith("No orphaned files")
    assert bc.openai.files.retrieve(kept_file.id).id == kept_file.id


def test_result_files_of_a_batch_made_from_a_recorded_input_stay(
    bc: BatchClient, clock, tmp_path: Path
) -> None:
    """A run killed after creating a batch and before recording it adopts that batch when run
    again: its result files are not orphans, as its input file is recorded."""
    file, batch_id = _submit(bc, tmp_path, "a", "k1")
    clock.now += 2 * 3600
    batch = bc.retrieve(batch_id)
    found = plan_cleanup(
        bc, referenced_file_ids={file.id}, referenced_batch_ids=set(), now=clock.now
    )
    assert found.orphans == []
    assert found.kept == {"referenced": 2}
    assert batch.output_file_id


def test_a_batch_whose_input_was_deleted_is_still_adopted(bc: BatchClient, tmp_path: Path) -> None:
    file, batch_id = _submit(bc, tmp_path, "a", "key")
    assert bc.delete_file(file.id)
    again = _upload(bc, tmp_path, "a")  # the same bytes, uploaded again under a new id
    assert again.id != file.id
    batch, adopted = bc.create_or_adopt(
        input_file_id=again.id, endpoint=CHAT, idempotency_key="key"
    )
    assert (batch.id, adopted) == (batch_id, True)


def test_a_failing_delete_is_reported_and_the_others_still_go(
    bc: BatchClient, emu, tmp_path: Path
) -> None:
    first, second = _upload(bc, tmp_path, "a"), _upload(bc, tmp_path, "b")
    emu.inject(500, times=3, operation="files.delete")  # the SDK's two retries fail too
    done = delete_files(bc, [first.id, second.id])
    assert done.deleted == [second.id]
    assert list(done.failed) == [first.id]
    assert "InternalServerError" in done.failed[first.id]
    assert bc.openai.files.retrieve(first.id).id == first.id
