"""Whole-batch validation: each error code ends the batch `failed` with errors.data[{code, message,
param, line}]."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
from emu_helpers import chat_line, start
from openai.types import Batch

from dagster_openai_batch.emulator import Emulator, EmulatorConfig, Faults

FAST_DONE = 5  # seconds after which a small batch at the fast pace has completed


def _body(**extra: Any) -> dict[str, Any]:
    return {"custom_id": "r2", "method": "POST", "url": "/v1/chat/completions", **extra}


CASES = [
    ([chat_line(1), b"{not json"], "invalid_json_line", None, 2),
    (
        [chat_line(1), {"method": "POST", "url": "/v1/chat/completions", "body": {}}],
        "missing_required_parameter",
        "custom_id",
        2,
    ),
    (
        [chat_line(1), {"custom_id": "r2", "url": "/v1/chat/completions", "body": {}}],
        "missing_required_parameter",
        "method",
        2,
    ),
    (
        [chat_line(1), {"custom_id": "r2", "method": "POST", "body": {}}],
        "missing_required_parameter",
        "url",
        2,
    ),
    ([chat_line(1), _body()], "missing_required_parameter", "body", 2),
    ([chat_line(1), _body(body={"messages": []})], "invalid_request", "body.model", 2),
    ([chat_line(1), _body(body={"model": "gpt-4o-mini"})], "invalid_request", "body.messages", 2),
    ([chat_line(1), chat_line(2, url="/v1/embeddings")], "invalid_url", "url", 2),
    ([chat_line(1, stream=True)], "streaming_unsupported", "body.stream", 1),
    ([chat_line(1, model="no such model!")], "model_not_found", "body.model", 1),
    ([chat_line(1), chat_line(2, model="gpt-4o")], "model_mismatch", "body.model", 2),
    ([chat_line(1), chat_line(2), chat_line(1)], "duplicate_custom_id", "custom_id", 3),
]


@pytest.mark.parametrize(
    ("lines", "code", "param", "line"), CASES, ids=[c[1] + str(i) for i, c in enumerate(CASES)]
)
def test_invalid_input_fails_batch(
    client: openai.OpenAI, check, clock, lines, code, param, line
) -> None:
    batch_id = start(client, lines)
    clock.advance(1)
    b = Batch.model_validate(check(client.batches.with_raw_response.retrieve(batch_id)))
    assert b.status == "failed"
    assert b.failed_at == int(clock.now - 1 + 0.05)
    assert b.in_progress_at is None
    assert b.output_file_id is None
    assert b.error_file_id is None
    assert b.errors is not None
    assert b.errors.object == "list"
    assert b.errors.data
    err = b.errors.data[0]
    assert (err.code, err.param, err.line) == (code, param, line)
    assert err.message


def test_too_many_tasks(client: openai.OpenAI, clock) -> None:
    batch_id = start(client, (chat_line(i) for i in range(50_001)))
    clock.advance(1)
    b = client.batches.retrieve(batch_id)
    assert b.status == "failed"
    assert b.errors
    assert b.errors.data
    assert b.errors.data[0].code == "too_many_tasks"


def test_too_many_embedding_inputs(client: openai.OpenAI, clock) -> None:
    lines = [
        {
            "custom_id": f"e{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": ["a"] * 1000},
        }
        for i in range(51)
    ]
    batch_id = start(client, lines, endpoint="/v1/embeddings")
    clock.advance(1)
    b = client.batches.retrieve(batch_id)
    assert b.status == "failed"
    assert b.errors
    assert b.errors.data
    assert b.errors.data[0].code == "too_many_tasks"


def test_token_limit_exceeded(tmp_path, clock) -> None:
    config = EmulatorConfig(faults=Faults(token_limits={"gpt-4o-mini": 100}))
    client = Emulator(tmp_path / "e", config, clock=clock).openai_client(max_retries=0)
    ok = start(client, [chat_line(1)])
    too_big = start(client, [chat_line(i) for i in range(20)])  # ~20 x 30 tokens > 100
    clock.advance(1)
    assert client.batches.retrieve(ok).status == "completed"
    b = client.batches.retrieve(too_big)
    assert b.status == "failed"
    assert b.errors
    assert b.errors.data
    assert b.errors.data[0].code == "token_limit_exceeded"
    assert "Enqueued token limit" in b.errors.data[0].message


def test_token_limit_counts_the_batches_already_in_the_queue(tmp_path, clock) -> None:
    """Each batch fits alone; the second, created while the first is in progress, does not fit
    beside it; a third, created once the first finished, fits again."""
    lines = [chat_line(i) for i in range(10)]
    own = sum(max(1, len(orjson.dumps(line)) // 4) for line in lines)  # what one batch counts
    config = EmulatorConfig(faults=Faults(token_limits={"gpt-4o-mini": own + own // 2}))
    client = Emulator(tmp_path / "e", config, clock=clock).openai_client(max_retries=0)
    first = start(client, lines)
    second = start(client, lines)
    clock.advance(0.55)  # both validated: the first still running, the second refused
    assert client.batches.retrieve(first).status in {"in_progress", "finalizing"}
    refused = client.batches.retrieve(second)
    assert refused.status == "failed"
    assert refused.errors is not None
    assert refused.errors.data[0].code == "token_limit_exceeded"
    assert f"Limit: {own + own // 2:,} enqueued tokens" in str(refused.errors.data[0].message)
    clock.advance(5)
    assert client.batches.retrieve(first).status == "completed"
    third = start(client, lines)
    clock.advance(5)
    assert client.batches.retrieve(third).status == "completed"


def test_every_missing_body_field_is_its_own_entry(client: openai.OpenAI, clock) -> None:
    bare = {"custom_id": "r2", "method": "POST", "url": "/v1/chat/completions", "body": {}}
    no_input = {
        "custom_id": "e1",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "text-embedding-3-small"},
    }
    batch_id = start(client, [chat_line(1), bare])
    embeddings_id = start(client, [no_input], endpoint="/v1/embeddings")
    clock.advance(1)
    errors = client.batches.retrieve(batch_id).errors
    assert errors is not None
    assert [(e.code, e.param, e.line) for e in errors.data] == [
        ("invalid_request", "body.model", 2),
        ("invalid_request", "body.messages", 2),
    ]
    errors = client.batches.retrieve(embeddings_id).errors
    assert errors is not None
    assert [(e.code, e.param, e.line) for e in errors.data] == [
        ("invalid_request", "body.input", 1)
    ]


def test_an_unknown_input_file_is_accepted_then_fails_the_batch(
    client: openai.OpenAI, check, clock
) -> None:
    raw = check(
        client.batches.with_raw_response.create(
            input_file_id="file-doesnotexist",
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
    )
    assert (raw["status"], raw["input_file_id"]) == ("validating", "file-doesnotexist")
    clock.advance(1)
    b = Batch.model_validate(check(client.batches.with_raw_response.retrieve(raw["id"])))
    assert b.status == "failed"
    assert b.errors is not None
    [err] = b.errors.data
    assert (err.code, err.param, err.line) == ("invalid_request", "file_id", None)
    assert err.message == "Cannot find file file-doesnotexist."


REFUSED = [
    ({"messages": [{"role": "user", "content": "hi", "colour": "red"}]}, None, None),
    ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content", "invalid_type"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "invalid_value"),
    ({"messages": "hi"}, "messages", "invalid_type"),
    ({"messages": []}, "messages", "empty_array"),
    ({"temperature": "hot"}, "temperature", "invalid_type"),
    ({"max_tokens": 1.5}, "max_tokens", "invalid_type"),
    ({"colour": "red"}, None, None),
]


def test_bodies_the_endpoint_refuses_fail_their_own_line(
    client: openai.OpenAI, check_lines, clock
) -> None:
    lines = [chat_line(0), chat_line(1)]
    lines += [chat_line(f"bad{i}", **body) for i, (body, _, _) in enumerate(REFUSED)]
    batch_id = start(client, lines)
    clock.advance(FAST_DONE)
    b = client.batches.retrieve(batch_id)
    assert b.status == "completed"
    assert b.request_counts is not None
    assert (b.request_counts.completed, b.request_counts.failed) == (2, len(REFUSED))
    assert b.output_file_id
    assert b.error_file_id
    assert {
        x["custom_id"] for x in check_lines(client.files.content(b.output_file_id).content)
    } == {
        "r0",
        "r1",
    }
    failed = {x["custom_id"]: x for x in check_lines(client.files.content(b.error_file_id).content)}
    for i, (_, param, code) in enumerate(REFUSED):
        line = failed[f"rbad{i}"]
        assert line["error"] is None
        assert line["response"]["status_code"] == 400
        error = line["response"]["body"]["error"]
        assert (error["type"], error["param"], error["code"]) == (
            "invalid_request_error",
            param,
            code,
        )
        assert error["message"]
    assert "colour" in failed[f"rbad{len(REFUSED) - 1}"]["response"]["body"]["error"]["message"]


def test_refused_bodies_count_as_failed_while_running(client: openai.OpenAI, clock) -> None:
    lines = [chat_line(i, messages="not a list") for i in range(100)]
    batch_id = start(client, lines)
    clock.advance(0.5 + 50 * 0.0008 + 1e-6)
    counts = client.batches.retrieve(batch_id).request_counts
    assert counts is not None
    assert (counts.total, counts.completed, counts.failed) == (100, 0, 50)
