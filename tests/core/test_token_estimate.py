"""The token estimate is never below what the queue counts, and a budget tells what waits."""

from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from dagster_openai_batch.core.client import BatchClient
from dagster_openai_batch.core.queue_budget import BatchQueue, queue_metadata, token_limit_of
from dagster_openai_batch.core.token_estimate import (
    cost_range,
    estimate_part_tokens,
    estimate_tokens,
)
from dagster_openai_batch.emulator import Emulator, EmulatorConfig, Faults


def chat_line(i: int | str, *, model: str = "gpt-4o-mini", **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": f"question {i}"}]
    return {
        "custom_id": f"r{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": messages, **body},
    }


def start(client: openai.OpenAI, lines: list[dict[str, Any]], **kw: Any) -> str:
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    file = client.files.create(file=("in.jsonl", data), purpose="batch")
    return client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h", **kw
    ).id


LINES = [
    chat_line(1),
    chat_line("ü" * 7, model="gpt-4o"),
    chat_line("日本語のテキスト" * 40),
    chat_line(2, temperature=0.2, max_tokens=5),
]


def test_the_estimate_is_never_below_the_emulators_count(tmp_path: Path, monkeypatch) -> None:
    raw = [orjson.dumps(line) + b"\n" for line in LINES]
    part = tmp_path / "part.jsonl"
    part.write_bytes(b"".join(raw))
    counted = sum(max(1, len(line) // 4) for line in raw)  # the emulator's count
    estimate = estimate_tokens(bytes_=part.stat().st_size, requests=len(raw))
    assert estimate >= counted
    # Without tiktoken installed, a cache directory changes nothing (nothing is downloaded).
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "no-cache"))
    found = estimate_part_tokens(
        part, bytes_=part.stat().st_size, requests=len(raw), model="gpt-4o-mini"
    )
    assert found == estimate


def test_cost_range_has_no_output_bound_for_embeddings() -> None:
    assert cost_range(
        "text-embedding-3-small", input_tokens=10**6, requests=10, endpoint="/v1/embeddings"
    ) == (0.01, 0.01)


@pytest.fixture
def emulator(tmp_path: Path, clock) -> Emulator:
    return Emulator(
        tmp_path / "e", EmulatorConfig(faults=Faults(token_limits={"gpt-4o-mini": 50})), clock=clock
    )


def test_the_queue_is_read_from_the_batch_list(emulator: Emulator, clock) -> None:
    client = emulator.openai_client(max_retries=0)
    small = start(client, [chat_line(1)], metadata=queue_metadata("gpt-4o-mini", 20))
    start(client, [chat_line(2)])  # not made by the library: its tokens are unknown
    big = start(client, [chat_line(i) for i in range(20)])
    clock.sleep(0.6)
    batches = BatchClient(client).batches_since(clock() - 3600)
    queue = BatchQueue.scan(batches, limits={"gpt-4o-mini": 50}, now=clock())
    assert queue.enqueued == {"gpt-4o-mini": 20}
    assert queue.created == 3
    assert queue.admit("gpt-4o-mini", 31) == "gpt-4o-mini queue 20/50 tokens"
    assert queue.admit("gpt-4o-mini", 30) is None
    assert {b.id: token_limit_of(b) for b in batches if b.id in (small, big)} == {
        small: None,
        big: 50,
    }
