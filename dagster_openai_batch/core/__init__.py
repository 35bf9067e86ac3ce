"""Core engine: plain Python over the official ``openai`` SDK (no Dagster here).

Build requests from rows, write validated JSONL parts, run batches with :class:`BatchClient`, and
join the results back to the inputs as a Parquet table. Names are imported on first use.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:
    from .batch_request import BatchRequest
    from .client import (
        BatchClient,
        BatchClientError,
        BatchToCreate,
        DownloadError,
        check_metadata,
        upload_filename,
    )
    from .errors import OpenAIBatchError
    from .input_file import (
        InputPart,
        PreparedInput,
        prepare_jsonl,
        prepare_rows,
        read_jsonl_input,
        write_batch_input,
    )
    from .input_validation import BatchInputError, InputProblem
    from .pricing import BATCH_PRICES, Price, cost_usd, price_for
    from .resubmit import RETRY_STATUSES, build_resubmission, count_resubmittable, merge_results
    from .results import STATUSES, ResultsSummary, collect_results, result_schema
    from .service_profile import OPENAI_PROFILE, ServiceProfile, profile_for
    from .storage import (
        BatchResults,
        download_file,
        join_uri,
        read_table,
        safe_segment,
        upload_file,
    )
    from .templates import RequestTemplate, build_requests, build_rows, iter_rows
    from .vocabulary import (
        MAX_EMBEDDING_INPUTS,
        MAX_FILE_BYTES,
        MAX_METADATA_KEY_CHARS,
        MAX_METADATA_PAIRS,
        MAX_METADATA_VALUE_CHARS,
        MAX_REQUESTS_PER_FILE,
        BatchEndpoint,
        BatchStatus,
    )

_MODULES = {
    ".batch_request": ["BatchRequest"],
    ".client": [
        "BatchClient",
        "BatchClientError",
        "BatchToCreate",
        "DownloadError",
        "check_metadata",
        "upload_filename",
    ],
    ".errors": ["OpenAIBatchError"],
    ".input_file": [
        "InputPart",
        "PreparedInput",
        "prepare_jsonl",
        "prepare_rows",
        "read_jsonl_input",
        "write_batch_input",
    ],
    ".input_validation": ["BatchInputError", "InputProblem"],
    ".pricing": ["BATCH_PRICES", "Price", "cost_usd", "price_for"],
    ".resubmit": ["RETRY_STATUSES", "build_resubmission", "count_resubmittable", "merge_results"],
    ".results": ["STATUSES", "ResultsSummary", "collect_results", "result_schema"],
    ".service_profile": ["OPENAI_PROFILE", "ServiceProfile", "profile_for"],
    ".storage": [
        "BatchResults",
        "download_file",
        "join_uri",
        "read_table",
        "safe_segment",
        "upload_file",
    ],
    ".templates": ["RequestTemplate", "build_requests", "build_rows", "iter_rows"],
    ".vocabulary": [
        "MAX_EMBEDDING_INPUTS",
        "MAX_FILE_BYTES",
        "MAX_METADATA_KEY_CHARS",
        "MAX_METADATA_PAIRS",
        "MAX_METADATA_VALUE_CHARS",
        "MAX_REQUESTS_PER_FILE",
        "BatchEndpoint",
        "BatchStatus",
    ],
}
__getattr__, __dir__ = lazy_names(__name__, _MODULES, globals())

__all__ = [
    "BATCH_PRICES",
    "MAX_EMBEDDING_INPUTS",
    "MAX_FILE_BYTES",
    "MAX_METADATA_KEY_CHARS",
    "MAX_METADATA_PAIRS",
    "MAX_METADATA_VALUE_CHARS",
    "MAX_REQUESTS_PER_FILE",
    "OPENAI_PROFILE",
    "RETRY_STATUSES",
    "STATUSES",
    "BatchClient",
    "BatchClientError",
    "BatchEndpoint",
    "BatchInputError",
    "BatchRequest",
    "BatchResults",
    "BatchStatus",
    "BatchToCreate",
    "DownloadError",
    "InputPart",
    "InputProblem",
    "OpenAIBatchError",
    "PreparedInput",
    "Price",
    "RequestTemplate",
    "ResultsSummary",
    "ServiceProfile",
    "build_requests",
    "build_resubmission",
    "build_rows",
    "check_metadata",
    "collect_results",
    "cost_usd",
    "count_resubmittable",
    "download_file",
    "iter_rows",
    "join_uri",
    "merge_results",
    "prepare_jsonl",
    "prepare_rows",
    "price_for",
    "profile_for",
    "read_jsonl_input",
    "read_table",
    "result_schema",
    "safe_segment",
    "upload_file",
    "upload_filename",
    "write_batch_input",
]
