"""A finished batch's output and error files, written streamed (one pass to index, then seeks)."""

from __future__ import annotations

import random
from array import array
from pathlib import Path
from typing import Any

import orjson

from .config import EmulatorConfig
from .flavour import FLAVOURS
from .ids import alnum, request_uuid, timed_hex
from .lifecycle import draw_key, processing_order
from .request_rules import refusal
from .responder import Usage, failure_body, respond
from .store import Store

_BUFFER = 1 << 20
OUTPUT_TTL = 30 * 24 * 3600


def _line_offsets(path: Path) -> array[int]:
    """Byte offset of every non-blank line (the requests, in input order)."""
    offsets: array[int] = array("q")
    pos = 0
    with open(path, "rb", buffering=_BUFFER) as fh:
        for raw in fh:
            if raw.strip():
                offsets.append(pos)
            pos += len(raw)
    return offsets


_CANCELLED = {
    "code": "batch_cancelled",
    "message": "This request was not executed because the batch was cancelled.",
}
_EXPIRED = {
    "code": "batch_expired",
    "message": "This request could not be executed before the completion window expired.",
}


def write_results(
    store: Store,
    config: EmulatorConfig,
    row: dict[str, Any],
    *,
    processed: int,
    expired: bool,
    finished_at: float,
) -> dict[str, Any]:
    """Write the result files of a batch whose first `processed` requests (in processing order) ran.

    Returns the stored result: file ids, request counts and usage totals.
    """
    batch_id, plan, validation = row["id"], row["plan"], row["validation"]
    flavour = FLAVOURS[config.flavour]
    result: dict[str, Any] = {
        "output_file_id": None,
        "error_file_id": None,
        "completed": 0,
        "failed": 0,
        "usage": [0, 0, 0, 0],
    }
    input_path = store.blob_path(f"{batch_id}.input")
    if not validation or validation["errors"]:
        input_path.unlink(missing_ok=True)
        return result
    total, model = validation["total"], validation["model"]
    order = processing_order(draw_key(row), plan["seed"], total)
    failing = set(validation["failed_positions"])
    refused = set(validation.get("refused", ()))
    pace_spr, t_v = (
        plan["pace"]["seconds_per_request"],
        row["created_at"] + plan["pace"]["validating_seconds"],
    )
    offsets = _line_offsets(input_path)
    out_tmp, err_tmp = store.temp_path(), store.temp_path()
    usage = [0, 0, 0, 0]
    n_out = n_err = 0

    def line(custom_id: str, at: float, response: Any, error: Any) -> bytes:
        head = (
            {"id": timed_hex("batch_req_", at, 32, batch_id, custom_id)} if flavour.line_ids else {}
        )
        return orjson.dumps({**head, "custom_id": custom_id, "response": response, "error": error})

    with (
        open(input_path, "rb") as src,
        open(out_tmp, "wb", buffering=_BUFFER) as out,
        open(err_tmp, "wb", buffering=_BUFFER) as err,
    ):
        for pos, index in enumerate(order):
            src.seek(offsets[index])
            req = orjson.loads(src.readline())
            custom_id = req["custom_id"]
            request_id = request_uuid(batch_id, custom_id)
            created = int(t_v + (pos + 1) * pace_spr)
            if pos >= processed:
                if expired or config.cancelled_error_lines:
                    error = _EXPIRED if expired else _CANCELLED
                    err.write(line(custom_id, finished_at, None, error) + b"\n")
                    n_err += 1
            elif pos in failing:
                if index in refused:
                    status, body = 400, refusal(row["endpoint"], req["body"])
                else:
                    status, body = failure_body(_failure_kind(plan, row, custom_id), req["body"])
                response = {"status_code": status, "request_id": request_id, "body": body}
                err.write(line(custom_id, created, response, None) + b"\n")
                n_err += 1
            else:
                body, used = respond(
                    row["endpoint"], req["body"], custom_id=custom_id, created=created, model=model
                )
                usage = [a + b for a, b in zip(usage, used, strict=True)]
                response = {"status_code": 200, "request_id": request_id, "body": body}
                out.write(line(custom_id, created, response, None) + b"\n")
                n_out += 1
    # Both result files are deleted `output_expires_after` after their creation, 30 days by default.
    expires_after = row["output_expires_after"]
    expires_at = finished_at + (expires_after["seconds"] if expires_after else OUTPUT_TTL)
    for tmp, count, file_kind in ((out_tmp, n_out, "output"), (err_tmp, n_err, "error")):
        if count or (file_kind == "error" and flavour.always_error_file):
            meta = store.add_file(
                tmp,
                filename=f"{batch_id}_{file_kind}.jsonl",
                purpose="batch_output",
                size=tmp.stat().st_size,
                created_at=finished_at,
                expires_at=expires_at,
                file_id=alnum("file-", 22, batch_id, file_kind),
            )
            result[f"{file_kind}_file_id"] = meta["id"]
        else:
            tmp.unlink()
    n_failed = sum(1 for p in failing if p < processed)
    result.update(completed=min(processed, total) - n_failed, failed=n_failed, usage=usage)
    input_path.unlink(missing_ok=True)
    return result


def _failure_kind(plan: dict[str, Any], row: dict[str, Any], custom_id: str) -> int:
    """400 or 500, half each, for a request drawn to fail (Faults.request_error_rate)."""
    draw = random.Random(f"{plan['seed']}:{draw_key(row)}:{custom_id}").random()
    return 400 if draw < 0.5 else 500


def usage_json(usage: list[int] | Usage) -> dict[str, Any]:
    """The batch `usage` object from [input, output, cached, reasoning] totals."""
    inp, outp, cached, reasoning = usage
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": outp,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + outp,
    }
