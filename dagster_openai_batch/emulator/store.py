"""Durable state under one data dir: SQLite (WAL) rows for files and batches, blobs for contents.

Several threads, processes or `Emulator` instances may share a data dir; each thread gets its own
connection.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from .ids import alnum

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    bytes INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    created_at REAL NOT NULL,
    input_file_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    metadata TEXT,
    output_expires_after TEXT,
    plan TEXT NOT NULL,
    cancel_at REAL,
    validation TEXT,
    result TEXT,
    claim TEXT,
    claim_at REAL
);
"""
_JSON_COLUMNS = ("metadata", "output_expires_after", "plan", "validation", "result")
# A claim older than this (wall-clock seconds) is considered abandoned by a crashed process.
_STALE_CLAIM_SECONDS = 120.0


class Store:
    """Files and batches of one emulator data dir."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.blob_dir = self.data_dir / "blobs"
        self.tmp_dir = self.data_dir / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._db_path = self.data_dir / "emulator.sqlite3"
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    # -- plumbing ------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._db_path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @staticmethod
    def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        out = dict(row)
        for key in _JSON_COLUMNS:
            if out.get(key) is not None:
                out[key] = orjson.loads(out[key])
        return out

    def blob_path(self, blob_id: str) -> Path:
        """Where the bytes of a file (or a batch's private input link) live."""
        return self.blob_dir / blob_id

    def temp_path(self) -> Path:
        """A fresh path in the data dir's scratch area (same filesystem as the blobs, so renames are
        atomic)."""
        return self.tmp_dir / uuid.uuid4().hex

    # -- files ---------------------------------------------------------------------------------

    def add_file(
        self,
        src: Path,
        *,
        filename: str,
        purpose: str,
        size: int,
        created_at: float,
        expires_at: float | None,
        file_id: str | None = None,
    ) -> dict[str, Any]:
        """Move `src` into the blob area and record it as a file."""
        file_id = file_id or alnum("file-", 22)
        os.replace(src, self.blob_path(file_id))
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO files (id, bytes, created_at, expires_at, filename, "
                "purpose) VALUES (?,?,?,?,?,?)",
                (file_id, size, created_at, expires_at, filename, purpose),
            )
        row = self.get_file(file_id, now=created_at)
        assert row is not None
        return row

    def get_file(self, file_id: str, *, now: float) -> dict[str, Any] | None:
        """A live file row: not deleted and not past its expiry (expired files are gone, as on the
        real service)."""
        row = (
            self._conn()
            .execute(
                "SELECT * FROM files WHERE id=? AND deleted=0 AND (expires_at IS NULL OR "
                "expires_at > ?)",
                (file_id, now),
            )
            .fetchone()
        )
        return self._row(row)

    def list_files(
        self, *, now: float, purpose: str | None, after: str | None, limit: int, ascending: bool
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of live files and whether more follow."""
        sql = "SELECT * FROM files WHERE deleted=0 AND (expires_at IS NULL OR expires_at > ?)"
        args: list[Any] = [now]
        if purpose:
            sql += " AND purpose=?"
            args.append(purpose)
        if after:
            order = ">" if ascending else "<"
            sql += f" AND seq {order} COALESCE((SELECT seq FROM files WHERE id=?), ?)"
            args += [after, -1 if ascending else 2**62]
        sql += f" ORDER BY seq {'ASC' if ascending else 'DESC'} LIMIT ?"
        args.append(limit + 1)
        rows = [self._row(r) for r in self._conn().execute(sql, args).fetchall()]
        return [r for r in rows[:limit] if r is not None], len(rows) > limit

    def delete_file(self, file_id: str, *, now: float) -> bool:
        """Delete a live file; False if there is none."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE files SET deleted=1 WHERE id=? AND deleted=0 AND (expires_at IS NULL OR "
                "expires_at > ?)",
                (file_id, now),
            )
        if cur.rowcount:
            self.blob_path(file_id).unlink(missing_ok=True)
        return bool(cur.rowcount)

    # -- batches -------------------------------------------------------------------------------

    def insert_batch(self, row: dict[str, Any]) -> None:
        """Record a new batch. JSON columns are serialised here."""
        cols = list(row)
        vals = [
            orjson.dumps(row[c]) if c in _JSON_COLUMNS and row[c] is not None else row[c]
            for c in cols
        ]
        with self._tx() as db:
            db.execute(
                f"INSERT INTO batches ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", vals
            )

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        """One batch row, or None."""
        return self._row(
            self._conn().execute("SELECT * FROM batches WHERE id=?", (batch_id,)).fetchone()
        )

    def list_batches(self, *, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """A page of batches, newest first, and whether more follow."""
        sql, args = "SELECT * FROM batches", []
        if after:
            sql += " WHERE seq < COALESCE((SELECT seq FROM batches WHERE id=?), ?)"
            args += [after, 2**62]
        rows = (
            self._conn().execute(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit + 1]).fetchall()
        )
        return [r for r in map(self._row, rows[:limit]) if r is not None], len(rows) > limit

    def batches_created_before(self, batch_id: str, *, since: float) -> list[dict[str, Any]]:
        """The batches created before `batch_id` and after `since`, oldest first."""
        rows = (
            self._conn()
            .execute(
                "SELECT * FROM batches WHERE seq < (SELECT seq FROM batches WHERE id=?)"
                " AND created_at > ? ORDER BY seq",
                (batch_id, since),
            )
            .fetchall()
        )
        return [r for r in map(self._row, rows) if r is not None]

    def count_batches_since(self, since: float) -> int:
        """How many batches were created after `since`."""
        row = (
            self._conn()
            .execute("SELECT COUNT(*) FROM batches WHERE created_at > ?", (since,))
            .fetchone()
        )
        return int(row[0])

    def set_cancel(self, batch_id: str, at: float) -> None:
        """Record the first cancel request of a batch (later ones change nothing)."""
        with self._tx() as db:
            db.execute(
                "UPDATE batches SET cancel_at=? WHERE id=? AND cancel_at IS NULL", (at, batch_id)
            )

    def claim(self, batch_id: str, column: str) -> str | None:
        """Take the exclusive right to fill `column` (validation/result) of a batch; None if done or
        taken."""
        token = uuid.uuid4().hex
        wall = time.time()
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE batches SET claim=?, claim_at=? WHERE id=? AND {column} IS NULL"
                " AND (claim IS NULL OR claim_at < ?)",
                (token, wall, batch_id, wall - _STALE_CLAIM_SECONDS),
            )
        return token if cur.rowcount else None

    def complete_claim(self, batch_id: str, token: str, column: str, value: Any) -> bool:
        """Store the claimed work's outcome and release the claim; False if the claim was lost
        meanwhile."""
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE batches SET {column}=?, claim=NULL, claim_at=NULL WHERE id=? AND claim=?",
                (orjson.dumps(value), batch_id, token),
            )
        return bool(cur.rowcount)

    def release_claim(self, batch_id: str, token: str) -> None:
        """Give a claim back after a failure so another reader may retry."""
        with self._tx() as db:
            db.execute(
                "UPDATE batches SET claim=NULL, claim_at=NULL WHERE id=? AND claim=?",
                (batch_id, token),
            )
