"""Files in a storage location: a local directory or a URI of any filesystem pyarrow or fsspec
knows (``s3://…``, ``gs://…``, ``abfs://…``, ``az://…``, ``memory://…``).

pyarrow's own filesystems are used where it has one (S3, GCS, Azure ``abfs://``, HDFS, local); any
other scheme goes through fsspec (``az://`` with adlfs, ``memory://``…). Credentials and
endpoints come from the environment the way those libraries read it (for S3: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` for an
S3-compatible store, or the URI's own ``?endpoint_override=…&scheme=http``).

>>> join_uri("s3://bucket/root/", "results", "a.parquet")
's3://bucket/root/results/a.parquet'
>>> safe_segment("2024-01-01")
'2024-01-01'
>>> safe_segment("daily/2024-01-01 x")
'daily_2024-01-01_x-b6c79fba'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import fsspec
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel

from .errors import OpenAIBatchError

if TYPE_CHECKING:
    import pandas
    import polars


class BatchResults(BaseModel):
    """A pointer to a results table: where it is, its row count and its counts by status."""

    uri: str
    rows: int
    counts: dict[str, int]

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """The table as a pyarrow Table (optionally only ``columns``)."""
        return read_table(self.uri, columns)

    def to_pandas(self, columns: list[str] | None = None) -> pandas.DataFrame:
        return self.to_arrow(columns).to_pandas()

    def to_polars(self, columns: list[str] | None = None) -> polars.DataFrame:
        import polars

        return polars.from_arrow(self.to_arrow(columns))  # type: ignore[return-value]


class StorageError(OpenAIBatchError, ValueError):
    """A storage location that cannot be used (unknown scheme, missing filesystem package)."""


def resolve(uri: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path within it for a local path or a URI.

    >>> fs, path = resolve("memory://results/a.parquet")
    >>> type(fs).__name__, path
    ('PyFileSystem', '/results/a.parquet')
    """
    uri = os.fspath(uri)
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path
    except pa.ArrowInvalid as error:
        if "Unrecognized filesystem type" not in str(error):
            raise StorageError(f"Storage location {uri!r}: {error}") from error
    try:
        fsspec_fs, fsspec_path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as error:  # unknown protocol or its package not installed
        raise StorageError(
            f"Storage location {uri!r}: neither pyarrow nor fsspec can open it ({error})."
        ) from error
    return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec_fs)), fsspec_path


def open_output(uri: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """Like :func:`resolve`, creating the parent directory first (a no-op on object stores)."""
    fs, path = resolve(uri)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.create_dir(parent, recursive=True)
    return fs, path


@contextlib.contextmanager
def atomic_output(uri: str | os.PathLike[str]) -> Iterator[tuple[pafs.FileSystem, str]]:
    """Yield a filesystem and a temporary path beside ``uri``; on success the file is moved to
    ``uri``.

    Close the file before the block ends. A reader of ``uri`` sees the old file or the whole new
    one, never a part (a rename on local disk; on object stores the object appears whole anyway, and
    ``move`` is used where the filesystem has it, else copy + delete). Each writer has its own
    temporary name, so two writers never interleave: the last to finish wins. On an error the
    temporary file is removed and ``uri`` is untouched.
    """
    fs, path = open_output(uri)
    parent, _, name = path.rpartition("/")
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        yield fs, tmp
    except BaseException:
        with contextlib.suppress(Exception):
            fs.delete_file(tmp)
        raise
    try:
        fs.move(tmp, path)
    except NotImplementedError:  # e.g. a store without a server-side rename
        fs.copy_file(tmp, path)
        fs.delete_file(tmp)


def join_uri(base: str, *parts: str) -> str:
    """Join path segments onto a local path or URI with ``/``."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


SEGMENT_CHARS = 80
"""Longest sanitised text kept by :func:`safe_segment` (before its ``-<hash>`` suffix)."""


def safe_segment(text: str) -> str:
    """``text`` made safe as one path segment (letters, digits, ``._-``), distinct for distinct
    texts.

    Text that is already safe and at most :data:`SEGMENT_CHARS` long is returned unchanged.
    Otherwise the sanitised text, cut to :data:`SEGMENT_CHARS`, gets ``-`` and 8 hex digits of the
    SHA-256 of the raw text, so ``a/b`` and ``a_b`` get different folders and a long key never makes
    a file name too long.

    >>> safe_segment("all"), safe_segment("a_b"), safe_segment("a/b")
    ('all', 'a_b', 'a_b-c14cddc0')
    >>> len(safe_segment("x" * 300))
    89
    """
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
    if clean and clean == text and len(clean) <= SEGMENT_CHARS and clean not in (".", ".."):
        return clean
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{clean[:SEGMENT_CHARS].rstrip('_') or '_'}-{digest}"


def upload_file(local: str | os.PathLike[str], uri: str) -> str:
    """Copy a local file to ``uri`` (streamed); returns ``uri``."""
    fs, path = open_output(uri)
    pafs.copy_files(
        os.path.abspath(local),
        path,
        source_filesystem=pafs.LocalFileSystem(),
        destination_filesystem=fs,
    )
    return uri


def download_file(uri: str, local: str | os.PathLike[str]) -> Path:
    """Copy ``uri`` to a local file (streamed); returns the local path."""
    fs, path = resolve(uri)
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        pafs.copy_files(
            path,
            str(local.absolute()),
            source_filesystem=fs,
            destination_filesystem=pafs.LocalFileSystem(),
        )
    except FileNotFoundError as error:
        raise _missing(uri) from error
    return local


def readable_path(uri: str, local: str | os.PathLike[str]) -> Path:
    """A local path to read ``uri`` from: the stored file itself where the storage is this
    machine's file system, else a copy at ``local`` (see :func:`download_file`)."""
    fs, path = resolve(uri)
    if not isinstance(fs, pafs.LocalFileSystem):
        return download_file(uri, local)
    if not Path(path).is_file():
        raise _missing(uri)
    return Path(path)


def read_table(uri: str | os.PathLike[str], columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet table (optionally only ``columns``) from a local path or URI."""
    fs, path = resolve(uri)
    try:
        return pq.read_table(path, columns=columns, filesystem=fs)
    except FileNotFoundError as error:
        raise _missing(uri) from error


def _missing(uri: str | os.PathLike[str]) -> StorageError:
    """The error for a stored file this process cannot find, with the usual cause of it."""
    text = os.fspath(uri)
    hint = ""
    if "://" not in text or text.startswith("file://"):
        hint = (
            " A local path is seen only by the machine that wrote it: when runs start on other "
            "machines (Kubernetes, Docker, Celery), set the pipeline's storage= or "
            "DAGSTER_OPENAI_BATCH_STORAGE to an object store (s3://, gs://, abfs://)."
        )
    return StorageError(f"{text} does not exist or cannot be read from this process.{hint}")
