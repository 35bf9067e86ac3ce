from __future__ import annotations

import orjson
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from pydantic import BaseModel

from dagster_openai_batch.core import RequestTemplate, build_requests, iter_rows
from dagster_openai_batch.core.templates import LineRenderer


class Verdict(BaseModel):
    label: str
    score: float | None


ROWS = [{"id": "a", "text": "hello", "n": 1}, {"id": "b", "text": "world", "n": 2}]


@pytest.mark.parametrize(
    "source",
    [
        ROWS,
        pd.DataFrame(ROWS),
        pl.DataFrame(ROWS),
        pl.DataFrame(ROWS).lazy(),
        pa.Table.from_pylist(ROWS),
        pa.Table.from_pylist(ROWS).to_reader(),
        pa.RecordBatch.from_pylist(ROWS),
        (dict(r) for r in ROWS),
    ],
)
def test_iter_rows_accepts_every_source(source: object) -> None:
    assert list(iter_rows(source)) == ROWS


def test_iter_rows_rejects_non_mappings() -> None:
    with pytest.raises(TypeError, match=r"rows must be mappings \(dicts\), got int: 3"):
        list(iter_rows([3]))


@pytest.mark.parametrize(
    ("endpoint", "key", "value"),
    [
        ("/v1/chat/completions", "messages", [{"role": "user", "content": "Q hello"}]),
        ("/v1/completions", "prompt", "Q hello"),
        ("/v1/embeddings", "input", "Q hello"),
        ("/v1/moderations", "input", "Q hello"),
        ("/v1/responses", "input", "Q hello"),
        ("/v1/images/generations", "prompt", "Q hello"),
    ],
)
def test_prompt_goes_to_the_natural_input(endpoint: str, key: str, value: object) -> None:
    t = RequestTemplate(endpoint=endpoint, model="m", prompt="Q {text}", body={"temperature": 0})
    (req,) = build_requests(ROWS[:1], t)
    assert req.url == endpoint
    assert req.body == {"model": "m", "temperature": 0, key: value}


def test_messages_body_placeholders_and_escaped_braces() -> None:
    t = RequestTemplate(
        endpoint="/v1/chat/completions",
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": 'Reply as JSON {{"n": {n}}}'},
            {"role": "user", "content": [{"type": "text", "text": "{text}"}]},
        ],
        body={"user": "u-{id}", "max_tokens": 5},
        custom_id_column="id",
    )
    assert t.placeholders() == ["id", "n", "text"]
    req = next(build_requests(ROWS, t))
    assert req.custom_id == "a"
    assert req.body["messages"] == [
        {"role": "system", "content": 'Reply as JSON {"n": 1}'},
        {"role": "user", "content": [{"type": "text", "text": "hello"}]},
    ]
    assert req.body["user"] == "u-a"
    assert req.body["max_tokens"] == 5


def test_missing_placeholder_names_it_and_the_columns() -> None:
    t = RequestTemplate(endpoint="/v1/completions", model="m", prompt="{txt}")
    with pytest.raises(KeyError) as e:
        list(build_requests(ROWS, t))
    assert e.value.args[0] == (
        "placeholder {txt} has no column in the row; available columns: id, text, n. "
        "Rename the column or the placeholder (write {{ for a literal brace)."
    )


def test_template_construction_errors() -> None:
    with pytest.raises(ValueError, match="needs `messages`, `prompt`, `body` or `body_fn`"):
        RequestTemplate(endpoint="/v1/completions", model="m")
    with pytest.raises(ValueError, match="either `messages` or `prompt`, not both"):
        RequestTemplate(endpoint="/v1/chat/completions", model="m", prompt="x", messages=[])
    with pytest.raises(
        ValueError, match="`response_model` only applies to chat completions and responses"
    ):
        RequestTemplate(endpoint="/v1/embeddings", model="m", prompt="x", response_model=Verdict)
    with pytest.raises(ValueError, match="empty or positional placeholder"):
        RequestTemplate(endpoint="/v1/completions", model="m", prompt="a {} b")


def test_structured_outputs_are_strict() -> None:
    chat = RequestTemplate(
        endpoint="/v1/chat/completions", model="m", prompt="{text}", response_model=Verdict
    )
    fmt = next(build_requests(ROWS, chat)).body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Verdict"
    assert fmt["json_schema"]["strict"]
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == [
        "label",
        "score",
    ]
    resp = RequestTemplate(
        endpoint="/v1/responses", model="m", prompt="{text}", response_model=Verdict
    )
    fmt = next(build_requests(ROWS, resp)).body["text"]["format"]
    assert fmt["type"] == "json_schema"
    assert fmt["schema"] == schema
    assert fmt["strict"] is True
    assert "response_model" not in resp.model_dump()


def test_hash_ids_are_stable_and_unique_for_identical_rows() -> None:
    t = RequestTemplate(endpoint="/v1/embeddings", model="m", prompt="{text}")
    rows = [{"text": "same"}, {"text": "other"}, {"text": "same"}, {"text": "same"}]
    ids = [r.custom_id for r in build_requests(rows, t)]
    assert ids == [r.custom_id for r in build_requests(rows, t)]
    assert len(set(ids)) == 4
    assert ids[0].startswith("row-")
    assert len(ids[0]) == 20
    assert ids[2] == ids[0] + "-2"
    assert ids[3] == ids[0] + "-3"


def test_custom_id_column_errors() -> None:
    t = RequestTemplate(
        endpoint="/v1/embeddings", model="m", prompt="{text}", custom_id_column="key"
    )
    with pytest.raises(
        KeyError, match="custom_id_column 'key' is not a column of the row; available columns: text"
    ):
        list(build_requests([{"text": "x"}], t))
    with pytest.raises(ValueError, match="custom_id_column 'key' is empty"):
        list(build_requests([{"text": "x", "key": None}], t))


def test_body_fn_overrides_and_is_not_serialised() -> None:
    t = RequestTemplate(
        endpoint="/v1/embeddings",
        model="m",
        body_fn=lambda row: {"input": [row["text"]] * row["n"], "dimensions": 8},
    )
    reqs = list(build_requests(ROWS, t))
    assert reqs[1].body == {"model": "m", "input": ["world", "world"], "dimensions": 8}
    assert "body_fn" not in t.model_dump()


class Label(BaseModel):
    label: str


COMPILED = [
    RequestTemplate(
        endpoint="/v1/chat/completions",
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": 'Reply as JSON {{"n": {n}}}, "quoted" \\ é'},
            {"role": "user", "content": [{"type": "text", "text": "{text} {n:03d} {text!r}"}]},
        ],
        body={"user": "u-{id}", "max_tokens": 5, "model": "other"},
    ),
    RequestTemplate(
        endpoint="/v1/responses", model="gpt-4o", prompt="{text}", response_model=Label
    ),
    RequestTemplate(endpoint="/v1/embeddings", model="e", body={"input": ["{text}", "{n}"]}),
    RequestTemplate(endpoint="/v1/completions", model="c", prompt="{{literal}} {n}"),
]


@pytest.mark.parametrize("template", COMPILED)
def test_a_compiled_template_writes_the_bytes_of_the_rendered_request(
    template: RequestTemplate,
) -> None:
    rows = [
        {"id": "a", "text": 'line\nbreak "quote" \\ \u2028 é 😀', "n": 1},
        {"id": "b", "text": "", "n": -20},
        {"id": "c", "text": "{not a placeholder}", "n": 10**20},
    ]
    renderer = LineRenderer.of(template)
    assert renderer is not None
    for row in rows:
        request = {"custom_id": row["id"], "method": "POST", "url": template.endpoint}
        expected = orjson.dumps({**request, "body": template.render_body(row)}) + b"\n"
        assert renderer.line(str(row["id"]), row) == expected


def test_placeholders_where_the_rules_look_make_each_line_its_own_shape() -> None:
    def shape(**kw: object) -> bool:
        template = RequestTemplate(endpoint="/v1/chat/completions", model="m", **kw)  # type: ignore[arg-type]
        renderer = LineRenderer.of(template)
        assert renderer is not None
        return renderer.same_shape

    assert shape(prompt="{q}", body={"user": "{u}", "metadata": {"k": "v"}})
    assert not shape(prompt="{q}", body={"metadata": {"k": "{u}"}})
    assert not shape(prompt="{q}", body={"model": "{m}"})
    assert (
        LineRenderer.of(RequestTemplate(endpoint="/v1/chat/completions", model="m", body_fn=dict))
        is None
    )


def test_a_compiled_template_names_a_missing_column() -> None:
    t = RequestTemplate(endpoint="/v1/completions", model="c", prompt="{text}")
    renderer = LineRenderer.of(t)
    assert renderer is not None
    with pytest.raises(KeyError, match=r"placeholder \{text\} has no column in the row"):
        renderer.line("a", {"other": 1})
