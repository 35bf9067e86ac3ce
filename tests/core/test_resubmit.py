"""Resubmission policy, merged cost and atomic result writes, from result files in the real line
formats."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_results import CHAT, batch, chat_body, http_error, jsonl, ok, other_error

from dagster_openai_batch.core import (
    build_resubmission,
    collect_results,
    cost_usd,
    count_resubmittable,
    merge_results,
    write_batch_input,
)
from dagster_openai_batch.core.results import JOIN_BATCH_ROWS

MODEL = "gpt-4o-mini-2024-07-18"


def status_error(cid: str, code: int, error_code: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{cid}",
        "custom_id": cid,
        "response": {
            "status_code": code,
            "request_id": f"req_{cid}",
            "body": {
                "error": {"message": error_code, "type": "x", "param": None, "code": error_code}
            },
        },
        "error": None,
    }


def sent_parts(ids: list[str], tmp: Path) -> list[Any]:
    requests = [
        {"custom_id": c, "url": CHAT, "body": {"model": "gpt-4o-mini", "messages": []}} for c in ids
    ]
    return write_batch_input(requests, tmp / "sent", endpoint=CHAT).parts


def results(
    tmp: Path, ids: list[str], out: list[dict[str, Any]], err: list[dict[str, Any]], name: str = "r"
) -> str:
    o, e = jsonl(tmp / f"file-out-{name}.jsonl", out), jsonl(tmp / f"file-err-{name}.jsonl", err)
    return collect_results(
        output_files=[o],
        error_files=[e],
        prepared_inputs_path=None,
        request_ids=ids,
        batches=[batch("completed", out=f"file-out-{name}", err=f"file-err-{name}")],
        endpoint=CHAT,
        dest=tmp / f"{name}.parquet",
    ).path


def test_only_what_can_succeed_on_retry_is_resent(tmp_path: Path) -> None:
    ids = [
        "ok",
        "too_long",
        "not_found",
        "rate",
        "server",
        "unavailable",
        "timeout",
        "expired",
        "absent",
    ]
    path = results(
        tmp_path,
        ids,
        [ok("ok", chat_body("A"))],
        [
            http_error("too_long"),  # 400 context_length_exceeded: fails again
            status_error("not_found", 404, "model_not_found"),
            status_error("rate", 429, "rate_limit_exceeded"),
            status_error("server", 500, "server_error"),
            status_error("unavailable", 503, "overloaded"),
            other_error("timeout", "request_timeout"),  # no HTTP response at all
            other_error("expired", "batch_expired"),
        ],
    )
    parts = sent_parts(ids, tmp_path)
    retry = [r.custom_id for r in build_resubmission(path, parts)]
    assert retry == ["rate", "server", "unavailable", "timeout", "expired", "absent"]
    assert count_resubmittable(path) == 6
    every = [r.custom_id for r in build_resubmission(path, parts, include_permanent_failures=True)]
    assert every == ids[1:]
    assert count_resubmittable(path, include_permanent_failures=True) == 8
    # the requests themselves work as `sent` too
    requests = [r for r in build_resubmission(path, parts, include_permanent_failures=True)]
    assert [r.custom_id for r in build_resubmission(path, requests)] == retry


def test_nothing_to_resend_yields_nothing(tmp_path: Path) -> None:
    ids = ["a", "b"]
    path = results(tmp_path, ids, [ok("a", chat_body("A"))], [http_error("b")])
    assert list(build_resubmission(path, sent_parts(ids, tmp_path))) == []
    assert count_resubmittable(path) == 0
    assert [
        r.custom_id
        for r in build_resubmission(
            path, sent_parts(ids, tmp_path), include_permanent_failures=True
        )
    ] == ["b"]


def test_merged_results_keep_a_real_cost(tmp_path: Path) -> None:
    ids = ["a", "b", "c", "d"]
    base = results(
        tmp_path,
        ids,
        [ok("a", chat_body("A", model=MODEL, cached=4))],
        [
            status_error("b", 500, "server_error"),
            other_error("c", "batch_expired"),
            http_error("d"),
        ],
    )
    follow = results(
        tmp_path,
        ["b", "c"],
        [ok("b", chat_body("B", model=MODEL)), ok("c", chat_body("C", model=MODEL))],
        [],
        name="f",
    )
    merged = merge_results(base, follow, tmp_path / "merged.parquet")
    assert merged.counts["succeeded"] == 3
    assert merged.counts["failed"] == 1
    expected = (
        cost_usd(MODEL, input_tokens=10, cached_tokens=4, output_tokens=5)  # type: ignore[operator]
        + 2 * cost_usd(MODEL, input_tokens=10, cached_tokens=0, output_tokens=5)
    )  # type: ignore[operator]
    assert isinstance(merged.cost_usd, float)
    assert merged.cost_usd == round(expected, 6) > 0
    assert merged.input_tokens == 30
    assert "gpt-4o-mini" in merged.cost_note
    unknown = results(tmp_path, ["b"], [ok("b", chat_body("B", model="ft:mine"))], [], name="u")
    assert merge_results(base, unknown, tmp_path / "m2.parquet").cost_usd is None


def test_merge_into_its_own_base(tmp_path: Path) -> None:
    """The merged table is written beside and moved into place, so the base may be the
    destination."""
    ids = [f"r{i}" for i in range(3000)]
    base = results(
        tmp_path,
        ids,
        [ok(c, chat_body(c)) for c in ids[1:]],
        [status_error("r0", 503, "overloaded")],
    )
    follow = results(tmp_path, ["r0"], [ok("r0", chat_body("fixed"))], [], name="f")
    merged = merge_results(base, follow, base)
    table = pq.read_table(base)
    assert merged.rows == table.num_rows == 3000
    assert merged.counts["succeeded"] == 3000
    assert table.column("answer")[0].as_py() == "fixed"
    assert [p.name for p in tmp_path.glob(".*")] == []


def test_a_reader_never_sees_a_partial_results_file(tmp_path: Path) -> None:
    dest = tmp_path / "results.parquet"
    ids = [f"r{i}" for i in range(3 * JOIN_BATCH_ROWS)]
    out = jsonl(tmp_path / "file-out.jsonl", [ok(c, chat_body(c)) for c in ids])
    collect_results(
        output_files=[out],
        error_files=[],
        prepared_inputs_path=None,
        request_ids=ids[:10],
        batches=[batch()],
        endpoint=CHAT,
        dest=dest,
    )
    seen: list[int] = []

    def ids_then_fail() -> Iterator[str]:
        for i, cid in enumerate(ids):
            if i == 2 * JOIN_BATCH_ROWS:  # the first chunks are written by now
                seen.append(
                    pq.read_table(dest).num_rows
                )  # what a reader sees meanwhile: the old table, whole
                raise RuntimeError("source went away")
            yield cid

    with pytest.raises(RuntimeError, match="source went away"):
        collect_results(
            output_files=[out],
            error_files=[],
            prepared_inputs_path=None,
            request_ids=ids_then_fail(),
            batches=[batch()],
            endpoint=CHAT,
            dest=dest,
        )
    assert seen == [10]
    assert pq.read_table(dest).num_rows == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file-out.jsonl", "results.parquet"]


def test_two_writers_do_not_interleave(tmp_path: Path) -> None:
    dest = tmp_path / "results.parquet"
    ids = [f"r{i}" for i in range(4 * JOIN_BATCH_ROWS)]
    out = jsonl(tmp_path / "file-out.jsonl", [ok(c, chat_body(c)) for c in ids])
    errors: list[BaseException] = []

    def write() -> None:
        try:
            collect_results(
                output_files=[out],
                error_files=[],
                prepared_inputs_path=None,
                request_ids=ids,
                batches=[batch()],
                endpoint=CHAT,
                dest=dest,
            )
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    table = pq.read_table(dest)
    assert table.column("custom_id").to_pylist() == ids
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file-out.jsonl", "results.parquet"]


def test_a_follow_up_with_no_answer_at_all_keeps_the_base(tmp_path: Path) -> None:
    """A follow-up batch that expired before any request ran has empty result files: the base rows
    stand."""
    ids = ["a", "b", "c"]
    base = results(
        tmp_path,
        ids,
        [ok("a", chat_body("A"))],
        [status_error("b", 503, "overloaded"), status_error("c", 429, "rate_limit_exceeded")],
    )
    empty = collect_results(
        output_files=[],
        error_files=[],
        prepared_inputs_path=None,
        request_ids=None,
        batches=[batch("expired")],
        endpoint=CHAT,
        dest=tmp_path / "empty.parquet",
    ).path
    merged = merge_results(base, empty, tmp_path / "merged.parquet")
    table = pq.read_table(merged.path)
    assert table.column("custom_id").to_pylist() == ids
    assert merged.counts["succeeded"] == 1
    assert table.column("status").to_pylist() == pq.read_table(base).column("status").to_pylist()
