"""Results parsing from files written in the real line formats (see openai-spec/README.md)."""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openai.types import Batch

from dagster_openai_batch.core import collect_results, cost_usd, price_for, write_batch_input
from dagster_openai_batch.core import inputs_table as inputs_table_module
from dagster_openai_batch.core import results as results_module
from dagster_openai_batch.core.results import SentParts

CHAT = "/v1/chat/completions"


def batch(
    status: str = "completed",
    bid: str = "batch_1",
    out: str | None = "file-out",
    err: str | None = "file-err",
) -> Batch:
    return Batch.model_validate(
        {
            "id": bid,
            "object": "batch",
            "endpoint": CHAT,
            "input_file_id": "file-in",
            "completion_window": "24h",
            "status": status,
            "created_at": 1,
            "output_file_id": out,
            "error_file_id": err,
        }
    )


def ok(cid: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"batch_req_{cid}",
        "custom_id": cid,
        "response": {"status_code": 200, "request_id": f"req_{cid}", "body": body},
        "error": None,
    }


def chat_body(
    text: str, model: str = "gpt-4o-mini-2024-07-18", cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    }


def http_error(cid: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{cid}",
        "custom_id": cid,
        "response": {
            "status_code": 400,
            "request_id": f"req_{cid}",
            "body": {
                "error": {
                    "message": "too long",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
        },
        "error": None,
    }


def other_error(cid: str, code: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{cid}",
        "custom_id": cid,
        "response": None,
        "error": {"code": code, "message": f"{code}!"},
    }


def jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    return path


def test_join_every_status_whatever_the_order(tmp_path: Path) -> None:
    requests = [
        {"custom_id": c, "url": CHAT, "body": {"model": "gpt-4o-mini", "messages": []}}
        for c in ["a", "b", "c", "d", "e"]
    ]
    rows = [{"question": q, "status": "user column"} for q in "ABCDE"]
    prepared = write_batch_input(requests, tmp_path / "in", endpoint=CHAT, rows=rows)
    out = jsonl(
        tmp_path / "file-out.jsonl",
        [ok("c", chat_body("C!", cached=4, reasoning=2)), ok("a", chat_body("A!"))],
    )
    err = jsonl(
        tmp_path / "file-err.jsonl",
        [other_error("d", "batch_expired"), http_error("b"), ok("zzz", chat_body("not ours"))],
    )
    summary = collect_results(
        output_files=[out],
        error_files=[err],
        prepared_inputs_path=prepared.inputs_path,
        request_ids=None,
        batches=[batch("expired")],
        endpoint=CHAT,
        dest=str(tmp_path / "r" / "x.parquet"),
    )
    table = pq.read_table(summary.path)
    assert table.column_names[:3] == ["custom_id", "question", "input_status"]
    got = {r["custom_id"]: r for r in table.to_pylist()}
    assert [r["custom_id"] for r in table.to_pylist()] == ["a", "b", "c", "d", "e"]
    assert {c: r["status"] for c, r in got.items()} == {
        "a": "succeeded",
        "b": "failed",
        "c": "succeeded",
        "d": "expired",
        "e": "expired",
    }
    assert got["c"]["answer"] == "C!"
    assert got["c"]["cached_tokens"] == 4
    assert got["c"]["reasoning_tokens"] == 2
    assert got["c"]["request_id"] == "req_c"
    assert got["c"]["batch_id"] == "batch_1"
    assert got["c"]["question"] == "C"
    assert orjson.loads(got["a"]["response_body"])["choices"][0]["message"]["content"] == "A!"
    assert (got["b"]["status_code"], got["b"]["error_code"], got["b"]["error_message"]) == (
        400,
        "context_length_exceeded",
        "too long",
    )
    assert got["b"]["input_tokens"] is None
    assert (got["d"]["error_code"], got["e"]["error_code"]) == ("batch_expired", None)
    assert summary.counts == {
        "succeeded": 2,
        "failed": 1,
        "expired": 2,
        "cancelled": 0,
        "missing": 0,
    }
    assert summary.rows == 5
    assert summary.unmatched_lines == 1
    assert (
        summary.input_tokens,
        summary.cached_tokens,
        summary.output_tokens,
        summary.reasoning_tokens,
    ) == (20, 4, 10, 2)
    assert summary.cost_usd == pytest.approx((16 * 0.075 + 4 * 0.0375 + 10 * 0.30) / 1e6, abs=1e-6)
    assert "gpt-4o-mini" in summary.cost_note
    assert summary.preview[0]["custom_id"] == "a"


@pytest.mark.parametrize(
    ("status", "expected"),
    [("cancelled", "cancelled"), ("completed", "missing"), ("failed", "missing")],
)
def test_absent_requests_by_batch_status(tmp_path: Path, status: str, expected: str) -> None:
    out = jsonl(tmp_path / "file-out.jsonl", [ok("a", chat_body("A"))])
    err = jsonl(tmp_path / "file-err.jsonl", [other_error("c", "batch_cancelled")])
    summary = collect_results(
        output_files=[out],
        error_files=[err],
        prepared_inputs_path=None,
        request_ids=iter(["a", "b", "c"]),
        batches=[batch(status)],
        endpoint=CHAT,
        dest=tmp_path / "r.parquet",
    )
    got = pq.read_table(summary.path).to_pylist()
    assert [r["status"] for r in got] == ["succeeded", expected, "cancelled"]


def test_owner_batches_decide_absent_status_and_duplicates_prefer_success(tmp_path: Path) -> None:
    b1, b2 = (
        batch("cancelled", "batch_1", "file-o1", None),
        batch("completed", "batch_2", "file-o2", "file-e2"),
    )
    o1 = jsonl(tmp_path / "file-o1.jsonl", [ok("a", chat_body("A"))])
    e2 = jsonl(tmp_path / "file-e2.jsonl", [http_error("c")])
    o2 = jsonl(tmp_path / "file-o2.jsonl", [ok("c", chat_body("C"))])
    summary = collect_results(
        output_files=[o1],
        error_files=[e2, o2],
        prepared_inputs_path=None,
        request_ids=[("a", "batch_1"), ("b", "batch_1"), ("c", "batch_2"), ("d", "batch_2")],
        batches=[b1, b2],
        endpoint=CHAT,
        dest=tmp_path / "r.parquet",
    )
    got = {
        r["custom_id"]: (r["status"], r["batch_id"])
        for r in pq.read_table(summary.path).to_pylist()
    }
    assert got == {
        "a": ("succeeded", "batch_1"),
        "b": ("cancelled", "batch_1"),
        "c": ("succeeded", "batch_2"),
        "d": ("missing", "batch_2"),
    }


def test_answers_per_endpoint(tmp_path: Path) -> None:
    vec = np.arange(4, dtype=np.float32) / 3
    cases = {
        "/v1/embeddings": (
            ok(
                "e1",
                {
                    "object": "list",
                    "model": "text-embedding-3-small",
                    "data": [{"object": "embedding", "index": 0, "embedding": vec.tolist()}],
                    "usage": {"prompt_tokens": 3, "total_tokens": 3},
                },
            ),
            None,
        ),
        "/v1/responses": (
            ok(
                "r1",
                {
                    "object": "response",
                    "model": "gpt-5-mini",
                    "output": [
                        {"type": "reasoning", "summary": []},
                        {
                            "type": "message",
                            "content": [
                                {"type": "output_text", "text": '{"label":'},
                                {"type": "output_text", "text": '"x"}'},
                            ],
                        },
                    ],
                    "usage": {
                        "input_tokens": 7,
                        "output_tokens": 9,
                        "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens_details": {"reasoning_tokens": 4},
                    },
                },
            ),
            '{"label":"x"}',
        ),
        "/v1/completions": (
            ok(
                "c1",
                {
                    "object": "text_completion",
                    "model": "gpt-3.5-turbo-instruct",
                    "choices": [{"text": "done", "index": 0}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1},
                },
            ),
            "done",
        ),
        "/v1/moderations": (
            ok(
                "m1",
                {
                    "model": "omni-moderation-latest",
                    "results": [
                        {
                            "flagged": True,
                            "categories": {"violence": True, "hate": False, "harassment": True},
                        }
                    ],
                },
            ),
            '{"flagged":true,"categories":["harassment","violence"]}',
        ),
    }
    for endpoint, (line, answer) in cases.items():
        path = jsonl(tmp_path / "out.jsonl", [line])
        s = collect_results(
            output_files=[path],
            error_files=[],
            prepared_inputs_path=None,
            request_ids=[line["custom_id"]],
            batches=[batch()],
            endpoint=endpoint,
            dest=tmp_path / "r.parquet",
        )
        row = pq.read_table(s.path).to_pylist()[0]
        if endpoint == "/v1/embeddings":
            table = pq.read_table(s.path)
            assert table.schema.field("answer").type.value_type == pa.float32()
            assert np.array_equal(np.asarray(row["answer"], np.float32), vec)
            assert "embedding" not in orjson.loads(row["response_body"])["data"][0]
        else:
            assert row["answer"] == answer, endpoint
    b64 = base64.b64encode(vec.tobytes()).decode()
    path = jsonl(
        tmp_path / "out.jsonl",
        [ok("e", {"model": "text-embedding-3-small", "data": [{"embedding": b64}]})],
    )
    s = collect_results(
        output_files=[path],
        error_files=[],
        prepared_inputs_path=None,
        request_ids=["e"],
        batches=[batch()],
        endpoint="/v1/embeddings",
        dest=tmp_path / "r.parquet",
    )
    assert np.array_equal(
        np.asarray(pq.read_table(s.path).to_pylist()[0]["answer"], np.float32), vec
    )


def test_unknown_model_gives_no_cost(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "out.jsonl", [ok("a", chat_body("x", model="ft:my-model"))])
    s = collect_results(
        output_files=[path],
        error_files=[],
        prepared_inputs_path=None,
        request_ids=["a"],
        batches=[batch()],
        endpoint=CHAT,
        dest=tmp_path / "r.parquet",
    )
    assert s.cost_usd is None
    assert s.cost_note == "unknown model 'ft:my-model': not in the price table, so no cost is given"


def test_truncated_result_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(
        orjson.dumps(ok("a", chat_body("x"))) + b"\n" + b'{"id": "batch_req_b", "custom_id"'
    )
    with pytest.raises(
        ValueError, match=r"out.jsonl: byte \d+: not a batch result line .*Download it again"
    ):
        collect_results(
            output_files=[path],
            error_files=[],
            prepared_inputs_path=None,
            request_ids=["a"],
            batches=[batch()],
            endpoint=CHAT,
            dest=tmp_path / "r.parquet",
        )


def test_dest_uri_through_pyarrow_fs(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "out.jsonl", [ok("a", chat_body("x"))])
    s = collect_results(
        output_files=[path],
        error_files=[],
        prepared_inputs_path=None,
        request_ids=["a"],
        batches=[batch()],
        endpoint=CHAT,
        dest=f"file://{tmp_path}/deep/dir/r.parquet",
    )
    assert s.path.startswith("file://")
    assert pq.read_table(tmp_path / "deep/dir/r.parquet").num_rows == 1


def test_pricing_table() -> None:
    assert price_for("gpt-4o-2024-08-06") == price_for("gpt-4o")
    assert (
        cost_usd("omni-moderation-latest", input_tokens=10**6, cached_tokens=0, output_tokens=0)
        == 0.0
    )
    assert (
        cost_usd("text-embedding-3-small", input_tokens=10**6, cached_tokens=0, output_tokens=0)
        == 0.01
    )
    assert cost_usd(
        "gpt-5", input_tokens=10**6, cached_tokens=10**6, output_tokens=10**6
    ) == pytest.approx(0.0625 + 5)


def _no_jemalloc() -> pa.MemoryPool:
    raise NotImplementedError("this pyarrow was built without jemalloc")


@pytest.mark.parametrize("jemalloc", [True, False], ids=["jemalloc", "no-jemalloc"])
@pytest.mark.parametrize("seed", range(6))
def test_join_keeps_each_requests_first_success_else_first_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, jemalloc: bool
) -> None:
    """Seeded result files (repeats, failures, ids never sent, requests with no line; every line a
    success in half the seeds) read as a plain reading of the rules says, with the result ids
    hashed a few at a time and the table written a few rows at a time, in Arrow's jemalloc or,
    where pyarrow has none, its default pool."""
    rng = random.Random(seed)
    monkeypatch.setattr(results_module, "_LOOKUP_ROWS", rng.choice([1, 7, 64, 1 << 18]))
    monkeypatch.setattr(results_module, "JOIN_BATCH_ROWS", rng.choice([1, 16, 100, 8192]))
    if not jemalloc:
        monkeypatch.setattr(pa, "jemalloc_memory_pool", _no_jemalloc)
    only_successes = seed % 2 == 0
    wanted = [f"r{i}" for i in range(rng.randint(50, 300))]
    lines: list[dict[str, Any]] = []
    for cid in [*wanted, *[f"stray{i}" for i in range(rng.randint(0, 5))]]:
        for k in range(rng.choice([0, 1, 1, 1, 2, 3])):
            if only_successes or rng.random() < 0.5:
                lines.append(ok(cid, chat_body(f"{cid}#{k}")))
            else:
                lines.append(other_error(cid, f"{cid}#{k}"))
    rng.shuffle(lines)
    cut = rng.randint(0, len(lines))
    files = [jsonl(tmp_path / "file-out.jsonl", lines[:cut])]
    files.append(jsonl(tmp_path / "file-err.jsonl", lines[cut:]))
    sent = pa.table(
        {
            "custom_id": pa.array(wanted),
            "batch_id": pa.DictionaryArray.from_arrays(
                np.zeros(len(wanted), np.int32), pa.array(["batch_1"])
            ),
        }
    )
    summary = collect_results(
        output_files=files[:1],
        error_files=files[1:],
        prepared_inputs_path=None,
        request_ids=sent,
        batches=[batch()],
        endpoint=CHAT,
        dest=tmp_path / "r.parquet",
    )

    def mark(line: dict[str, Any]) -> str:
        if line["response"] is not None:
            return str(line["response"]["body"]["choices"][0]["message"]["content"])
        return str(line["error"]["code"])

    expected = {}
    for cid in wanted:
        mine = [line for line in lines if line["custom_id"] == cid]
        chosen = [line for line in mine if line["response"] is not None] or mine
        expected[cid] = mark(chosen[0]) if chosen else "missing"
    got = pq.read_table(summary.path).to_pylist()
    assert [r["custom_id"] for r in got] == wanted
    assert {r["custom_id"]: r["answer"] or r["error_code"] or r["status"] for r in got} == expected
    sent_ids = set(wanted)
    assert summary.unmatched_lines == len({x["custom_id"] for x in lines} - sent_ids)
    assert summary.counts["missing"] == sum(v == "missing" for v in expected.values())
    if jemalloc:  # nothing made in it outlives the call
        assert pa.jemalloc_memory_pool().bytes_allocated() == 0


@pytest.mark.parametrize("seed", range(4))
def test_input_columns_line_up_across_row_groups_and_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """An inputs table of many row groups, joined in chunks that do not divide them: each row's
    input columns stay beside its custom_id, in input order."""
    rng = random.Random(seed)
    monkeypatch.setattr(inputs_table_module, "PARQUET_ROWS", rng.choice([1, 3, 7, 16]))
    monkeypatch.setattr(results_module, "JOIN_BATCH_ROWS", rng.choice([1, 4, 16, 8192]))
    ids = [f"r{i}" for i in range(rng.randint(20, 120))]
    requests = [
        {"custom_id": c, "url": CHAT, "body": {"model": "gpt-4o-mini", "messages": []}} for c in ids
    ]
    rows = [{"question": f"Q of {c}", "n": i} for i, c in enumerate(ids)]
    prepared = write_batch_input(requests, tmp_path / "in", endpoint=CHAT, rows=rows)
    assert prepared.inputs_path is not None
    assert pq.ParquetFile(prepared.inputs_path).num_row_groups > 1
    answered = rng.sample(ids, len(ids) // 2)
    out = jsonl(tmp_path / "file-out.jsonl", [ok(c, chat_body(f"A of {c}")) for c in answered])
    summary = collect_results(
        output_files=[out],
        error_files=[],
        prepared_inputs_path=prepared.inputs_path,
        request_ids=None,
        batches=[batch()],
        endpoint=CHAT,
        dest=tmp_path / "r.parquet",
    )
    got = pq.read_table(summary.path).to_pylist()
    assert [r["custom_id"] for r in got] == ids
    assert [(r["question"], r["n"]) for r in got] == [(f"Q of {c}", i) for i, c in enumerate(ids)]
    assert {r["custom_id"] for r in got if r["answer"] == f"A of {r['custom_id']}"} == set(answered)


def test_sent_parts_are_read_only_when_a_request_has_no_line(tmp_path: Path) -> None:
    """Beside the inputs table, the parts sent tell only the status of requests without a line (by
    the batch their part went to), so they are not read when every request has one."""
    requests = [
        {"custom_id": c, "url": CHAT, "body": {"model": "gpt-4o-mini", "messages": []}}
        for c in "abcd"
    ]
    rows = [{"question": c.upper()} for c in "abcd"]
    prepared = write_batch_input(
        requests, tmp_path / "in", endpoint=CHAT, rows=rows, max_requests=2
    )
    sent = SentParts([p.path for p in prepared.parts], ["batch_1", "batch_2"])
    b1, b2 = (
        batch("expired", "batch_1", "file-o1", None),
        batch("completed", "batch_2", "file-o2", None),
    )

    def collect(
        lines: list[dict[str, Any]], parts: SentParts, *, one_file: bool = False
    ) -> dict[str, tuple[str, str]]:
        """Rows' (status, batch_id): the lines in their batches' output files, or in one file
        of no known batch."""
        if one_file:
            files = [jsonl(tmp_path / "downloaded.jsonl", lines)]
        else:
            files = [
                jsonl(tmp_path / f"file-o{n}.jsonl", [x for x in lines if x["custom_id"] in ids])
                for n, ids in ((1, "ab"), (2, "cd"))
            ]
        summary = collect_results(
            output_files=files,
            error_files=[],
            prepared_inputs_path=prepared.inputs_path,
            request_ids=parts,
            batches=[b1, b2],
            endpoint=CHAT,
            dest=tmp_path / "r.parquet",
        )
        table = pq.read_table(summary.path).to_pylist()
        return {r["custom_id"]: (r["status"], r["batch_id"]) for r in table}

    every = [ok(c, chat_body(c)) for c in "abcd"]
    unread = SentParts([tmp_path / "gone-1.jsonl", tmp_path / "gone-2.jsonl"], sent.batch_ids)
    expected = {"a": ("succeeded", "batch_1"), "b": ("succeeded", "batch_1")}
    expected |= {"c": ("succeeded", "batch_2"), "d": ("succeeded", "batch_2")}
    assert collect(every, unread) == expected
    assert collect(every, sent) == expected
    some = [ok("a", chat_body("a")), ok("c", chat_body("c"))]
    with pytest.raises(FileNotFoundError, match="gone-1"):
        collect(some, unread)
    assert collect(some, sent) == {
        "a": ("succeeded", "batch_1"),
        "b": ("expired", "batch_1"),
        "c": ("succeeded", "batch_2"),
        "d": ("missing", "batch_2"),
    }
    # Lines in a file of no known batch: the parts tell each row's batch.
    with pytest.raises(FileNotFoundError, match="gone-1"):
        collect(every, unread, one_file=True)
    assert collect(every, sent, one_file=True) == expected
