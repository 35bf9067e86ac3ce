"""Input-file builders and spec validators for the emulator tests."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import jsonschema
import openai
import orjson
from openai.types.responses import Response
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse


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


def validate_response(openapi: OpenAPI, raw: Any, *, azure: bool = False) -> Any:
    """Validate a `with_raw_response` result against the OpenAPI spec; returns the raw JSON.

    With ``azure``, the Azure routes (``/openai/v1/…``, ``/openai/…?api-version=``) are mapped onto
    the spec's ``/v1`` paths; otherwise the request id must look like OpenAI's.
    """
    http = raw.http_response
    path = http.request.url.path
    params = dict(http.request.url.params)
    if azure:
        path = "/v1" + path.removeprefix("/openai").removeprefix("/v1")
        params.pop("api-version", None)
    else:
        assert http.headers["x-request-id"].startswith("req_")
    request = MockRequest("https://api.openai.com", http.request.method.lower(), path, args=params)
    response = MockResponse(
        http.content, status_code=http.status_code, content_type=http.headers["content-type"]
    )
    openapi.validate_response(request, response)
    return http.json()


def line_validator(
    line_schemas: dict[str, Any], *, with_id: bool = True
) -> Callable[[bytes], list[dict[str, Any]]]:
    """Parse a result file and validate every line against BatchRequestOutput (``with_id``:
    lines must carry ``id``, as OpenAI's do; without it, they must not, as Azure's)."""
    schema = copy.deepcopy(line_schemas["BatchRequestOutput"])
    for name in ("response", "error"):
        schema["properties"][name] = {"anyOf": [schema["properties"][name], {"type": "null"}]}
    schema["required"] = ["id", "custom_id", "response", "error"][0 if with_id else 1 :]

    def _check(content: bytes) -> list[dict[str, Any]]:
        lines = [orjson.loads(x) for x in content.splitlines()]
        for line in lines:
            jsonschema.validate(line, schema)
            assert ("id" in line) == with_id
        return lines

    return _check
