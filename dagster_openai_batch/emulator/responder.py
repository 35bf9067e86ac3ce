"""Deterministic fake responses for each batch endpoint: the same body in, the same body out."""

from __future__ import annotations

import base64
import hashlib
import random
from typing import Any, NamedTuple

import numpy as np
import orjson

from .ids import alnum, timed_hex
from .models import is_reasoning, system_fingerprint
from .schema_instance import instance_for

_WORDS = (
    "the",
    "batch",
    "emulator",
    "answers",
    "every",
    "request",
    "with",
    "a",
    "short",
    "deterministic",
    "reply",
    "so",
    "tests",
    "can",
    "check",
    "results",
    "without",
    "network",
    "access",
    "or",
    "cost",
)
_EMBEDDING_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


class Usage(NamedTuple):
    """Token counts of one response, in the batch `usage` vocabulary."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0


def _tokens(value: Any) -> int:
    """About one token per four characters of the JSON form, at least 1."""
    return max(1, len(value if isinstance(value, str) else orjson.dumps(value)) // 4)


def _digest(body: dict[str, Any]) -> bytes:
    return hashlib.blake2b(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def _text(rng: random.Random, max_tokens: int | None) -> str:
    n = rng.randint(6, 30)
    if max_tokens:
        n = max(1, min(n, max_tokens))
    return " ".join(rng.choices(_WORDS, k=n)).capitalize() + "."


def respond(
    endpoint: str, body: dict[str, Any], *, custom_id: str, created: int, model: str
) -> tuple[dict[str, Any], Usage]:
    """The 200 response body `endpoint` would return for `body` from `model` (the resolved
    snapshot), and its token usage."""
    digest = _digest(body)
    rng = random.Random(digest)
    rid = hashlib.blake2b(digest + custom_id.encode(), digest_size=12).hexdigest()
    handler = _HANDLERS.get(endpoint, _generic)
    return handler(body, rng, rid=rid, model=model, created=created, digest=digest)


def _chat(
    body: dict[str, Any], rng: random.Random, *, rid: str, model: str, created: int, digest: bytes
) -> tuple[dict[str, Any], Usage]:
    prompt_tokens = _tokens(body.get("messages", []))
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    fmt = body.get("response_format") or {}
    tool_choice = body.get("tool_choice")
    choices, completion_tokens = [], 0
    for index in range(int(body.get("n") or 1)):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "annotations": [],
        }
        finish = "stop"
        tool = _forced_tool(body.get("tools") or [], tool_choice)
        if tool is not None:
            args = orjson.dumps(
                instance_for(tool.get("parameters") or {"type": "object"}, rng)
            ).decode()
            message["tool_calls"] = [
                {
                    "id": alnum("call_", 24, rid, str(index)),
                    "type": "function",
                    "function": {"name": tool["name"], "arguments": args},
                }
            ]
            finish, completion_tokens = "tool_calls", completion_tokens + _tokens(args)
        else:
            message["content"] = _structured(
                fmt.get("type"), fmt.get("json_schema", {}).get("schema"), rng, max_tokens
            )
            completion_tokens += _tokens(message["content"])
        choice = {"index": index, "message": message, "logprobs": None, "finish_reason": finish}
        if is_reasoning(model):
            del choice["logprobs"]
        choices.append(choice)
    return {
        "id": alnum("chatcmpl-", 29, rid),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "service_tier": "default",
        "system_fingerprint": system_fingerprint(model),
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    }, Usage(prompt_tokens, completion_tokens)


def _forced_tool(tools: list[dict[str, Any]], tool_choice: Any) -> dict[str, Any] | None:
    """The function the model must call (`tool_choice` "required" or a named function), else
    None."""
    functions: list[dict[str, Any]] = [
        t["function"] for t in tools if isinstance(t, dict) and t.get("type") == "function"
    ]
    if not functions:
        return None
    if tool_choice == "required":
        return functions[0]
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
        chosen: dict[str, Any] | None = next((f for f in functions if f.get("name") == name), None)
        return chosen
    return None


def _structured(
    kind: str | None, schema: dict[str, Any] | None, rng: random.Random, max_tokens: int | None
) -> str:
    if kind == "json_schema":
        return orjson.dumps(instance_for(schema or {"type": "object"}, rng)).decode()
    if kind == "json_object":
        return orjson.dumps({"answer": _text(rng, max_tokens)}).decode()
    return _text(rng, max_tokens)


def _completion(
    body: dict[str, Any], rng: random.Random, *, rid: str, model: str, created: int, digest: bytes
) -> tuple[dict[str, Any], Usage]:
    prompts = body.get("prompt", "")
    prompts = (
        prompts
        if isinstance(prompts, list) and prompts and isinstance(prompts[0], str)
        else [prompts]
    )
    choices = [
        {
            "text": " " + _text(rng, body.get("max_tokens")),
            "index": i,
            "logprobs": None,
            "finish_reason": "stop",
        }
        for i in range(len(prompts) * int(body.get("n") or 1))
    ]
    prompt_tokens = _tokens(body.get("prompt", ""))
    completion_tokens = sum(_tokens(c["text"]) for c in choices)
    return {
        "id": alnum("cmpl-", 29, rid),
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
        "system_fingerprint": system_fingerprint(model),
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }, Usage(prompt_tokens, completion_tokens)


def _embeddings(
    body: dict[str, Any], rng: random.Random, *, rid: str, model: str, created: int, digest: bytes
) -> tuple[dict[str, Any], Usage]:
    inputs = body.get("input", "")
    if not isinstance(inputs, list) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    dim = int(body.get("dimensions") or _EMBEDDING_DIMS.get(model, 1536))
    data = []
    for index, item in enumerate(inputs):
        seed = int.from_bytes(
            hashlib.blake2b(orjson.dumps(item), digest_size=8, key=model.encode()[:64]).digest()
        )
        vec = np.random.default_rng(seed).standard_normal(dim, dtype=np.float32)
        vec /= np.linalg.norm(vec)
        # Float32 as the service writes it: the shortest decimal of each float32 (~8 digits).
        value: Any = (
            base64.b64encode(vec.tobytes()).decode()
            if body.get("encoding_format") == "base64"
            else orjson.loads(orjson.dumps(vec, option=orjson.OPT_SERIALIZE_NUMPY))
        )
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(_tokens(i) for i in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }, Usage(tokens, 0)


def _responses(
    body: dict[str, Any], rng: random.Random, *, rid: str, model: str, created: int, digest: bytes
) -> tuple[dict[str, Any], Usage]:
    fmt = (body.get("text") or {}).get("format") or {"type": "text"}
    max_tokens = body.get("max_output_tokens")
    text = _structured(fmt.get("type"), fmt.get("schema"), rng, max_tokens)
    input_tokens = _tokens(body.get("input", "")) + (
        _tokens(body["instructions"]) if body.get("instructions") else 0
    )
    output_tokens = _tokens(text)
    return {
        "id": timed_hex("resp_", created, 50, rid),
        "object": "response",
        "created_at": created,
        "status": "completed",
        "background": False,
        "billing": {"payer": "developer"},
        "completed_at": created,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": max_tokens,
        "max_tool_calls": body.get("max_tool_calls"),
        "model": model,
        "output": [
            {
                "type": "message",
                "id": timed_hex("msg_", created, 50, rid, "message"),
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                ],
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "prompt_cache_retention": body.get("prompt_cache_retention"),
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": True,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": fmt, "verbosity": (body.get("text") or {}).get("verbosity", "medium")},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "user": None,
        "metadata": body.get("metadata", {}),
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }, Usage(input_tokens, output_tokens)


def _moderations(
    body: dict[str, Any], rng: random.Random, *, rid: str, model: str, created: int, digest: bytes
) -> tuple[dict[str, Any], Usage]:
    inputs = body.get("input", "")
    # One result per string of a list; a list of multi-modal parts (text, image_url) is one input.
    several = isinstance(inputs, list) and not any(isinstance(i, dict) for i in inputs)
    inputs = inputs if several else [inputs]
    results = [
        {
            "flagged": False,
            "categories": dict.fromkeys(_MODERATION_CATEGORIES, False),
            "category_scores": {c: round(rng.random() * 1e-3, 6) for c in _MODERATION_CATEGORIES},
            "category_applied_input_types": {c: ["text"] for c in _MODERATION_CATEGORIES},
        }
        for _ in inputs
    ]
    return {"id": alnum("modr-", 29, rid), "model": model, "results": results}, Usage(
        _tokens(inputs), 0
    )


def _generic(
    body: dict[str, Any], rng: random.Random, *, rid: str, model: str, created: int, digest: bytes
) -> tuple[dict[str, Any], Usage]:
    # Images/videos are not emulated in depth: a plausible 200 body with usage is enough for batch
    # plumbing.
    tokens = _tokens(body)
    return {
        "id": f"emu_{rid}",
        "object": "emulated.response",
        "created": created,
        "model": model,
        "data": [],
        "usage": {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens},
    }, Usage(tokens, 0)


_HANDLERS = {
    "/v1/chat/completions": _chat,
    "/v1/completions": _completion,
    "/v1/embeddings": _embeddings,
    "/v1/responses": _responses,
    "/v1/moderations": _moderations,
}


def failure_body(kind: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """An individual request failure as the real service writes it: (status, body with `error`)."""
    if kind == 400:
        tokens = 128_000 + _tokens(body)
        return 400, {
            "error": {
                "message": "This model's maximum context length is 128000 tokens. However, your"
                f" messages resulted in {tokens} tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }
    return 500, {
        "error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": "server_error",
        }
    }
