"""Requests with several inputs (an embeddings ``input`` list, a moderations list) answered one
row per custom_id, the answer holding one entry per input: through the SDK against the emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from openai.types import Batch
from test_results import batch, jsonl, ok

from dagster_openai_batch.core import BatchClient, collect_results, cost_usd, write_batch_input
from dagster_openai_batch.core.resubmit import merge_results
from dagster_openai_batch.core.results import sent_requests

EMB, MOD = "/v1/embeddings", "/v1/moderations"


def run_batch(
    bc: BatchClient, tmp: Path, endpoint: str, bodies: dict[str, dict[str, Any]]
) -> tuple[list[Path], Batch, Any]:
    """Send ``bodies`` as one batch, wait for it, collect its results: (output files, batch,
    summary)."""
    requests = [{"custom_id": cid, "url": endpoint, "body": body} for cid, body in bodies.items()]
    prepared = write_batch_input(requests, tmp / "in", endpoint=endpoint)
    created, _ = bc.create_or_adopt(
        input_file_id=bc.upload(prepared.parts[0]).id, endpoint=endpoint, idempotency_key="multi"
    )
    final = bc.wait([created.id], timeout=3600, poll_interval=1)[created.id]
    assert final.status == "completed", final.status
    outputs, errors = bc.download_results([final], tmp / "results")
    summary = collect_results(
        output_files=outputs,
        error_files=errors,
        prepared_inputs_path=None,
        request_ids=sent_requests([p.path for p in prepared.parts], [final.id]),
        batches=[final],
        endpoint=endpoint,
        dest=tmp / "results.parquet",
    )
    return outputs, final, summary


def bodies_by_id(outputs: list[Path]) -> dict[str, dict[str, Any]]:
    """Each custom_id's response body, as the service wrote it."""
    lines = [orjson.loads(raw) for path in outputs for raw in path.read_bytes().splitlines()]
    return {line["custom_id"]: line["response"]["body"] for line in lines}


def test_embeddings_of_several_inputs_give_one_row_with_a_vector_per_input(
    bc: BatchClient, tmp_path: Path
) -> None:
    model = {"model": "text-embedding-3-small", "dimensions": 8}
    bodies = {
        "one": {**model, "input": "a kettle"},
        "three": {**model, "input": ["a kettle", "a teapot", "a cup"]},
        "tokens": {**model, "input": [[1, 2, 3], [4, 5]]},
        "b64": {**model, "input": ["x", "y"], "encoding_format": "base64"},
    }
    outputs, final, summary = run_batch(bc, tmp_path, EMB, bodies)
    table = pq.read_table(summary.path)
    assert table.schema.field("answer").type == pa.list_(pa.list_(pa.float32()))
    assert sorted(table.column("custom_id").to_pylist()) == sorted(bodies)
    sent = bodies_by_id(outputs)
    for row in table.to_pylist():
        body = sent[row["custom_id"]]
        assert row["status"] == "succeeded"
        assert len(row["answer"]) == len(body["data"])  # one vector per input, in input order
        assert [len(v) for v in row["answer"]] == [8] * len(body["data"])
        if row["custom_id"] != "b64":
            for vector, item in zip(row["answer"], body["data"], strict=True):
                assert np.array_equal(
                    np.asarray(vector, np.float32), np.asarray(item["embedding"], np.float32)
                )
        stored = orjson.loads(row["response_body"])
        assert [set(item) for item in stored["data"]] == [{"object", "index"}] * len(body["data"])
        assert row["input_tokens"] == body["usage"]["prompt_tokens"]
    assert [len(r["answer"]) for r in table.to_pylist()] == [
        len(sent[c]["data"]) for c in table.column("custom_id").to_pylist()
    ]
    assert {len(sent[c]["data"]) for c in bodies} == {1, 2, 3}
    tokens = sum(body["usage"]["prompt_tokens"] for body in sent.values())
    assert summary.input_tokens == tokens
    price = cost_usd(final.model or "", input_tokens=tokens, cached_tokens=0, output_tokens=0)
    assert summary.cost_usd == round(price or -1, 6)  # the summary rounds to micro-dollars


def test_single_input_embeddings_stay_one_vector_per_row(bc: BatchClient, tmp_path: Path) -> None:
    bodies = {
        f"e{i}": {"model": "text-embedding-3-small", "input": f"text {i}", "dimensions": 4}
        for i in range(3)
    }
    outputs, _, summary = run_batch(bc, tmp_path, EMB, bodies)
    table = pq.read_table(summary.path)
    assert table.schema.field("answer").type == pa.list_(pa.float32())
    sent = bodies_by_id(outputs)
    for row in table.to_pylist():
        expected = sent[row["custom_id"]]["data"][0]["embedding"]
        assert np.array_equal(
            np.asarray(row["answer"], np.float32), np.asarray(expected, np.float32)
        )
        assert "embedding" not in orjson.loads(row["response_body"])["data"][0]


def test_moderations_of_several_inputs_give_a_list_of_flags(
    bc: BatchClient, tmp_path: Path
) -> None:
    parts = [
        {"type": "text", "text": "a kettle"},
        {"type": "image_url", "image_url": {"url": "https://example.com/k.png"}},
    ]
    bodies = {
        "one": {"model": "omni-moderation-latest", "input": "a kettle"},
        "three": {"model": "omni-moderation-latest", "input": ["a", "b", "c"]},
        "multimodal": {"model": "omni-moderation-latest", "input": parts},
    }
    outputs, _, summary = run_batch(bc, tmp_path, MOD, bodies)
    sent = bodies_by_id(outputs)
    assert [len(sent[c]["results"]) for c in bodies] == [1, 3, 1]  # the parts are one input
    rows = {r["custom_id"]: r for r in pq.read_table(summary.path).to_pylist()}
    assert len(rows) == 3
    for cid, body in sent.items():
        flags = [
            {
                "flagged": result["flagged"],
                "categories": sorted(k for k, v in result["categories"].items() if v),
            }
            for result in body["results"]
        ]
        assert orjson.loads(rows[cid]["answer"]) == (flags if len(flags) > 1 else flags[0])
        assert orjson.loads(rows[cid]["response_body"]) == body


def vectors_body(*vectors: list[float]) -> dict[str, Any]:
    return {
        "object": "list",
        "model": "text-embedding-3-small",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }


def test_a_follow_up_with_several_inputs_merges_into_single_vectors(tmp_path: Path) -> None:
    """The base table has one vector per row, the follow-up (of the request that failed) a list:
    the merged answers are lists of vectors throughout."""

    def collect(name: str, lines: list[dict[str, Any]], ids: list[str]) -> str:
        return collect_results(
            output_files=[jsonl(tmp_path / f"file-out-{name}.jsonl", lines)],
            error_files=[],
            prepared_inputs_path=None,
            request_ids=ids,
            batches=[batch(out=f"file-out-{name}")],
            endpoint=EMB,
            dest=tmp_path / f"{name}.parquet",
        ).path

    base = collect("base", [ok("a", vectors_body([1.0, 0.0]))], ["a", "b"])
    assert pq.read_schema(base).field("answer").type == pa.list_(pa.float32())
    followup = collect("f", [ok("b", vectors_body([0.0, 1.0], [0.5, 0.5]))], ["b"])
    merged = merge_results(base, followup, tmp_path / "merged.parquet")
    table = pq.read_table(merged.path)
    assert table.schema.field("answer").type == pa.list_(pa.list_(pa.float32()))
    assert {r["custom_id"]: r["answer"] for r in table.to_pylist()} == {
        "a": [[1.0, 0.0]],
        "b": [[0.0, 1.0], [0.5, 0.5]],
    }
    assert merged.counts["succeeded"] == 2


def test_sent_requests_reads_each_custom_id_whatever_its_characters(tmp_path: Path) -> None:
    """custom_ids are read from the line's start when written plainly, else parsed: escaped
    quotes and backslashes, non-ASCII text, other key orders and blank lines all come out right."""
    ids = ["plain", 'quote"d', "back\\slash", "ünïcode ✓", "r-2"]
    requests = [
        {"custom_id": cid, "url": EMB, "body": {"model": "text-embedding-3-small", "input": "x"}}
        for cid in ids
    ]
    prepared = write_batch_input(requests, tmp_path / "in", endpoint=EMB)
    other = tmp_path / "other.jsonl"
    other.write_bytes(
        b'\n{"url": "/v1/embeddings", "custom_id": "late", "method": "POST", "body": {}}\n  \n'
    )
    table = sent_requests([prepared.parts[0].path, other], ["batch_a", "batch_b"])
    assert table.column("custom_id").to_pylist() == [*ids, "late"]
    assert table.column("batch_id").to_pylist() == ["batch_a"] * len(ids) + ["batch_b"]
