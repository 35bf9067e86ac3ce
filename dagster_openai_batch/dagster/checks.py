"""Asset checks of a ``results`` asset: nothing lost, few failures, nothing expired left behind."""

from __future__ import annotations

import dagster as dg

ACCOUNTED = "every_request_accounted_once"
FAILED_SHARE = "failed_share_below_threshold"
NO_UNRESUBMITTED = "no_expired_requests_left"
UNFINISHED_STATUSES = ("expired", "cancelled", "missing")
ACCEPTED = "batches_accepted"
ACCEPTED_DESCRIPTION = (
    "The service accepted the latest batches (none failed validation). Evaluated by the results "
    "run the sensor launches when they finish; run it to look now. When it fails, fix the input "
    "and re-materialize input_file."
)


def check_specs(results_key: dg.AssetKey, max_failed_share: float) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            ACCOUNTED,
            asset=results_key,
            description="Every input custom_id appears exactly once in the results table.",
        ),
        dg.AssetCheckSpec(
            FAILED_SHARE,
            asset=results_key,
            description=f"At most {max_failed_share:.1%} of the requests failed.",
        ),
        dg.AssetCheckSpec(
            NO_UNRESUBMITTED,
            asset=results_key,
            description="No expired, cancelled or missing request is left: resubmit them with "
            "batch_job config resubmit_failed=true.",
        ),
    ]


def evaluate_checks(
    *,
    results_key: dg.AssetKey,
    expected_requests: int,
    rows: int,
    unique_custom_ids: int,
    counts: dict[str, int],
    max_failed_share: float,
) -> list[dg.AssetCheckResult]:
    """The three check results for one results table."""
    failed = counts.get("failed", 0)
    share = failed / rows if rows else 0.0
    unfinished = {s: counts.get(s, 0) for s in UNFINISHED_STATUSES if counts.get(s, 0)}
    return [
        dg.AssetCheckResult(
            asset_key=results_key,
            check_name=ACCOUNTED,
            passed=rows == expected_requests == unique_custom_ids,
            metadata={
                "expected_requests": expected_requests,
                "rows": rows,
                "unique_custom_ids": unique_custom_ids,
            },
        ),
        dg.AssetCheckResult(
            asset_key=results_key,
            check_name=FAILED_SHARE,
            passed=share <= max_failed_share,
            metadata={
                "failed": failed,
                "failed_share": share,
                "max_failed_share": max_failed_share,
            },
        ),
        dg.AssetCheckResult(
            asset_key=results_key,
            check_name=NO_UNRESUBMITTED,
            passed=not unfinished,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"unfinished": sum(unfinished.values()), **unfinished},
        ),
    ]
