"""What differs between the services that speak the Batch API: a :class:`ServiceProfile`.

OpenAI, Azure OpenAI and OpenAI-compatible services (Groq, LiteLLM, SGLang…) share the routes and
shapes, not the limits: Azure takes 100,000 requests per file, Groq completion windows up to 7 days,
and Azure's ``model`` is a deployment name the library cannot know. The resource picks the profile
of its backend; the input writer and the batch client follow it.

>>> profile_for("azure").max_requests_per_file
100000
>>> profile_for("compatible", completion_window="7d").completion_window
'7d'
>>> profile_for("openai", completion_window="7d")
Traceback (most recent call last):
...
ValueError: completion_window '7d' is not offered by openai: it takes only '24h'. ...
"""

import re
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from .vocabulary import (
    COMPLETION_WINDOW,
    MAX_EMBEDDING_INPUTS,
    MAX_FILE_BYTES,
    MAX_REQUESTS_PER_FILE,
)

ServiceKind = Literal["emulator", "openai", "azure", "compatible"]
"""The kinds of service a resource may talk to."""

AZURE_MAX_REQUESTS_PER_FILE: Final = 100_000
"""Requests per input file on Azure OpenAI (global batch)."""
MAX_REQUESTS_ANY_SERVICE: Final = AZURE_MAX_REQUESTS_PER_FILE
"""The most requests per file any known service takes: the bound of a user's own limit."""
_WINDOW = re.compile(r"^[1-9][0-9]*[hd]$")


class ServiceProfile(BaseModel):
    """The limits and habits of one kind of service."""

    model_config = ConfigDict(frozen=True)

    kind: ServiceKind
    max_requests_per_file: int = MAX_REQUESTS_PER_FILE
    max_file_bytes: int = MAX_FILE_BYTES
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS
    completion_window: str = COMPLETION_WINDOW
    """Sent with every create: ``24h`` on OpenAI and Azure, up to ``7d`` on Groq."""
    model_names_known: bool = True
    """Whether ``model`` is an OpenAI model name (warn when it is not in the catalogue); on Azure
    it is a deployment name, on compatible services the service's own."""


OPENAI_PROFILE: Final = ServiceProfile(kind="openai")
"""api.openai.com: 50,000 requests and 200 MB per file, a 24 h window."""


def profile_for(kind: ServiceKind, *, completion_window: str = COMPLETION_WINDOW) -> ServiceProfile:
    """The profile of a service of ``kind``; ``completion_window`` other than ``24h`` only for a
    compatible service (``ValueError`` otherwise, or for a window not written like ``48h``/``7d``).
    """
    if not _WINDOW.match(completion_window):
        raise ValueError(
            f"completion_window {completion_window!r} is not a window: write hours or days, "
            "e.g. '24h' or '7d'."
        )
    if completion_window != COMPLETION_WINDOW and kind != "compatible":
        raise ValueError(
            f"completion_window {completion_window!r} is not offered by {kind}: it takes only "
            f"{COMPLETION_WINDOW!r}. Longer windows are for compatible services (base_url), "
            "e.g. Groq's up to '7d'."
        )
    if kind == "azure":
        return ServiceProfile(
            kind=kind, max_requests_per_file=AZURE_MAX_REQUESTS_PER_FILE, model_names_known=False
        )
    if kind == "compatible":
        return ServiceProfile(
            kind=kind, completion_window=completion_window, model_names_known=False
        )
    return ServiceProfile(kind=kind)
