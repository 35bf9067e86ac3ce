"""What each endpoint requires of a request body, and the 400 it answers a body it refuses.

Required and known parameters are read from the SDK's request types (`...CreateParams`), as the
real endpoints accept what the SDK sends. A missing required parameter fails the whole batch in
validation; a body the endpoint refuses fails only its own request (a 400 line in the error file).
"""

import typing
from functools import cache
from typing import Any, Final, Required

from openai.types import (
    completion_create_params,
    embedding_create_params,
    image_edit_params,
    image_generate_params,
    moderation_create_params,
    video_create_params,
)
from openai.types.chat import ChatCompletionMessageParam
from openai.types.chat import completion_create_params as chat_create_params
from openai.types.responses import response_create_params

from .service_rules import DEFAULT_MODELS

_PARAMS: Final[dict[str, Any]] = {
    "/v1/chat/completions": chat_create_params.CompletionCreateParamsBase,
    "/v1/completions": completion_create_params.CompletionCreateParamsBase,
    "/v1/embeddings": embedding_create_params.EmbeddingCreateParams,
    "/v1/responses": response_create_params.ResponseCreateParamsBase,
    "/v1/moderations": moderation_create_params.ModerationCreateParams,
    "/v1/images/generations": image_generate_params.ImageGenerateParamsBase,
    "/v1/images/edits": image_edit_params.ImageEditParamsBase,
    "/v1/videos": video_create_params.VideoCreateParams,
}
_ROLES: Final = ("system", "assistant", "user", "function", "tool", "developer")
_INTEGERS: Final = frozenset(
    ("n", "max_tokens", "max_completion_tokens", "max_output_tokens", "seed")
)
_NUMBERS: Final = frozenset(("temperature", "top_p", "frequency_penalty", "presence_penalty"))
_TYPED: Final = _INTEGERS | _NUMBERS
_JSON_TYPES: Final = {
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def _hints(params: Any) -> dict[str, Any]:
    return typing.get_type_hints(params, include_extras=True)


@cache
def known_parameters(endpoint: str) -> frozenset[str]:
    """Top-level body parameters `endpoint` accepts (`stream` too: refused later as unsupported)."""
    return frozenset(_hints(_PARAMS[endpoint])) | {"stream"}


@cache
def required_parameters(endpoint: str) -> tuple[str, ...]:
    """Body parameters `endpoint` requires: `model` unless it has a default, and the SDK's
    `Required` ones."""
    required = [] if endpoint in DEFAULT_MODELS else ["model"]
    for name, hint in _hints(_PARAMS[endpoint]).items():
        if typing.get_origin(hint) is Required and name not in required:
            required.append(name)
    return tuple(required)


@cache
def _message_keys() -> frozenset[str]:
    return frozenset(k for m in typing.get_args(ChatCompletionMessageParam) for k in _hints(m))


def _type_name(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "an object")


def _error(message: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


def _invalid_type(param: str, expected: str, value: Any) -> dict[str, Any]:
    return _error(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param,
        "invalid_type",
    )


def refusal(endpoint: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The 400 error body `endpoint` answers `body` with, or None if it accepts it."""
    unknown = body.keys() - known_parameters(endpoint)
    if unknown:
        return _error(f"Unrecognized request argument supplied: {min(unknown)}", None, None)
    for name in sorted(body.keys() & _TYPED):
        value, integer = body[name], name in _INTEGERS
        allowed = int if integer else int | float
        if value is not None and (isinstance(value, bool) or not isinstance(value, allowed)):
            return _invalid_type(name, "an integer" if integer else "a decimal", value)
    if endpoint == "/v1/chat/completions":
        return _messages_refusal(body["messages"])
    if endpoint in ("/v1/embeddings", "/v1/moderations", "/v1/responses") and "input" in body:
        value = body["input"]
        if not isinstance(value, str | list) or value in ("", []):
            return _error(
                "'$.input' is invalid. Please check the API reference:"
                " https://platform.openai.com/docs/api-reference.",
                None,
                None,
            )
    return None


def _messages_refusal(messages: Any) -> dict[str, Any] | None:
    if not isinstance(messages, list):
        return _invalid_type("messages", "an array", messages)
    if not messages:
        return _error(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an"
            " empty array instead.",
            "messages",
            "empty_array",
        )
    known = _message_keys()
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            return _invalid_type(param, "an object", message)
        extra = message.keys() - known
        if extra:
            return _error(
                f"Additional properties are not allowed ('{min(extra)}' was unexpected) -"
                f" 'messages.{i}'",
                None,
                None,
            )
        role = message.get("role")
        if role not in _ROLES:
            return _error(
                f"Invalid value: '{role}'. Supported values are: "
                + ", ".join(f"'{r}'" for r in _ROLES[:-1])
                + f", and '{_ROLES[-1]}'.",
                f"{param}.role",
                "invalid_value",
            )
        content = message.get("content")
        if not isinstance(content, str | list) and not (content is None and role == "assistant"):
            return _invalid_type(f"{param}.content", "one of a string or array of objects", content)
    return None
