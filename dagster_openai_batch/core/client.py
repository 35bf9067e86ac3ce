"""`BatchClient`: upload, create-or-adopt, poll, cancel and download over an ``openai.OpenAI``.

>>> import openai
>>> client = BatchClient(openai.OpenAI(api_key="sk-test", base_url="http://localhost:9/v1"))
>>> client.base_url
'http://localhost:9/v1/'
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import httpx2
import openai
from openai.types import Batch, FileObject

from .errors import OpenAIBatchError
from .input_file import InputPart
from .service_profile import OPENAI_PROFILE, ServiceProfile
from .vocabulary import (
    ADOPTABLE_STATUSES,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE_CHARS,
    TERMINAL_STATUSES,
    BatchEndpoint,
    as_endpoint,
)

IDEMPOTENCY_KEY = "dagster_openai_batch_key"
PAGE_SIZE = 100
MAX_SCAN_PAGES = 50
"""At most 5,000 batches are scanned for a key (the service creates at most 2,000 an hour per
organization)."""
SETTLE_WINDOW_SECONDS = 600
"""Batches created this long before a create may be racing duplicates of it (generous for clock
skew)."""
LISTING_REUSE_SECONDS = 60
"""How long one listing of the newest batches is searched before creating each of several batches
(well inside :data:`SETTLE_WINDOW_SECONDS`, so a batch created after the listing is still seen by
the search that settles a create)."""
UPLOAD_PREFIX = "dagster-openai-batch-"


class BatchToCreate(NamedTuple):
    """One batch for :meth:`BatchClient.create_or_adopt_many`: its input file, idempotency key and
    metadata."""

    input_file_id: str
    idempotency_key: str
    metadata: dict[str, str]


class BatchClientError(OpenAIBatchError, RuntimeError):
    """The service could not be used as configured (wrong URL, not an OpenAI-compatible API, bad
    credentials)."""


class DownloadError(BatchClientError):
    """A file could not be downloaded completely after every retry."""


def upload_filename(part: InputPart) -> str:
    """The name a part is uploaded under; it embeds the content hash so an identical upload can be
    reused."""
    return f"{UPLOAD_PREFIX}{part.sha256[:32]}.jsonl"


def _public_url(url: str) -> str:
    """``url`` without any user:password part."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class BatchClient:
    """Batch operations with few API calls, adoption instead of double payment, and robust
    downloads.

    ``profile`` is the service's (its completion window; OpenAI's by default). ``sleep`` and
    ``clock`` are injectable for tests; ``download_retries`` bounds retries of a dropped or
    truncated download and ``create_attempts`` the attempts of a create or cancel, waiting
    ``backoff * 2**attempt`` seconds (at most ``max_backoff``) between them.
    ``input_expires_after`` and ``output_expires_after`` (seconds, 3600..2592000) ask the service
    to delete uploads, and the result files of the batches created, that long after their creation
    (by default OpenAI keeps both 30 days).
    """

    def __init__(
        self,
        client: openai.OpenAI,
        *,
        profile: ServiceProfile = OPENAI_PROFILE,
        download_retries: int = 5,
        create_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        input_expires_after: int | None = None,
        output_expires_after: int | None = None,
    ) -> None:
        self.openai = client
        self.input_expires_after = check_expiry("input_expires_after", input_expires_after)
        self.output_expires_after = check_expiry("output_expires_after", output_expires_after)
        self.profile = profile
        self.download_retries = download_retries
        self.create_attempts = create_attempts
        self.backoff, self.max_backoff = backoff, max_backoff
        self._sleep, self._clock = sleep, clock

    @property
    def base_url(self) -> str:
        return _public_url(str(self.openai.base_url))

    # ------------------------------------------------------------------ errors

    @contextmanager
    def _api(self, what: str) -> Iterator[None]:
        """Turn configuration-shaped failures into one clear :class:`BatchClientError` (never
        showing the key)."""
        url = self.base_url
        try:
            yield
        except openai.APIConnectionError as e:
            raise BatchClientError(
                f"{what}: cannot reach {url} ({type(e.__cause__ or e).__name__}). Check base_url "
                "(it ends in /v1, "
                "e.g. https://api.openai.com/v1), that the service is running and that the network "
                "allows it."
            ) from e
        except openai.AuthenticationError as e:
            raise BatchClientError(
                f"{what}: {url} rejected the credentials (401). Check the API key (and "
                "organization/project) "
                "configured for this backend."
            ) from e
        except openai.APIResponseValidationError as e:
            kind = e.response.headers.get("content-type", "no content type")
            raise BatchClientError(
                f"{what}: {url} answered with {kind} instead of JSON: it is not an "
                "OpenAI-compatible API. "
                "Check base_url (a web page or proxy answered; it should end in /v1)."
            ) from e
        except openai.APIStatusError as e:
            if (
                e.status_code >= 500
            ):  # a gateway's HTML page is a transient failure, not a wrong base_url
                raise
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
        """Parse a raw SDK response, refusing one that is not JSON (the SDK would fail obscurely on
        a page)."""
        kind = raw.headers.get("content-type", "no content type")
        if "json" not in kind:
            raise BatchClientError(
                f"{_public_url(str(raw.http_request.url))} answered with {kind} instead of JSON: "
                "it is not an "
                "OpenAI-compatible API. Check base_url (a web page or proxy answered; it should "
                "end in /v1)."
            )
        return raw.parse()

    # ------------------------------------------------------------------ files

    def upload(self, part: InputPart, *, reuse: bool = True) -> FileObject:
        """Upload one part (see :meth:`upload_all`)."""
        return self.upload_all([part], reuse=reuse)[0]

    def upload_all(
        self, parts: Sequence[InputPart], *, reuse: bool = True, at_once: int = 4
    ) -> list[FileObject]:
        """Upload parts (each streamed from disk) with purpose ``batch``, ``at_once`` at a time (one
        upload seldom fills a link to the service, and the SDK's client is safe to share between
        threads): their files, in order.

        With ``reuse``, a part whose content-hash name and size match an uploaded, unexpired file
        is not uploaded again: that file is returned (one listing of the newest files for all the
        parts), and parts of the same content are uploaded once.
        """
        keys = [(upload_filename(part), part.bytes) for part in parts]
        found = self.find_files(keys) if reuse and parts else {}
        if reuse:
            pending = {key: part for key, part in zip(keys, parts, strict=True) if key not in found}
            jobs = list(pending.items())
        else:
            jobs = list(zip(keys, parts, strict=True))

        def send(job: tuple[tuple[str, int], InputPart]) -> FileObject:
            (name, _), part = job
            with self._api(f"uploading {part.path.name}"), part.path.open("rb") as f:
                file: FileObject = self._parse_json(
                    self.openai.files.with_raw_response.create(
                        file=(name, f, "application/jsonl"),
                        purpose="batch",
                        **_expires_after("expires_after", self.input_expires_after),
                    )
                )
            return file

        with ThreadPoolExecutor(max(1, min(at_once, len(jobs)))) as pool:
            sent = list(pool.map(send, jobs))
        if not reuse:
            return sent
        found.update((key, file) for (key, _), file in zip(jobs, sent, strict=True))
        return [found[key] for key in keys]

    def find_files(
        self, wanted: Iterable[tuple[str, int]], *, max_pages: int = 5
    ) -> dict[tuple[str, int], FileObject]:
        """Usable purpose-batch files among the newest ``max_pages`` pages, by the (filename, size
        in bytes) of ``wanted`` they match (the newest match of each)."""
        wanted = set(wanted)
        found: dict[tuple[str, int], FileObject] = {}
        now = self._clock()
        with self._api("listing files"):
            page = self._parse_json(
                self.openai.files.with_raw_response.list(
                    purpose="batch", limit=PAGE_SIZE, order="desc"
                )
            )
            for _ in range(max_pages):
                f: FileObject
                for f in page.data:
                    if (
                        (f.filename, f.bytes) in wanted
                        and (f.filename, f.bytes) not in found
                        and f.status != "error"
                        and (f.expires_at is None or f.expires_at > now + 3600)
                    ):
                        found[(f.filename, f.bytes)] = f
                if len(found) == len(wanted) or not page.has_next_page():
                    break
                page = page.get_next_page()
        return found

    def list_files(self, purpose: str) -> Iterator[FileObject]:
        """Every live file of ``purpose`` (``batch``, ``batch_output``), newest first."""
        with self._api("listing files"):
            page = self._parse_json(
                self.openai.files.with_raw_response.list(
                    purpose=purpose, limit=PAGE_SIZE, order="desc"
                )
            )
            while True:
                yield from page.data
                if not page.has_next_page():
                    return
                page = page.get_next_page()

    def delete_file(self, file_id: str) -> bool:
        """Delete a file: True if deleted now, False if the service no longer had it (deleted or
        expired before). Other failures raise."""
        with self._api(f"deleting file {file_id}"):
            try:
                self.openai.files.delete(file_id)
            except openai.NotFoundError:
                return False
        return True

    def download(self, file_id: str, dest: Path, *, expected_bytes: int | None = None) -> Path:
        """Stream a file to ``dest`` (via a temporary file renamed at the end), retrying drops and
        truncation.

        Without ``expected_bytes`` the size is read from the file object first.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if expected_bytes is None:
            with self._api(f"reading file {file_id}"):
                expected_bytes = self._parse_json(
                    self.openai.files.with_raw_response.retrieve(file_id)
                ).bytes
        tmp = dest.with_name(dest.name + ".partial")
        try:
            return self._download_attempts(file_id, dest, tmp, expected_bytes)
        finally:
            # Whatever happened (retries exhausted, a non-retryable error, an interrupt), no partial
            # file stays.
            tmp.unlink(missing_ok=True)

    def _download_attempts(
        self, file_id: str, dest: Path, tmp: Path, expected_bytes: int | None
    ) -> Path:
        problem = ""
        for attempt in range(self.download_retries + 1):
            if attempt:
                self._sleep(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
            try:
                with (
                    self._api(f"downloading file {file_id}"),
                    self.openai.files.with_streaming_response.content(file_id) as response,
                    tmp.open("wb") as out,
                ):
                    received = 0
                    # Chunks as they arrive: re-chunking them costs ~7% of a download's CPU.
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        received += len(chunk)
            except (
                httpx2.TransportError,
                openai.APIConnectionError,
                openai.InternalServerError,
                openai.RateLimitError,
            ) as e:
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
            f"downloading file {file_id} from {self.base_url} failed {self.download_retries + 1} "
            "times "
            f"(last: {problem}). Retry later; the file stays available until it expires."
        )

    def download_results(
        self,
        batches: Iterable[Batch],
        dest_dir: Path,
        *,
        at_once: int = 4,
        on_file: Callable[[Path, str], None] | None = None,
    ) -> tuple[list[Path], list[Path]]:
        """Download every output and error file of ``batches`` as ``<dest_dir>/<file_id>.jsonl``,
        ``at_once`` files at a time (the SDK's client is safe to share between threads), calling
        ``on_file(path, batch_id)`` as each one is complete (e.g. :meth:`Parsers.add
        <dagster_openai_batch.core.result_lines.Parsers.add>`, to parse it while others
        download)."""
        wanted = [
            (file_id, kind, batch.id)
            for batch in batches
            for file_id, kind in ((batch.output_file_id, "output"), (batch.error_file_id, "error"))
            if file_id
        ]

        def fetch(file_id: str, batch_id: str) -> Path:
            path = self.download(file_id, Path(dest_dir) / f"{file_id}.jsonl")
            if on_file is not None:
                on_file(path, batch_id)
            return path

        with ThreadPoolExecutor(max(1, min(at_once, len(wanted)))) as pool:
            paths = list(pool.map(lambda w: fetch(w[0], w[2]), wanted))
        outputs = [p for p, (_, kind, _) in zip(paths, wanted, strict=True) if kind == "output"]
        errors = [p for p, (_, kind, _) in zip(paths, wanted, strict=True) if kind == "error"]
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
        """Create a batch, or adopt the live one already created with ``idempotency_key``: ``(batch,
        adopted)``.

        Exactly once, although the API has no idempotency key: the key is stored in the batch
        metadata under ``dagster_openai_batch_key`` and the newest ``search_pages`` pages of batches
        are searched first (see :meth:`find_batch`). The create itself is never retried blindly: a
        refusal that proves nothing was created (429, 400 "Cannot find file") is retried after a
        wait; a failure whose outcome is unknown (dropped connection, timeout, 5xx) is followed by a
        search for the key, and the create is sent again only if no such batch exists. After
        creating, a second search settles a race with another process: the oldest live batch of the
        key wins and a younger duplicate is cancelled before it runs.
        """
        request = BatchToCreate(input_file_id, idempotency_key, metadata or {})
        return self.create_or_adopt_many([request], endpoint=endpoint, search_pages=search_pages)[0]

    def create_or_adopt_many(
        self,
        requests: Sequence[BatchToCreate],
        *,
        endpoint: BatchEndpoint | str,
        search_pages: int = 5,
    ) -> list[tuple[Batch, bool]]:
        """:meth:`create_or_adopt` each of ``requests`` in turn, searching one listing of the newest
        ``search_pages`` pages for all of them instead of one per request (a busy organization's
        five pages are five calls). Each create is still settled at once by its own search. The
        listing is made again if it is older than :data:`LISTING_REUSE_SECONDS` (as after waiting
        out the hourly creation cap)."""
        ep = as_endpoint(endpoint)
        metas = []
        for request in requests:
            meta = {**request.metadata, IDEMPOTENCY_KEY: request.idempotency_key}
            check_metadata(meta)
            metas.append(meta)
        listing: list[Batch] = []
        listed_at = -float("inf")
        answers = []
        for request, meta in zip(requests, metas, strict=True):
            if self._clock() - listed_at > LISTING_REUSE_SECONDS:
                listed_at = self._clock()
                listing = list(self._recent_batches(search_pages))
            key, file_id = request.idempotency_key, request.input_file_id
            existing = self.find_batch(key, input_file_id=file_id, endpoint=ep, among=listing)
            if existing is not None:
                answers.append((existing, True))
                continue
            batch, adopted = self._create_once(file_id, ep, key, meta)
            # Only batches created since a little before ours can be racing duplicates: older ones
            # were in the listing searched (made at most LISTING_REUSE_SECONDS before).
            settled = self.find_batch(
                key,
                since=_created(batch) - SETTLE_WINDOW_SECONDS,
                input_file_id=file_id,
                endpoint=ep,
            )
            if settled is None or settled.id == batch.id:
                answers.append((batch, adopted))
            else:
                answers.append((settled, True))
        return answers

    def _create_once(
        self, input_file_id: str, endpoint: BatchEndpoint, key: str, meta: dict[str, str]
    ) -> tuple[Batch, bool]:
        """Send the create, retrying only when the service certainly created nothing: ``(batch,
        adopted)``."""
        create = self.openai.with_options(max_retries=0).batches.with_raw_response.create
        problem = ""
        last: Exception | None = None
        for attempt in range(self.create_attempts):
            if attempt:
                self._sleep(self._retry_delay(last, attempt))
            sent_at = self._clock()
            try:
                raw = create(
                    input_file_id=input_file_id,
                    endpoint=endpoint,
                    # Typed as OpenAI's only value; compatible services take longer ones ("7d").
                    completion_window=self.profile.completion_window,  # type: ignore[arg-type]
                    metadata=meta,
                    **_expires_after("output_expires_after", self.output_expires_after),
                )
            except (
                openai.RateLimitError
            ) as e:  # refused before acting (e.g. 2,000 creations per hour)
                problem, last = _short(e), e
                continue
            except openai.BadRequestError as e:
                if "cannot find file" not in str(e.message).lower():
                    # A definite refusal: nothing was created, and sending it again would not help.
                    raise
                problem, last = _short(e), e  # a fresh upload not yet visible to the batch service
                continue
            except (openai.APIConnectionError, openai.InternalServerError) as e:
                problem, last = _short(e), e  # outcome unknown: the service may have created it
            except openai.APIStatusError as e:
                if e.status_code not in (408, 409):
                    raise
                problem, last = _short(e), e
            else:
                with self._api("creating a batch"):
                    return self._parse_json(raw), False
            # Look at once (a duplicate must be cancelled while it is still validating), and once
            # more after a pause in case the listing lags, before sending the create again.
            for pause in (0.0, self.backoff):
                self._sleep(pause)
                found = self.find_batch(
                    key,
                    since=sent_at - SETTLE_WINDOW_SECONDS,
                    input_file_id=input_file_id,
                    endpoint=endpoint,
                )
                if found is not None:
                    return found, True
        raise BatchClientError(
            f"creating a batch on {self.base_url} failed {self.create_attempts} times (last: "
            f"{problem}); no batch "
            f"with key {key!r} exists, so nothing was paid for. Run again later."
        )

    def _retry_delay(self, error: Exception | None, attempt: int) -> float:
        """How long to wait before attempt ``attempt`` (≥ 1): what the service asked for
        (``retry-after-ms``, ``retry-after`` seconds), else ``backoff * 2**(attempt - 1)``; at most
        ``max_backoff``."""
        headers = getattr(getattr(error, "response", None), "headers", None) or {}
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            try:
                return min(float(headers[name]) * scale, self.max_backoff)
            except (KeyError, ValueError):
                continue
        delay: float = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        return delay

    def find_batch(
        self,
        idempotency_key: str,
        *,
        max_pages: int = 5,
        input_file_id: str | None = None,
        endpoint: BatchEndpoint | str | None = None,
        since: float | None = None,
        among: Iterable[Batch] | None = None,
    ) -> Batch | None:
        """The live batch carrying ``idempotency_key`` (and, if given, for ``endpoint`` and the
        content of ``input_file_id``), or None.

        Searches the newest ``max_pages`` pages, or with ``since`` (unix seconds) every page until
        one holds only batches created before it, or the batches ``among`` (as listed a moment
        ago). If several live batches carry the key (a race, or a create whose response was lost),
        the oldest is the one to use: the younger ones still waiting to run are cancelled, so they
        cost nothing.
        """
        ep = None if endpoint is None else as_endpoint(endpoint)
        matches = [
            (_created(batch), -position, batch)
            for position, batch in enumerate(
                among
                if among is not None
                else self._recent_batches(
                    max_pages if since is None else MAX_SCAN_PAGES, since=since
                )
            )
            if (batch.metadata or {}).get(IDEMPOTENCY_KEY) == idempotency_key
            and batch.status in ADOPTABLE_STATUSES
            and (ep is None or batch.endpoint == ep)
            and (input_file_id is None or self._same_content(batch.input_file_id, input_file_id))
        ]
        if not matches:
            return None
        # created_at has a resolution of one second, so racing creates often tie: the listing
        # (newest first) then tells which came first. Every racer must agree, or one could cancel
        # what another adopted.
        oldest, *younger = [batch for *_, batch in sorted(matches, key=lambda m: m[:2])]
        for duplicate in younger:
            if duplicate.status not in TERMINAL_STATUSES:
                self._cancel_with_retries(duplicate.id)
        return oldest

    def _same_content(self, batch_input: str, file_id: str) -> bool:
        """Whether a batch's input and an uploaded file hold the same bytes: the same id, or two
        uploads named by the same content hash (:func:`upload_filename`) with the same size.

        A batch input deleted since (``delete_input_files``, cleanup) or expired cannot be
        compared: then the idempotency key decides, as the library's keys name the content (else a
        re-submission would pay again for a batch whose input is gone).
        """
        if batch_input == file_id:
            return True
        found = []
        for one in (batch_input, file_id):
            with self._api(f"reading file {one}"):
                try:
                    found.append(
                        self._parse_json(self.openai.files.with_raw_response.retrieve(one))
                    )
                except openai.NotFoundError:
                    return one == batch_input
        a, b = found
        same: bool = (
            a.filename == b.filename and a.bytes == b.bytes and a.filename.startswith(UPLOAD_PREFIX)
        )
        return same

    def batches_since(self, since: float) -> list[Batch]:
        """The newest batches, back to those created at ``since`` (unix seconds; at most
        ``MAX_SCAN_PAGES`` pages)."""
        return [
            b for b in self._recent_batches(MAX_SCAN_PAGES, since=since) if _created(b) >= since
        ]

    def _recent_batches(self, max_pages: int, *, since: float | None = None) -> Iterator[Batch]:
        """Batches page by page (newest first on OpenAI), at most ``max_pages`` pages; with
        ``since``, ending after a page that holds only batches created before it."""
        with self._api("listing batches"):
            page = self._parse_json(self.openai.batches.with_raw_response.list(limit=PAGE_SIZE))
            for n in range(max_pages):
                yield from page.data
                if since is not None and all(_created(b) < since for b in page.data):
                    return
                if n + 1 == max_pages or not page.has_next_page():
                    return
                page = page.get_next_page()

    def recent_batches(self, max_pages: int = MAX_SCAN_PAGES) -> Iterator[Batch]:
        """The newest batches, page by page, at most ``max_pages`` pages of 100."""
        return self._recent_batches(max_pages)

    def retrieve(self, batch_id: str) -> Batch:
        with self._api(f"reading batch {batch_id}"):
            batch: Batch = self._parse_json(
                self.openai.batches.with_raw_response.retrieve(batch_id)
            )
        return batch

    def retrieve_many(
        self,
        batch_ids: Iterable[str],
        *,
        since: int | None = None,
        max_pages: int | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Batch]:
        """Current state of many batches in few calls.

        Walks ``batches.list`` (100 per page, newest first) until every id is seen, a page reaches
        batches created before ``since`` (unix seconds), or ``max_pages`` pages were read (default:
        10 plus 2 per 100 ids, so the walk stays cheaper than retrieving each id); ids still
        unseen are retrieved one by one (with ``missing_ok``, ids the service answers 404 for are
        left out). 1,000 batches among the 1,000 newest take 10 calls; 10,000 take 100.
        """
        wanted = set(batch_ids)
        found: dict[str, Batch] = {}
        if max_pages is None:
            max_pages = 10 + 2 * -(-len(wanted) // PAGE_SIZE)
        if len(wanted) > 1:
            for batch in self._recent_batches(max_pages):
                if batch.id in wanted:
                    found[batch.id] = batch
                    if len(found) == len(wanted):
                        break
                if since is not None and _created(batch) < since:
                    break
        for batch_id in wanted - found.keys():
            try:
                found[batch_id] = self.retrieve(batch_id)
            except openai.NotFoundError:
                if (
                    not missing_ok
                ):  # with missing_ok, a batch the service no longer knows is left out
                    raise
        return found

    def cancel(self, batch_id: str) -> Batch:
        """Cancel a batch; a batch already finished (409) is returned as it is, at once.

        Cancelling is idempotent, so transient failures (5xx, dropped connections, 429) are retried
        up to ``create_attempts`` times; the SDK's own retries are off, as it would retry a 409.
        """
        return self._cancel_with_retries(batch_id)

    def cancel_many(self, batch_ids: Iterable[str]) -> tuple[list[Batch], dict[str, str]]:
        """Cancel every batch, whatever happens to the others: ``(batches, {batch id: why it
        failed})``."""
        done, failed = [], {}
        for batch_id in batch_ids:
            try:
                done.append(self._cancel_with_retries(batch_id))
            except (BatchClientError, openai.APIError) as e:
                failed[batch_id] = _short(e)
        return done, failed

    def _cancel_with_retries(self, batch_id: str) -> Batch:
        cancel = self.openai.with_options(max_retries=0).batches.with_raw_response.cancel
        last: Exception | None = None
        for attempt in range(self.create_attempts):
            if attempt:
                self._sleep(self._retry_delay(last, attempt))
            try:
                with self._api(f"cancelling batch {batch_id}"):
                    cancelled: Batch = self._parse_json(cancel(batch_id))
                    return cancelled
            except openai.ConflictError:  # already completed, failed or expired: that is the answer
                return self.retrieve(batch_id)
            except (
                openai.APIConnectionError,
                openai.InternalServerError,
                openai.RateLimitError,
            ) as e:
                if attempt + 1 == self.create_attempts:
                    raise
                last = e
            except BatchClientError as e:
                if (
                    not isinstance(e.__cause__, openai.APIConnectionError)
                    or attempt + 1 == self.create_attempts
                ):
                    raise
                last = e
        raise AssertionError("unreachable")

    def wait(
        self, batch_ids: Iterable[str], *, timeout: float, poll_interval: float = 30.0
    ) -> dict[str, Batch]:
        """Poll until every batch is terminal or ``timeout`` seconds pass; returns the latest states
        either way.

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


def _created(batch: Batch) -> int:
    """``batch.created_at``; 0 when a compatible service leaves it out (the SDK does not check)."""
    return batch.created_at or 0


def _short(error: Exception) -> str:
    """One line about an SDK error, without its (possibly HTML) body."""
    status = getattr(error, "status_code", None)
    text = str(getattr(error, "message", "") or error).splitlines()[0] if str(error) else ""
    if status is not None and "<html" in text.lower():
        text = "a gateway error page"
    return f"{type(error).__name__}{f' {status}' if status else ''}: {text[:200]}"


MIN_EXPIRY_SECONDS, MAX_EXPIRY_SECONDS = 3600, 30 * 24 * 3600
"""The range the service accepts for ``expires_after`` and ``output_expires_after``."""


def check_expiry(name: str, seconds: int | None) -> int | None:
    """``seconds`` if the service accepts it as an expiry (or None); else a ``ValueError``."""
    if seconds is not None and not MIN_EXPIRY_SECONDS <= seconds <= MAX_EXPIRY_SECONDS:
        raise ValueError(
            f"{name} is {seconds} seconds; the service accepts {MIN_EXPIRY_SECONDS} (1 hour) to "
            f"{MAX_EXPIRY_SECONDS} (30 days)."
        )
    return seconds


def _expires_after(param: str, seconds: int | None) -> dict[str, Any]:
    """The SDK argument asking for an expiry ``seconds`` after creation (none when None)."""
    return {} if seconds is None else {param: {"anchor": "created_at", "seconds": seconds}}


def check_metadata(metadata: dict[str, Any]) -> None:
    """Raise ``ValueError`` if ``metadata`` breaks the service limits (16 pairs, keys ≤ 64, string
    values ≤ 512)."""
    problems = []
    if len(metadata) > MAX_METADATA_PAIRS:
        problems.append(
            f"{len(metadata)} pairs (at most {MAX_METADATA_PAIRS}, including {IDEMPOTENCY_KEY!r})"
        )
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            problems.append(
                f"key {key[:20]!r}… is {len(key)} characters (at most {MAX_METADATA_KEY_CHARS})"
            )
        if not isinstance(value, str):
            problems.append(f"value of {key!r} is a {type(value).__name__}; values must be strings")
        elif len(value) > MAX_METADATA_VALUE_CHARS:
            problems.append(
                f"value of {key!r} is {len(value)} characters (at most {MAX_METADATA_VALUE_CHARS})"
            )
    if problems:
        raise ValueError(
            "batch metadata is invalid: " + "; ".join(problems) + ". Shorten or drop those entries."
        )
