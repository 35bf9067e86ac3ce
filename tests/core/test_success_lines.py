"""The typed reader of usual success lines gives what the general reader gives, line for line, and
leaves every other shape to it.

Lines are drawn (seeded) over the shapes services write: both APIs' usage names, missing and null
fields, tool calls, refusals, Responses output items, escapes, non-ASCII text, spaces between
tokens, numbers as custom_ids. The general reader is the module's own (``_usage`` and the answer
functions over ``orjson.loads``); a line the typed reader declines must be one the general reader
reads differently (a failure) or one of a shape it has no struct for.
"""

import json
import random
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from dagster_openai_batch.core.result_lines import (
    _TEXT_ANSWERS,
    ResultLineError,
    Segment,
    _usage,
    parse_segments,
)
from dagster_openai_batch.core.success_lines import SuccessLines

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/responses")


def _maybe(rng: random.Random, value: Any) -> Any:
    return rng.choice([value, value, value, None, "absent"])


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value != "absent":
        target[key] = value


def _usage_object(rng: random.Random) -> Any:
    names = rng.choice(
        [
            ("prompt_tokens", "completion_tokens", "prompt_tokens_details"),
            ("input_tokens", "output_tokens", "input_tokens_details"),
        ]
    )
    usage: dict[str, Any] = {}
    _put(usage, names[0], _maybe(rng, rng.randint(0, 500)))
    _put(usage, names[1], _maybe(rng, rng.randint(0, 500)))
    _put(usage, names[2], _maybe(rng, {"cached_tokens": rng.choice([0, 7, None])}))
    details = rng.choice(["completion_tokens_details", "output_tokens_details"])
    _put(usage, details, _maybe(rng, {"reasoning_tokens": rng.choice([0, 11]), "audio": 0}))
    if rng.random() < 0.1:  # both APIs' detail names: left to the general reader
        usage["input_tokens_details"] = {"cached_tokens": 3}
        usage["prompt_tokens_details"] = {}
    return rng.choice([usage, usage, usage, None, "absent"])


def _body(rng: random.Random, endpoint: str) -> dict[str, Any]:
    text = rng.choice(["Paris", "ünïcødé ✓ \u2028", 'a "quoted"\\ answer', "", "x" * 300])
    body: dict[str, Any] = {"id": "resp_1", "object": "x", "created": 1}
    _put(body, "model", _maybe(rng, "gpt-4o-mini-2024-07-18"))
    _put(body, "usage", _usage_object(rng))
    if endpoint == "/v1/chat/completions":
        message: dict[str, Any] = {"role": "assistant"}
        _put(message, "content", _maybe(rng, text))
        _put(message, "refusal", _maybe(rng, "I can't"))
        if rng.random() < 0.3:
            message["tool_calls"] = rng.choice(
                [
                    [],
                    [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                ]
            )
        _put(body, "choices", rng.choice([[{"index": 0, "message": message}], [], "absent"]))
    elif endpoint == "/v1/completions":
        choice: dict[str, Any] = {"index": 0}
        _put(choice, "text", _maybe(rng, text))
        _put(body, "choices", rng.choice([[choice], [], "absent"]))
    else:
        _put(body, "output_text", rng.choice([text, "absent", "absent"]))
        items = [
            {"type": "reasoning", "summary": []},
            {"type": "message", "content": [{"type": "output_text", "text": text}]},
            {"type": "message", "content": [{"type": "refusal", "refusal": "no"}]},
            {"type": "function_call", "name": "f", "arguments": "{}"},
        ]
        _put(body, "output", rng.choice([rng.sample(items, k=rng.randint(0, 4)), "absent"]))
    return body


def _line(rng: random.Random, endpoint: str, n: int) -> bytes:
    cid: Any = rng.choice([f"r{n}", n, f"ü-{n}"])
    draw = rng.random()
    if draw < 0.8:
        response: Any = {"status_code": 200, "request_id": f"req_{n}"}
        _put(response, "body", rng.choice([_body(rng, endpoint)] * 9 + ["absent", None]))
        line = {"id": f"batch_req_{n}", "custom_id": cid, "response": response, "error": None}
    elif draw < 0.9:
        error = {"error": {"message": "bad", "type": "invalid_request_error", "code": None}}
        response = {"status_code": 400, "request_id": f"req_{n}", "body": error}
        line = {"id": f"batch_req_{n}", "custom_id": cid, "response": response, "error": None}
    else:
        error = {"code": "batch_expired", "message": "expired"}
        line = {"id": f"batch_req_{n}", "custom_id": cid, "response": None, "error": error}
    if rng.random() < 0.3:  # another service's writer: spaces, ASCII escapes
        return json.dumps(line).encode()
    return orjson.dumps(line)


def _general(raw: bytes, endpoint: str) -> tuple[Any, ...] | None:
    """What the general reader keeps of a success line (None for other lines)."""
    line = orjson.loads(raw)
    response = line.get("response")
    if not isinstance(response, dict) or response.get("status_code") != 200:
        return None
    body = response.get("body")
    body = body if isinstance(body, dict) else {}
    answer = _TEXT_ANSWERS[endpoint](body)
    return (line["custom_id"], body, answer, *_usage(body), response.get("request_id"),
            body.get("model"))  # fmt: skip


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("seed", range(4))
def test_typed_lines_read_as_the_general_reader_reads_them(endpoint: str, seed: int) -> None:
    rng = random.Random(seed)
    lines = SuccessLines.for_endpoint(endpoint)
    assert lines is not None
    typed = 0
    for n in range(600):
        raw = _line(rng, endpoint, n)
        general = _general(raw, endpoint)
        success = lines.decode(raw)
        if success is None:
            assert general is None or _unusual(raw), raw
            continue
        assert general is not None, raw
        cid, body, answer, *rest = success
        assert (cid, orjson.loads(body), answer, *rest) == general, raw
        typed += 1
    assert typed > 300


def _unusual(raw: bytes) -> bool:
    """A success the typed reader is meant to leave to the general one: no body object, or usage
    under both APIs' detail names."""
    body = orjson.loads(raw)["response"].get("body")
    if not isinstance(body, dict):
        return True
    usage = body.get("usage")
    return isinstance(usage, dict) and {"prompt_tokens_details", "input_tokens_details"} <= set(
        usage
    )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"custom_id": "a", "response": {"status_code": 500, "body": {}}}',
        b'{"custom_id": "a", "response": null, "error": {"code": "batch_expired"}}',
        b'{"custom_id": "a", "response": {"status_code": 200}}',
        b'{"custom_id": "a", "response": {"status_code": 200, "body": []}}',
        b'{"custom_id": "a", "response": {"status_code": 200, "body": {"model": 4}}}',
        b'{"custom_id": "a", "response": {"status_code": 200, "body": {"usage": {"prompt_tokens": '
        b"1.5}}}}",
        b'{"custom_id": "a", "response": {"status_code": 200, "body": {"choices": [{"message": '
        b'{"content": [{"type": "text", "text": "parts"}]}}]}}}',
        b'{"response": {"status_code": 200, "body": {}}}',
        b"[1, 2]",
        b"not json",
    ],
)
def test_other_shapes_are_left_to_the_general_reader(raw: bytes) -> None:
    lines = SuccessLines.for_endpoint("/v1/chat/completions")
    assert lines is not None
    assert lines.decode(raw) is None


def test_embeddings_and_moderations_have_no_typed_reader() -> None:
    assert SuccessLines.for_endpoint("/v1/embeddings") is None
    assert SuccessLines.for_endpoint("/v1/moderations") is None


def test_a_body_that_is_not_utf8_names_its_custom_id(tmp_path: Path) -> None:
    good = b'{"custom_id": "ok", "response": {"status_code": 200, "body": {"model": "m"}}}\n'
    bad = b'{"custom_id": "broken", "response": {"status_code": 200, "body": {"x": "\xff"}}}\n'
    path = tmp_path / "out.jsonl"
    path.write_bytes(good + bad)
    with pytest.raises(ResultLineError, match=r"out\.jsonl: the line of custom_id 'broken' is not"):
        parse_segments(
            [Segment(str(path), 0, path.stat().st_size, None)],
            "/v1/chat/completions",
            str(tmp_path / "spill.arrow"),
        )
    path.write_bytes(good * 3)
    spill = parse_segments(
        [Segment(str(path), 0, path.stat().st_size, None)],
        "/v1/chat/completions",
        str(tmp_path / "spill.arrow"),
    )
    with pa.memory_map(spill.path) as source:
        table = pa.ipc.open_file(source).read_all()
    assert table.column("response_body").to_pylist() == ['{"model": "m"}'] * 3
    assert table.column("model").to_pylist() == ["m"] * 3
