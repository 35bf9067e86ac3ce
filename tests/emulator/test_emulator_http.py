"""Real HTTP: `serve()` in a thread, the CLI in a subprocess, and two processes sharing one data
dir."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import psutil
from emu_helpers import chat_line, jsonl
from openai.types import Batch

from dagster_openai_batch.emulator import Emulator, serve
from dagster_openai_batch.emulator import batches as emulator_batches
from dagster_openai_batch.emulator.config import EmulatorConfig
from dagster_openai_batch.emulator.store import Store

REPO = Path(__file__).resolve().parents[2]


def test_sync_flow_over_http(emulator: Emulator, clock, check, check_lines) -> None:
    with serve(emulator) as url:
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1")
        client = openai.OpenAI(api_key="sk-test", base_url=url, max_retries=0)
        f = client.files.create(
            file=("in.jsonl", jsonl(chat_line(i) for i in range(50))), purpose="batch"
        )
        raw = check(
            client.batches.with_raw_response.create(
                input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        )
        clock.advance(5)
        b = Batch.model_validate(check(client.batches.with_raw_response.retrieve(raw["id"])))
        assert b.status == "completed"
        assert b.output_file_id
        with client.files.with_streaming_response.content(b.output_file_id) as response:
            assert (
                int(response.headers["content-length"])
                == client.files.retrieve(b.output_file_id).bytes
            )
            body = b"".join(response.iter_bytes())
        assert len(check_lines(body)) == 50
        check(client.files.with_raw_response.list())
        check(client.batches.with_raw_response.list())
        emulator.inject(status=429, times=1)
        assert client.with_options(max_retries=1).files.list().data


def test_async_flow_over_http(emulator: Emulator, clock) -> None:
    async def flow(url: str) -> None:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=url, max_retries=0)
        f = await client.files.create(
            file=("in.jsonl", jsonl(chat_line(i) for i in range(5))), purpose="batch"
        )
        b = await client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        clock.advance(5)
        b = await client.batches.retrieve(b.id)
        assert b.status == "completed"
        assert b.output_file_id
        assert len((await client.files.content(b.output_file_id)).content.splitlines()) == 5
        await client.close()

    with serve(emulator) as url:
        asyncio.run(flow(url))


def _cli_server(data_dir: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m dagster_openai_batch.emulator`` on a free port, and the base URL it printed."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_openai_batch.emulator",
            "--port=0",
            f"--data-dir={data_dir}",
            *args,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
    assert url.endswith("/v1"), proc.stderr.read() if proc.stderr else ""
    return proc, url


def test_two_processes_share_one_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    proc, url = _cli_server(data_dir, "--seconds-per-request", "0.001")
    try:
        remote = openai.OpenAI(api_key="sk-test", base_url=url, max_retries=0)
        local = Emulator(data_dir).openai_client(max_retries=0)

        uploaded = remote.files.create(
            file=("in.jsonl", jsonl(chat_line(i) for i in range(20))), purpose="batch"
        )
        assert local.files.retrieve(uploaded.id) == uploaded
        batch = local.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert [b.id for b in remote.batches.list()] == [batch.id]
        deadline = time.monotonic() + 20
        while (seen := remote.batches.retrieve(batch.id)).status != "completed":
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
        assert local.batches.retrieve(batch.id) == seen
        assert seen.output_file_id
        assert (
            local.files.content(seen.output_file_id).content
            == remote.files.content(seen.output_file_id).content
        )
        assert (
            len(remote.files.list(purpose="batch_output").data) == 1
        )  # written once, not once per process
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_the_cli_server_validates_new_batches_without_a_reader(tmp_path: Path) -> None:
    """As on the real service, a batch is validated right after it is created, by the server's
    validation process: no API call (the create's answer, another batch's list) waits for it."""
    data_dir = tmp_path / "cli"
    proc, url = _cli_server(data_dir)
    try:
        client = openai.OpenAI(api_key="sk-test", base_url=url)
        good = client.files.create(
            file=("in.jsonl", jsonl(chat_line(i) for i in range(2000))), purpose="batch"
        )
        bad = client.files.create(file=("bad.jsonl", b'{"custom_id": "x"}\n'), purpose="batch")
        created = [
            client.batches.create(
                input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            for f in (good, bad)
        ]
        assert {b.status for b in created} == {"validating"}
        store = Store(data_dir)
        deadline = time.monotonic() + 30
        while any(store.get_batch(b.id)["validation"] is None for b in created):  # no API call
            assert time.monotonic() < deadline, "not validated in the background"
            time.sleep(0.05)
        outcomes = [store.get_batch(b.id)["validation"] for b in created]
        assert outcomes[0]["total"] == 2000
        assert not outcomes[0]["errors"]
        assert outcomes[1]["errors"]
        while (seen := client.batches.retrieve(created[1].id)).status == "validating":
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
        assert seen.status == "failed"
        assert seen.errors
        validator = psutil.Process(proc.pid).children()
        assert len(validator) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    validator[0].wait(timeout=10)  # its input ended with the server (a timeout raises)
    assert not validator[0].is_running()


def test_creates_answer_at_once_while_the_validation_process_is_busy(tmp_path: Path) -> None:
    """Creates hand their validation on without waiting for the validation process: with it
    stopped (as busy as can be), creates whose jobs would overfill its input pipe still answer at
    once, and every batch is validated once it runs again."""
    data_dir = tmp_path / "cli"
    proc, url = _cli_server(data_dir)
    # No retries and a short timeout: a create that waits for the validator fails the test.
    client = openai.OpenAI(api_key="sk-test", base_url=url, max_retries=0, timeout=10)
    # 16 keys of 500 characters: ~9 KB of job per batch, 20 of them overfill a 64 KB pipe.
    metadata = {f"key{i}": "x" * 500 for i in range(16)}
    try:
        f = client.files.create(
            file=("in.jsonl", jsonl(chat_line(i) for i in range(5))), purpose="batch"
        )
        created = [
            client.batches.create(
                input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        ]
        (validator,) = psutil.Process(proc.pid).children()
        validator.suspend()
        try:
            created += [
                client.batches.create(
                    input_file_id=f.id,
                    endpoint="/v1/chat/completions",
                    completion_window="24h",
                    metadata=metadata,
                )
                for _ in range(20)
            ]
        finally:
            validator.resume()
        assert {b.status for b in created[1:]} == {"validating"}
        store = Store(data_dir)
        deadline = time.monotonic() + 60
        while any(store.get_batch(b.id)["validation"] is None for b in created):  # no API call
            assert time.monotonic() < deadline, "not all validated in the background"
            time.sleep(0.05)
        assert {store.get_batch(b.id)["validation"]["total"] for b in created} == {5}
        assert psutil.Process(proc.pid).children() == [validator]  # one process, not restarted
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_a_validation_process_that_cannot_start_leaves_validation_to_the_first_read(
    tmp_path: Path, clock, monkeypatch
) -> None:
    """The create still answers (the batch exists), and the first read that needs the outcome
    validates it."""

    def cannot_start() -> None:
        raise OSError("no process left")

    monkeypatch.setattr(emulator_batches, "_start_validator", cannot_start)
    config = EmulatorConfig(validate_at_create=True)
    client = Emulator(tmp_path / "emu", config, clock=clock).openai_client(max_retries=0)
    f = client.files.create(
        file=("in.jsonl", jsonl(chat_line(i) for i in range(5))), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating"
    clock.advance(60)
    seen = client.batches.retrieve(batch.id)
    assert seen.status != "validating", seen
    assert seen.request_counts is not None
    assert seen.request_counts.total == 5


def test_a_killed_cli_server_leaves_no_validation_process(tmp_path: Path) -> None:
    proc, url = _cli_server(tmp_path / "cli")
    client = openai.OpenAI(api_key="sk-test", base_url=url)
    f = client.files.create(
        file=("in.jsonl", jsonl(chat_line(i) for i in range(5))), purpose="batch"
    )
    client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    validator = psutil.Process(proc.pid).children()
    assert len(validator) == 1
    proc.kill()  # kill -9: no shutdown code runs
    proc.wait(timeout=10)
    validator[0].wait(timeout=10)  # a timeout raises
    assert not validator[0].is_running()


def test_concurrent_readers_write_results_once(emulator: Emulator, clock) -> None:
    client = emulator.openai_client(max_retries=0)
    f = client.files.create(
        file=("in.jsonl", jsonl(chat_line(i) for i in range(3000))), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    client.batches.retrieve(batch.id)  # nothing due yet
    clock.advance(10)
    with serve(emulator) as url, ThreadPoolExecutor(8) as pool:

        def poll(_: int) -> tuple[str, str | None]:
            remote = openai.OpenAI(api_key="sk-test", base_url=url, max_retries=0)
            b = remote.batches.retrieve(batch.id)
            return b.status, b.output_file_id

        seen = list(pool.map(poll, range(16)))
    # Readers that lost a race see the batch still validating or finalizing; the winner (and all
    # later reads) see it completed.
    assert {status for status, _ in seen} <= {"validating", "finalizing", "completed"}
    final = client.batches.retrieve(batch.id)
    assert final.status == "completed"
    assert {out for status, out in seen if status == "completed"} <= {final.output_file_id}
    assert len(client.files.list(purpose="batch_output").data) == 1
