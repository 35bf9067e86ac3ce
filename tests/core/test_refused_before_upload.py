"""What the service would refuse request by request is refused before anything is uploaded: a
schema strict structured outputs cannot take, body metadata over its limits, a known model on an
endpoint that does not serve it. An unknown model is only warned about, once."""

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, HttpUrl

from dagster_openai_batch.core import (
    BatchInputError,
    RequestTemplate,
    prepare_rows,
    write_batch_input,
)
from dagster_openai_batch.core import model_catalogue as catalogue
from dagster_openai_batch.core.service_profile import profile_for

CHAT, EMBEDDINGS = "/v1/chat/completions", "/v1/embeddings"


class Address(BaseModel):
    city: str
    zip_code: str | None = None


class Person(BaseModel):
    """Everything strict structured outputs take: nesting, lists, nullables, enums, recursion."""

    name: str = Field(description="full name", max_length=80)
    age: int = Field(ge=0)
    role: Literal["admin", "user"]
    home: Address | None
    friends: list["Person"]


class Cat(BaseModel):
    kind: Literal["cat"]


class Dog(BaseModel):
    kind: Literal["dog"]


class Loose(BaseModel):
    name: str
    attributes: dict[str, Any]
    scores: dict[str, int]
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    homepage: HttpUrl
    pair: tuple[int, str]


def test_a_response_model_strict_outputs_take_is_sent_as_is(tmp_path: Path) -> None:
    template = RequestTemplate(
        endpoint=CHAT, model="gpt-4o-mini", prompt="{q}", response_model=Person
    )
    prepared = prepare_rows([{"q": "who?"}], template, tmp_path)
    schema = prepared.preview[0]["body"]["response_format"]["json_schema"]
    assert schema["strict"] is True
    assert schema["schema"]["additionalProperties"] is False


@pytest.mark.parametrize("endpoint", [CHAT, "/v1/responses"])
def test_a_response_model_strict_outputs_refuse_is_refused_naming_each_field(endpoint: str) -> None:
    with pytest.raises(ValueError, match="response_model Loose cannot be used") as refused:
        RequestTemplate(endpoint=endpoint, model="gpt-4o-mini", prompt="{q}", response_model=Loose)
    message = str(refused.value)
    assert "attributes: an open object" in message  # dict[str, Any]
    assert "scores: an open object" in message  # dict[str, int]
    assert "give it fixed fields (a nested BaseModel)" in message
    assert "pet: 'oneOf' is not supported; use a plain union" in message
    assert "homepage: format 'uri' is not supported" in message
    assert "pair: an array without `items`" in message
    assert not re.search(r"\bname:", message)  # a field strict outputs take is not named


def jsonl_line(cid: str, body: dict) -> dict:
    return {"custom_id": cid, "method": "POST", "url": CHAT, "body": body}


def chat_body(**extra: Any) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_a_strict_schema_in_a_request_body_is_checked_line_by_line(tmp_path: Path) -> None:
    closed = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    open_schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    chat = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": None}}
    lines = [
        jsonl_line(
            "ok",
            chat_body(
                response_format={**chat, "json_schema": {**chat["json_schema"], "schema": closed}}
            ),
        ),
        jsonl_line(
            "bad",
            chat_body(
                response_format={
                    **chat,
                    "json_schema": {**chat["json_schema"], "schema": open_schema},
                }
            ),
        ),
        jsonl_line(
            "loose",
            chat_body(
                response_format={
                    **chat,
                    "json_schema": {"name": "x", "strict": False, "schema": open_schema},
                }
            ),
        ),
    ]
    with pytest.raises(BatchInputError) as refused:
        write_batch_input(lines, tmp_path, endpoint=CHAT)
    [problem] = refused.value.problems  # strict: false is the user's choice
    assert (problem.line, problem.custom_id) == (2, "bad")
    assert problem.field == "body.response_format.json_schema.schema"
    assert "(root): an open object" in problem.message
    assert "strict: false" in problem.fix
    assert list(tmp_path.glob("*.jsonl")) == []  # nothing left to upload


def test_body_metadata_over_its_limits_is_refused_naming_line_and_field(tmp_path: Path) -> None:
    lines = [
        jsonl_line("fine", chat_body(metadata={"k": "v" * 512})),
        jsonl_line("many", chat_body(metadata={f"k{i}": "v" for i in range(17)})),
        jsonl_line("long-key", chat_body(metadata={"k" * 65: "v"})),
        jsonl_line("long-value", chat_body(metadata={"note": "v" * 513})),
        jsonl_line("number", chat_body(metadata={"n": 3})),
    ]
    with pytest.raises(BatchInputError) as refused:
        write_batch_input(lines, tmp_path, endpoint=CHAT)
    found = {(p.line, p.custom_id, p.field): p.message for p in refused.value.problems}
    assert set(found) == {
        (2, "many", "body.metadata"),
        (3, "long-key", "body.metadata"),
        (4, "long-value", "body.metadata.note"),
        (5, "number", "body.metadata.n"),
    }
    assert found[(2, "many", "body.metadata")] == "17 metadata pairs (at most 16)"
    assert "65 characters (at most 64)" in found[(3, "long-key", "body.metadata")]
    assert found[(4, "long-value", "body.metadata.note")] == (
        "metadata value is 513 characters (at most 512)"
    )
    assert "values must be strings" in found[(5, "number", "body.metadata.n")]


@pytest.mark.parametrize(
    ("endpoint", "model", "family"),
    [
        (CHAT, "text-embedding-3-small", "an embeddings model"),
        (EMBEDDINGS, "gpt-4o-mini-2024-07-18", "a chat model"),
        ("/v1/responses", "omni-moderation-latest", "a moderation model"),
    ],
)
def test_a_known_model_the_endpoint_does_not_serve_is_refused(
    tmp_path: Path, endpoint: str, model: str, family: str
) -> None:
    template = RequestTemplate(endpoint=endpoint, model=model, prompt="{text}")
    for profile in (profile_for("openai"), profile_for("azure")):
        with pytest.raises(BatchInputError) as refused:
            prepare_rows([{"text": "a"}, {"text": "b"}], template, tmp_path, profile=profile)
        [problem] = refused.value.problems  # said once, on the first line
        assert (problem.line, problem.field, problem.code) == (
            1,
            "body.model",
            "model_not_supported",
        )
        assert family in problem.message
        assert f"{endpoint} does not serve it" in problem.message
        assert problem.fix.startswith(f"Use a model {endpoint} serves: ")


def test_dated_snapshots_and_fine_tunes_are_their_base_model(tmp_path: Path) -> None:
    for model in (
        "gpt-4o-mini-2024-07-18",
        "ft:gpt-4o-mini-2024-07-18:acme::x1",
        "gpt-3.5-turbo-0125",
    ):
        template = RequestTemplate(endpoint=CHAT, model=model, prompt="{text}")
        assert (
            prepare_rows([{"text": "a"}], template, tmp_path / model.replace(":", "_")).requests
            == 1
        )
    assert catalogue.base_model("text-embedding-3-large") == "text-embedding-3-large"


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged() -> Any:
    handler = Captured()
    catalogue.logger.addHandler(handler)
    yield handler.messages
    catalogue.logger.removeHandler(handler)


def test_an_unknown_model_is_warned_about_not_refused_and_logged_once(
    tmp_path: Path, warnings_logged: list
) -> None:
    template = RequestTemplate(endpoint=EMBEDDINGS, model="my-embedder-2031", prompt="{text}")
    first, second = (
        prepare_rows([{"text": "a"}, {"text": "b"}], template, tmp_path / str(run))
        for run in range(2)
    )
    assert (first.requests, second.requests) == (2, 2)
    [warning] = first.warnings  # said once per input, for its model
    assert second.warnings == [warning]
    assert "'my-embedder-2031' is not in this library's catalogue" in warning
    assert "text-embedding-3-small, text-embedding-3-large, text-embedding-ada-002" in warning
    assert warnings_logged == [warning]  # the process's log: once


def test_on_azure_a_deployment_name_is_not_warned_about(
    tmp_path: Path, warnings_logged: list
) -> None:
    template = RequestTemplate(endpoint=CHAT, model="my-gpt4o-deployment", prompt="{text}")
    assert (
        prepare_rows([{"text": "a"}], template, tmp_path, profile=profile_for("azure")).requests
        == 1
    )
    assert warnings_logged == []


def test_a_retired_endpoint_is_refused_before_anything_is_written(tmp_path) -> None:
    """/v1/videos is still in the SDK, but the Sora API shut down on 2026-09-24."""
    from dagster_openai_batch.core import BatchInputError, prepare_jsonl

    lines = tmp_path / "videos.jsonl"
    lines.write_text(
        '{"custom_id": "v1", "method": "POST", "url": "/v1/videos",'
        ' "body": {"model": "sora-2", "prompt": "a cat"}}\n'
    )
    with pytest.raises(BatchInputError, match=r"/v1/videos batches are refused since 2026-09-24"):
        prepare_jsonl(lines, tmp_path / "out", endpoint="/v1/videos")
    assert not (tmp_path / "out").exists()
