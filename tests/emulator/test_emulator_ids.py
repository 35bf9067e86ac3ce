"""Ids shaped like the real service's: batch, result line, request, file, chat, responses."""

from __future__ import annotations

import re
import uuid

import openai
import orjson
from emu_helpers import chat_line, start, upload


def _hex_time(value: str, prefix: str, length: int) -> int:
    """The creation time in the first 8 hex digits of a `prefix` + `length` hex id."""
    assert re.fullmatch(rf"{prefix}[0-9a-f]{{{length}}}", value), value
    return int(value[len(prefix) : len(prefix) + 8], 16)


def test_batch_file_and_result_line_ids(client: openai.OpenAI, clock) -> None:
    t0 = int(clock.now)
    file_id = upload(client, [chat_line(i) for i in range(20)])
    assert re.fullmatch(r"file-[A-Za-z0-9]{22}", file_id)
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert _hex_time(batch.id, "batch_", 32) == t0 == batch.created_at
    clock.advance(5)
    done = client.batches.retrieve(batch.id)
    assert done.output_file_id
    assert re.fullmatch(r"file-[A-Za-z0-9]{22}", done.output_file_id)
    lines = [
        orjson.loads(x) for x in client.files.content(done.output_file_id).content.splitlines()
    ]
    ids = {x["id"] for x in lines}
    assert len(ids) == 20
    for line in lines:
        body = line["response"]["body"]
        assert _hex_time(line["id"], "batch_req_", 32) == body["created"]
        assert uuid.UUID(line["response"]["request_id"]).version == 4
        assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", body["id"])
    assert len({x["response"]["request_id"] for x in lines}) == 20


def test_responses_ids_start_with_their_creation_time(client: openai.OpenAI, clock) -> None:
    line = {
        "custom_id": "r1",
        "method": "POST",
        "url": "/v1/responses",
        "body": {"model": "gpt-4.1-mini", "input": "hi"},
    }
    batch_id = start(client, [line], endpoint="/v1/responses")
    clock.advance(5)
    out = client.batches.retrieve(batch_id).output_file_id
    assert out
    body = orjson.loads(client.files.content(out).content)["response"]["body"]
    assert _hex_time(body["id"], "resp_", 50) == body["created_at"]
    assert _hex_time(body["output"][0]["id"], "msg_", 50) == body["created_at"]
