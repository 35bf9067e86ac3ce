"""`OpenAIBatchResource`: `dagster_openai.OpenAIResource` extended for batch work.

It talks to OpenAI, Azure OpenAI, any OpenAI-compatible service (``base_url``) or, with
``emulator_dir`` set, the offline emulator shipped with this package (no key needed).

Example:
    >>> from dagster import EnvVar
    >>> from dagster_openai_batch import OpenAIBatchResource
    >>> openai_prod = OpenAIBatchResource(api_key=EnvVar("OPENAI_API_KEY"), project="proj_123")
    >>> offline = OpenAIBatchResource(emulator_dir="/tmp/openai-emulator")
    >>> offline.backend
    'emulator'
    >>> azure = OpenAIBatchResource(
    ...     api_key=EnvVar("AZURE_OPENAI_API_KEY"),
    ...     azure_endpoint="https://my-resource.openai.azure.com",
    ...     api_version="2025-04-01-preview",
    ... )
    >>> azure.backend, azure.service_profile.max_requests_per_file
    ('azure', 100000)
    >>> OpenAIBatchResource(base_url="https://my-resource.openai.azure.com/openai/v1/").backend
    'azure'
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import urlsplit

import openai
from dagster import InitResourceContext
from dagster_openai import OpenAIResource
from pydantic import Field, PrivateAttr

from ..core.client import MAX_EXPIRY_SECONDS, MIN_EXPIRY_SECONDS, BatchClient
from ..core.errors import OpenAIBatchError
from ..core.service_profile import ServiceKind, ServiceProfile, profile_for
from ..core.vocabulary import COMPLETION_WINDOW

Backend = ServiceKind
OPENAI_API_HOST = "api.openai.com"
AZURE_HOSTS = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")
"""Hosts of Azure OpenAI: a base_url on one (``https://NAME.openai.azure.com/openai/v1/``) is
Azure's v1 API, used with the plain OpenAI client."""


def _is_azure(url: str | None) -> bool:
    return url is not None and (urlsplit(url).hostname or "").endswith(AZURE_HOSTS)


class OpenAIConfigurationError(OpenAIBatchError, ValueError):
    """The resource cannot reach any backend as configured (raised before any API call)."""


class OpenAIBatchResource(OpenAIResource):
    """OpenAI (or Azure OpenAI, a compatible service, or the offline emulator) for batch pipelines.

    Same fields as `dagster_openai.OpenAIResource` (``api_key`` — use ``EnvVar`` —,
    ``organization``, ``project``, ``base_url``) plus timeouts, retries, Azure settings and
    ``emulator_dir``. The API key is never logged, put in metadata or echoed in errors.
    """

    api_key: str | None = Field(  # type: ignore[assignment]  # optional here: the emulator needs none
        default=None,
        description="API key. Use EnvVar('OPENAI_API_KEY'). Not needed with emulator_dir.",
    )
    timeout_seconds: float = Field(default=600.0, description="HTTP timeout of one API call.")
    max_retries: int = Field(
        default=4, description="Retries of 408/409/429/5xx and connection errors, with backoff."
    )
    azure_endpoint: str | None = Field(
        default=None,
        description="Azure OpenAI resource endpoint, e.g. https://NAME.openai.azure.com. "
        "Uses AzureOpenAI with api_version.",
    )
    api_version: str | None = Field(
        default=None, description="Azure OpenAI API version, e.g. 2025-04-01-preview."
    )
    service: Literal["auto", "openai", "azure", "compatible"] = Field(
        default="auto",
        description="Which kind of service base_url is, when its address does not tell (e.g. "
        "Azure OpenAI behind a gateway); auto: from azure_endpoint and the base_url's host. With "
        "emulator_dir: which service the emulator behaves as ('azure': Azure's routes, limits "
        "and shapes).",
    )
    completion_window: str = Field(
        default=COMPLETION_WINDOW,
        description="How long a batch may take: '24h' (the only window of OpenAI and Azure), "
        "or longer on a compatible service that offers it, e.g. Groq's up to '7d'.",
    )
    input_file_expires_after_seconds: int | None = Field(
        default=None,
        ge=MIN_EXPIRY_SECONDS,
        le=MAX_EXPIRY_SECONDS,
        description="Ask the service to delete each uploaded input file this long after the "
        "upload (3600..2592000; OpenAI's default: 30 days).",
    )
    output_expires_after_seconds: int | None = Field(
        default=None,
        ge=MIN_EXPIRY_SECONDS,
        le=MAX_EXPIRY_SECONDS,
        description="Ask the service to delete each batch's output and error files this long "
        "after they are written (3600..2592000; OpenAI's default: 30 days). Collect results "
        "before then.",
    )
    queue_token_budget: dict[str, int] = Field(
        default={},
        description="Per model (as the requests name it): the enqueued-token limit of the "
        "project's batch queue (e.g. {'gpt-4o-mini': 2000000}, OpenAI's tier 1). Parts that "
        "would pass it wait, and the sensor submits them as batches finish.",
    )
    batch_creations_per_hour: int = Field(
        default=2000,
        description="The organization's cap on batch creations per rolling hour: parts past it "
        "wait.",
    )
    emulator_dir: str | None = Field(
        default=None,
        description="Use the offline emulator with its state in this directory (shared by every "
        "Dagster process). No key or network needed.",
    )
    emulator_pace: Literal["fast", "realistic"] = Field(
        default="realistic",
        description="Emulator only: how fast batches progress (fast: tests; realistic: demos).",
    )
    emulator_faults: dict[str, Any] = Field(
        default={},
        description="Emulator only: faults to inject, as the fields of "
        "dagster_openai_batch.emulator.Faults (e.g. {'request_error_rate': 0.1}).",
    )

    _client: openai.OpenAI = PrivateAttr()

    @property
    def backend(self) -> Backend:
        """Which kind of service this resource talks to (shown in asset metadata)."""
        if self.emulator_dir:
            return "emulator"
        if self.service != "auto":
            return self.service
        if self.azure_endpoint or _is_azure(self.base_url):
            return "azure"
        if self.base_url and OPENAI_API_HOST not in self.base_url:
            return "compatible"
        return "openai"

    @property
    def service_profile(self) -> ServiceProfile:
        """The limits and habits of the backend (Azure: 100,000 requests per file); ``service``
        also gives the emulator another service's profile."""
        kind = self.backend if self.service == "auto" else self.service
        try:
            return profile_for(kind, completion_window=self.completion_window)
        except ValueError as error:
            raise OpenAIConfigurationError(str(error)) from None

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._client = self.build_openai_client()

    def build_openai_client(self) -> openai.OpenAI:
        """The `openai.OpenAI` client for the configured backend; fails fast on bad settings."""
        common: dict[str, Any] = {"timeout": self.timeout_seconds, "max_retries": self.max_retries}
        profile = self.service_profile  # refuses a window the service does not offer
        if self.backend == "emulator":
            from ..emulator import Emulator, EmulatorConfig, Faults, Pace

            config = EmulatorConfig(
                pace=Pace.fast() if self.emulator_pace == "fast" else Pace.realistic(),
                faults=Faults.model_validate(self.emulator_faults),
                flavour="azure" if self.service == "azure" else "openai",
            )
            emulator = Emulator(self.emulator_dir, config)  # type: ignore[arg-type]
            # A configured key travels as it would to the service (the emulator accepts any key).
            key = {"api_key": self.api_key} if self.api_key else {}
            if config.flavour == "azure":  # Azure's own client and routes (api-version)
                return emulator.azure_client(**key, **common)
            return emulator.openai_client(**key, **common)
        if not self.api_key:
            raise OpenAIConfigurationError(
                f"No API key for the {profile.kind} backend: set the OPENAI_API_KEY environment "
                "variable (api_key=EnvVar('OPENAI_API_KEY')), or set emulator_dir to run offline."
            )
        if self.azure_endpoint:
            if not self.api_version:
                raise OpenAIConfigurationError(
                    "Azure OpenAI needs api_version (e.g. '2025-04-01-preview') beside "
                    "azure_endpoint."
                )
            return openai.AzureOpenAI(
                api_key=self.api_key,
                azure_endpoint=self.azure_endpoint,
                api_version=self.api_version,
                organization=self.organization,
                **common,
            )
        return openai.OpenAI(
            api_key=self.api_key,
            organization=self.organization,
            project=self.project,
            base_url=self.base_url,
            **common,
        )

    def dashboard_url(self, batch_id: str) -> str | None:
        """Link to a batch in the OpenAI dashboard (only for the OpenAI backend)."""
        if self.backend != "openai":
            return None
        return f"https://platform.openai.com/batches/{batch_id}"

    @contextmanager
    def get_batch_client(self) -> Generator[BatchClient, None, None]:
        """Yield a `BatchClient` over this resource's client (usable in assets and sensors)."""
        client = getattr(self, "_client", None) or self.build_openai_client()
        yield BatchClient(
            client,
            profile=self.service_profile,
            input_expires_after=self.input_file_expires_after_seconds,
            output_expires_after=self.output_expires_after_seconds,
        )
