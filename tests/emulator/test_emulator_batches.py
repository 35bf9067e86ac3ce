"""Batches API through the official SDK: create checks, every lifecycle path (fake clock), listing,
results."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import openai
import pytest
from emu_helpers import chat_line, jsonl, start, upload
from openai.types import Batch

from dagster_openai_batch.emulator import EmulatorConfig, Pace

FAST = Pace.fast()


def get(client: openai.OpenAI, check, batch_id: str) -> Batch:
    """Retrieve a batch, validating the raw JSON against the spec and the SDK model (strict
    enums)."""
    return Batch.model_validate(check(client.batches.with_raw_response.retrieve(batch_id)))


def test_complete_lifecycle(client: openai.OpenAI, check, check_lines, clock) -> None:
    t0 = int(clock.now)
    file_id = upload(client, [chat_line(i) for i in range(100)])
    raw = check(
        client.batches.with_raw_response.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"job": "nightly"},
        )
    )
    b = Batch.model_validate(raw)
    assert (b.status, b.created_at, b.expires_at, b.in_progress_at, b.model) == (
        "validating",
        t0,
        t0 + 86400,
        None,
        None,
    )
    assert b.metadata == {"job": "nightly"}
    assert b.request_counts is not None
    assert b.request_counts.total == 0

    clock.advance(FAST.validating_seconds + 50 * FAST.seconds_per_request + 1e-6)
    b = get(client, check, b.id)
    assert b.status == "in_progress"
    assert b.model == "gpt-4o-mini-2024-07-18"  # the resolved snapshot
    assert b.in_progress_at == t0
    assert b.request_counts is not None
    assert (b.request_counts.total, b.request_counts.completed, b.request_counts.failed) == (
        100,
        50,
        0,
    )
    assert b.usage is not None
    assert b.usage.total_tokens == 0

    clock.advance(50 * FAST.seconds_per_request)
    b = get(client, check, b.id)
    assert b.status == "finalizing"
    assert b.finalizing_at == t0
    assert b.output_file_id is None

    clock.advance(10)
    b = get(client, check, b.id)
    assert b.status == "completed"
    assert b.completed_at == int(
        t0 + FAST.validating_seconds + 100 * FAST.seconds_per_request + FAST.finalizing_seconds
    )
    assert (b.request_counts.completed, b.request_counts.failed) == (100, 0)  # type: ignore[union-attr]
    assert b.error_file_id is None
    assert b.output_file_id is not None
    out_file = client.files.retrieve(b.output_file_id)
    assert out_file.purpose == "batch_output"
    assert out_file.filename == f"{b.id}_output.jsonl"
    lines = check_lines(client.files.content(b.output_file_id).content)
    custom_ids = [line["custom_id"] for line in lines]
    assert sorted(custom_ids) == sorted(f"r{i}" for i in range(100))
    assert custom_ids != [f"r{i}" for i in range(100)]  # output order is not input order
    assert all(line["response"]["status_code"] == 200 and line["error"] is None for line in lines)
    usage = b.usage
    assert usage is not None
    assert usage.input_tokens == sum(x["response"]["body"]["usage"]["prompt_tokens"] for x in lines)
    assert usage.output_tokens == sum(
        x["response"]["body"]["usage"]["completion_tokens"] for x in lines
    )
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens > 0
    # Reading again changes nothing and writes no second file.
    assert get(client, check, b.id) == b
    assert len(client.files.list(purpose="batch_output").data) == 1


def test_timestamps_follow_the_pace(client: openai.OpenAI, check, clock) -> None:
    t0 = clock.now
    batch_id = start(client, [chat_line(i) for i in range(1000)])
    clock.advance(3)
    b = get(client, check, batch_id)
    assert b.status == "completed"
    assert b.in_progress_at == int(t0 + FAST.validating_seconds)
    assert b.finalizing_at == int(t0 + FAST.validating_seconds + 1000 * FAST.seconds_per_request)
    total = FAST.validating_seconds + 1000 * FAST.seconds_per_request + FAST.finalizing_seconds
    assert b.completed_at == int(t0 + total)
    assert 0.5 < total < 1.5


@pytest.mark.parametrize(
    ("kwargs", "status", "param", "code"),
    [
        ({"endpoint": "/v1/audio/speech"}, 400, "endpoint", "invalid_value"),
        ({"completion_window": "48h"}, 400, "completion_window", "invalid_value"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, 400, "metadata", None),
        ({"metadata": {"k" * 65: "v"}}, 400, "metadata", None),
        ({"metadata": {"k": "v" * 513}}, 400, "metadata.k", None),
        ({"metadata": {"k": 1}}, 400, "metadata.k", "invalid_type"),
        (
            {"output_expires_after": {"anchor": "created_at", "seconds": 60}},
            400,
            "output_expires_after.seconds",
            None,
        ),
    ],
)
def test_create_rejected(
    client: openai.OpenAI, kwargs: dict[str, Any], status: int, param: str, code: str | None
) -> None:
    args: dict[str, Any] = {
        "input_file_id": upload(client, [chat_line(1)]),
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        **kwargs,
    }
    with pytest.raises(openai.APIStatusError) as err:
        client.batches.create(**args)
    assert err.value.status_code == status
    assert err.value.param == param  # type: ignore[attr-defined]
    assert err.value.type == "invalid_request_error"  # type: ignore[attr-defined]
    if code is not None:
        assert err.value.code == code  # type: ignore[attr-defined]


def test_create_rejects_non_batch_input_and_missing_field(client: openai.OpenAI) -> None:
    other = client.files.create(file=("x.jsonl", b"{}\n"), purpose="user_data").id
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        client.batches.create(
            input_file_id=other, endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.BadRequestError) as err:
        client.post(
            "/batches",
            body={"endpoint": "/v1/embeddings", "completion_window": "24h"},
            cast_to=Batch,
        )
    assert (err.value.code, err.value.param) == ("missing_required_parameter", "input_file_id")


def test_input_file_deleted_after_create_still_runs(client: openai.OpenAI, check, clock) -> None:
    file_id = upload(client, [chat_line(i) for i in range(5)])
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    client.files.delete(file_id)
    clock.advance(5)
    b = get(client, check, batch.id)
    assert b.status == "completed"
    assert b.request_counts.completed == 5


def test_cancel_in_progress_gives_partial_output(
    client: openai.OpenAI, check, check_lines, clock
) -> None:
    batch_id = start(client, [chat_line(i) for i in range(100)])
    clock.advance(FAST.validating_seconds + 30 * FAST.seconds_per_request + 1e-6)
    raw = check(client.batches.with_raw_response.cancel(batch_id))
    b = Batch.model_validate(raw)
    assert b.status == "cancelling"
    assert b.cancelling_at == int(clock.now)
    assert b.cancelled_at is None
    again = Batch.model_validate(check(client.batches.with_raw_response.cancel(batch_id)))
    assert again == b  # cancelling → 200 unchanged
    clock.advance(FAST.cancelling_seconds)
    b = get(client, check, batch_id)
    assert b.status == "cancelled"
    assert b.cancelled_at is not None
    assert b.finalizing_at is None
    assert (b.request_counts.total, b.request_counts.completed) == (100, 30)  # type: ignore[union-attr]
    assert b.output_file_id is not None
    assert len(check_lines(client.files.content(b.output_file_id).content)) == 30
    assert b.error_file_id is not None  # the 70 never-run requests, as batch_cancelled lines
    never_run = check_lines(client.files.content(b.error_file_id).content)
    assert len(never_run) == 70
    assert {(x["response"], x["error"]["code"]) for x in never_run} == {(None, "batch_cancelled")}
    assert b.request_counts.failed == 0  # type: ignore[union-attr]
    assert (
        Batch.model_validate(check(client.batches.with_raw_response.cancel(batch_id))) == b
    )  # cancelled → 200


def test_cancel_while_validating(client: openai.OpenAI, check, clock) -> None:
    batch_id = start(client, [chat_line(i) for i in range(10)])
    assert client.batches.cancel(batch_id).status == "cancelling"
    clock.advance(60)
    b = get(client, check, batch_id)
    assert b.status == "cancelled"
    assert b.in_progress_at is None
    assert (b.output_file_id, b.error_file_id, b.request_counts.total) == (None, None, 0)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "lines", [[chat_line(1)], [chat_line(1), b"not json"]], ids=["completed", "failed"]
)
def test_cancel_finished_batch_is_409(client: openai.OpenAI, clock, lines: list[Any]) -> None:
    batch_id = start(client, lines)
    clock.advance(5)
    with pytest.raises(openai.ConflictError) as err:
        client.batches.cancel(batch_id)
    assert err.value.status_code == 409
    assert client.batches.retrieve(batch_id).status in ("completed", "failed")


def test_list_newest_first_with_cursor(client: openai.OpenAI, check, clock) -> None:
    ids = []
    for i in range(5):
        ids.append(start(client, [chat_line(i)]))
        clock.advance(1)
    raw = check(client.batches.with_raw_response.list(limit=2))
    assert [b["id"] for b in raw["data"]] == ids[::-1][:2]
    assert (raw["first_id"], raw["last_id"], raw["has_more"]) == (ids[4], ids[3], True)
    raw = check(client.batches.with_raw_response.list(limit=2, after=ids[3]))
    assert [b["id"] for b in raw["data"]] == [ids[2], ids[1]]
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # SDK auto-pagination
    assert all(b.status == "completed" for b in client.batches.list())
    for bad in (0, 101):
        with pytest.raises(openai.BadRequestError):
            client.batches.list(limit=bad)


def test_async_client_full_flow(emulator, clock) -> None:
    asyncio.run(_async_flow(emulator, clock))


async def _async_flow(emulator, clock) -> None:
    client = emulator.async_openai_client(max_retries=0)
    f = await client.files.create(
        file=("in.jsonl", jsonl(chat_line(i) for i in range(20))), purpose="batch"
    )
    b = await client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    clock.advance(5)
    b = await client.batches.retrieve(b.id)
    assert b.status == "completed"
    assert b.output_file_id
    content = await client.files.content(b.output_file_id)
    assert len(content.content.splitlines()) == 20
    assert [x.id async for x in client.batches.list()] == [b.id]
    await client.close()


@pytest.mark.parametrize(
    ("limit", "code", "message"),
    [
        (
            0,
            "integer_below_min_value",
            "Invalid 'limit': integer below minimum value. Expected a value >= 1, but got 0 "
            "instead.",
        ),
        (
            101,
            "integer_above_max_value",
            "Invalid 'limit': integer above maximum value. Expected a value <= 100, but got 101 "
            "instead.",
        ),
    ],
)
def test_list_limit_out_of_range(
    client: openai.OpenAI, limit: int, code: str, message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.batches.list(limit=limit)
    assert (err.value.code, err.value.param, err.value.body["message"]) == (code, "limit", message)  # type: ignore[index]
    assert err.value.response.headers["x-request-id"].startswith("req_")


def test_unknown_batch_is_404_not_found(client: openai.OpenAI) -> None:
    for call in (client.batches.retrieve, client.batches.cancel):
        with pytest.raises(openai.NotFoundError) as err:
            call("batch_0123456789abcdef0123456789abcdef")
        assert "not found" in err.value.message
        assert err.value.code == "batch_not_found"  # type: ignore[attr-defined]


def test_videos_batches_are_refused_after_the_sora_shutdown(client: openai.OpenAI, clock) -> None:
    line = {"custom_id": "v", "method": "POST", "url": "/v1/videos", "body": {"prompt": "a cat"}}
    file_id = upload(client, [line])
    before = client.batches.create(
        input_file_id=file_id, endpoint="/v1/videos", completion_window="24h"
    )
    assert before.status == "validating"
    clock.now = datetime(2026, 9, 24, tzinfo=UTC).timestamp()
    with pytest.raises(openai.BadRequestError) as err:
        client.batches.create(input_file_id=file_id, endpoint="/v1/videos", completion_window="24h")
    assert (err.value.param, err.value.code) == ("endpoint", "invalid_value")  # type: ignore[attr-defined]
    assert "shut down on 2026-09-24" in err.value.message


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(cancelled_error_lines=False)], ids=["omitted"]
)
def test_cancelled_requests_can_be_left_out_of_the_error_file(
    client: openai.OpenAI, check_lines, clock
) -> None:
    batch_id = start(client, [chat_line(i) for i in range(100)])
    clock.advance(FAST.validating_seconds + 30 * FAST.seconds_per_request + 1e-6)
    client.batches.cancel(batch_id)
    clock.advance(1)
    b = client.batches.retrieve(batch_id)
    assert b.status == "cancelled"
    assert b.error_file_id is None
    assert b.output_file_id is not None
    assert len(check_lines(client.files.content(b.output_file_id).content)) == 30
