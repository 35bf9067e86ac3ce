"""Injected faults: HTTP errors (queue and rate), download cuts, per-request errors, stuck/expired
batches."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx2
import openai
import orjson
import pytest
from emu_helpers import chat_line, start, upload
from openai.types import Batch
from pydantic import ValidationError

from dagster_openai_batch.emulator import Emulator, EmulatorConfig, Faults, Pace, serve
from dagster_openai_batch.emulator.__main__ import _parser, config_from_args

SLOW = Pace(validating_seconds=1, seconds_per_request=1, finalizing_seconds=1, cancelling_seconds=1)


def make(tmp_path, clock, **faults) -> Emulator:
    pace = faults.pop("pace", Pace.fast())
    return Emulator(tmp_path / "e", EmulatorConfig(pace=pace, faults=Faults(**faults)), clock=clock)


def test_inject_queue_and_retry_after_ms(emulator: Emulator) -> None:
    client = emulator.openai_client(max_retries=0)
    emulator.inject(status=429, times=1, operation="files.list")
    client.batches.list()  # other operations are untouched
    with pytest.raises(openai.RateLimitError) as err:
        client.files.list()
    assert err.value.response.headers["retry-after-ms"] == "10"
    assert err.value.code == "rate_limit_exceeded"
    assert client.files.list().data == []  # the queue is used up

    emulator.inject(status=503, times=2)
    retrying = emulator.openai_client(max_retries=2)
    raw = retrying.files.with_raw_response.list()
    assert raw.retries_taken == 2
    assert raw.http_response.status_code == 200
    emulator.inject(status=500, times=3, operation="batches.create")
    with pytest.raises(openai.InternalServerError):
        retrying.batches.create(
            input_file_id="file-x", endpoint="/v1/embeddings", completion_window="24h"
        )


def _failure_pattern(em: Emulator, calls: int = 40) -> list[int]:
    client = em.openai_client(max_retries=0)
    pattern = []
    for _ in range(calls):
        try:
            client.batches.list()
            pattern.append(200)
        except openai.APIStatusError as err:
            pattern.append(err.status_code)
    return pattern


def test_http_error_rate_is_deterministic(tmp_path, clock) -> None:
    first = _failure_pattern(make(tmp_path / "a", clock, seed=7, http_error_rate=0.3))
    second = _failure_pattern(make(tmp_path / "b", clock, seed=7, http_error_rate=0.3))
    assert first == second
    assert 5 <= sum(s != 200 for s in first) <= 20
    assert set(first) - {200} <= {429, 500, 503}
    assert first != _failure_pattern(make(tmp_path / "c", clock, seed=8, http_error_rate=0.3))
    # With its default retries the SDK gets through.
    client = make(tmp_path / "d", clock, seed=7, http_error_rate=0.3).openai_client(max_retries=10)
    batch_id = start(client, [chat_line(i) for i in range(3)])
    clock.advance(5)
    assert client.batches.retrieve(batch_id).status == "completed"


@pytest.mark.parametrize("kind", ["truncate", "drop"])
@pytest.mark.parametrize("via", ["in_process", "http"])
def test_download_faults(tmp_path, clock, kind: str, via: str) -> None:
    em = make(tmp_path, clock, **{f"download_{kind}_rate": 1.0})
    client = em.openai_client(max_retries=0)
    file_id = client.files.create(
        file=("in.jsonl", b"x" * 1_000_000 + b"\n"), purpose="user_data"
    ).id
    if via == "in_process":
        with pytest.raises((openai.APIConnectionError, httpx2.RemoteProtocolError)):
            client.files.content(file_id)
        return
    with serve(em) as url:
        remote = openai.OpenAI(api_key="sk-x", base_url=url, max_retries=0)
        with pytest.raises((openai.APIConnectionError, httpx2.RemoteProtocolError)):
            remote.files.content(file_id)
        assert remote.files.retrieve(file_id).bytes == 1_000_001  # the server survives


def test_download_fault_rate_lets_retries_through(tmp_path, clock) -> None:
    em = make(tmp_path, clock, seed=3, download_truncate_rate=0.5)
    client = em.openai_client(max_retries=0)
    file_id = client.files.create(file=("in.jsonl", b"y" * 100_000), purpose="user_data").id
    outcomes = []
    for _ in range(20):
        try:
            outcomes.append(len(client.files.content(file_id).content))
        except (openai.APIConnectionError, httpx2.RemoteProtocolError):
            outcomes.append(-1)
    assert -1 in outcomes
    assert 100_000 in outcomes
    assert set(outcomes) == {-1, 100_000}


def test_request_errors_go_to_error_file(tmp_path, clock, check_lines) -> None:
    client = make(tmp_path, clock, seed=1, request_error_rate=0.3).openai_client(max_retries=0)
    batch_id = start(client, [chat_line(i) for i in range(200)])
    clock.advance(5)
    b = client.batches.retrieve(batch_id)
    counts = b.request_counts
    assert b.status == "completed"
    assert counts is not None
    assert 30 < counts.failed < 90
    assert counts.completed + counts.failed == counts.total == 200
    errors = check_lines(client.files.content(b.error_file_id or "").content)
    outputs = check_lines(client.files.content(b.output_file_id or "").content)
    assert len(errors) == counts.failed
    assert len(outputs) == counts.completed
    for line in errors:
        assert line["error"] is None
        assert line["response"]["status_code"] in (400, 500)
        error = line["response"]["body"]["error"]
        expected = (
            "context_length_exceeded" if line["response"]["status_code"] == 400 else "server_error"
        )
        assert error["code"] == expected
        assert error["message"]
        assert error["type"]
    assert {x["custom_id"] for x in errors} | {x["custom_id"] for x in outputs} == {
        f"r{i}" for i in range(200)
    }


def test_every_request_failing_means_no_output_file(tmp_path, clock) -> None:
    client = make(tmp_path, clock, request_error_rate=1.0).openai_client(max_retries=0)
    batch_id = start(client, [chat_line(i) for i in range(5)])
    clock.advance(5)
    b = client.batches.retrieve(batch_id)
    assert b.status == "completed"
    assert b.output_file_id is None
    assert b.error_file_id
    assert b.request_counts
    assert b.request_counts.failed == 5


def test_expiry_mid_batch(tmp_path, clock, check, check_lines) -> None:
    t0 = int(clock.now)
    client = make(tmp_path, clock, pace=SLOW, expire_after_seconds=51).openai_client(max_retries=0)
    batch_id = start(client, [chat_line(i) for i in range(100)])
    clock.advance(50)
    assert client.batches.retrieve(batch_id).status == "in_progress"
    clock.advance(10)
    b = Batch.model_validate(check(client.batches.with_raw_response.retrieve(batch_id)))
    assert (b.status, b.expires_at, b.expired_at, b.finalizing_at) == (
        "expired",
        t0 + 51,
        t0 + 51,
        None,
    )
    assert b.request_counts
    assert (
        b.request_counts.total,
        b.request_counts.completed,
        b.request_counts.failed,
    ) == (100, 50, 0)
    assert len(check_lines(client.files.content(b.output_file_id or "").content)) == 50
    expired = check_lines(client.files.content(b.error_file_id or "").content)
    assert len(expired) == 50
    assert all(x["response"] is None and x["error"]["code"] == "batch_expired" for x in expired)


def test_stuck_finalizing_then_expired(tmp_path, clock) -> None:
    client = make(tmp_path, clock, pace=SLOW, stuck_finalizing=True).openai_client(max_retries=0)
    batch_id = start(client, [chat_line(i) for i in range(10)])
    clock.advance(3600)
    b = client.batches.retrieve(batch_id)
    assert b.status == "finalizing"
    assert b.output_file_id is None
    clock.advance(86400)
    b = client.batches.retrieve(batch_id)
    assert b.status == "expired"
    assert b.output_file_id
    assert b.error_file_id is None
    assert b.request_counts
    assert b.request_counts.completed == 10
    lines = client.files.content(b.output_file_id).content.splitlines()
    assert sorted(orjson.loads(x)["custom_id"] for x in lines) == sorted(f"r{i}" for i in range(10))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Faults(request_eror_rate=0.5),
        lambda: Faults.model_validate({"http_error_rate": 0.1, "download_trunkate_rate": 1.0}),
        lambda: Pace(
            validating_seconds=0,
            seconds_per_request=0,
            finalizing_seconds=0,
            cancelling_seconds=0,
            extra=1,
        ),
        lambda: EmulatorConfig(fault={"seed": 1}),
    ],
)
def test_config_rejects_unknown_fields(build) -> None:
    """A typo in a fault or pace name fails loudly instead of silently injecting nothing."""
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        build()


# -- lost responses: the service acted, the client never got the answer ----------------------------

LOST_KINDS = ["drop", 502, 504]


def _create(client: openai.OpenAI, file_id: str, tag: str) -> Batch:
    return client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"tag": tag},
    )


def _assert_lost(err: pytest.ExceptionInfo[openai.APIError], kind: str | int) -> None:
    if kind == "drop":
        assert type(err.value) is openai.APIConnectionError
        assert isinstance(err.value.__cause__, httpx2.RemoteProtocolError)
        return
    assert isinstance(err.value, openai.InternalServerError)
    assert err.value.status_code == kind
    headers = err.value.response.headers
    assert headers["content-type"].startswith("text/html")
    assert "x-request-id" not in headers
    assert "cf-ray" in headers
    assert f"<title>{kind} " in err.value.response.text
    assert "cloudflare" in err.value.response.text


@contextlib.contextmanager
def _client(em: Emulator, via: str) -> Iterator[openai.OpenAI]:
    """An SDK client without retries, in process or over real HTTP."""
    if via == "in_process":
        yield em.openai_client(max_retries=0)
        return
    with serve(em) as url:
        yield openai.OpenAI(api_key="sk-x", base_url=url, max_retries=0)


@pytest.mark.parametrize("kind", LOST_KINDS)
@pytest.mark.parametrize("via", ["in_process", "http"])
def test_lost_response_on_create_still_creates(tmp_path, clock, kind: str | int, via: str) -> None:
    em = make(tmp_path, clock)
    file_id = upload(em.openai_client(max_retries=0), [chat_line(1)])
    em.inject_lost_response("batches.create", kind=kind)  # type: ignore[arg-type]
    with _client(em, via) as client:
        with pytest.raises(openai.APIError) as err:
            _create(client, file_id, "lost")
        _assert_lost(err, kind)
        batches = client.batches.list().data
        assert [(b.input_file_id, b.metadata) for b in batches] == [(file_id, {"tag": "lost"})]
        assert _create(client, file_id, "next").metadata == {
            "tag": "next"
        }  # the injection is used up


@pytest.mark.parametrize("kind", LOST_KINDS)
def test_lost_response_with_sdk_retries_pays_twice(tmp_path, clock, kind: str | int) -> None:
    """The real-world hazard: the SDK retries the lost create by itself, and the service creates a
    second batch."""
    em = make(tmp_path, clock)
    client = em.openai_client()  # the SDK's default max_retries=2
    file_id = upload(client, [chat_line(1)])
    em.inject_lost_response(kind=kind)  # type: ignore[arg-type]
    raw = client.batches.with_raw_response.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"tag": "once"},
    )
    assert raw.retries_taken == 1
    batches = client.batches.list().data
    assert len(batches) == 2
    assert raw.parse().id in {b.id for b in batches}
    assert all(b.metadata == {"tag": "once"} and b.input_file_id == file_id for b in batches)


@pytest.mark.parametrize("via", ["in_process", "http"])
def test_lost_response_on_upload_and_cancel(tmp_path, clock, via: str) -> None:
    em = make(tmp_path, clock, pace=SLOW)
    with _client(em, via) as client:
        em.inject_lost_response("files.create", kind="drop")
        with pytest.raises(openai.APIConnectionError):
            upload(client, [chat_line(i) for i in range(5)], name="kept.jsonl")
        [kept] = client.files.list(purpose="batch").data
        assert kept.filename == "kept.jsonl"
        batch = _create(client, kept.id, "cancel-me")
        em.inject_lost_response("batches.cancel", kind=504)
        with pytest.raises(openai.InternalServerError) as err:
            client.batches.cancel(batch.id)
        _assert_lost(err, 504)
        assert client.batches.retrieve(batch.id).status == "cancelling"
        clock.advance(5)
        assert client.batches.retrieve(batch.id).status == "cancelled"


def _lost_pattern(em: Emulator, calls: int = 30) -> list[str | int]:
    client = em.openai_client(max_retries=0)
    with contextlib.suppress(openai.APIError):
        upload(client, [chat_line(1)])  # its response may be lost too: the file exists all the same
    file_id = client.files.list().data[0].id
    pattern: list[str | int] = []
    for i in range(calls):
        try:
            _create(client, file_id, str(i))
            pattern.append(200)
        except openai.APIConnectionError:
            pattern.append("drop")
        except openai.APIStatusError as err:
            pattern.append(err.status_code)
    assert (
        len(client.batches.list(limit=100).data) == calls
    )  # every call was carried out, lost or not
    return pattern


def test_lost_response_rate_is_deterministic(tmp_path, clock) -> None:
    first = _lost_pattern(make(tmp_path / "a", clock, seed=5, lost_response_rate=0.4))
    assert first == _lost_pattern(make(tmp_path / "b", clock, seed=5, lost_response_rate=0.4))
    assert set(first) == {200, "drop", 502, 504}
    assert 5 <= sum(x != 200 for x in first) <= 20
    assert first != _lost_pattern(make(tmp_path / "c", clock, seed=6, lost_response_rate=0.4))
    # Non-mutating calls are never lost, and the lost-response draws leave http_error_rate's draws
    # alone.
    em = make(tmp_path / "d", clock, seed=7, http_error_rate=0.3, lost_response_rate=1.0)
    assert _failure_pattern(em) == _failure_pattern(
        make(tmp_path / "e", clock, seed=7, http_error_rate=0.3)
    )


def test_inject_lost_response_rejects_bad_arguments(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="operation"):
        emulator.inject_lost_response("batches.list")
    with pytest.raises(ValueError, match="kind"):
        emulator.inject_lost_response(kind=500)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        emulator.inject_lost_response(times=0)


def test_cli_lost_response_rate() -> None:
    args = _parser().parse_args(["--data-dir", "d", "--seed", "3", "--lost-response-rate", "0.25"])
    assert config_from_args(args).faults == Faults(seed=3, lost_response_rate=0.25)


def _batch(client: openai.OpenAI, file_id: str) -> Batch:
    return client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def test_cannot_find_file_right_after_upload(tmp_path, clock) -> None:
    client = make(tmp_path, clock, file_not_ready_rate=1.0, file_not_ready_seconds=2).openai_client(
        max_retries=0
    )
    file_id = upload(client, [chat_line(1)])
    with pytest.raises(openai.BadRequestError) as err:
        _batch(client, file_id)
    assert f"Cannot find file {file_id}." in err.value.message
    assert err.value.param == "input_file_id"  # type: ignore[attr-defined]
    assert client.batches.list().data == []  # nothing was created
    clock.advance(2)
    assert _batch(client, file_id).status == "validating"  # the window after upload is over


def test_cannot_find_file_is_seeded(tmp_path, clock) -> None:
    def outcomes(name: str, seed: int) -> list[bool]:
        emulator = make(tmp_path / name, clock, seed=seed, file_not_ready_rate=0.5)
        client = emulator.openai_client(max_retries=0)
        file_id = upload(client, [chat_line(1)])
        refused = []
        for _ in range(12):
            try:
                _batch(client, file_id)
                refused.append(False)
            except openai.BadRequestError:
                refused.append(True)
        return refused

    first = outcomes("a", 7)
    assert first == outcomes("b", 7)
    assert any(first)
    assert not all(first)
    assert first != outcomes("c", 8)


def test_hourly_batch_creation_cap(tmp_path, clock) -> None:
    client = make(tmp_path, clock, batch_creations_per_hour=3).openai_client(max_retries=0)
    file_id = upload(client, [chat_line(1)])
    for _ in range(3):
        _batch(client, file_id)
        clock.advance(60)
    with pytest.raises(openai.RateLimitError) as err:
        _batch(client, file_id)
    assert err.value.status_code == 429
    assert "at most 3 batches may be created per hour" in err.value.message
    assert err.value.code == "rate_limit_exceeded"  # type: ignore[attr-defined]
    assert len(client.batches.list().data) == 3
    clock.advance(3600 - 180)  # the first creation leaves the hour
    assert _batch(client, file_id).status == "validating"


def test_cli_service_options() -> None:
    args = _parser().parse_args(
        [
            "--data-dir",
            "d",
            "--file-not-ready-rate",
            "0.1",
            "--batch-creations-per-hour",
            "2000",
            "--extra-model",
            "my-model=my-model-2026-01-01",
            "--accept-any-model",
            "--omit-cancelled-lines",
        ]
    )
    config = config_from_args(args)
    assert config.faults == Faults(file_not_ready_rate=0.1, batch_creations_per_hour=2000)
    assert config.extra_models == {"my-model": "my-model-2026-01-01"}
    assert config.accept_any_model
    assert not config.cancelled_error_lines
    assert config.flavour == "openai"
