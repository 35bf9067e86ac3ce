"""The model catalogue: which models each batch endpoint serves, and the dated snapshot each name
resolves to (what `Batch.model` and the result bodies report).

Facts from OpenAI's model pages and Azure's global-batch availability table (2025-2026). A dated
name resolves to itself; a compatible service's own names come from the emulator's configuration.
"""

import hashlib
from typing import Final

_CHAT: Final[dict[str, str]] = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-2024-05-13": "gpt-4o-2024-05-13",
    "gpt-4o-2024-11-20": "gpt-4o-2024-11-20",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
    "gpt-4": "gpt-4-0613",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "gpt-5": "gpt-5-2025-08-07",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
    "gpt-5-nano": "gpt-5-nano-2025-08-07",
    "gpt-5.1": "gpt-5.1-2025-11-13",
    "o1": "o1-2024-12-17",
    "o1-mini": "o1-mini-2024-09-12",
    "o3": "o3-2025-04-16",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
}
_EMBEDDINGS: Final = ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")
_MODERATIONS: Final = ("omni-moderation-latest", "omni-moderation-2024-09-26")
_COMPLETIONS: Final = ("gpt-3.5-turbo-instruct", "davinci-002", "babbage-002")
_IMAGES: Final = ("dall-e-2", "dall-e-3", "gpt-image-1")


def _self(names: tuple[str, ...]) -> dict[str, str]:
    return {name: name for name in names}


SERVED: Final[dict[str, dict[str, str]]] = {
    "/v1/chat/completions": _CHAT,
    "/v1/responses": _CHAT,
    "/v1/embeddings": _self(_EMBEDDINGS),
    "/v1/completions": _self(_COMPLETIONS),
    "/v1/moderations": _self(_MODERATIONS),
    "/v1/images/generations": _self(_IMAGES),
    "/v1/images/edits": _self(("dall-e-2", "gpt-image-1")),
    "/v1/videos": _self(("sora-2", "sora-2-pro")),
}
"""Endpoint -> {name a request may use: the dated snapshot it resolves to}."""

DEFAULT_AZURE_DEPLOYMENTS: Final[dict[str, str]] = {name: name for name in (*_CHAT, *_EMBEDDINGS)}
"""Deployment name -> model: Azure's portal names a deployment after its model by default."""


def resolve(endpoint: str, name: str, extra: dict[str, str], accept_any: bool) -> str | None:
    """The snapshot `name` resolves to on `endpoint`, or None when that endpoint does not serve it.

    Dated snapshots resolve to themselves; `extra` (name -> snapshot) is served on every endpoint;
    `accept_any` (a compatible service) serves any name as itself.
    """
    served = SERVED.get(endpoint, {})
    if name in served:
        return served[name]
    if name in served.values():
        return name
    if name in extra:
        return extra[name]
    return name if accept_any else None


def is_reasoning(model: str) -> bool:
    """o-series and gpt-5 models: no `logprobs` in chat choices, reasoning tokens in usage."""
    return model.startswith(("o1", "o3", "o4", "gpt-5"))


def system_fingerprint(model: str) -> str | None:
    """`fp_` + 10 hex, fixed per snapshot; None for the gpt-5 family, which reports none."""
    if model.startswith("gpt-5"):
        return None
    return "fp_" + hashlib.blake2b(model.encode(), digest_size=5).hexdigest()
