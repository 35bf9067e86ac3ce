"""Storage paths: partition keys become distinct, short, safe folder names."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagster_openai_batch.core import download_file, join_uri, read_table, safe_segment
from dagster_openai_batch.core.storage import (
    StorageError,
    atomic_output,
    open_output,
    readable_path,
)


def test_safe_segment_keeps_safe_keys_unchanged() -> None:
    for key in ("2026-11-01", "all", "eu", "a_b", "v1.2-rc_3"):
        assert safe_segment(key) == key


def test_safe_segment_never_collides_on_changed_keys() -> None:
    keys = ["a/b", "a_b", "a/b:c d é", "a b", "a//b", "a_b_c_d", "", "_", "x" * 300, "x" * 301]
    segments = [safe_segment(k) for k in keys]
    assert len(set(segments)) == len(keys), segments
    assert safe_segment("a/b") == safe_segment("a/b")  # stable across calls
    for seg in segments:
        assert seg
        assert len(seg) <= 89
        assert "/" not in seg


def test_long_partition_key_makes_a_writable_path(tmp_path: Path) -> None:
    key = (
        "region=eu/customer-" + "0123456789abcdef" * 18
    )  # 307 characters: too long for one file name
    assert len(key) == 307
    uri = join_uri(str(tmp_path), safe_segment("my pipeline"), safe_segment(key), "results.parquet")
    fs, path = open_output(uri)
    pq.write_table(pa.table({"a": [1]}), path, filesystem=fs)
    assert read_table(uri).column("a").to_pylist() == [1]
    assert all(len(part) <= 89 for part in Path(path).relative_to(tmp_path).parts)


def test_schemes_without_a_pyarrow_filesystem_go_through_fsspec() -> None:
    uri = join_uri("memory://storage-test", "pipe", "all", "results.parquet")
    with atomic_output(uri) as (fs, tmp):
        pq.write_table(pa.table({"a": [1, 2]}), tmp, filesystem=fs)
    assert read_table(uri).column("a").to_pylist() == [1, 2]


def test_unusable_storage_location_is_a_clear_error() -> None:
    with pytest.raises(StorageError, match=r"'nosuch://x/y'.*neither pyarrow nor fsspec"):
        read_table("nosuch://x/y")


def test_a_stored_file_missing_here_names_the_local_path_cause(tmp_path: Path) -> None:
    """Written on one machine's disk, read on another: the error says what to configure."""
    gone = str(tmp_path / "other-machine" / "inputs.parquet")
    with pytest.raises(StorageError, match=r"inputs.parquet does not exist.*DAGSTER_OPENAI_BATCH"):
        read_table(gone)
    with pytest.raises(StorageError, match="set the pipeline's storage="):
        download_file(gone, tmp_path / "copy.parquet")
    with pytest.raises(StorageError, match="set the pipeline's storage="):
        readable_path(gone, tmp_path / "copy.parquet")


def test_a_local_stored_file_is_read_in_place_and_a_remote_one_copied(tmp_path: Path) -> None:
    stored = tmp_path / "storage" / "part-0.jsonl"
    stored.parent.mkdir()
    stored.write_bytes(b'{"custom_id": "a"}\n')
    for uri in (str(stored), stored.as_uri()):
        assert readable_path(uri, tmp_path / "copy.jsonl") == stored
    assert not (tmp_path / "copy.jsonl").exists()
    remote = join_uri("memory://storage-test", "inputs", "part-0.jsonl")
    with atomic_output(remote) as (fs, tmp), fs.open_output_stream(tmp) as out:
        out.write(b'{"custom_id": "b"}\n')
    local = readable_path(remote, tmp_path / "copy.jsonl")
    assert local == tmp_path / "copy.jsonl"
    assert local.read_bytes() == b'{"custom_id": "b"}\n'
