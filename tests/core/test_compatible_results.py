"""The results parser and the downloads on the shapes of Azure and compatible services: result
lines without ``id``, ``""`` file ids, ``request_counts`` null, no ``usage``, an error file always
present, and the never-run requests of a cancelled batch as ``batch_cancelled`` lines or absent.

The batches are the SDK's own ``Batch`` objects, read from such services' JSON; the lines are fed
to the real parser.
"""

from pathlib import Path

import orjson
import pyarrow.parquet as pq
from openai.types import Batch

from dagster_openai_batch.core import BatchClient, collect_results

CHAT = "/v1/chat/completions"
IDS = [f"r{i}" for i in range(5)]


def azure_batch(status: str, *, output_file_id: str, error_file_id: str) -> Batch:
    """A batch as Azure or a gateway sends it: no usage, request_counts null, no timestamps but
    created_at, ``""`` for a file it has not got, a non-OpenAI id."""
    return Batch.model_validate(
        {
            "id": "YmF0Y2hfYXp1cmVfMQ",
            "object": "batch",
            "endpoint": CHAT,
            "input_file_id": "ZmlsZS1pbnB1dA",
            "completion_window": "24h",
            "status": status,
            "created_at": 1_750_000_000,
            "output_file_id": output_file_id,
            "error_file_id": error_file_id,
            "request_counts": None,
            "errors": None,
            "metadata": None,
        }
    )


def success(cid: str) -> dict:
    body = {
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {cid}"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }
    return {"custom_id": cid, "response": {"status_code": 200, "body": body}, "error": None}


def cancelled(cid: str) -> dict:
    error = {"code": "batch_cancelled", "message": "Batch was cancelled."}
    return {"custom_id": cid, "response": None, "error": error}


def write(path: Path, lines: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def collect(tmp_path: Path, batch: Batch, outputs: list[Path], errors: list[Path]) -> dict:
    summary = collect_results(
        output_files=outputs,
        error_files=errors,
        prepared_inputs_path=None,
        request_ids=[(cid, batch.id) for cid in IDS],  # as results does: each with its batch
        batches=[batch],
        endpoint=CHAT,
        dest=tmp_path / "results.parquet",
    )
    table = pq.read_table(summary.path).to_pydict()
    assert sorted(table["custom_id"]) == IDS  # every input exactly once
    return {"summary": summary, **table}


def test_cancelled_requests_as_error_lines_or_absent_are_each_cancelled_once(
    tmp_path: Path,
) -> None:
    batch = azure_batch("cancelled", output_file_id="ZmlsZS1vdXQ", error_file_id="ZmlsZS1lcnI")
    output = write(tmp_path / "ZmlsZS1vdXQ.jsonl", [success("r0"), success("r1")])
    # r2, r3 written as never run; r4 left out; r0 also (wrongly) said cancelled: its answer wins.
    error = write(
        tmp_path / "ZmlsZS1lcnI.jsonl", [cancelled("r2"), cancelled("r3"), cancelled("r0")]
    )
    got = collect(tmp_path, batch, [output], [error])
    by_id = dict(zip(got["custom_id"], got["status"], strict=True))
    assert by_id == {
        "r0": "succeeded",
        "r1": "succeeded",
        "r2": "cancelled",
        "r3": "cancelled",
        "r4": "cancelled",
    }
    assert got["summary"].counts["cancelled"] == 3
    assert got["batch_id"] == [batch.id] * 5  # a base64 id is an id like any other


def test_lines_without_id_and_an_empty_error_file_give_every_answer(tmp_path: Path) -> None:
    batch = azure_batch("completed", output_file_id="ZmlsZS1vdXQ", error_file_id="ZmlsZS1lcnI")
    output = write(tmp_path / "ZmlsZS1vdXQ.jsonl", [success(cid) for cid in reversed(IDS)])
    empty_errors = write(tmp_path / "ZmlsZS1lcnI.jsonl", [])
    got = collect(tmp_path, batch, [output], [empty_errors])
    assert set(got["status"]) == {"succeeded"}
    assert got["answer"][got["custom_id"].index("r3")] == "answer r3"
    assert got["request_id"] == [None] * 5  # absent in the line: left empty
    summary = got["summary"]
    assert (summary.input_tokens, summary.output_tokens, summary.unmatched_lines) == (50, 10, 0)
    assert summary.usage_by_model["gpt-4o-mini-2024-07-18"]["calls"] == 5


def test_every_request_failed_and_output_file_id_is_empty_string(tmp_path: Path) -> None:
    batch = azure_batch("completed", output_file_id="", error_file_id="ZmlsZS1lcnI")
    failure = {"message": "too long", "type": "invalid_request_error", "code": "context_length"}
    lines = [
        {"custom_id": cid, "response": {"status_code": 400, "body": {"error": failure}}}
        for cid in IDS
    ]
    got = collect(tmp_path, batch, [], [write(tmp_path / "ZmlsZS1lcnI.jsonl", lines)])
    assert got["status"] == ["failed"] * 5
    assert set(got["error_code"]) == {"context_length"}


def test_empty_string_file_ids_are_not_downloaded(
    bc: BatchClient, counting, tmp_path: Path
) -> None:
    batch = azure_batch("cancelled", output_file_id="", error_file_id="")
    assert bc.download_results([batch], tmp_path) == ([], [])
    assert counting.requests == []  # no call for a file the batch has not got
