"""The usual success line of the text endpoints (chat, completions, responses), decoded into typed
structs: only the fields a results table keeps are built, the rest of the line is skipped, and
the response body is kept as the bytes the service wrote.

A line of any other shape (a failure, an unexpected type, a missing body) is not decoded here:
:meth:`SuccessLines.decode` answers None and the caller reads it the general way.
"""

from collections.abc import Callable
from typing import Any

import msgspec
import orjson


class _Details(msgspec.Struct):
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    prompt_tokens_details: _Details | None = None
    input_tokens_details: _Details | None = None
    completion_tokens_details: _Details | None = None
    output_tokens_details: _Details | None = None


class _Message(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None
    tool_calls: Any = None


class _Choice(msgspec.Struct):
    message: _Message | None = None
    text: str | None = None


class _OutputContent(msgspec.Struct):
    type: Any = None
    text: str = ""


class _OutputItem(msgspec.Struct):
    type: Any = None
    content: list[_OutputContent] | None = None


class _Body(msgspec.Struct):
    model: str | None = None
    usage: _Usage | None = None
    choices: list[_Choice] | None = None
    output_text: str | None = None
    output: list[_OutputItem] | None = None


class _Response(msgspec.Struct):
    status_code: int | None = None
    request_id: str | None = None
    body: msgspec.Raw = msgspec.Raw(b"")


class _Line(msgspec.Struct):
    custom_id: Any
    response: _Response | None = None


def _chat_answer(body: _Body) -> str | None:
    message = body.choices[0].message if body.choices else None
    if message is None:
        return None
    if message.content is not None:
        return message.content
    if message.tool_calls:
        return orjson.dumps(message.tool_calls).decode()
    return message.refusal


def _completion_answer(body: _Body) -> str | None:
    return body.choices[0].text if body.choices else None


def _responses_answer(body: _Body) -> str | None:
    if body.output_text is not None:
        return body.output_text
    texts = [
        c.text
        for item in body.output or []
        if item.type == "message"
        for c in item.content or []
        if c.type == "output_text"
    ]
    return "".join(texts) if texts else None


_ANSWERS: dict[str, Callable[[_Body], str | None]] = {
    "/v1/chat/completions": _chat_answer,
    "/v1/completions": _completion_answer,
    "/v1/responses": _responses_answer,
}


def tokens(
    inp: int | None, cached: int | None, out: int | None, reasoning: int | None
) -> tuple[int | None, int | None, int | None, int | None]:
    """(input, cached, output, reasoning) tokens as a results table holds them: output 0 where
    only input is known, cached and reasoning 0 where their total is known."""
    if out is None and inp is not None:
        out = 0
    return (
        inp,
        cached or (0 if inp is not None else None),
        out,
        reasoning or (0 if out is not None else None),
    )


Success = tuple[
    Any, bytes, str | None, int | None, int | None, int | None, int | None, str | None, str | None
]
"""What a results table keeps of a success line: custom_id, response body (JSON bytes), answer,
input, cached, output and reasoning tokens, request id, model."""


class SuccessLines:
    """Decoder of an endpoint's success lines; None for endpoints it has no shape for.

    Example:
        >>> lines = SuccessLines.for_endpoint("/v1/completions")
        >>> body = b'{"choices": [{"text": "hi"}], "usage": {"prompt_tokens": 3}}'
        >>> line = b'{"custom_id": "a", "response": {"status_code": 200, "body": %s}}' % body
        >>> lines.decode(line)[1:5]
        (b'{"choices": [{"text": "hi"}], "usage": {"prompt_tokens": 3}}', 'hi', 3, 0)
        >>> lines.decode(b'{"custom_id": "a", "error": {"code": "batch_expired"}}') is None
        True
    """

    def __init__(self, answer: Callable[[_Body], str | None]) -> None:
        self._answer = answer
        self._line = msgspec.json.Decoder(_Line).decode
        self._body = msgspec.json.Decoder(_Body).decode

    @classmethod
    def for_endpoint(cls, endpoint: str) -> "SuccessLines | None":
        answer = _ANSWERS.get(endpoint)
        return cls(answer) if answer is not None else None

    def decode(self, raw: bytes) -> Success | None:
        """The success in line ``raw``, or None if the line is not one of the usual shape. The body
        is the line's bytes, not checked to be UTF-8 (the caller checks them in bulk)."""
        try:
            line = self._line(raw)
            response = line.response
            if response is None or response.status_code != 200:
                return None
            body = self._body(response.body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
        usage = body.usage
        if usage is None:
            return (
                line.custom_id,
                bytes(response.body),
                self._answer(body),
                None,
                None,
                None,
                None,
                response.request_id,
                body.model,
            )
        prompt, completion = usage.prompt_tokens_details, usage.completion_tokens_details
        if prompt is None:
            prompt = usage.input_tokens_details
        elif usage.input_tokens_details is not None:
            return None  # both APIs' names: which counts is the general reader's rule
        if completion is None:
            completion = usage.output_tokens_details
        elif usage.output_tokens_details is not None:
            return None
        inp = usage.prompt_tokens if usage.prompt_tokens is not None else usage.input_tokens
        out = usage.completion_tokens
        return (
            line.custom_id,
            bytes(response.body),
            self._answer(body),
            *tokens(
                inp,
                prompt.cached_tokens if prompt is not None else None,
                out if out is not None else usage.output_tokens,
                completion.reasoning_tokens if completion is not None else None,
            ),
            response.request_id,
            body.model,
        )
