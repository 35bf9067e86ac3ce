"""The batch operations on top of the store: create, advance, render, list and cancel.

Advancing does a batch's due work lazily: validating its input, writing its result files.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .config import EmulatorConfig
from .errors import ApiError, invalid_value
from .faults import FaultPlan
from .flavour import FLAVOURS
from .ids import timed_hex
from .lifecycle import View, counts, draw_key, failed_positions, view
from .results import usage_json, write_results
from .service_rules import (
    CANCELLABLE,
    COMPLETION_WINDOW,
    ENDPOINTS,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE_CHARS,
    VIDEOS_SHUTDOWN_AT,
)
from .store import Store
from .validation import (
    ValidationResult,
    missing_file_result,
    token_limit_result,
    validate_batch_input,
)

WINDOW_SECONDS = 24 * 3600
_MIN_EXPIRY, _MAX_EXPIRY = 3600, 30 * 24 * 3600


def check_expires_after(value: Any, param: str) -> dict[str, Any] | None:
    """Validate an `expires_after` / `output_expires_after` object."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("anchor") != "created_at":
        raise invalid_value(f"{param}.anchor", f"Invalid '{param}.anchor': expected 'created_at'.")
    seconds = value.get("seconds")
    if isinstance(seconds, str) and seconds.isdigit():
        seconds = int(seconds)
    if not isinstance(seconds, int) or not _MIN_EXPIRY <= seconds <= _MAX_EXPIRY:
        raise invalid_value(
            f"{param}.seconds",
            f"Invalid '{param}.seconds': expected an integer between {_MIN_EXPIRY} and "
            f"{_MAX_EXPIRY}.",
        )
    return {"anchor": "created_at", "seconds": seconds}


def _check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise invalid_value("metadata", "Invalid 'metadata': expected an object.", "invalid_type")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise invalid_value(
            "metadata",
            "Invalid 'metadata': too many properties. Expected an object with at most"
            f" {MAX_METADATA_PAIRS}"
            f" properties, but got an object with {len(metadata)} properties instead.",
            "object_above_max_properties",
        )
    for key, val in metadata.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            raise invalid_value(
                "metadata",
                f"Invalid 'metadata': key '{key[:20]}…' is longer than"
                f" {MAX_METADATA_KEY_CHARS} characters.",
                "string_above_max_length",
            )
        if not isinstance(val, str):
            raise invalid_value(
                f"metadata.{key}", f"Invalid 'metadata.{key}': expected a string.", "invalid_type"
            )
        if len(val) > MAX_METADATA_VALUE_CHARS:
            raise invalid_value(
                f"metadata.{key}",
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum"
                f" length {MAX_METADATA_VALUE_CHARS}, but got a string with length {len(val)}"
                " instead.",
                "string_above_max_length",
            )
    return metadata


class Batches:
    """The batch half of the API."""

    def __init__(
        self,
        store: Store,
        config: EmulatorConfig,
        clock: Callable[[], float],
        faults: FaultPlan,
    ) -> None:
        self.store, self.config, self.clock, self.faults = store, config, clock, faults
        self.flavour = FLAVOURS[config.flavour]
        self._validator: subprocess.Popen[bytes] | None = None
        """Validates new batches' inputs (with ``validate_at_create``), in its own process: a
        thread of this one would hold the GIL for the whole validation and slow every request
        served meanwhile. Started on the first create."""
        self._validations: queue.SimpleQueue[tuple[dict[str, Any], str]] = queue.SimpleQueue()
        """Claimed validations (row, claim token) not yet handed to the validation process: a
        thread hands them on, so a create never waits for a pipe that a busy validator has let
        fill up (20 creates in a row used to wait up to 0.8 s each; the real service answers
        at once however many batches are validating)."""
        self._validator_lock = threading.Lock()

    def _check_creation_rate(self, now: float) -> None:
        """429 past `Faults.batch_creations_per_hour` creations in the last hour."""
        cap = self.config.faults.batch_creations_per_hour
        if cap is not None and self.store.count_batches_since(now - 3600) >= cap:
            raise ApiError(
                429,
                f"Batch creation rate limit reached: at most {cap:,} batches may be created per"
                " hour in organization org-emulator. Please try again later.",
                type="requests",
                code="rate_limit_exceeded",
            )

    def create(self, body: Any) -> dict[str, Any]:
        """POST /batches."""
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        for field in ("input_file_id", "endpoint", "completion_window"):
            if body.get(field) is None:
                raise ApiError(
                    400,
                    f"Missing required parameter: '{field}'.",
                    param=field,
                    code="missing_required_parameter",
                )
        if body["endpoint"] not in ENDPOINTS:
            raise invalid_value(
                "endpoint",
                f"Invalid value: '{body['endpoint']}'. Supported values are: "
                + ", ".join(f"'{e}'" for e in ENDPOINTS)
                + ".",
            )
        if body["completion_window"] != COMPLETION_WINDOW:
            raise invalid_value(
                "completion_window",
                f"Invalid value: '{body['completion_window']}'."
                f" Supported values are: '{COMPLETION_WINDOW}'.",
            )
        metadata = _check_metadata(body.get("metadata"))
        output_expires_after = check_expires_after(
            body.get("output_expires_after"), "output_expires_after"
        )
        now = self.clock()
        if body["endpoint"] == "/v1/videos" and now >= VIDEOS_SHUTDOWN_AT:
            raise invalid_value(
                "endpoint",
                "Invalid value: '/v1/videos'. The Videos API was shut down on 2026-09-24 and"
                " no longer accepts batches.",
            )
        self._check_creation_rate(now)
        file_id = body["input_file_id"]
        file = self.store.get_file(file_id, now=now)
        # An unknown input file is accepted here; the batch then fails in validation.
        if file is not None and file["purpose"] != "batch":
            raise invalid_value(
                "input_file_id",
                f"The input file must have purpose 'batch', not '{file['purpose']}'.",
            )
        if file is not None and self.faults.file_not_ready(now - file["created_at"]):
            raise ApiError(400, f"Cannot find file {file_id}.", param="input_file_id")
        batch_id = timed_hex("batch_", now, 32)
        if file is not None:
            # The batch keeps its own hard link to the input, so deleting the file does not
            # break a running batch.
            os.link(self.store.blob_path(file_id), self.store.blob_path(f"{batch_id}.input"))
        faults = self.config.faults
        window = faults.expire_after_seconds or WINDOW_SECONDS
        self.store.insert_batch(
            {
                "id": batch_id,
                "created_at": now,
                "input_file_id": file_id,
                "endpoint": body["endpoint"],
                "completion_window": COMPLETION_WINDOW,
                "metadata": metadata,
                "output_expires_after": output_expires_after,
                # Random draws (failing requests, their kind, processing order) are keyed by the
                # input's identity, not by the random batch id, so a seeded run is reproducible: the
                # same input fails the same way.
                "plan": {
                    "pace": self.config.pace.model_dump(),
                    "seed": faults.seed,
                    "draw_key": f"{file['filename']}:{file['bytes']}" if file else file_id,
                    "input_missing": file is None,
                    "request_error_rate": faults.request_error_rate,
                    "stuck_finalizing": faults.stuck_finalizing,
                    "expires_at": now + window,
                },
            }
        )
        if self.config.validate_at_create:  # the answer does not wait for the validation
            row = self._load(batch_id)
            token = self.store.claim(batch_id, "validation")  # taken now: no read validates it
            if token is not None:
                self._validate_elsewhere(row, token)
            return self.render(row, view(row, now))
        return self.retrieve(batch_id)

    def _validate_elsewhere(self, row: dict[str, Any], token: str) -> None:
        """Queue a claimed validation for the validation process (started with the first, so it
        exists once a create has answered; after that only :meth:`_hand_on` touches it)."""
        with self._validator_lock:
            if self._validator is None:
                try:
                    self._validator = _start_validator()
                except OSError:  # the batch exists: its first read that needs the outcome validates
                    logging.getLogger(__name__).exception("starting the validator")
                    self.store.release_claim(row["id"], token)
                    return
                threading.Thread(target=self._hand_on, daemon=True, name="validations").start()
        self._validations.put((row, token))

    def _hand_on(self) -> None:
        """Hand each queued validation to the validation process (restarted if it died); if it
        cannot take one, give the claim back: the first read that needs the outcome validates."""
        while True:
            row, token = self._validations.get()
            job = {
                "data_dir": str(self.store.data_dir),
                "config": self.config.model_dump(mode="json"),
                "row": row,
                "token": token,
            }
            try:
                if self._validator is None or self._validator.poll() is not None:
                    self._validator = _start_validator()
                assert self._validator.stdin is not None
                self._validator.stdin.write(orjson.dumps(job) + b"\n")
                self._validator.stdin.flush()
            except OSError:
                logging.getLogger(__name__).exception("handing %s to the validator", row["id"])
                self.store.release_claim(row["id"], token)

    def validate_claimed(self, row: dict[str, Any], token: str) -> None:
        """Validate a batch's input under the claim ``token`` and store the outcome."""
        try:
            found = (
                missing_file_result(row["input_file_id"])
                if row["plan"].get("input_missing")
                else validate_batch_input(
                    self.store.blob_path(f"{row['id']}.input"), row["endpoint"], self.config
                )
            )
            found = self._within_token_limit(row, found)
        except BaseException:
            self.store.release_claim(row["id"], token)
            raise
        outcome = found.model_dump()
        outcome["failed_positions"] = failed_positions(
            draw_key(row),
            row["plan"]["seed"],
            row["plan"]["request_error_rate"],
            found.total,
            found.refused,
        )
        self.store.complete_claim(row["id"], token, "validation", outcome)

    def _load(self, batch_id: str) -> dict[str, Any]:
        row = self.store.get_batch(batch_id)
        if row is None:
            raise ApiError(404, f"Batch {batch_id} not found.", code="batch_not_found")
        return row

    def _advance(self, row: dict[str, Any], now: float) -> tuple[dict[str, Any], View]:
        """Do any work the batch's timeline requires by `now`; return the fresh row and its view."""
        v = view(row, now)
        if v.needs_validation and (token := self.store.claim(row["id"], "validation")):
            self.validate_claimed(row, token)
            row = self._load(row["id"])
            v = view(row, now)
        if v.terminal_at is not None and row["result"] is None:
            if token := self.store.claim(row["id"], "result"):
                try:
                    result = write_results(
                        self.store,
                        self.config,
                        row,
                        processed=v.processed,
                        expired=v.status == "expired",
                        finished_at=v.terminal_at,
                    )
                except BaseException:
                    self.store.release_claim(row["id"], token)
                    raise
                self.store.complete_claim(row["id"], token, "result", result)
                row = self._load(row["id"])
            if row["result"] is None:
                # Another reader is writing the result files: show the state just before the
                # terminal one, as the real service keeps a batch finalizing/cancelling until its
                # files exist.
                v = view(row, v.terminal_at - 1e-6)
        return row, v

    def _within_token_limit(self, row: dict[str, Any], found: ValidationResult) -> ValidationResult:
        """``found``, or a `token_limit_exceeded` failure when the batch's tokens and those
        enqueued for the same model (batches created before it that passed validation and are
        validating, in progress or finalizing when its validation ends) exceed
        `Faults.token_limits` for the model, as the real service counts its queue."""
        limit = self.config.faults.token_limits.get(str(found.name))
        if limit is None or found.errors:
            return found
        at = row["created_at"] + row["plan"]["pace"]["validating_seconds"]
        enqueued = 0
        for earlier in self.store.batches_created_before(row["id"], since=at - WINDOW_SECONDS):
            if earlier["plan"]["expires_at"] <= at:
                continue
            # Validated first (in creation order), so each sees the queue it was created into.
            earlier, _ = self._advance(earlier, self.clock())
            validation = earlier["validation"]
            if (
                validation
                and not validation["errors"]
                and validation.get("name") == found.name
                and view(earlier, at).status in CANCELLABLE
            ):
                enqueued += validation["tokens"]
        if enqueued + found.tokens > limit:
            return token_limit_result(str(found.name), limit)
        return found

    def render(self, row: dict[str, Any], v: View) -> dict[str, Any]:
        """The Batch JSON object."""
        validation, result = row["validation"], row["result"]
        ok = bool(validation) and not validation["errors"]

        def ts(name: str) -> int | None:
            t = v.times.get(name)
            return None if t is None else int(t)

        completed, failed = (
            (result["completed"], result["failed"]) if result else counts(validation, v.processed)
        )
        absent = self.flavour.absent_file_id
        shows_counts = self.flavour.counts_before_running or v.status not in (
            "validating",
            "failed",
        )
        return {
            "id": row["id"],
            "object": "batch",
            "endpoint": row["endpoint"],
            "model": validation["model"] if ok else None,
            "errors": {"object": "list", "data": validation["errors"]}
            if validation and not ok
            else None,
            "input_file_id": row["input_file_id"],
            "completion_window": row["completion_window"],
            "status": v.status,
            "output_file_id": (result and result["output_file_id"]) or absent,
            "error_file_id": (result and result["error_file_id"]) or absent,
            "created_at": int(row["created_at"]),
            "in_progress_at": ts("in_progress_at"),
            "expires_at": int(row["plan"]["expires_at"]),
            "finalizing_at": ts("finalizing_at"),
            "completed_at": ts("completed_at"),
            "failed_at": ts("failed_at"),
            "expired_at": ts("expired_at"),
            "cancelling_at": ts("cancelling_at"),
            "cancelled_at": ts("cancelled_at"),
            "request_counts": {"total": v.total, "completed": completed, "failed": failed}
            if shows_counts
            else None,
            # Usage totals are reported once the result files exist (zeros before).
            "usage": usage_json(result["usage"] if result else [0, 0, 0, 0]),
            "metadata": row["metadata"],
        }

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        """GET /batches/{id}."""
        row, v = self._advance(self._load(batch_id), self.clock())
        return self.render(row, v)

    def list(self, after: str | None, limit: int) -> dict[str, Any]:
        """GET /batches: newest first."""
        rows, has_more = self.store.list_batches(after=after, limit=limit)
        now = self.clock()
        data = [self.render(*self._advance(r, now)) for r in rows]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """POST /batches/{id}/cancel."""
        now = self.clock()
        row, v = self._advance(self._load(batch_id), now)
        if v.status in CANCELLABLE:
            self.store.set_cancel(batch_id, now)
            row, v = self._advance(self._load(batch_id), now)
        elif v.status not in ("cancelling", "cancelled"):
            raise ApiError(409, f"Cannot cancel a batch with status '{v.status}'.")
        return self.render(row, v)


def _start_validator() -> subprocess.Popen[bytes]:
    """The validation process (:mod:`.validator`), one job a line on its standard input. It exits
    at the end of its input, so also when the server is stopped or killed."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, *sys.path])}
    return subprocess.Popen(
        [sys.executable, "-m", f"{__package__}.validator"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
    )
