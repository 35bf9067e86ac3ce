"""Deterministic responses per endpoint, parsed with the SDK's own response models."""

from __future__ import annotations

import base64
import datetime
import re
from typing import Any, Literal

import jsonschema
import numpy as np
import openai
import orjson
import pytest
from emu_helpers import sdk_response, start
from openai.types import Completion, CreateEmbeddingResponse, ModerationCreateResponse
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, Field

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "score": {"type": "number"},
        "ok": {"type": "boolean"},
        "mood": {"enum": ["happy", "sad"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "address": {"$ref": "#/$defs/address"},
        "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["name", "age", "score", "ok", "mood", "tags", "address", "nickname"],
    "additionalProperties": False,
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
            "required": ["city", "zip"],
            "additionalProperties": False,
        }
    },
}


def run(
    client: openai.OpenAI, clock, endpoint: str, bodies: list[dict[str, Any]]
) -> dict[str, Any]:
    """Run a batch of `bodies` and return {custom_id: response body}."""
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": endpoint, "body": b}
        for i, b in enumerate(bodies)
    ]
    batch_id = start(client, lines, endpoint=endpoint)
    clock.advance(5)
    batch = client.batches.retrieve(batch_id)
    assert batch.status == "completed"
    assert batch.output_file_id
    out = [orjson.loads(x) for x in client.files.content(batch.output_file_id).content.splitlines()]
    return {x["custom_id"]: x["response"]["body"] for x in out}


def test_chat_plain_structured_and_tools(client: openai.OpenAI, clock) -> None:
    msgs = [{"role": "user", "content": "Describe a person"}]
    tool = {"type": "function", "function": {"name": "save", "parameters": SCHEMA}}
    bodies = run(
        client,
        clock,
        "/v1/chat/completions",
        [
            {"model": "gpt-4o-mini", "messages": msgs},
            {
                "model": "gpt-4o-mini",
                "messages": msgs,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "p", "strict": True, "schema": SCHEMA},
                },
            },
            {"model": "gpt-4o-mini", "messages": msgs, "tools": [tool], "tool_choice": "required"},
            {"model": "gpt-4o-mini", "messages": msgs, "n": 2},
        ],
    )
    plain = ChatCompletion.model_validate(bodies["r0"])
    assert plain.choices[0].message.content
    assert plain.model == "gpt-4o-mini-2024-07-18"
    assert plain.usage
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
    structured = ChatCompletion.model_validate(bodies["r1"])
    jsonschema.validate(orjson.loads(structured.choices[0].message.content or ""), SCHEMA)
    called = ChatCompletion.model_validate(bodies["r2"]).choices[0]
    assert called.finish_reason == "tool_calls"
    assert called.message.tool_calls
    jsonschema.validate(orjson.loads(called.message.tool_calls[0].function.arguments), SCHEMA)  # type: ignore[union-attr]
    assert len(ChatCompletion.model_validate(bodies["r3"]).choices) == 2


def test_same_input_same_output(client: openai.OpenAI, clock) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "same"}]}
    first = run(client, clock, "/v1/chat/completions", [body])["r0"]
    again = run(client, clock, "/v1/chat/completions", [body])["r0"]
    assert first["choices"] == again["choices"]
    assert first["usage"] == again["usage"]


def test_responses_with_json_schema(client: openai.OpenAI, clock) -> None:
    bodies = run(
        client,
        clock,
        "/v1/responses",
        [
            {"model": "gpt-4.1-mini", "input": "hello"},
            {
                "model": "gpt-4.1-mini",
                "input": "person",
                "text": {
                    "format": {"type": "json_schema", "name": "p", "strict": True, "schema": SCHEMA}
                },
            },
        ],
    )
    assert sdk_response(bodies["r0"]).output_text
    structured = sdk_response(bodies["r1"])
    jsonschema.validate(orjson.loads(structured.output_text), SCHEMA)
    assert structured.usage
    assert structured.usage.total_tokens > 0


@pytest.mark.parametrize(
    ("model", "dims", "expected"),
    [
        ("text-embedding-3-small", None, 1536),
        ("text-embedding-3-large", None, 3072),
        ("text-embedding-ada-002", None, 1536),
        ("text-embedding-3-large", 256, 256),
    ],
)
def test_embeddings_dimensions(
    client: openai.OpenAI, clock, model: str, dims: int | None, expected: int
) -> None:
    body: dict[str, Any] = {
        "model": model,
        "input": ["alpha", "beta"],
        **({"dimensions": dims} if dims else {}),
    }
    parsed = CreateEmbeddingResponse.model_validate(
        run(client, clock, "/v1/embeddings", [body, body])["r0"]
    )
    assert [len(d.embedding) for d in parsed.data] == [expected, expected]
    assert all(isinstance(x, float) for x in parsed.data[0].embedding)
    assert parsed.data[0].embedding != parsed.data[1].embedding
    assert sum(x * x for x in parsed.data[0].embedding) == pytest.approx(1.0, rel=1e-3)


def test_embeddings_deterministic_and_base64(client: openai.OpenAI, clock) -> None:
    bodies = run(
        client,
        clock,
        "/v1/embeddings",
        [
            {"model": "text-embedding-3-small", "input": "alpha"},
            {"model": "text-embedding-3-small", "input": ["alpha"]},
            {"model": "text-embedding-3-small", "input": "alpha", "encoding_format": "base64"},
        ],
    )
    assert bodies["r0"]["data"][0]["embedding"] == bodies["r1"]["data"][0]["embedding"]
    raw = base64.b64decode(bodies["r2"]["data"][0]["embedding"])
    assert len(raw) == 1536 * 4


def test_completions_and_moderations(client: openai.OpenAI, clock) -> None:
    completion = run(
        client, clock, "/v1/completions", [{"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}]
    )
    assert Completion.model_validate(completion["r0"]).choices[0].text
    moderation = run(
        client, clock, "/v1/moderations", [{"model": "omni-moderation-latest", "input": ["a", "b"]}]
    )
    parsed = ModerationCreateResponse.model_validate(moderation["r0"])
    assert len(parsed.results) == 2
    assert not parsed.results[0].flagged


def test_other_endpoint_generic_body(client: openai.OpenAI, clock) -> None:
    body = run(
        client, clock, "/v1/images/generations", [{"model": "gpt-image-1", "prompt": "a cat"}]
    )["r0"]
    assert body["model"] == "gpt-image-1"
    assert "usage" in body


class _Address(BaseModel):
    city: str
    zip_code: str = Field(min_length=5, max_length=5)


class _Step(BaseModel):
    title: str
    kind: Literal["call", "visit"]
    below_freezing: float = Field(le=-10)
    debt: int = Field(lt=0)
    children: list[_Step]
    fallback: _Step | None


class _Plan(BaseModel):
    name: str
    owner: _Address
    steps: list[_Step] = Field(min_length=1)
    due: datetime.date | None


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/responses"])
def test_structured_output_of_a_nested_recursive_model_validates(
    client: openai.OpenAI, clock, endpoint: str
) -> None:
    from dagster_openai_batch.core import RequestTemplate, build_requests

    template = RequestTemplate(
        endpoint=endpoint, model="gpt-4o-mini", prompt="Plan {topic}", response_model=_Plan
    )
    rows = [{"topic": f"t{i}"} for i in range(20)]
    bodies = run(client, clock, endpoint, [r.body for r in build_requests(rows, template)])
    schema = template.response_format()
    schema = (
        schema["text"]["format"]
        if endpoint == "/v1/responses"
        else schema["response_format"]["json_schema"]
    )
    for body in bodies.values():
        if endpoint == "/v1/responses":
            text = sdk_response(body).output_text
        else:
            text = ChatCompletion.model_validate(body).choices[0].message.content or ""
        jsonschema.validate(orjson.loads(text), schema["schema"])
        _Plan.model_validate_json(text)


def test_moderations_line_without_model_uses_the_default_model(
    client: openai.OpenAI, clock
) -> None:
    """The real moderations API defaults `model`; a batch line may omit it."""
    bodies = run(client, clock, "/v1/moderations", [{"input": "hello"}, {"input": "again"}])
    parsed = ModerationCreateResponse.model_validate(bodies["r0"])
    assert parsed.model == "omni-moderation-latest"


def test_responses_bodies_carry_the_real_fields(client: openai.OpenAI, clock) -> None:
    body = {
        "model": "gpt-4.1-mini",
        "input": "hello",
        "prompt_cache_key": "k1",
        "safety_identifier": "user-7",
        "text": {"verbosity": "low"},
    }
    got = run(client, clock, "/v1/responses", [body, {"model": "gpt-4.1-mini", "input": "x"}])
    first, plain = got["r0"], got["r1"]
    for field in (
        "billing",
        "completed_at",
        "max_tool_calls",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "top_logprobs",
    ):
        assert field in first, field
    assert first["billing"] == {"payer": "developer"}
    assert first["completed_at"] >= first["created_at"]
    assert (first["prompt_cache_key"], first["safety_identifier"]) == ("k1", "user-7")
    assert first["text"]["verbosity"] == "low"
    assert plain["text"]["verbosity"] == "medium"
    assert "cache_write_tokens" not in first["usage"]["input_tokens_details"]
    parsed = sdk_response(first)
    assert parsed.text is not None
    assert parsed.text.verbosity == "low"
    assert parsed.model == "gpt-4.1-mini-2025-04-14"


def test_embeddings_are_written_at_float32_precision(client: openai.OpenAI, clock) -> None:
    batch_id = start(
        client,
        [
            {
                "custom_id": "r0",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": "text-embedding-3-small", "input": "precision"},
            }
        ],
        endpoint="/v1/embeddings",
    )
    clock.advance(5)
    out = client.batches.retrieve(batch_id).output_file_id
    assert out
    raw = client.files.content(out).content.decode()
    numbers = re.findall(r"-?\d\.\d+(?:e-?\d+)?|-?0\.\d+", raw.split('"embedding":[')[1])
    assert len(numbers) >= 1536
    digits = [len(n.lstrip("-").split("e")[0].replace(".", "").lstrip("0")) for n in numbers]
    assert max(digits) <= 9  # float32's shortest round-trip form, not float64's 17 digits
    assert sum(digits) / len(digits) > 7  # and not rounded coarser
    values = orjson.loads(raw)["response"]["body"]["data"][0]["embedding"]
    assert abs(float(np.linalg.norm(np.asarray(values))) - 1) < 1e-6
