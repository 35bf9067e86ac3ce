"""Result lines parsed on several processes: every line read once, by exactly one process, and the
results table the same whatever the number of processes and wherever the shares are cut.

Helper processes are real (``python -m dagster_openai_batch.core.result_lines``); the thresholds
that decide when to start them are lowered so that files of a few KB get several.
"""

import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openai.types import Batch

from dagster_openai_batch.core import collect_results, result_lines
from dagster_openai_batch.core.result_lines import (
    PROCESSES_ENV,
    ParseProcessError,
    Parsers,
    ResultLineError,
)
from dagster_openai_batch.core.results import _part_ids, _sent_custom_id

CHAT = "/v1/chat/completions"


def _line(rng: random.Random, cid: str) -> dict[str, Any]:
    """A success, a failed request, an expired request or a malformed line, drawn."""
    draw = rng.random()
    if draw < 0.7:
        text = rng.choice(["Paris", "ünïcødé ✓", 'a "quoted" answer', "x" * rng.randint(1, 3000)])
        body = {
            "model": rng.choice(["gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"]),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": rng.randint(1, 50), "completion_tokens": 3},
        }
        response = {"status_code": 200, "request_id": f"req_{cid}", "body": body}
        return {"id": f"batch_req_{cid}", "custom_id": cid, "response": response, "error": None}
    if draw < 0.85:
        body = {"error": {"message": "bad", "type": "invalid_request_error", "code": None}}
        response = {"status_code": 400, "request_id": f"req_{cid}", "body": body}
        return {"id": f"batch_req_{cid}", "custom_id": cid, "response": response, "error": None}
    if draw < 0.95:
        error = {"code": "batch_expired", "message": "expired"}
        return {"id": f"batch_req_{cid}", "custom_id": cid, "response": None, "error": error}
    return {"id": f"batch_req_{cid}", "custom_id": cid}


def _files(tmp_path: Path, seed: int) -> tuple[list[Path], list[str]]:
    """Result files of 3 batches, lines shuffled, some custom_ids in two files, blank lines."""
    rng = random.Random(seed)
    ids = [f"r{i}" for i in range(rng.randint(20, 300))]
    files = []
    for b in range(3):
        chosen = rng.sample(ids, k=len(ids) // 2)
        raw = [orjson.dumps(_line(rng, cid)) for cid in chosen]
        raw.insert(rng.randint(0, len(raw)), b"   ")
        path = tmp_path / f"batch_{b}_file-out{b}.jsonl"
        path.write_bytes(b"\n".join(raw) + b"\n")
        files.append(path)
    return files, ids


def _batches() -> list[Batch]:
    return [
        Batch.model_validate(
            {
                "id": f"batch_{b}",
                "object": "batch",
                "endpoint": CHAT,
                "input_file_id": "file-in",
                "completion_window": "24h",
                "status": "expired",
                "created_at": 1,
                "output_file_id": f"file-out{b}",
            }
        )
        for b in range(3)
    ]


@pytest.fixture
def tiny_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments of 1 KB, and a helper for every byte expected: files of a few KB get several."""
    monkeypatch.setattr(result_lines, "_SEGMENT_BYTES", 1024)
    monkeypatch.setattr(result_lines, "_MIN_SHARE_BYTES", 1)


def _ids_read(spills: list[result_lines.SpillFile]) -> list[str]:
    return [
        cid
        for spill in spills
        for cid in pa.ipc.open_file(spill.path).read_all().column("custom_id").to_pylist()
    ]


def _parse(files: list[Path], work_dir: Path) -> list[str]:
    """The custom_ids of the lines of ``files``, parsed, in spill order."""
    total = sum(p.stat().st_size for p in files)
    with Parsers(CHAT, work_dir, expected_bytes=total) as parsers:
        return _ids_read(parsers.finish([(p, None) for p in files]))


def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("seed", range(6))
def test_every_line_is_read_by_exactly_one_segment(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, _ = _files(tmp_path, seed)
    every_line = [
        orjson.loads(raw)["custom_id"]
        for p in files
        for raw in p.read_bytes().split(b"\n")[:-1]
        if raw.strip()
    ]
    monkeypatch.setenv(PROCESSES_ENV, "1")  # this process alone: the segments, not the helpers
    for size in (500, 4096, 1 << 30):  # most lines cut by a segment end, some, none
        monkeypatch.setattr(result_lines, "_SEGMENT_BYTES", size)
        assert _parse(files, tmp_path) == every_line


@pytest.mark.parametrize("seed", range(4))
def test_results_are_the_same_on_any_number_of_processes(
    tmp_path: Path, seed: int, tiny_segments, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, ids = _files(tmp_path, seed)
    tables = {}
    for processes in (1, 2, 3):
        monkeypatch.setenv(PROCESSES_ENV, str(processes))
        summary = collect_results(
            output_files=files,
            error_files=[],
            prepared_inputs_path=None,
            request_ids=ids,
            batches=_batches(),
            endpoint=CHAT,
            dest=tmp_path / f"results-{processes}.parquet",
        )
        tables[processes] = pq.read_table(summary.path)
        assert summary.rows == len(ids)
    assert tables[1].column("custom_id").to_pylist() == ids
    assert tables[2].equals(tables[1])
    assert tables[3].equals(tables[1])


@pytest.mark.parametrize("seed", range(3))
def test_helpers_parse_files_as_they_are_added(
    tmp_path: Path, seed: int, tiny_segments, monkeypatch
) -> None:
    """Files added while others would still download are parsed by the helpers alone; finishing
    then has nothing left but to put the spill files in order."""
    files, _ = _files(tmp_path, seed)
    monkeypatch.setenv(PROCESSES_ENV, "1")
    expected = _parse(files, tmp_path)
    monkeypatch.setenv(PROCESSES_ENV, "3")
    with Parsers(CHAT, tmp_path, expected_bytes=100) as parsers:
        assert len(parsers.helpers) == 2
        for path in reversed(files):  # in any order
            parsers.add(path, None)
        segments = sum(-(-p.stat().st_size // 1024) for p in files)
        _wait_for(lambda: len(parsers.spills) == segments, "the helpers' segments")
        assert _ids_read(parsers.finish([(p, None) for p in files])) == expected
    assert [helper.returncode for helper in parsers.helpers] == [0, 0]
    assert not parsers.spill_dir.exists()  # deleted with its spill files


def test_a_helper_still_starting_takes_no_segment(
    tmp_path: Path, tiny_segments, monkeypatch
) -> None:
    """No segment waits for a helper that is not ready yet: this process parses them all, and
    finishing does not wait for the helper (here stopped while it starts), which exits once
    it runs again."""
    files, _ = _files(tmp_path, 5)
    monkeypatch.setenv(PROCESSES_ENV, "1")
    expected = _parse(files, tmp_path)
    monkeypatch.setenv(PROCESSES_ENV, "2")
    with Parsers(CHAT, tmp_path, expected_bytes=100) as parsers:
        (helper,) = parsers.helpers
        starting = psutil.Process(helper.pid)
        starting.suspend()  # its imports take far longer than this
        try:
            spills: list[list[result_lines.SpillFile]] = []
            finishing = threading.Thread(
                target=lambda: spills.append(parsers.finish([(p, None) for p in files]))
            )
            finishing.start()
            finishing.join(timeout=60)
            assert not finishing.is_alive(), "finish waited for a helper that is not ready"
        finally:
            starting.resume()
        assert _ids_read(spills[0]) == expected
    assert helper.returncode == 0


def test_helpers_not_needed_are_not_started_and_unused_ones_exit(tmp_path: Path) -> None:
    files, _ = _files(tmp_path, 3)
    with Parsers(CHAT, tmp_path, expected_bytes=1000) as parsers:  # too few bytes for a helper
        assert parsers.helpers == []
        assert _ids_read(parsers.finish([(p, None) for p in files]))
    with Parsers(CHAT, tmp_path, expected_bytes=1 << 40) as parsers:  # an error came first, say
        assert parsers.helpers
    assert {helper.poll() for helper in parsers.helpers} == {0}


def test_a_bad_line_in_a_helpers_segment_says_where(
    tmp_path: Path, tiny_segments, monkeypatch
) -> None:
    good = b"".join(orjson.dumps(_line(random.Random(i), f"r{i}")) + b"\n" for i in range(40))
    path = tmp_path / "out.jsonl"
    path.write_bytes(good + b'{"id": "batch_req_x", "custom_id"\n')
    monkeypatch.setenv(PROCESSES_ENV, "2")
    with Parsers(CHAT, tmp_path, expected_bytes=100) as parsers:
        parsers.add(path, None)
        _wait_for(lambda: parsers.failures, "the helper's answer")
        with pytest.raises(ResultLineError, match=rf"out.jsonl: byte {len(good)}: not a batch"):
            parsers.finish([(path, None)])
    with pytest.raises(ResultLineError, match=rf"out.jsonl: byte {len(good)}: not a batch"):
        _parse([path], tmp_path)  # whichever process reads it


def test_a_helper_that_fails_otherwise_says_so(tmp_path: Path, tiny_segments, monkeypatch) -> None:
    files, _ = _files(tmp_path, 5)
    monkeypatch.setenv(PROCESSES_ENV, "2")
    with Parsers(CHAT, tmp_path, expected_bytes=100) as parsers:
        parsers.add(files[0], None)
        files[0].unlink()  # gone before the helper (still starting) opens it
        _wait_for(lambda: parsers.failures, "the helper's failure")
        with pytest.raises(ParseProcessError, match=r"(?s)lines failed \(exit code.*FileNotFound"):
            parsers.finish([(files[0], None)])


def test_a_bad_process_count_says_what_to_give(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROCESSES_ENV, "two")
    with pytest.raises(ValueError, match=f"{PROCESSES_ENV}='two': give a whole number"):
        result_lines.process_count()


@pytest.mark.parametrize("seed", range(40))
def test_sent_custom_ids_in_bulk_match_line_by_line(tmp_path: Path, seed: int, monkeypatch) -> None:
    rng = random.Random(seed)
    plain = rng.random() < 0.5  # every line as write_batch_input writes it: the bulk match
    lines = []
    for i in range(rng.randint(0, 80)):
        cid = f"r{i}" if plain or rng.random() < 0.7 else rng.choice([f"ü{i}", f'q\\"{i}', ""])
        request = {"custom_id": cid, "method": "POST", "body": {"x": '"q"' * rng.randint(0, 2)}}
        if not plain and rng.random() < 0.1:
            request = {"method": "POST", "custom_id": cid}
        lines.append(b"  " if not plain and rng.random() < 0.05 else orjson.dumps(request))
    data = b"\n".join(lines) + (b"\n" if rng.random() < 0.7 else b"")
    path = tmp_path / "part.jsonl"
    path.write_bytes(data)
    monkeypatch.setattr(
        "dagster_openai_batch.core.results._ID_BLOCK", rng.choice([16, 256, 1 << 20])
    )
    expected = [c for c in map(_sent_custom_id, data.splitlines(keepends=True)) if c is not None]
    assert _part_ids(path).to_pylist() == expected
