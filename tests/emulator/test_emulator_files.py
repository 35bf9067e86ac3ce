"""Files API through the official SDK (in process): every operation, upload validation, pagination,
auth."""

from __future__ import annotations

import httpx2
import openai
import pytest
from emu_helpers import chat_line, jsonl
from openai.types import FileDeleted, FileObject

from dagster_openai_batch.emulator import EMULATOR_BASE_URL, Emulator, EmulatorConfig

CONTENT = jsonl(chat_line(i) for i in range(3))


def test_create_retrieve_content_delete(client: openai.OpenAI, check, clock) -> None:
    raw = check(client.files.with_raw_response.create(file=("in.jsonl", CONTENT), purpose="batch"))
    created = FileObject.model_validate(raw)
    assert (created.bytes, created.filename, created.purpose, created.status) == (
        len(CONTENT),
        "in.jsonl",
        "batch",
        "processed",
    )
    assert created.created_at == int(clock.now)
    assert (
        created.expires_at == int(clock.now) + 30 * 86400
    )  # batch inputs expire after 30 days by default
    assert (
        FileObject.model_validate(check(client.files.with_raw_response.retrieve(created.id)))
        == created
    )

    content = client.files.with_raw_response.content(created.id).http_response
    assert content.headers["content-type"] == "application/octet-stream"
    assert content.headers["content-length"] == str(len(CONTENT))
    assert content.content == CONTENT

    deleted = FileDeleted.model_validate(check(client.files.with_raw_response.delete(created.id)))
    assert (deleted.id, deleted.deleted) == (created.id, True)
    with pytest.raises(openai.NotFoundError) as err:
        client.files.retrieve(created.id)
    assert err.value.body["message"] == f"No such File object: {created.id}"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(created.id)


def test_expires_after_and_expiry(client: openai.OpenAI, clock) -> None:
    f = client.files.create(
        file=("in.jsonl", CONTENT),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert f.expires_at == int(clock.now) + 3600
    clock.advance(3601)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(
            file=("in.jsonl", CONTENT),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 10},
        )
    assert err.value.param == "expires_after.seconds"
    other = client.files.create(file=("notes.txt", b"x"), purpose="user_data")
    assert other.expires_at is None


@pytest.mark.parametrize(
    ("name", "content", "purpose", "fragment"),
    [
        ("in.txt", CONTENT, "batch", "Must be .jsonl"),
        ("in.jsonl", b"\xff\xfe not utf-8\n", "batch", "UTF-8"),
        ("in.jsonl", CONTENT, "batch_output", "Invalid value for 'purpose'"),
        ("in.jsonl", b"", "batch", "Invalid file format for Batch API (the file is empty)"),
        ("in.jsonl", b"\n  \n", "batch", "Invalid file format for Batch API (the file is empty)"),
        ("in.jsonl", b"not json\n[1, 2]\n", "batch", "(no line is a JSON object). Must be .jsonl"),
    ],
)
def test_upload_rejected(
    client: openai.OpenAI, name: str, content: bytes, purpose: str, fragment: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=(name, content), purpose=purpose)  # type: ignore[arg-type]
    assert err.value.status_code == 400
    assert fragment in err.value.message
    assert err.value.response.headers["x-request-id"].startswith("req_")
    assert client.files.list().data == []


def test_a_batch_file_with_one_json_line_is_accepted(client: openai.OpenAI) -> None:
    """Only an empty or wholly non-JSON file is refused at upload; the rest is validation's."""
    f = client.files.create(file=("in.jsonl", b"garbage\n{}\n"), purpose="batch")
    assert f.status == "processed"


def test_upload_over_200_mb_rejected(client: openai.OpenAI, tmp_path) -> None:
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as fh:  # sparse: 200 MB + 1 byte of zeros, streamed by the SDK from disk
        fh.truncate(200 * 1024 * 1024 + 1)
    with open(big, "rb") as fh, pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("big.jsonl", fh), purpose="batch")
    assert "too large" in err.value.message
    assert client.files.list().data == []


def test_list_pagination_order_and_purpose(client: openai.OpenAI, check, clock) -> None:
    ids = []
    for i in range(5):
        ids.append(client.files.create(file=(f"f{i}.jsonl", CONTENT), purpose="batch").id)
        clock.advance(1)
    other = client.files.create(file=("x.txt", b"x"), purpose="user_data").id
    raw = check(client.files.with_raw_response.list(limit=2, purpose="batch"))
    assert [f["id"] for f in raw["data"]] == ids[::-1][:2]
    assert (raw["first_id"], raw["last_id"], raw["has_more"]) == (ids[4], ids[3], True)
    assert [f.id for f in client.files.list(purpose="batch", limit=2)] == ids[
        ::-1
    ]  # SDK auto-pagination
    assert [f.id for f in client.files.list(order="asc")] == [*ids, other]
    page = client.files.list(order="asc", after=ids[1], limit=2)
    assert [f.id for f in page.data] == ids[2:4]
    assert page.has_more
    empty = check(client.files.with_raw_response.list(purpose="fine-tune"))
    assert empty == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    for bad in (0, 10_001):
        with pytest.raises(openai.BadRequestError):
            client.files.list(limit=bad)


def test_auth(emulator: Emulator, tmp_path, clock) -> None:
    missing = httpx2.Client(transport=emulator.transport()).get(f"{EMULATOR_BASE_URL}/files")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"
    locked = Emulator(tmp_path / "locked", EmulatorConfig(api_key="sk-right"), clock=clock)
    with pytest.raises(openai.AuthenticationError) as err:
        locked.openai_client("sk-wrong-key", max_retries=0).files.list()
    assert err.value.code == "invalid_api_key"
    assert locked.openai_client("sk-right").files.list().data == []


def test_unknown_route_is_openai_shaped_404(emulator: Emulator) -> None:
    http = httpx2.Client(transport=emulator.transport(), headers={"Authorization": "Bearer sk-x"})
    for method, path in (("GET", "/nope"), ("PUT", "/files"), ("GET", "/batches/b/cancel")):
        response = http.request(method, f"{EMULATOR_BASE_URL}{path}")
        assert response.status_code == 404
        assert response.json() == {
            "error": {
                "message": f"Invalid URL ({method} /v1{path})",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
        assert response.headers["x-request-id"].startswith("req_")
