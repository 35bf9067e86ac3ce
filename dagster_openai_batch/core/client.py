"""`BatchClient`: upload, create-or-adopt, poll, cancel and download over an ``openai.OpenAI`` client.

>>> import openai
>>> client = BatchClient(openai.OpenAI(api_key="sk-test", base_url="http://localhost:9/v1"))
>>> client.base_url
'http://localhost:9/v1/'
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
import openai
from openai.types import Batch, FileObject

from .models import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE_CHARS,
    BatchEndpoint,
    as_endpoint,
)
from .writer import InputPart

IDEMPOTENCY_KEY = "dagster_openai_batch_key"
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
ADOPTABLE_STATUSES = frozenset({"validating", "in_progress", "finalizing", "completed"})
PAGE_SIZE = 100
_CHUNK = 1 << 20
_UPLOAD_PREFIX = "dagster-openai-batch-"


class BatchClientError(RuntimeError):
    """The service could not be used as configured (wrong URL, not an OpenAI-compatible API, bad credentials)."""


class DownloadError(BatchClientError):
    """A file could not be downloaded completely after every retry."""


def upload_filename(part: InputPart) -> str:
    """The name a part is uploaded under; it embeds the content hash so an identical upload can be reused."""
    return f"{_UPLOAD_PREFIX}{part.sha256[:32]}.jsonl"


def _public_url(url: str) -> str:
    """``url`` without any user:password part."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class BatchClient:
    """Batch operations with few API calls, adoption instead of double payment, and robust downloads.

    ``sleep`` and ``clock`` are injectable for tests; ``download_retries`` bounds retries of a dropped or
    truncated download, waiting ``backoff * 2**attempt`` seconds (at most ``max_backoff``) between them.
    """

    def __init__(
        self,
        client: openai.OpenAI,
        *,
        download_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.openai = client
        self.download_retries = download_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self._sleep, self._clock = sleep, clock

    @property
    def base_url(self) -> str:
        return _public_url(str(self.openai.base_url))

    # ------------------------------------------------------------------ errors

    @contextmanager
    def _api(self, what: str) -> Iterator[None]:
        """Turn configuration-shaped failures into one clear :class:`BatchClientError` (never showing the key)."""
        url = self.base_url
        try:
            yield
        except openai.APIConnectionError as e:
            raise BatchClientError(
                f"{what}: cannot reach {url} ({type(e.__cause__ or e).__name__}). Check base_url (it ends in /v1, "
                "e.g. https://api.openai.com/v1), that the service is running and that the network allows it."
            ) from e
        except openai.AuthenticationError as e:
            raise BatchClientError(
                f"{what}: {url} rejected the credentials (401). Check the API key (and organization/project) "
                "configured for this backend."
            ) from e
        except openai.APIResponseValidationError as e:
            kind = e.response.headers.get("content-type", "no content type")
            raise BatchClientError(
                f"{what}: {url} answered with {kind} instead of JSON: it is not an OpenAI-compatible API. "
                "Check base_url (a web page or proxy answered; it should end in /v1)."
            ) from e
        except openai.APIStatusError as e:
            kind = e.response.headers.get("content-type", "")
            wrong_path = e.status_code == 404 and str(e.message).find("Invalid URL") >= 0
            if "json" not in kind or wrong_path or "/v1/v1/" in str(e.response.url):
                raise BatchClientError(
                    f"{what}: {_public_url(str(e.response.url))} answered {e.status_code} with "
                    f"{kind or 'no content type'}. Check base_url: it should end in a single /v1 "
                    "(e.g. https://api.openai.com/v1)."
                ) from e
            raise

    def _parse_json(self, raw: Any) -> Any:
        """Parse a raw SDK response, refusing one that is not JSON (the SDK would fail obscurely on a page)."""
        kind = raw.headers.get("content-type", "no content type")
        if "json" not in kind:
            raise BatchClientError(
                f"{_public_url(str(raw.http_request.url))} answered with {kind} instead of JSON: it is not an "
                "OpenAI-compatible API. Check base_url (a web page or proxy answered; it should end in /v1)."
            )
        return raw.parse()

    # ------------------------------------------------------------------ files

    def upload(self, part: InputPart, *, reuse: bool = True) -> FileObject:
        """Upload one part (streamed from disk) with purpose ``batch``.

        With ``reuse``, an already uploaded, unexpired file with the same content-hash name and size is
        returned instead of uploading again.
        """
        name = upload_filename(part)
        if reuse:
            found = self.find_file(name, part.bytes)
            if found is not None:
                return found
        with self._api(f"uploading {part.path.name}"), part.path.open("rb") as f:
            return self._parse_json(self.openai.files.with_raw_response.create(file=(name, f, "application/jsonl"),
                                                                               purpose="batch"))

    def find_file(self, filename: str, size: int, *, max_pages: int = 5) -> FileObject | None:
        """A usable purpose-batch file named ``filename`` of ``size`` bytes among the newest files, or None."""
        now = self._clock()
        with self._api("listing files"):
            page = self._parse_json(self.openai.files.with_raw_response.list(purpose="batch", limit=PAGE_SIZE, order="desc"))
            for _ in range(max_pages):
                for f in page.data:
                    if (f.filename == filename and f.bytes == size and f.status != "error"
                            and (f.expires_at is None or f.expires_at > now + 3600)):
                        return f
                if not page.has_next_page():
                    break
                page = page.get_next_page()
        return None

    def download(self, file_id: str, dest: Path, *, expected_bytes: int | None = None) -> Path:
        """Stream a file to ``dest`` (via a temporary file renamed at the end), retrying drops and truncation.

        Without ``expected_bytes`` the size is read from the file object first.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if expected_bytes is None:
            with self._api(f"reading file {file_id}"):
                expected_bytes = self._parse_json(self.openai.files.with_raw_response.retrieve(file_id)).bytes
        tmp = dest.with_name(dest.name + ".partial")
        try:
            return self._download_attempts(file_id, dest, tmp, expected_bytes)
        finally:
            # Whatever happened (retries exhausted, a non-retryable error, an interrupt), no partial file stays.
            tmp.unlink(missing_ok=True)

    def _download_attempts(self, file_id: str, dest: Path, tmp: Path, expected_bytes: int | None) -> Path:
        problem = ""
        for attempt in range(self.download_retries + 1):
            if attempt:
                self._sleep(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
            try:
                with self._api(f"downloading file {file_id}"), \
                        self.openai.files.with_streaming_response.content(file_id) as response, \
                        tmp.open("wb") as out:
                    received = 0
                    for chunk in response.iter_bytes(_CHUNK):
                        out.write(chunk)
                        received += len(chunk)
            except (httpx2.TransportError, openai.APIConnectionError, openai.InternalServerError,
                    openai.RateLimitError) as e:
                problem = f"{type(e).__name__}: {e}"
                continue
            except BatchClientError as e:
                if not isinstance(e.__cause__, openai.APIConnectionError):
                    raise
                problem = str(e)
                continue
            if expected_bytes is None or received == expected_bytes:
                os.replace(tmp, dest)
                return dest
            problem = f"received {received:,} of {expected_bytes:,} bytes"
        raise DownloadError(
            f"downloading file {file_id} from {self.base_url} failed {self.download_retries + 1} times "
            f"(last: {problem}). Retry later; the file stays available until it expires."
        )

    def download_results(self, batches: Iterable[Batch], dest_dir: Path) -> tuple[list[Path], list[Path]]:
        """Download every output and error file of ``batches`` as ``<dest_dir>/<file_id>.jsonl``."""
        outputs, errors = [], []
        for batch in batches:
            if batch.output_file_id:
                outputs.append(self.download(batch.output_file_id, Path(dest_dir) / f"{batch.output_file_id}.jsonl"))
            if batch.error_file_id:
                errors.append(self.download(batch.error_file_id, Path(dest_dir) / f"{batch.error_file_id}.jsonl"))
        return outputs, errors

    # ------------------------------------------------------------------ batches

    def create_or_adopt(
        self,
        *,
        input_file_id: str,
        endpoint: BatchEndpoint | str,
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
        search_pages: int = 5,
    ) -> tuple[Batch, bool]:
        """Create a batch, or adopt the live one already created with ``idempotency_key``: ``(batch, adopted)``.

        The key is stored in the batch metadata under ``dagster_openai_batch_key``; the newest
        ``search_pages`` pages of batches are searched first. Failed, expired and cancelled batches are not adopted,
        nor is a batch with the same key but another endpoint or other content (its input file is neither
        ``input_file_id`` nor an upload of the same bytes, see :func:`upload_filename`).
        """
        ep = as_endpoint(endpoint).value
        meta = {**(metadata or {}), IDEMPOTENCY_KEY: idempotency_key}
        check_metadata(meta)
        existing = self.find_batch(idempotency_key, max_pages=search_pages, input_file_id=input_file_id, endpoint=ep)
        if existing is not None:
            return existing, True
        with self._api("creating a batch"):
            batch = self._parse_json(self.openai.batches.with_raw_response.create(
                input_file_id=input_file_id, endpoint=ep, completion_window="24h",  # type: ignore[arg-type]
                metadata=meta))
        return batch, False

    def find_batch(
        self, idempotency_key: str, *, max_pages: int = 5, input_file_id: str | None = None,
        endpoint: BatchEndpoint | str | None = None,
    ) -> Batch | None:
        """The newest adoptable batch carrying ``idempotency_key`` (and, if given, for ``endpoint`` and the
        content of ``input_file_id``), or None."""
        for batch in self._recent_batches(max_pages):
            if (batch.metadata or {}).get(IDEMPOTENCY_KEY) != idempotency_key or batch.status not in ADOPTABLE_STATUSES:
                continue
            if endpoint is not None and batch.endpoint != as_endpoint(endpoint).value:
                continue
            if input_file_id is not None and not self._same_content(batch.input_file_id, input_file_id):
                continue
            return batch
        return None

    def _same_content(self, file_a: str, file_b: str) -> bool:
        """Whether two uploaded files hold the same bytes: the same id, or two uploads named by the same
        content hash (:func:`upload_filename`) with the same size."""
        if file_a == file_b:
            return True
        found = []
        for file_id in (file_a, file_b):
            with self._api(f"reading file {file_id}"):
                try:
                    found.append(self._parse_json(self.openai.files.with_raw_response.retrieve(file_id)))
                except openai.NotFoundError:  # deleted or expired: its content cannot be compared
                    return False
        a, b = found
        return a.filename == b.filename and a.bytes == b.bytes and a.filename.startswith(_UPLOAD_PREFIX)

    def _recent_batches(self, max_pages: int) -> Iterator[Batch]:
        with self._api("listing batches"):
            page = self._parse_json(self.openai.batches.with_raw_response.list(limit=PAGE_SIZE))
            for n in range(max_pages):
                yield from page.data
                if n + 1 == max_pages or not page.has_next_page():
                    return
                page = page.get_next_page()

    def retrieve(self, batch_id: str) -> Batch:
        with self._api(f"reading batch {batch_id}"):
            return self._parse_json(self.openai.batches.with_raw_response.retrieve(batch_id))

    def retrieve_many(
        self, batch_ids: Iterable[str], *, since: int | None = None, max_pages: int = 10, missing_ok: bool = False
    ) -> dict[str, Batch]:
        """Current state of many batches in few calls.

        Walks ``batches.list`` (100 per page, newest first) until every id is seen, a page reaches batches
        created before ``since`` (unix seconds), or ``max_pages`` pages were read; ids still unseen are
        retrieved one by one (with ``missing_ok``, ids the service answers 404 for are left out).
        1,000 batches among the 1,000 newest take 10 calls.
        """
        wanted = set(batch_ids)
        found: dict[str, Batch] = {}
        if len(wanted) > 1:
            for batch in self._recent_batches(max_pages):
                if batch.id in wanted:
                    found[batch.id] = batch
                    if len(found) == len(wanted):
                        break
                if since is not None and batch.created_at < since:
                    break
        for batch_id in wanted - found.keys():
            try:
                found[batch_id] = self.retrieve(batch_id)
            except openai.NotFoundError:
                if not missing_ok:  # with missing_ok, a batch the service no longer knows is left out
                    raise
        return found

    def cancel(self, batch_id: str) -> Batch:
        """Cancel a batch; a batch already finished (409) is returned as it is."""
        with self._api(f"cancelling batch {batch_id}"):
            try:
                return self._parse_json(self.openai.batches.with_raw_response.cancel(batch_id))
            except openai.ConflictError:
                return self._parse_json(self.openai.batches.with_raw_response.retrieve(batch_id))

    def wait(self, batch_ids: Iterable[str], *, timeout: float, poll_interval: float = 30.0) -> dict[str, Batch]:
        """Poll until every batch is terminal or ``timeout`` seconds pass; returns the latest states either way.

        Polls start at 1 s and double up to ``poll_interval``, so small jobs return quickly.
        """
        ids = list(batch_ids)
        deadline = self._clock() + timeout
        delay = min(1.0, poll_interval)
        while True:
            states = self.retrieve_many(ids)
            remaining = deadline - self._clock()
            if all(b.status in TERMINAL_STATUSES for b in states.values()) or remaining <= 0:
                return states
            self._sleep(min(delay, remaining))
            delay = min(delay * 2, poll_interval)


def check_metadata(metadata: dict[str, Any]) -> None:
    """Raise ``ValueError`` if ``metadata`` breaks the service limits (16 pairs, keys ≤ 64, string values ≤ 512)."""
    problems = []
    if len(metadata) > MAX_METADATA_PAIRS:
        problems.append(f"{len(metadata)} pairs (at most {MAX_METADATA_PAIRS}, including {IDEMPOTENCY_KEY!r})")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            problems.append(f"key {key[:20]!r}… is {len(key)} characters (at most {MAX_METADATA_KEY_CHARS})")
        if not isinstance(value, str):
            problems.append(f"value of {key!r} is a {type(value).__name__}; values must be strings")
        elif len(value) > MAX_METADATA_VALUE_CHARS:
            problems.append(f"value of {key!r} is {len(value)} characters (at most {MAX_METADATA_VALUE_CHARS})")
    if problems:
        raise ValueError("batch metadata is invalid: " + "; ".join(problems) + ". Shorten or drop those entries.")
