"""Pydantic configuration of the emulator: pacing, injected faults, the service it plays
(OpenAI or Azure OpenAI) and the models it serves beyond its catalogue."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .models import DEFAULT_AZURE_DEPLOYMENTS


class Pace(BaseModel):
    """How long each phase of a batch takes, in (emulated) seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    validating_seconds: float = Field(ge=0)
    seconds_per_request: float = Field(ge=0)
    finalizing_seconds: float = Field(ge=0)
    cancelling_seconds: float = Field(ge=0)

    @classmethod
    def fast(cls) -> Pace:
        """Tests: a 1,000-request batch completes in about 1.5 s.

        Validation lasts 0.5 s: the real service validates for seconds at least, and a client that
        settles a create race by cancelling the younger duplicate relies on doing so before any
        request runs.
        """
        return cls(
            validating_seconds=0.5,
            seconds_per_request=0.0008,
            finalizing_seconds=0.1,
            cancelling_seconds=0.05,
        )

    @classmethod
    def realistic(cls) -> Pace:
        """Demos: ~3 s validating, ~20 requests/s, ~3 s finalizing."""
        return cls(
            validating_seconds=3.0,
            seconds_per_request=0.05,
            finalizing_seconds=3.0,
            cancelling_seconds=3.0,
        )


class Faults(BaseModel):
    """Faults to inject; every random decision is deterministic given `seed`. Unknown fields are
    rejected."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    http_error_rate: float = Field(default=0.0, ge=0, le=1)
    download_truncate_rate: float = Field(default=0.0, ge=0, le=1)
    download_drop_rate: float = Field(default=0.0, ge=0, le=1)
    request_error_rate: float = Field(default=0.0, ge=0, le=1)
    # A mutating call (batches.create/cancel, files.create) is carried out, then its response is
    # lost.
    lost_response_rate: float = Field(default=0.0, ge=0, le=1)
    stuck_finalizing: bool = False
    expire_after_seconds: float | None = Field(default=None, gt=0)
    # Per model name: the enqueued-token limit. A batch fails validation with
    # `token_limit_exceeded` when its tokens plus those of the model's batches still validating,
    # in progress or finalizing exceed it (tokens: one per 4 bytes of each request line, ≥ 1).
    token_limits: dict[str, int] = Field(default_factory=dict)
    # `POST /batches` answers 400 "Cannot find file …" for a file uploaded less than
    # `file_not_ready_seconds` ago, at this rate (seen at high creation rates).
    file_not_ready_rate: float = Field(default=0.0, ge=0, le=1)
    file_not_ready_seconds: float = Field(default=5.0, gt=0)
    # The organization's cap on batch creations per rolling hour (the real one is 2,000); a
    # creation past it answers 429.
    batch_creations_per_hour: int | None = Field(default=None, ge=1)


class EmulatorConfig(BaseModel):
    """Everything that shapes an emulator's behaviour."""

    model_config = ConfigDict(extra="forbid")

    pace: Pace = Field(default_factory=Pace.fast)
    faults: Faults = Field(default_factory=Faults)
    api_key: str | None = None
    # "azure": Azure OpenAI global batch (routes under /openai, `model` names a deployment, ...).
    flavour: Literal["openai", "azure"] = "openai"
    # Azure deployment name -> model it serves.
    azure_deployments: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_AZURE_DEPLOYMENTS)
    )
    # Model name -> reported snapshot, served on every endpoint beside the catalogue's.
    extra_models: dict[str, str] = Field(default_factory=dict)
    # A compatible service: any model name is served, reported as itself.
    accept_any_model: bool = False
    # A cancelled batch's never-run requests: `batch_cancelled` lines in the error file, or absent.
    cancelled_error_lines: bool = True
    # Validate a batch's input in a background thread as soon as it is created, as the real
    # service does: no API call waits for it (the CLI server). Off, the first read of the batch
    # that needs the outcome validates it: deterministic under a test's fake clock.
    validate_at_create: bool = False
