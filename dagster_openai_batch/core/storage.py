"""Where tables live: a local directory or any URI `pyarrow.fs` understands (s3://, gs://, file://).

Example:
    >>> import pyarrow as pa, tempfile
    >>> root = tempfile.mkdtemp()
    >>> uri = join_uri(root, "reviews", "2026-01-01", "results.parquet")
    >>> write_table(pa.table({"custom_id": ["a"]}), uri)
    >>> BatchResults(uri=uri, rows=1).to_arrow().num_rows
    1
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel

if TYPE_CHECKING:
    import pandas
    import polars

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def safe_segment(text: str) -> str:
    """A path segment made from a partition key or name (``2026-01-01|eu`` → ``2026-01-01_eu``)."""
    return _UNSAFE.sub("_", text).strip("_") or "_"


def join_uri(root: str, *segments: str) -> str:
    """Join a local path or URI with segments, keeping the scheme."""
    return "/".join([root.rstrip("/"), *(s.strip("/") for s in segments)])


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in uri:
        path = Path(uri).absolute()
        return pafs.LocalFileSystem(), str(path)
    return pafs.FileSystem.from_uri(uri)


def write_table(table: pa.Table, uri: str) -> None:
    """Write ``table`` as Parquet at ``uri`` (parent folders made as needed)."""
    fs, path = _filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, path, filesystem=fs, compression="zstd")


def upload_file(local: Path, uri: str) -> None:
    """Copy a local file to ``uri`` (streamed)."""
    fs, path = _filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pafs.copy_files(str(local), path, destination_filesystem=fs)


def download_file(uri: str, local: Path) -> Path:
    """Copy ``uri`` to a local file (streamed) and return its path."""
    fs, path = _filesystem(uri)
    pafs.copy_files(path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return local


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    """Read the Parquet table at ``uri``."""
    fs, path = _filesystem(uri)
    return pq.read_table(path, filesystem=fs, columns=columns)


def exists(uri: str) -> bool:
    fs, path = _filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


class BatchResults(BaseModel):
    """A small handle to a results table, passed to downstream assets.

    Load it as Arrow, pandas or polars; the table itself stays in storage.
    """

    uri: str
    rows: int
    counts: dict[str, int] = {}

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        return read_table(self.uri, columns)

    def to_pandas(self, columns: list[str] | None = None) -> "pandas.DataFrame":
        return self.to_arrow(columns).to_pandas()

    def to_polars(self, columns: list[str] | None = None) -> "polars.DataFrame":
        import polars

        return polars.from_arrow(self.to_arrow(columns))  # type: ignore[return-value]

