"""Missing values in rows: pandas gaps, columns that appear late, placeholders and ids with no
value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagster_openai_batch.core import (
    BatchClient,
    BatchInputError,
    RequestTemplate,
    build_requests,
    collect_results,
    iter_rows,
    prepare_rows,
    read_jsonl_input,
    write_batch_input,
)
from dagster_openai_batch.core.inputs_table import PARQUET_ROWS

CHAT = "/v1/chat/completions"
FIX = "Fill or drop these rows, or set the column to an empty string"


def template(prompt: str = "Answer: {question}", id_column: str | None = "id") -> RequestTemplate:
    return RequestTemplate(
        endpoint=CHAT, model="gpt-4o-mini", prompt=prompt, custom_id_column=id_column
    )


def run_to_results(bc: BatchClient, rows: object, t: RequestTemplate, tmp: Path) -> pa.Table:
    """prepare_rows, then a real batch on the emulator through the openai SDK, then
    collect_results."""
    prepared = prepare_rows(rows, t, tmp / "in")
    files = [bc.upload(part).id for part in prepared.parts]
    batch, _ = bc.create_or_adopt(input_file_id=files[0], endpoint=CHAT, idempotency_key="k")
    final = bc.wait([batch.id], timeout=3600)[batch.id]
    outs, errs = bc.download_results([final], tmp / "dl")
    summary = collect_results(
        output_files=outs,
        error_files=errs,
        prepared_inputs_path=prepared.inputs_path,
        request_ids=None,
        batches=[final],
        endpoint=CHAT,
        dest=tmp / "results.parquet",
    )
    return pq.read_table(summary.path)


# ---------------------------------------------------------------- (a) pandas missing values


def test_iter_rows_turns_pandas_gaps_into_none() -> None:
    df = pd.DataFrame(
        {
            "s": ["a", None, "c"],
            "f": [1.5, np.nan, 2.0],
            "t": pd.to_datetime(["2026-01-01", None, "2026-01-03"]),
            "n": pd.array([1, pd.NA, 3], dtype="Int64"),
            "full": ["x", "y", "z"],
            "i": [1, 2, 3],
        }
    )
    rows = list(iter_rows(df))
    assert [r["s"] for r in rows] == ["a", None, "c"]
    assert rows[1] == {"s": None, "f": None, "t": None, "n": None, "full": "y", "i": 2}
    assert rows[0]["f"] == 1.5
    assert rows[0]["t"] == pd.Timestamp("2026-01-01")
    assert rows[2]["n"] == 3
    assert type(rows[0]["i"]) is int
    assert df["s"].isna().sum() == 1


def test_pandas_nan_in_a_string_column_runs_through(bc: BatchClient, tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "question": ["q1", "q2", "q3"],
            "note": ["x", np.nan, "z"],
            "when": pd.to_datetime(["2026-01-01", None, "2026-01-03"]),
        }
    )
    table = run_to_results(bc, df, template(), tmp_path)
    assert table.column("note").to_pylist() == ["x", None, "z"]
    assert table.column("when").null_count == 1
    assert table.column("status").to_pylist() == ["succeeded"] * 3


# ---------------------------------------------------------------- (b) inputs.parquet schema


def test_column_null_for_the_whole_first_chunk_then_set(tmp_path: Path) -> None:
    n = PARQUET_ROWS + 5
    rows = [
        {
            "id": i,
            "question": "q",
            "late": None if i < PARQUET_ROWS else f"v{i}",
            "num": None if i < PARQUET_ROWS else i,
        }
        for i in range(n)
    ]
    p = prepare_rows(rows, template(), tmp_path)
    table = pq.read_table(p.inputs_path)
    assert table.schema.field("late").type == pa.string()
    assert table.schema.field("num").type == pa.int64()
    assert table.column("late").to_pylist()[-5:] == [f"v{i}" for i in range(PARQUET_ROWS, n)]
    assert table.column("late").null_count == PARQUET_ROWS
    assert table.num_rows == n
    assert not list(tmp_path.glob(".*.tmp")), "segment files are cleaned up"


def test_column_absent_from_first_rows_is_kept(tmp_path: Path) -> None:
    rows = [{"id": 0, "question": "q"}, {"id": 1, "question": "q", "extra": "e1"}]
    rows += [{"id": i, "question": "q"} for i in range(2, PARQUET_ROWS + 3)]
    rows[-1]["later"] = 7  # only in the last row, in a later chunk
    p = prepare_rows(rows, template(), tmp_path)
    table = pq.read_table(p.inputs_path)
    assert table.column_names == ["custom_id", "id", "question", "extra", "later"]
    assert table.column("extra").to_pylist()[:3] == [None, "e1", None]
    assert table.column("later").to_pylist()[-2:] == [None, 7]


def test_ints_meet_floats_across_chunks(tmp_path: Path) -> None:
    rows = [
        {"id": i, "question": "q", "score": i if i < PARQUET_ROWS else i + 0.5}
        for i in range(PARQUET_ROWS + 2)
    ]
    table = pq.read_table(prepare_rows(rows, template(), tmp_path).inputs_path)
    assert table.schema.field("score").type == pa.float64()
    assert table.column("score").to_pylist()[-1] == PARQUET_ROWS + 1.5
    assert table.column("score")[3].as_py() == 3.0


def test_clashing_types_name_the_column_and_line(tmp_path: Path) -> None:
    rows = [{"id": i, "question": "q", "x": "text"} for i in range(3)] + [
        {"id": 3, "question": "q", "x": 5}
    ]
    with pytest.raises(
        ValueError, match=r"column 'x' holds str 'text' on line 1 but int 5 on line 4"
    ):
        prepare_rows(rows, template(), tmp_path / "a")
    rows = [{"id": i, "question": "q", "x": "text"} for i in range(PARQUET_ROWS)]
    rows += [
        {"id": PARQUET_ROWS, "question": "q", "x": None},
        {"id": PARQUET_ROWS + 1, "question": "q", "x": 5},
    ]
    with pytest.raises(
        ValueError,
        match=rf"column 'x' is string in earlier rows but int64 on line {PARQUET_ROWS + 2}",
    ):
        prepare_rows(rows, template(), tmp_path / "b")
    assert not list((tmp_path / "b").iterdir()), "nothing is left behind"


def test_polars_and_arrow_nulls(tmp_path: Path) -> None:
    df = pl.DataFrame({"id": [1, 2], "question": ["a", "b"], "note": [None, "n"]})
    assert pq.read_table(prepare_rows(df, template(), tmp_path / "pl").inputs_path).column(
        "note"
    ).to_pylist() == [None, "n"]
    at = pa.table({"id": [1, 2], "question": ["a", "b"], "note": pa.array([None, None], pa.null())})
    assert (
        pq.read_table(prepare_rows(at, template(), tmp_path / "pa").inputs_path)
        .column("note")
        .null_count
        == 2
    )


# ---------------------------------------------------------------- (c) placeholders with no value


def test_missing_placeholder_values_are_problems_not_the_word_none(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "id": range(30),
            "question": [None if i % 3 == 0 else f"q{i}" for i in range(30)],
            "ctx": ["c"] * 29 + [np.nan],
        }
    )
    with pytest.raises(BatchInputError) as e:
        prepare_rows(df, template("Q: {question} ({ctx})"), tmp_path)
    err = e.value
    assert err.total == 11
    assert len(err.problems) == 11
    assert not list(tmp_path.glob("part-*"))
    first = err.problems[0]
    assert (first.line, first.custom_id, first.field, first.code) == (
        1,
        "0",
        "question",
        "missing_value",
    )
    assert str(first) == (
        "line 1 (custom_id '0'), field 'question': placeholder {question} has no value (None); "
        f"it would be sent as the text 'None'. {FIX}"
    )
    assert [(p.line, p.field) for p in err.problems][-2:] == [(28, "question"), (30, "ctx")]
    text = str(err)
    assert text.startswith("batch input is invalid (11 problem(s)); nothing was uploaded:")


def test_missing_placeholders_listed_first_20_plus_count(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "question": float("nan")} for i in range(25)]
    with pytest.raises(BatchInputError) as e:
        prepare_rows(rows, template(), tmp_path)
    lines = str(e.value).splitlines()
    assert len(lines) == 22
    assert lines[-1] == "  … and 5 more problem(s)"
    assert (
        "placeholder {question} has no value (nan); it would be sent as the text 'nan'" in lines[1]
    )


def test_empty_string_and_unused_missing_columns_are_fine(tmp_path: Path) -> None:
    rows = [{"id": 1, "question": "", "unused": None}]
    p = prepare_rows(rows, template(), tmp_path)
    (line,) = read_jsonl_input(p.parts[0].path)
    assert line["body"]["messages"][0]["content"] == "Answer: "


def test_build_requests_refuses_missing_placeholder() -> None:
    with pytest.raises(ValueError, match=r"row 2: placeholder \{question\} has no value \(None\)"):
        list(build_requests([{"id": 1, "question": "a"}, {"id": 2, "question": None}], template()))


# ---------------------------------------------------------------- (d) custom_id values


def test_bad_ids_are_problems(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "question": "q"},
        {"id": float("nan"), "question": "q"},
        {"id": None, "question": "q"},
        {"id": 1.0, "question": "q"},
        {"id": "", "question": "q"},
        {"id": 7, "question": None},
    ]
    with pytest.raises(BatchInputError) as e:
        prepare_rows(rows, template(), tmp_path)
    got = [(p.line, p.field, p.message) for p in e.value.problems]
    assert got == [
        (2, "id", "custom_id_column 'id' is empty (nan)"),
        (3, "id", "custom_id_column 'id' is empty (None)"),
        (4, "id", "custom_id_column 'id' is a float (1.0)"),
        (5, "id", "custom_id_column 'id' is empty ('')"),
        (
            6,
            "question",
            "placeholder {question} has no value (None); it would be sent as the text 'None'",
        ),
    ]
    assert "a string or an integer" in e.value.problems[0].fix
    assert e.value.problems[4].custom_id == "7"


def test_pandas_int_ids_with_a_gap_are_rejected(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": [1, None, 3], "question": ["a", "b", "c"]})  # float64: 1.0, NaN, 3.0
    with pytest.raises(BatchInputError) as e:
        prepare_rows(df, template(), tmp_path)
    assert [p.line for p in e.value.problems] == [1, 2, 3]
    ok = prepare_rows(df.dropna().astype({"id": "int64"}), template(), tmp_path / "ok")
    assert [line["custom_id"] for line in read_jsonl_input(ok.parts[0].path)] == ["1", "3"]
    ok = prepare_rows(
        pd.DataFrame({"id": pd.array([1, 3], dtype="Int64"), "question": ["a", "c"]}),
        template(),
        tmp_path / "ok2",
    )
    assert [line["custom_id"] for line in read_jsonl_input(ok.parts[0].path)] == ["1", "3"]


# ---------------------------------------------------------------- 2. a user column named custom_id


def test_user_custom_id_column_is_kept_as_input_custom_id(bc: BatchClient, tmp_path: Path) -> None:
    rows = [
        {"id": f"r{i}", "question": f"q{i}", "custom_id": f"user-{i}", "status": "draft"}
        for i in range(3)
    ]
    table = run_to_results(bc, rows, template(), tmp_path)
    assert table.column("custom_id").to_pylist() == ["r0", "r1", "r2"]
    assert table.column("input_custom_id").to_pylist() == ["user-0", "user-1", "user-2"]
    assert table.column("input_status").to_pylist() == ["draft"] * 3
    assert table.column("status").to_pylist() == ["succeeded"] * 3


def test_custom_id_column_named_custom_id_is_not_duplicated(tmp_path: Path) -> None:
    rows = [{"custom_id": 5, "question": "q"}]
    p = prepare_rows(rows, template(id_column="custom_id"), tmp_path / "a")
    assert pq.read_table(p.inputs_path).to_pylist() == [{"custom_id": "5", "question": "q"}]
    req = {"custom_id": "x", "url": CHAT, "body": {"model": "m", "messages": []}}
    p = write_batch_input(
        [req], tmp_path / "b", endpoint=CHAT, rows=[{"custom_id": "mine", "q": 1}]
    )
    assert pq.read_table(p.inputs_path).to_pylist() == [
        {"custom_id": "x", "input_custom_id": "mine", "q": 1}
    ]
