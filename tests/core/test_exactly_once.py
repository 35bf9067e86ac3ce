"""Exactly one paid batch per key, whatever the network does to ``POST /v1/batches``.

Everything goes through the official SDK to the emulator (in process, and over HTTP), whose faults
carry a call out and then lose its response, as a dropped connection or a gateway's 502/504 does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from dagster_openai_batch.core import (
    BatchClient,
    BatchClientError,
    BatchToCreate,
    RequestTemplate,
    prepare_rows,
)
from dagster_openai_batch.emulator import EMULATOR_BASE_URL, Emulator, EmulatorConfig, Faults, serve

CHAT = "/v1/chat/completions"
TEMPLATE = RequestTemplate(
    endpoint=CHAT, model="gpt-4o-mini", prompt="Say {word}", custom_id_column="id"
)
KEY_META = "dagster_openai_batch_key"


def upload(bc: BatchClient, tmp: Path, n: int = 20, name: str = "in") -> str:
    prepared = prepare_rows(
        [{"id": f"r{i}", "word": f"w{i}"} for i in range(n)], TEMPLATE, tmp / name
    )
    return bc.upload(prepared.parts[0]).id


def batches_with_key(emu: Emulator, key: str) -> list[openai.types.Batch]:
    client = emu.openai_client(max_retries=0)
    return [
        b for b in client.batches.list(limit=100).data if (b.metadata or {}).get(KEY_META) == key
    ]


def live(batches: list[openai.types.Batch]) -> list[openai.types.Batch]:
    return [b for b in batches if b.status not in ("cancelling", "cancelled")]


@pytest.mark.parametrize("kind", ["drop", 502, 504])
def test_a_lost_create_response_is_adopted_not_paid_twice(
    emu: Emulator, bc: BatchClient, tmp_path: Path, kind: object
) -> None:
    file_id = upload(bc, tmp_path)
    emu.inject_lost_response("batches.create", kind=kind)  # type: ignore[arg-type]
    batch, adopted = bc.create_or_adopt(
        input_file_id=file_id, endpoint=CHAT, idempotency_key="lost"
    )
    assert adopted  # the service had created it: found under its key
    found = batches_with_key(emu, "lost")
    assert [b.id for b in found] == [batch.id]


@pytest.mark.parametrize("kind", ["drop", 502])
def test_a_lost_create_response_over_http(tmp_path: Path, kind: object) -> None:
    emu = Emulator(tmp_path / "emu")
    with serve(emu) as url:
        bc = BatchClient(openai.OpenAI(api_key="sk-test", base_url=url), backoff=0.01)
        file_id = upload(bc, tmp_path)
        emu.inject_lost_response("batches.create", kind=kind)  # type: ignore[arg-type]
        batch, adopted = bc.create_or_adopt(
            input_file_id=file_id, endpoint=CHAT, idempotency_key="http"
        )
    assert adopted
    assert [b.id for b in batches_with_key(emu, "http")] == [batch.id]


def test_seeded_storm_of_lost_responses_and_errors_keeps_one_batch_per_key(
    make_client: Callable[..., tuple[BatchClient, Any]], tmp_path: Path, clock: Any
) -> None:
    clean, _ = make_client()  # uploads first, on the same data dir without faults
    file_ids = [upload(clean, tmp_path, n=5 + i, name=f"in{i}") for i in range(12)]
    bc, counting = make_client(lost_response_rate=0.5, http_error_rate=0.2, seed=11)
    created = {}
    for i, file_id in enumerate(file_ids):
        created[f"k{i}"] = bc.create_or_adopt(
            input_file_id=file_id, endpoint=CHAT, idempotency_key=f"k{i}"
        )[0].id
    emu_batches = [
        b for b in counting.openai.with_options(max_retries=3).batches.list(limit=100).data
    ]
    by_key: dict[str, list[str]] = {}
    for b in emu_batches:
        by_key.setdefault((b.metadata or {})[KEY_META], []).append(b.id)
    assert {key: ids for key, ids in by_key.items()} == {key: [bid] for key, bid in created.items()}
    # Where the bare SDK, retrying by itself, pays twice for one key.
    bare = Emulator(
        tmp_path / "emu", EmulatorConfig(faults=Faults(lost_response_rate=1.0)), clock=clock
    )
    with pytest.raises(openai.APIError):
        bare.openai_client(max_retries=1).batches.create(
            input_file_id=file_ids[0],
            endpoint=CHAT,
            completion_window="24h",
            metadata={KEY_META: "bare"},
        )
    assert len(batches_with_key(bare, "bare")) == 2


def test_rate_limited_create_is_retried_after_the_wait(
    emu: Emulator, bc: BatchClient, tmp_path: Path
) -> None:
    file_id = upload(bc, tmp_path)
    emu.inject(429, times=2, operation="batches.create")  # refused before acting: nothing created
    batch, adopted = bc.create_or_adopt(
        input_file_id=file_id, endpoint=CHAT, idempotency_key="busy"
    )
    assert not adopted
    assert [b.id for b in batches_with_key(emu, "busy")] == [batch.id]


def test_unknown_outcome_and_a_service_that_stays_down_never_creates_blindly(
    emu: Emulator, bc: BatchClient, tmp_path: Path
) -> None:
    file_id = upload(bc, tmp_path)
    emu.inject(503, times=1000)  # every call fails, the look-up included
    with pytest.raises((BatchClientError, openai.APIError)):
        bc.create_or_adopt(input_file_id=file_id, endpoint=CHAT, idempotency_key="down")
    emu.faults._queue.clear()  # the service is back
    assert batches_with_key(emu, "down") == []
    batch, adopted = bc.create_or_adopt(
        input_file_id=file_id, endpoint=CHAT, idempotency_key="down"
    )
    assert not adopted
    assert [b.id for b in batches_with_key(emu, "down")] == [batch.id]


def test_create_gives_up_with_a_clear_message_when_rate_limited_throughout(
    emu: Emulator, bc: BatchClient, tmp_path: Path
) -> None:
    file_id = upload(bc, tmp_path)
    emu.inject(429, times=1000, operation="batches.create")
    with pytest.raises(BatchClientError, match="nothing was paid for"):
        bc.create_or_adopt(input_file_id=file_id, endpoint=CHAT, idempotency_key="limit")
    assert batches_with_key(emu, "limit") == []


class _CreateBarrier(httpx2.BaseTransport):
    """The service's front door, holding each ``POST /v1/batches`` until every racer has sent
    one."""

    def __init__(self, inner: httpx2.BaseTransport, barrier: threading.Barrier) -> None:
        self.inner, self.barrier = inner, barrier

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST" and request.url.path.endswith("/batches"):
            self.barrier.wait(timeout=30)
        return self.inner.handle_request(request)


def test_two_racing_submissions_keep_the_oldest_batch_and_cancel_the_younger(
    tmp_path: Path, clock: Any
) -> None:
    emu = Emulator(tmp_path / "emu", EmulatorConfig(faults=Faults()), clock=clock)
    barrier = threading.Barrier(2)

    def client() -> BatchClient:
        http = httpx2.Client(transport=_CreateBarrier(emu.transport(), barrier))
        return BatchClient(
            openai.OpenAI(api_key="sk-test", base_url=EMULATOR_BASE_URL, http_client=http),
            backoff=0.01,
        )

    racers = [client(), client()]
    file_id = upload(racers[0], tmp_path)
    got: list[openai.types.Batch] = []

    def submit(bc: BatchClient) -> None:
        got.append(
            bc.create_or_adopt(input_file_id=file_id, endpoint=CHAT, idempotency_key="race")[0]
        )

    threads = [threading.Thread(target=submit, args=(bc,)) for bc in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    all_batches = batches_with_key(emu, "race")
    assert len(all_batches) == 2  # both creates went through: the race really happened
    kept = live(all_batches)
    assert len(kept) == 1
    assert {b.id for b in got} == {kept[0].id}
    cancelled = next(b for b in all_batches if b.id != kept[0].id)
    assert (
        cancelled.request_counts is None or cancelled.request_counts.completed == 0
    )  # cancelled before it ran


def test_several_creates_search_one_listing_and_settle_each(
    bc: BatchClient, counting: Any, tmp_path: Path
) -> None:
    """The parts of a submission: one listing searched before all the creates (five pages are
    five calls in a busy organization), each create settled by its own search; run again, every
    batch is adopted from one listing, nothing created."""
    requests = [
        BatchToCreate(upload(bc, tmp_path, n=3 + i, name=f"p{i}"), f"part:{i}", {"part": str(i)})
        for i in range(4)
    ]
    counting.requests.clear()
    first = bc.create_or_adopt_many(requests, endpoint=CHAT)
    assert [adopted for _, adopted in first] == [False] * 4
    assert counting.requests.count("POST /v1/batches") == 4
    assert counting.requests.count("GET /v1/batches") == 1 + 4  # one search, then one per create
    counting.requests.clear()
    again = bc.create_or_adopt_many(requests, endpoint=CHAT)
    assert [(b.id, adopted) for b, adopted in again] == [(b.id, True) for b, _ in first]
    assert counting.requests == ["GET /v1/batches"]
    for i, (batch, _) in enumerate(first):
        assert batch.metadata == {"part": str(i), KEY_META: f"part:{i}"}


def test_a_part_created_by_a_racer_after_the_shared_listing_is_settled_to_one_batch(
    emu: Emulator, clock: Any, tmp_path: Path
) -> None:
    """Another process creates part 1 after our listing, while we create part 0: our create of
    part 1 is then a duplicate, and its settling search keeps the racer's (older) batch and
    cancels ours before it runs."""
    racer = BatchClient(emu.openai_client(max_retries=0), sleep=clock.sleep, clock=clock)
    files = [upload(racer, tmp_path, n=4, name=f"r{i}") for i in range(2)]
    raced: list[openai.types.Batch] = []

    def race(request: httpx2.Request) -> None:
        if request.method == "POST" and request.url.path.endswith("/batches") and not raced:
            clock.sleep(1)  # a second later than our listing
            raced.append(
                racer.create_or_adopt(input_file_id=files[1], endpoint=CHAT, idempotency_key="k1")[
                    0
                ]
            )
            clock.sleep(1)

    http = httpx2.Client(transport=emu.transport(), event_hooks={"request": [race]})
    ours = BatchClient(
        openai.OpenAI(api_key="sk-test", base_url=EMULATOR_BASE_URL, http_client=http),
        sleep=clock.sleep,
        clock=clock,
        backoff=0.01,
    )
    answers = ours.create_or_adopt_many(
        [BatchToCreate(files[0], "k0", {}), BatchToCreate(files[1], "k1", {})], endpoint=CHAT
    )
    assert [adopted for _, adopted in answers] == [False, True]
    assert answers[1][0].id == raced[0].id
    both = batches_with_key(emu, "k1")
    assert len(both) == 2  # our create went through: the race really happened
    assert [b.id for b in live(both)] == [raced[0].id]
    assert len(live(batches_with_key(emu, "k0"))) == 1


def test_a_listing_older_than_a_minute_is_made_again_before_the_next_create(
    emu: Emulator, counting: Any, clock: Any, tmp_path: Path
) -> None:
    """A create that waited (here a 429 and a two-minute pause) is followed by a fresh listing
    before the next part's search, so the settling window still covers every batch since."""
    slow = BatchClient(counting.openai, sleep=lambda s: clock.sleep(120), clock=clock)
    requests = [BatchToCreate(upload(slow, tmp_path, name=f"s{i}"), f"s{i}", {}) for i in range(3)]
    counting.requests.clear()
    emu.inject(429, times=1, operation="batches.create")
    answers = slow.create_or_adopt_many(requests, endpoint=CHAT)
    assert [adopted for _, adopted in answers] == [False] * 3
    lists = counting.requests.count("GET /v1/batches")
    assert lists == 1 + 3 + 1  # the first listing, one settle per create, one listing again


def test_cancel_of_a_finished_batch_answers_at_once(
    emu: Emulator, bc: BatchClient, counting: Any, tmp_path: Path, clock: Any
) -> None:
    batch, _ = bc.create_or_adopt(
        input_file_id=upload(bc, tmp_path), endpoint=CHAT, idempotency_key="done"
    )
    assert bc.wait([batch.id], timeout=3600)[batch.id].status == "completed"
    before = len(counting.requests)
    assert bc.cancel(batch.id).status == "completed"
    assert counting.requests[before:] == [
        f"POST /v1/batches/{batch.id}/cancel",
        f"GET /v1/batches/{batch.id}",
    ]


def test_cancel_many_survives_transient_failures_and_reports_the_rest(
    emu: Emulator, bc: BatchClient, tmp_path: Path
) -> None:
    ids = [
        bc.create_or_adopt(
            input_file_id=upload(bc, tmp_path, n=3 + i, name=f"c{i}"),
            endpoint=CHAT,
            idempotency_key=f"c{i}",
        )[0].id
        for i in range(3)
    ]
    emu.inject_lost_response(
        "batches.cancel", kind=504
    )  # acted, answer lost: retried, still cancelled
    emu.inject(503, times=2, operation="batches.cancel")  # transient: retried
    done, failed = bc.cancel_many(ids)
    assert failed == {}
    assert [b.id for b in done] == ids
    assert all(b.status in ("cancelling", "cancelled") for b in done)

    more = [
        bc.create_or_adopt(
            input_file_id=upload(bc, tmp_path, n=9 + i, name=f"d{i}"),
            endpoint=CHAT,
            idempotency_key=f"d{i}",
        )[0].id
        for i in range(2)
    ]
    emu.inject(
        500, times=bc.create_attempts, operation="batches.cancel"
    )  # the first one fails every attempt
    done, failed = bc.cancel_many(more)
    assert list(failed) == [more[0]]
    assert "InternalServerError 500" in failed[more[0]]
    assert [b.id for b in done] == [more[1]]
    assert done[0].status in ("cancelling", "cancelled")


class _FileNotYetVisible(httpx2.BaseTransport):
    """The service right after an upload: its first ``POST /v1/batches`` answers are 400 "Cannot
    find file …" (nothing created), as the real service does at high rates."""

    def __init__(self, inner: httpx2.BaseTransport, refusals: int, message: str) -> None:
        self.inner, self.refusals, self.message = inner, refusals, message
        self.creates = 0

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST" and request.url.path.endswith("/batches"):
            self.creates += 1
            if self.creates <= self.refusals:
                error = {"message": self.message, "type": "invalid_request_error", "param": None}
                return httpx2.Response(400, json={"error": {**error, "code": None}})
        return self.inner.handle_request(request)


def _client_behind(front: httpx2.BaseTransport, clock: Any) -> BatchClient:
    http = httpx2.Client(transport=front)
    return BatchClient(
        openai.OpenAI(api_key="sk-test", base_url=EMULATOR_BASE_URL, http_client=http),
        sleep=clock.sleep,
        clock=clock,
        backoff=0.01,
    )


def test_cannot_find_file_right_after_upload_is_retried_and_pays_once(
    emu: Emulator, tmp_path: Path, clock: Any
) -> None:
    front = _FileNotYetVisible(emu.transport(), 3, "Cannot find file file-abc123.")
    bc = _client_behind(front, clock)
    file_id = upload(bc, tmp_path)
    batch, adopted = bc.create_or_adopt(input_file_id=file_id, endpoint=CHAT, idempotency_key="new")
    assert not adopted
    assert front.creates == 4  # three refusals waited out, then one create
    assert [b.id for b in batches_with_key(emu, "new")] == [batch.id]


def test_cannot_find_file_for_ever_gives_up_saying_nothing_was_paid(
    emu: Emulator, tmp_path: Path, clock: Any
) -> None:
    front = _FileNotYetVisible(emu.transport(), 1000, "Cannot find file file-abc123.")
    bc = _client_behind(front, clock)
    file_id = upload(bc, tmp_path)
    with pytest.raises(
        BatchClientError, match=r"failed 5 times .*Cannot find file.*nothing was paid for"
    ):
        bc.create_or_adopt(input_file_id=file_id, endpoint=CHAT, idempotency_key="gone")
    assert front.creates == bc.create_attempts  # bounded
    assert batches_with_key(emu, "gone") == []


def test_another_400_is_a_definite_refusal_not_retried(
    emu: Emulator, tmp_path: Path, clock: Any
) -> None:
    front = _FileNotYetVisible(emu.transport(), 1000, "Invalid value for 'endpoint'.")
    bc = _client_behind(front, clock)
    file_id = upload(bc, tmp_path)
    with pytest.raises(openai.BadRequestError, match="Invalid value"):
        bc.create_or_adopt(input_file_id=file_id, endpoint=CHAT, idempotency_key="bad")
    assert front.creates == 1
