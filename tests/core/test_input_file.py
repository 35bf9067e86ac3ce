from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from dagster_openai_batch.core import (
    BatchInputError,
    RequestTemplate,
    prepare_jsonl,
    prepare_rows,
    read_jsonl_input,
    write_batch_input,
)

CHAT = "/v1/chat/completions"


def req(
    cid: object = "r1", model: str = "gpt-4o-mini", url: str = CHAT, **body: object
) -> dict[str, object]:
    return {
        "custom_id": cid,
        "method": "POST",
        "url": url,
        "body": {"model": model, "messages": [{"role": "user", "content": "hi"}], **body},
    }


def problems_of(requests: list[dict[str, object]], tmp_path: Path, **kw: object) -> list[str]:
    with pytest.raises(BatchInputError) as e:
        write_batch_input(requests, tmp_path, endpoint=kw.pop("endpoint", CHAT), **kw)  # type: ignore[arg-type]
    assert not list(tmp_path.glob("part-*")), "no part is left behind after a failure"
    return [str(p) for p in e.value.problems]


# The exact messages users see, one per rule.
BAD_INPUTS = [
    (
        [{"url": CHAT, "body": {"model": "m"}}],
        ["line 1, field 'custom_id': `custom_id` is missing. Give every line a `custom_id`"],
    ),
    (
        [{"custom_id": "a", "url": CHAT}],
        ["line 1 (custom_id 'a'), field 'body': `body` is missing. Give every line a `body`"],
    ),
    (
        [{"custom_id": "a", "body": {"model": "m"}}],
        ["line 1 (custom_id 'a'), field 'url': `url` is missing. Give every line a `url`"],
    ),
    (
        [req(cid=7)],
        [
            "line 1, field 'custom_id': custom_id must be a string, got int 7. Convert custom_id "
            "to a string"
        ],
    ),
    (
        [{**req(), "method": "GET"}],
        ["line 1 (custom_id 'r1'), field 'method': method is 'GET'. Use \"method\": \"POST\""],
    ),
    (
        [req(url="/v1/completions")],
        [
            "line 1 (custom_id 'r1'), field 'url': url '/v1/completions' differs from the batch "
            "endpoint "
            "'/v1/chat/completions'. Send every line of a batch to the same endpoint"
        ],
    ),
    (
        [{"custom_id": "a", "url": CHAT, "body": "text"}],
        [
            "line 1 (custom_id 'a'), field 'body': body must be a JSON object, got str. Put the "
            "request parameters in an object"
        ],
    ),
    (
        [req(stream=True)],
        [
            "line 1 (custom_id 'r1'), field 'body.stream': streaming is not supported in a batch. "
            "Remove `stream` from the body"
        ],
    ),
    (
        [req("a"), req("a")],
        [
            "line 2 (custom_id 'a'), field 'custom_id': custom_id 'a' is already used on line 1. "
            "Give every request a unique custom_id"
        ],
    ),
    (
        [req("a"), req("b", model="gpt-4o")],
        [
            "line 2 (custom_id 'b'), field 'body.model': model 'gpt-4o' differs from 'gpt-4o-mini' "
            "(line 1). "
            "Use one model per batch; split the input by model"
        ],
    ),
    (
        [{"custom_id": "a", "url": CHAT, "body": {"messages": []}}, req("b")],
        [
            "line 1 (custom_id 'a'), field 'body.model': `body.model` is missing "
            "(/v1/chat/completions needs a model). "
            "Give every request a `model` (the same one on every line)"
        ],
    ),
    ([], ["line 0: the input has no requests. Give at least one row or request"]),
]


@pytest.mark.parametrize(("requests", "expected"), BAD_INPUTS)
def test_every_rule_has_a_clear_message(
    requests: list[dict[str, object]], expected: list[str], tmp_path: Path
) -> None:
    assert problems_of(requests, tmp_path) == expected


def test_oversized_line_and_embedding_request(tmp_path: Path) -> None:
    assert problems_of([req(pad="x" * 500)], tmp_path, max_bytes=300) == [
        "line 1 (custom_id 'r1'): the request is 648 bytes; a file holds at most 300. Shorten this "
        "request"
    ]
    emb = {
        "custom_id": "e",
        "url": "/v1/embeddings",
        "body": {"model": "m", "input": ["a", "b", "c"]},
    }
    assert problems_of([emb], tmp_path, endpoint="/v1/embeddings", max_embedding_inputs=2) == [
        "line 1 (custom_id 'e'), field 'body.input': 3 embedding inputs in one request; the limit "
        "is 2. "
        "Split this request into smaller ones"
    ]


def test_one_error_lists_first_20_and_counts_the_rest(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError) as e:
        write_batch_input([req("same")] * 30, tmp_path, endpoint=CHAT)
    err = e.value
    assert isinstance(err, ValueError)
    assert len(err.problems) == 29
    assert err.total == 29
    lines = str(err).splitlines()
    assert lines[0] == "batch input is invalid (29 problem(s)); nothing was uploaded:"
    assert len(lines) == 22
    assert lines[-1] == "  … and 9 more problem(s)"
    assert err.problems[0].code == "duplicate_custom_id"
    assert err.problems[0].line == 2


def test_splits_by_requests_bytes_and_embedding_inputs(tmp_path: Path) -> None:
    p = write_batch_input(
        [req(f"r{i}") for i in range(10)], tmp_path / "a", endpoint=CHAT, max_requests=4
    )
    assert [x.requests for x in p.parts] == [4, 4, 2]
    assert p.requests == 10
    line = len(orjson.dumps(req("r0"))) + 1
    p = write_batch_input(
        [req(f"r{i}") for i in range(10)], tmp_path / "b", endpoint=CHAT, max_bytes=3 * line
    )
    assert [x.requests for x in p.parts] == [3, 3, 3, 1]
    assert all(x.bytes <= 3 * line for x in p.parts)
    assert sum(x.bytes for x in p.parts) == p.bytes == sum(x.path.stat().st_size for x in p.parts)
    emb = [
        {"custom_id": f"e{i}", "url": "/v1/embeddings", "body": {"model": "m", "input": ["a"] * 3}}
        for i in range(5)
    ]
    p = write_batch_input(emb, tmp_path / "c", endpoint="/v1/embeddings", max_embedding_inputs=7)
    assert [x.embedding_inputs for x in p.parts] == [6, 6, 3]
    ids = [line["custom_id"] for part in p.parts for line in read_jsonl_input(part.path)]
    assert ids == [f"e{i}" for i in range(5)]


def test_content_hash_is_deterministic_and_preview(tmp_path: Path) -> None:
    a = write_batch_input([req(f"r{i}") for i in range(8)], tmp_path / "a", endpoint=CHAT)
    b = write_batch_input([req(f"r{i}") for i in range(8)], tmp_path / "b", endpoint=CHAT)
    c = write_batch_input([req(f"r{i}") for i in range(9)], tmp_path / "c", endpoint=CHAT)
    assert a.content_hash == b.content_hash != c.content_hash
    assert a.model == "gpt-4o-mini"
    assert len(a.preview) == 5
    assert a.preview[0] == req("r0")
    assert list(a.custom_ids()) == [f"r{i}" for i in range(8)]


def test_prepare_rows_writes_inputs_parquet(tmp_path: Path) -> None:
    rows = [{"id": i, "text": f"t{i}"} for i in range(25_000)]
    t = RequestTemplate(endpoint=CHAT, model="gpt-4o-mini", prompt="{text}", custom_id_column="id")
    p = prepare_rows(rows, t, tmp_path, max_requests=10_000)
    assert [x.requests for x in p.parts] == [10_000, 10_000, 5_000]
    table = pq.read_table(p.inputs_path)
    assert table.column_names == ["custom_id", "id", "text"]
    assert table.num_rows == 25_000
    assert table.column("custom_id")[24_999].as_py() == "24999"


def test_write_batch_input_with_rows(tmp_path: Path) -> None:
    rows = [{"q": "a"}, {"q": "b"}]
    p = write_batch_input([req("x"), req("y")], tmp_path, endpoint=CHAT, rows=rows)
    assert pq.read_table(p.inputs_path).to_pylist() == [
        {"custom_id": "x", "q": "a"},
        {"custom_id": "y", "q": "b"},
    ]
    with pytest.raises(ValueError, match="`rows` and `requests` differ in length"):
        write_batch_input([req("x")], tmp_path / "z", endpoint=CHAT, rows=rows)


def test_prepare_jsonl_validates_json_and_infers_endpoint(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        orjson.dumps(req("a")) + b"\n\n{not json\n[1]\n" + orjson.dumps(req("b")) + b"\n"
    )
    with pytest.raises(BatchInputError) as e:
        prepare_jsonl(src, tmp_path / "out")
    assert [p.code for p in e.value.problems] == ["invalid_json_line", "invalid_json_line"]
    assert str(e.value.problems[0]).startswith("line 3: not valid JSON (")
    assert (
        str(e.value.problems[1])
        == "line 4: a line must be a JSON object, got list. Write one JSON object per line (JSONL)"
    )
    src.write_bytes(b"".join(orjson.dumps(req(f"r{i}")) + b"\n" for i in range(5)))
    p = prepare_jsonl(src, tmp_path / "out", max_requests=2)
    assert p.endpoint == CHAT
    assert [x.requests for x in p.parts] == [2, 2, 1]
    assert p.inputs_path is None
    with pytest.raises(BatchInputError, match="unknown batch endpoint '/v1/nope'"):
        prepare_jsonl(src, tmp_path / "out2", endpoint="/v1/nope")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(BatchInputError, match="has no request with a url"):
        prepare_jsonl(empty, tmp_path / "out3")


def test_rules_that_vary_by_row_are_checked_on_every_row(tmp_path: Path) -> None:
    """The first row is checked in full, later ones for what a template lets differ: a repeated
    id, an oversized line, and every rule where a placeholder sits in a field the rules read."""
    t = RequestTemplate(endpoint=CHAT, model="gpt-4o-mini", prompt="{text}", custom_id_column="id")
    rows = [{"id": f"r{i}", "text": "x"} for i in range(5_000)]
    rows[1] = {"id": "b", "text": "y" * 400}
    rows[2] = {"id": "r0", "text": "z"}
    rows[3_000] = {"id": "c", "text": "y" * 400}  # rows past the first are checked in chunks
    rows[4_000] = {"id": "r2500", "text": "z"}
    with pytest.raises(BatchInputError) as e:
        prepare_rows(rows, t, tmp_path / "a", max_bytes=300)
    assert [(p.line, p.code) for p in e.value.problems] == [
        (2, "line_too_large"),
        (3, "duplicate_custom_id"),
        (3_001, "line_too_large"),
        (4_001, "duplicate_custom_id"),
    ]
    assert str(e.value.problems[1]).startswith(
        "line 3 (custom_id 'r0'), field 'custom_id': custom_id 'r0' is already used on line 1"
    )
    assert "custom_id 'r2500' is already used on line 2501" in str(e.value.problems[3])
    varying = RequestTemplate(
        endpoint=CHAT, prompt="hi", model="m", body={"model": "{m}", "metadata": {"k": "{note}"}}
    )
    rows = [
        {"m": "gpt-4o-mini", "note": "fine"},
        {"m": "gpt-4o-mini", "note": "v" * 513},
        {"m": "gpt-4o", "note": "fine"},
    ]
    with pytest.raises(BatchInputError) as e:
        prepare_rows(rows, varying, tmp_path / "b")
    assert [(p.line, p.field, p.code) for p in e.value.problems] == [
        (2, "body.metadata.k", "invalid_metadata"),
        (3, "body.model", "model_mismatch"),
    ]
    assert not list((tmp_path / "b").glob("part-*"))


def test_prepare_rows_writes_what_write_batch_input_writes(tmp_path: Path) -> None:
    """The compiled template's lines are the requests' own JSON: same parts, same content hash."""
    rows = [{"id": f"r{i}", "text": f'"{i}"\n{{x}}', "n": i} for i in range(3_000)]
    t = RequestTemplate(
        endpoint=CHAT,
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "{text} ({n})"}],
        body={"metadata": {"source": "test"}},
        custom_id_column="id",
    )
    compiled = prepare_rows(rows, t, tmp_path / "a", max_requests=700)
    requests = [{"custom_id": r["id"], "url": CHAT, "body": t.render_body(r)} for r in rows]
    generic = write_batch_input(requests, tmp_path / "b", endpoint=CHAT, max_requests=700)
    assert compiled.content_hash == generic.content_hash
    assert [p.sha256 for p in compiled.parts] == [p.sha256 for p in generic.parts]
    assert compiled.preview == generic.preview


def test_a_repeated_custom_id_is_found_however_far_back(tmp_path: Path) -> None:
    """Old custom_ids are kept as hashes (16 bytes each), recent ones as strings: a repeat is
    found either way, named with the line the id was first used on."""
    rows = [{"id": f"r{i}", "text": "x"} for i in range(140_000)]
    rows += [{"id": "r5", "text": "x"}, {"id": "r139990", "text": "x"}]
    t = RequestTemplate(endpoint=CHAT, model="gpt-4o-mini", prompt="{text}", custom_id_column="id")
    with pytest.raises(BatchInputError) as e:
        prepare_rows(rows, t, tmp_path)
    assert [str(p) for p in e.value.problems] == [
        "line 140001 (custom_id 'r5'), field 'custom_id': custom_id 'r5' is already used on line "
        "6. Give every request a unique custom_id",
        "line 140002 (custom_id 'r139990'), field 'custom_id': custom_id 'r139990' is already used "
        "on line 139991. Give every request a unique custom_id",
    ]
    assert not list(tmp_path.glob("part-*"))


def test_every_rule_holds_after_a_line_has_passed(tmp_path: Path) -> None:
    """Lines like one that passed take a shorter way through the checks: each rule still holds."""
    later = [
        req("dup"),
        req("dup"),
        req("other-model", model="gpt-4o"),
        req("other-url", url="/v1/completions"),
        {**req("put"), "method": "PUT"},
        req("streamed", stream=True),
        req("big", pad="x" * 500),
        req("meta", metadata={"n": 3}),
        req(""),
    ]
    found = problems_of([req("first"), *later], tmp_path, max_bytes=400)
    assert [p.split(":")[0] for p in found] == [
        "line 3 (custom_id 'dup'), field 'custom_id'",
        "line 4 (custom_id 'other-model'), field 'body.model'",
        "line 5 (custom_id 'other-url'), field 'url'",
        "line 6 (custom_id 'put'), field 'method'",
        "line 7 (custom_id 'streamed'), field 'body.stream'",
        "line 8 (custom_id 'big')",
        "line 9 (custom_id 'meta'), field 'body.metadata.n'",
        "line 10 (custom_id ''), field 'custom_id'",
    ]
    emb = [
        {"custom_id": f"e{i}", "url": "/v1/embeddings", "body": {"model": "m", "input": ["a"] * n}}
        for i, n in enumerate((1, 2, 3))
    ]
    assert problems_of(emb, tmp_path, endpoint="/v1/embeddings", max_embedding_inputs=2) == [
        "line 3 (custom_id 'e2'), field 'body.input': 3 embedding inputs in one request; the "
        "limit is 2. Split this request into smaller ones"
    ]
