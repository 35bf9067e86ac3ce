"""Input-file builders for the emulator tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import openai
import orjson
from openai.types.responses import Response


def chat_line(
    i: int | str, *, model: str = "gpt-4o-mini", url: str = "/v1/chat/completions", **body: Any
) -> dict[str, Any]:
    """One chat-completions input line."""
    return {
        "custom_id": f"r{i}",
        "method": "POST",
        "url": url,
        "body": {
            "model": model,
            "messages": [{"role": "user", "content": f"question {i}"}],
            **body,
        },
    }


def jsonl(lines: Iterable[Any]) -> bytes:
    """Serialise lines (dicts, or raw bytes kept as is) to JSONL."""
    return b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines)


def upload(client: openai.OpenAI, lines: Iterable[Any], name: str = "input.jsonl") -> str:
    """Upload a batch input file; its id."""
    return client.files.create(file=(name, jsonl(lines)), purpose="batch").id


def start(
    client: openai.OpenAI, lines: Iterable[Any], endpoint: str = "/v1/chat/completions", **kw: Any
) -> str:
    """Upload and create a batch; its id."""
    return client.batches.create(
        input_file_id=upload(client, lines),
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        **kw,
    ).id


def sdk_response(body: dict[str, Any]) -> Response:
    """Validate a `/v1/responses` body with the SDK's `Response` type.

    The real service never sends `usage.input_tokens_details.cache_write_tokens`, which SDK 3.54
    declares required (as the spec types optional fields non-nullable): asserted absent, then
    filled in for the SDK's check only.
    """
    details = body["usage"]["input_tokens_details"]
    assert "cache_write_tokens" not in details
    usage = {**body["usage"], "input_tokens_details": {**details, "cache_write_tokens": 0}}
    return Response.model_validate({**body, "usage": usage})
