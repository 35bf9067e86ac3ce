"""The source rows of a batch, each with its request's custom_id, as ``inputs.parquet``.

:class:`InputsTableWriter` streams the rows in record batches under one schema that grows with the
rows (see its docstring); the results are later joined to this table by custom_id.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .templates import is_missing

INPUTS_FILE = "inputs.parquet"
PARQUET_ROWS = 10_000
PARQUET_BYTES = 4_000_000
"""Rows are flushed to ``inputs.parquet`` every PARQUET_ROWS rows or PARQUET_BYTES of request JSON,
whichever first."""
_PARQUET_OPTIONS: dict[str, Any] = {"use_dictionary": False}
"""Plain encoding: dictionary encoding takes 2.5 times as long, and ids and texts rarely repeat."""


class InputsTableWriter:
    """Streams the source rows, each with its custom_id, to ``inputs.parquet`` in record batches.

    The schema is the union of every row's columns: a column missing from some rows is null there, a
    column that is null in the first rows takes the type seen later, and integers meet floats as
    floats. Chunks are written as they come; when a chunk widens the schema a new segment file is
    started, and the segments are rewritten into one table under the final schema at :meth:`close`.
    Types that cannot be reconciled raise a :class:`ValueError` naming the column and the line.

    A row column named ``custom_id`` is kept as ``input_custom_id`` unless it is ``id_column`` (the
    column the custom_ids were taken from), since ``custom_id`` holds the request's id.
    """

    def __init__(self, path: Path, id_column: str | None = None) -> None:
        self.path = path
        self.id_column = id_column
        self._ids: list[str] = []
        self._rows: list[dict[str, Any]] = []
        self._first_line = 1  # the input line of the first row not yet flushed
        self._bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._segments: list[Path] = []

    def add(self, custom_id: str, row: dict[str, Any], size: int) -> None:
        """Add the row of the next input line (the n-th row added is line n: rows come in order,
        none after a refused line) and ``size``, its request's bytes."""
        self._ids.append(custom_id)
        self._rows.append(row)
        self._bytes += size
        if len(self._rows) >= PARQUET_ROWS or self._bytes >= PARQUET_BYTES:
            self.flush()

    def add_many(self, ids: Sequence[str], rows: list[dict[str, Any]], sizes: list[int]) -> None:
        """:meth:`add` each row in turn (at once when no flush falls among them)."""
        size = sum(sizes)
        if len(self._rows) + len(rows) >= PARQUET_ROWS or self._bytes + size >= PARQUET_BYTES:
            for args in zip(ids, rows, sizes, strict=True):
                self.add(*args)
            return
        self._ids += ids
        self._rows += rows
        self._bytes += size

    def _lines(self) -> range:
        """The input lines of the rows not yet flushed."""
        return range(self._first_line, self._first_line + len(self._rows))

    def _table(self) -> pa.Table:
        rows = self._rows
        names = _names(rows)
        if "custom_id" in names:  # the request's id: a row's own is kept as input_custom_id
            keep = self.id_column != "custom_id"
            rows = [
                {
                    ("input_custom_id" if k == "custom_id" else k): v
                    for k, v in row.items()
                    if keep or k != "custom_id"
                }
                for row in rows
            ]
            names = _names(rows)
            names.pop("custom_id", None)
        arrays = [pa.array(self._ids, pa.string())]
        for name in names:
            arrays.append(_column(name, [row.get(name) for row in rows], self._lines()))
        return pa.Table.from_arrays(arrays, names=["custom_id", *names])

    def flush(self) -> None:
        if not self._rows:
            return
        table = self._table()
        fitted = _fit(table, self._writer.schema) if self._writer is not None else None
        if fitted is not None:
            table = fitted
        else:  # the first chunk, or one with a new column or a wider type: a new segment
            schema = table.schema
            if self._writer is not None:
                schema = _unify(self._writer.schema, table, self._lines())
                self._writer.close()
                table = _fit(table, schema)
                assert table is not None
            segment = self.path.with_name(f".{self.path.name}.{len(self._segments)}.tmp")
            self._segments.append(segment)
            self._writer = pq.ParquetWriter(segment, schema, **_PARQUET_OPTIONS)
        self._writer.write_table(table)  # type: ignore[union-attr]
        self._first_line += len(self._rows)
        self._ids, self._rows, self._bytes = [], [], 0

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for segment in self._segments:
            segment.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)

    def close(self) -> Path:
        self.flush()
        if self._writer is None:
            pq.write_table(pa.table({"custom_id": pa.array([], pa.string())}), self.path)
            return self.path
        self._writer.close()
        schema = self._writer.schema  # the last segment's schema holds every earlier one
        self._writer = None
        if len(self._segments) == 1:
            os.replace(self._segments[0], self.path)
        else:
            with pq.ParquetWriter(self.path, schema, **_PARQUET_OPTIONS) as out:
                for segment in self._segments:
                    for batch in pq.ParquetFile(segment).iter_batches(batch_size=PARQUET_ROWS):
                        out.write_table(_fit(pa.Table.from_batches([batch]), schema))
                    segment.unlink()
        self._segments = []
        # Arrow's allocator keeps what the row tables let go for reuse: hand it back (1,000,000
        # rows: ~17 MB), as the process may run on for hours.
        pa.default_memory_pool().release_unused()
        return self.path


def _names(rows: list[dict[str, Any]]) -> dict[str, None]:
    """Every column of ``rows``: the first row's, then the others' in order of appearance."""
    first = rows[0].keys()
    names = dict.fromkeys(first)
    for row in rows:
        if row.keys() != first:
            names.update(dict.fromkeys(row))
    return names


def _column(name: str, values: list[Any], lines: range) -> pa.Array:
    """One input column as an Arrow array; NaN/NaT count as nulls; mixed types raise a ValueError
    naming a line."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
        error = e
    present = [(i, v) for i, v in enumerate(values) if not is_missing(v)]
    if not present:
        raise ValueError(
            f"input rows do not fit one table schema: column {name!r} ({error})"
        ) from error
    i0, v0 = present[0]
    bad = next(((i, v) for i, v in present if type(v) is not type(v0)), present[-1])
    raise ValueError(
        f"input rows do not fit one table schema: column {name!r} holds {type(v0).__name__} "
        f"{v0!r:.40} on line "
        f"{lines[i0]} but {type(bad[1]).__name__} {bad[1]!r:.40} on line {lines[bad[0]]} "
        f"({error}); "
        "give every row the same column types"
    ) from error


def _fit(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """``table`` cast to ``schema`` (absent columns as nulls), or None if it has a column or a type
    ``schema`` lacks."""
    if not set(table.column_names) <= set(schema.names):
        return None
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type != field.type:
            if not pa.types.is_null(column.type):
                try:
                    wider = (
                        pa.unify_schemas(
                            [pa.schema([field]), pa.schema([(field.name, column.type)])],
                            promote_options="permissive",
                        )
                        .field(0)
                        .type
                    )
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    return None
                if wider != field.type:
                    return None
            column = column.cast(field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _unify(schema: pa.Schema, table: pa.Table, lines: range) -> pa.Schema:
    """The schema holding both ``schema`` and ``table``'s columns, or a ValueError naming the
    clashing column."""
    try:
        return pa.unify_schemas([schema, table.schema], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        for field in table.schema:
            if field.name in schema.names:
                try:
                    pa.unify_schemas(
                        [pa.schema([schema.field(field.name)]), pa.schema([field])],
                        promote_options="permissive",
                    )
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    valid = table.column(field.name).is_valid().to_pylist()
                    line = lines[valid.index(True)] if True in valid else lines[0]
                    raise ValueError(
                        f"input rows do not fit one table schema: column {field.name!r} is "
                        f"{schema.field(field.name).type} "
                        f"in earlier rows but {field.type} on line {line}; give every row the same "
                        "column types"
                    ) from e
        raise ValueError(
            f"input rows do not fit one table schema ({e}); give every row the same column types"
        ) from e
