"""The service's own rules as the emulator enforces them: endpoints, statuses and limits.

The emulator stands in for OpenAI, so it keeps its own copy of these facts (taken from the SDK's
types and ``shared/openai-spec``) instead of importing the integration's: a wrong value on the
library's side then shows up as a refusal, as it would on the real service.
"""

from datetime import UTC, datetime
from typing import Final, get_args, get_type_hints

from openai.types import Batch
from openai.types.batch_create_params import BatchCreateParams

ENDPOINTS: Final[tuple[str, ...]] = get_args(get_type_hints(BatchCreateParams)["endpoint"])
"""Endpoints a batch may target."""
STATUSES: Final[tuple[str, ...]] = get_args(Batch.model_fields["status"].annotation)
"""Every batch status."""
CANCELLABLE: Final = frozenset({"validating", "in_progress", "finalizing"})
"""Statuses a cancel moves to ``cancelling``."""
TERMINAL: Final = frozenset({"completed", "failed", "expired", "cancelled"})
"""Statuses that never change again."""
COMPLETION_WINDOW: Final = "24h"
DEFAULT_MODELS: Final[dict[str, str]] = {
    "/v1/moderations": "omni-moderation-latest",
    "/v1/images/generations": "dall-e-2",
    "/v1/images/edits": "dall-e-2",
    "/v1/videos": "sora-2",
}
"""The model an endpoint uses when a request's body names none."""
MAX_UPLOAD_BYTES: Final = 200 * 1024 * 1024
"""The largest upload accepted: "200 MB", read as MiB."""
VIDEOS_SHUTDOWN_AT: Final = datetime(2026, 9, 24, tzinfo=UTC).timestamp()
"""The Sora API shut down: `/v1/videos` batches are refused from then on."""
MAX_EMBEDDING_INPUTS: Final = 50_000
MAX_METADATA_PAIRS: Final = 16
MAX_METADATA_KEY_CHARS: Final = 64
MAX_METADATA_VALUE_CHARS: Final = 512
