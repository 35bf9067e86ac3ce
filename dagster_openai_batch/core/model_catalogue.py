"""The OpenAI models this library knows, and which batch endpoints serve each.

A dated snapshot (``gpt-4o-mini-2024-07-18``) is its base model (``gpt-4o-mini``). A known model
sent to an endpoint that does not serve it is refused before upload (the service would fail every
line); a model this catalogue does not know is only warned about: new models and fine-tunes
appear faster than any list.

>>> base_model("gpt-4o-mini-2024-07-18"), base_model("ft:gpt-4o-mini-2024-07-18:acme::abc123")
('gpt-4o-mini', 'gpt-4o-mini')
>>> model_endpoint_problem("/v1/chat/completions", "text-embedding-3-small")
"model 'text-embedding-3-small' is an embeddings model: /v1/chat/completions does not serve it"
>>> model_endpoint_problem("/v1/embeddings", "text-embedding-3-small-2025-01-01") is None
True
"""

import logging
import re
from typing import Final

from .vocabulary import BatchEndpoint

logger = logging.getLogger("dagster_openai_batch")

_CONVERSATION: Final = frozenset({"/v1/chat/completions", "/v1/responses"})
_FAMILIES: Final[dict[str, tuple[frozenset[str], tuple[str, ...]]]] = {
    "chat": (
        _CONVERSATION,
        (
            "gpt-5",
            "gpt-5-mini",
            "gpt-5-nano",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4-turbo",
            "gpt-4",
            "gpt-3.5-turbo",
            "o1",
            "o3",
            "o3-mini",
            "o4-mini",
        ),
    ),
    "completions": (
        frozenset({"/v1/completions"}),
        ("gpt-3.5-turbo-instruct", "babbage-002", "davinci-002"),
    ),
    "embeddings": (
        frozenset({"/v1/embeddings"}),
        ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"),
    ),
    "moderation": (
        frozenset({"/v1/moderations"}),
        ("omni-moderation-latest", "omni-moderation", "text-moderation-latest"),
    ),
    "image": (
        frozenset({"/v1/images/generations", "/v1/images/edits"}),
        ("gpt-image-1", "dall-e-2", "dall-e-3"),
    ),
    "video": (frozenset({"/v1/videos"}), ("sora-2", "sora-2-pro")),
}
"""Family: (the endpoints serving it, its base models)."""

KNOWN_MODELS: Final[dict[str, tuple[str, frozenset[str]]]] = {
    model: (family, endpoints)
    for family, (endpoints, models) in _FAMILIES.items()
    for model in models
}
"""Every base model: (its family, the batch endpoints serving it)."""

_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
_warned: set[str] = set()


def base_model(model: str) -> str:
    """``model`` without its date (``-2024-07-18`` or ``-0125``) or fine-tune wrapping."""
    if model.startswith("ft:"):
        model = model.split(":")[1]
    return _SNAPSHOT.sub("", model)


def known_models(endpoint: BatchEndpoint | str) -> list[str]:
    """The base models the catalogue knows ``endpoint`` serves."""
    return [model for model, (_, endpoints) in KNOWN_MODELS.items() if endpoint in endpoints]


def model_endpoint_problem(endpoint: BatchEndpoint | str, model: str) -> str | None:
    """Why ``endpoint`` cannot serve the known ``model``, or None (served, or not known)."""
    found = KNOWN_MODELS.get(base_model(model))
    if found is None or endpoint in found[1]:
        return None
    family = found[0]
    article = "an" if family[0] in "aeiou" else "a"
    return f"model {model!r} is {article} {family} model: {endpoint} does not serve it"


def unknown_model_warning(endpoint: BatchEndpoint | str, model: str) -> str | None:
    """A warning about ``model`` when the catalogue does not know it, naming the models it knows
    ``endpoint`` serves; None for a known model."""
    if base_model(model) in KNOWN_MODELS:
        return None
    return (
        f"Model {model!r} is not in this library's catalogue, so it cannot tell whether "
        f"{endpoint} serves it (it knows: {', '.join(known_models(endpoint)) or 'none'}). If the "
        "batch fails with model_not_found, check the name."
    )


def log_once(warning: str) -> None:
    """Log ``warning`` on the ``dagster_openai_batch`` logger, once per process."""
    if warning not in _warned:
        _warned.add(warning)
        logger.warning(warning)
