"""How the emulated service differs between OpenAI and Azure OpenAI (global batch)."""

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Flavour:
    """The details in which compatible services differ from each other."""

    max_requests_per_file: int
    invalid_url_code: str
    # Azure writes an error file for every batch that ran, empty when nothing failed.
    always_error_file: bool
    # What an absent output/error file id reads as: null (OpenAI) or "" (Azure).
    absent_file_id: str | None
    # Azure leaves `request_counts` null until the batch runs (and for a failed one).
    counts_before_running: bool
    # Output lines carry `id` (`batch_req_…`) on OpenAI, not on Azure.
    line_ids: bool
    # OpenAI refuses an empty or wholly non-JSON batch file at upload; Azure fails the batch.
    checks_upload_content: bool
    # `model` names a deployment (Azure) rather than a model.
    deployments: bool
    unknown_model_message: str


OPENAI: Final = Flavour(
    max_requests_per_file=50_000,
    invalid_url_code="invalid_url",
    always_error_file=False,
    absent_file_id=None,
    counts_before_running=True,
    line_ids=True,
    checks_upload_content=True,
    deployments=False,
    unknown_model_message="The model '{model}' is not supported by the Batch API for {endpoint}.",
)
AZURE: Final = Flavour(
    max_requests_per_file=100_000,
    invalid_url_code="url_mismatch",
    always_error_file=True,
    absent_file_id="",
    counts_before_running=False,
    line_ids=False,
    checks_upload_content=False,
    deployments=True,
    unknown_model_message="The provided model deployment '{model}' was not found. Make sure it"
    " exists and is a global batch deployment.",
)
FLAVOURS: Final = {"openai": OPENAI, "azure": AZURE}
