"""The Azure OpenAI flavour through `openai.AzureOpenAI` (api-version routes) and `openai.OpenAI`
(`/openai/v1/`), in process and over HTTP: deployments, Azure's shapes and validation codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai
import orjson
import pytest
from emu_helpers import chat_line, jsonl, line_validator, validate_response
from openai.types import Batch
from openapi_core import OpenAPI

from dagster_openai_batch.emulator import EMULATOR_HOST, Emulator, EmulatorConfig, serve
from dagster_openai_batch.emulator.__main__ import _parser, config_from_args

DEPLOYMENTS = {
    "mini-batch": "gpt-4o-mini",
    "big-batch": "gpt-4o",
    "embed": "text-embedding-3-small",
}
API_VERSION = "2025-04-01-preview"


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(flavour="azure", azure_deployments=DEPLOYMENTS)


@pytest.fixture
def azure(emulator: Emulator) -> openai.AzureOpenAI:
    return emulator.azure_client(api_version=API_VERSION, max_retries=0)


@pytest.fixture
def azure_check(openapi: OpenAPI) -> Callable[[Any], Any]:
    """Validate a raw response against the OpenAI spec, its Azure path mapped onto `/v1`.

    Azure's `""` file ids are strings and its null `request_counts` an optional property, so the
    spec's usual null relaxation (conftest) covers them: nothing more is relaxed.
    """
    return lambda raw: validate_response(openapi, raw, azure=True)


@pytest.fixture
def azure_lines(line_schemas: dict[str, Any]) -> Callable[[bytes], list[dict[str, Any]]]:
    """Parse a result file and validate its lines against BatchRequestOutput, without `id`."""
    return line_validator(line_schemas, with_id=False)


def _start(client: openai.OpenAI, lines: list[Any], endpoint: str = "/v1/chat/completions") -> str:
    file_id = client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch").id
    return client.batches.create(
        input_file_id=file_id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
    ).id


def test_azure_client_lifecycle(azure: openai.AzureOpenAI, azure_check, azure_lines, clock) -> None:
    batch_id = _start(azure, [chat_line(i, model="mini-batch") for i in range(10)])
    raw = azure_check(azure.batches.with_raw_response.retrieve(batch_id))
    b = Batch.model_validate(raw)
    assert b.status == "validating"
    assert (b.request_counts, b.output_file_id, b.error_file_id) == (None, "", "")
    clock.advance(5)
    b = Batch.model_validate(azure_check(azure.batches.with_raw_response.retrieve(batch_id)))
    assert (b.status, b.model) == ("completed", "gpt-4o-mini-2024-07-18")
    assert b.request_counts is not None
    assert (b.request_counts.total, b.request_counts.completed, b.request_counts.failed) == (
        10,
        10,
        0,
    )
    assert b.output_file_id
    lines = azure_lines(azure.files.content(b.output_file_id).content)
    assert len(lines) == 10
    assert {x["response"]["body"]["model"] for x in lines} == {"gpt-4o-mini-2024-07-18"}
    assert b.error_file_id  # always written on Azure: empty when nothing failed
    assert azure.files.retrieve(b.error_file_id).bytes == 0
    assert azure.files.content(b.error_file_id).content == b""
    azure_check(azure.files.with_raw_response.list())
    azure_check(azure.batches.with_raw_response.list())


def test_openai_client_on_openai_v1(emulator: Emulator, azure_check, clock) -> None:
    client = emulator.openai_client(max_retries=0)
    assert str(client.base_url) == f"{EMULATOR_HOST}/openai/v1/"
    batch_id = _start(
        client,
        [
            {
                "custom_id": f"e{i}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": "embed", "input": f"text {i}"},
            }
            for i in range(3)
        ],
        endpoint="/v1/embeddings",
    )
    clock.advance(5)
    b = Batch.model_validate(azure_check(client.batches.with_raw_response.retrieve(batch_id)))
    assert (b.status, b.model) == ("completed", "text-embedding-3-small")


def test_both_clients_over_http(emulator: Emulator, azure_lines, clock) -> None:
    with serve(emulator) as url:
        assert url.endswith("/openai/v1")
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        clients: list[openai.OpenAI] = [
            openai.AzureOpenAI(
                api_key="k", azure_endpoint=origin, api_version=API_VERSION, max_retries=0
            ),
            openai.OpenAI(api_key="k", base_url=url + "/", max_retries=0),
        ]
        for client in clients:
            batch_id = _start(client, [chat_line(i, model="big-batch") for i in range(4)])
            clock.advance(5)
            b = client.batches.retrieve(batch_id)
            assert (b.status, b.model) == ("completed", "gpt-4o-2024-08-06")
            assert b.output_file_id
            assert len(azure_lines(client.files.content(b.output_file_id).content)) == 4


def test_api_key_header_and_api_version(emulator: Emulator, tmp_path, clock) -> None:
    keyed = Emulator(
        tmp_path / "keyed",
        EmulatorConfig(flavour="azure", api_key="right-key"),
        clock=clock,
    )
    assert keyed.azure_client(api_key="right-key").files.list().data == []
    with pytest.raises(openai.AuthenticationError) as err:
        keyed.azure_client(api_key="wrong-key", max_retries=0).files.list()
    assert "Access denied" in err.value.message
    http = httpx2.Client(transport=emulator.transport(), base_url=EMULATOR_HOST)
    assert http.get("/openai/files", headers={"api-key": "k"}).status_code == 404  # no version
    ok = http.get("/openai/files", params={"api-version": API_VERSION}, headers={"api-key": "k"})
    assert ok.status_code == 200
    assert http.get("/openai/v1/files", headers={"api-key": "k"}).status_code == 200
    assert http.get("/openai/v1/files").status_code == 401
    assert http.get("/v1/files", headers={"api-key": "k"}).status_code == 404  # OpenAI's route


def _failed(client: openai.OpenAI, clock, lines: list[Any], **kw: Any) -> Batch:
    batch_id = _start(client, lines, **kw)
    clock.advance(1)
    b = client.batches.retrieve(batch_id)
    assert b.status == "failed"
    assert (b.request_counts, b.output_file_id, b.error_file_id) == (None, "", "")
    assert b.errors is not None
    return b


@pytest.mark.parametrize(
    ("lines", "code", "param", "line"),
    [
        ([chat_line(1, model="gpt-4o-mini")], "model_not_found", "body.model", 1),
        (
            [chat_line(1, model="mini-batch"), chat_line(2, model="no-such-deployment")],
            "model_not_found",
            "body.model",
            2,
        ),
        (
            [chat_line(1, model="mini-batch"), chat_line(2, model="big-batch")],
            "model_mismatch",
            "body.model",
            2,
        ),
        (
            [chat_line(1, model="mini-batch"), chat_line(1, model="mini-batch")],
            "duplicate_custom_id",
            "custom_id",
            2,
        ),
        ([chat_line(1, model="mini-batch", url="/v1/embeddings")], "url_mismatch", "url", 1),
        ([chat_line(1, model="mini-batch"), b"{oops"], "invalid_json_line", None, 2),
        ([b"\n", b"  "], "empty_batch", None, None),
    ],
    ids=[
        "model-not-deployment",
        "unknown-deployment",
        "mismatch",
        "duplicate",
        "url",
        "json",
        "blank",
    ],
)
def test_azure_validation_codes(
    azure: openai.AzureOpenAI, clock, lines: list[Any], code: str, param: str | None, line: int
) -> None:
    b = _failed(azure, clock, lines)
    assert b.errors is not None
    err = b.errors.data[0]
    assert (err.code, err.param, err.line) == (code, param, line)
    if code == "model_not_found":
        assert "deployment" in (err.message or "")


def test_an_empty_file_is_accepted_then_fails_with_empty_file(
    azure: openai.AzureOpenAI, clock
) -> None:
    b = _failed(azure, clock, [])
    assert b.errors is not None
    assert [e.code for e in b.errors.data] == ["empty_file"]


def test_azure_takes_100000_requests_per_file(azure: openai.AzureOpenAI, clock) -> None:
    line = orjson.dumps(chat_line(0, model="mini-batch"))
    over = b"\n".join(line.replace(b'"r0"', f'"r{i}"'.encode()) for i in range(100_001))
    file_id = azure.files.create(file=("big.jsonl", over), purpose="batch").id
    too_many = azure.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    fits = _start(azure, [chat_line(i, model="mini-batch") for i in range(50_001)])
    clock.advance(1)
    refused = azure.batches.retrieve(too_many.id)
    assert refused.errors is not None
    assert refused.errors.data[0].code == "too_many_tasks"
    assert "100,000" in (refused.errors.data[0].message or "")
    assert azure.batches.retrieve(fits).status == "in_progress"  # over OpenAI's 50,000


def test_cancelled_azure_batch_lines_have_no_id(
    azure: openai.AzureOpenAI, azure_lines, clock
) -> None:
    batch_id = _start(azure, [chat_line(i, model="mini-batch") for i in range(100)])
    clock.advance(0.5 + 40 * 0.0008 + 1e-6)
    azure.batches.cancel(batch_id)
    clock.advance(1)
    b = azure.batches.retrieve(batch_id)
    assert b.status == "cancelled"
    assert b.error_file_id
    never_run = azure_lines(azure.files.content(b.error_file_id).content)
    assert len(never_run) == 60
    assert {x["error"]["code"] for x in never_run} == {"batch_cancelled"}


def test_cli_azure_flavour() -> None:
    args = _parser().parse_args(
        ["--data-dir", "d", "--flavour", "azure", "--azure-deployment", "my-dep=gpt-4o-mini"]
    )
    config = config_from_args(args)
    assert (config.flavour, config.azure_deployments) == ("azure", {"my-dep": "gpt-4o-mini"})
    default = config_from_args(_parser().parse_args(["--data-dir", "d", "--flavour", "azure"]))
    assert default.azure_deployments["gpt-4o-mini"] == "gpt-4o-mini"
