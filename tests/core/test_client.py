"""BatchClient and the whole core flow against the emulator (in process, and once over HTTP)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dagster_openai_batch.core import (
    BatchClient,
    BatchClientError,
    DownloadError,
    RequestTemplate,
    build_resubmission,
    collect_results,
    count_resubmittable,
    merge_results,
    prepare_rows,
    write_batch_input,
)
from dagster_openai_batch.core.client import upload_filename
from dagster_openai_batch.emulator import EMULATOR_BASE_URL, Emulator, serve

CHAT = "/v1/chat/completions"
KEY = "sk-secret-test-key-123"
TEMPLATE = RequestTemplate(
    endpoint=CHAT, model="gpt-4o-mini", prompt="Say {word}", custom_id_column="id"
)


def run(bc: BatchClient, tmp: Path, n: int = 50, key: str = "k") -> tuple[object, object]:
    prepared = prepare_rows(
        [{"id": f"r{i}", "word": f"w{i}"} for i in range(n)], TEMPLATE, tmp / "in"
    )
    file = bc.upload(prepared.parts[0])
    batch, _ = bc.create_or_adopt(input_file_id=file.id, endpoint=CHAT, idempotency_key=key)
    return prepared, batch


def results(bc: BatchClient, tmp: Path, prepared: object, batches: list[object]) -> object:
    outs, errs = bc.download_results(batches, tmp / "dl")  # type: ignore[arg-type]
    return collect_results(
        output_files=outs,
        error_files=errs,
        prepared_inputs_path=prepared.inputs_path,  # type: ignore[attr-defined]
        request_ids=None,
        batches=batches,
        endpoint=CHAT,
        dest=tmp / "results.parquet",
    )  # type: ignore[arg-type]


def test_flow_with_reuse_adoption_and_per_request_errors(make_client, tmp_path: Path) -> None:
    bc, counting = make_client(
        request_error_rate=0.2, download_truncate_rate=0.5, download_drop_rate=0.2
    )
    prepared, batch = run(bc, tmp_path)
    again = bc.upload(prepared.parts[0])  # type: ignore[attr-defined]
    assert again.id == batch.input_file_id  # type: ignore[attr-defined]
    uploads = [r for r in counting.requests if r == "POST /v1/files"]
    assert len(uploads) == 1
    adopted, was = bc.create_or_adopt(input_file_id=again.id, endpoint=CHAT, idempotency_key="k")
    assert was
    assert adopted.id == batch.id
    assert adopted.metadata["dagster_openai_batch_key"] == "k"
    done = bc.wait([batch.id], timeout=3600)  # type: ignore[attr-defined]
    final = done[batch.id]  # type: ignore[attr-defined]
    assert final.status == "completed"
    assert final.request_counts.failed > 0
    summary = results(bc, tmp_path, prepared, [final])
    assert summary.rows == 50
    assert summary.counts["succeeded"] == final.request_counts.completed
    assert summary.counts["failed"] == final.request_counts.failed
    assert summary.counts["missing"] == 0
    table = pq.read_table(summary.path)
    assert sorted(table.column("custom_id").to_pylist()) == sorted(f"r{i}" for i in range(50))
    assert set(table.column_names) >= {"id", "word", "answer", "error_code", "batch_id"}

    # follow-up with the failures that can succeed on retry (5xx, not the 400s), merged back: the
    # later success wins
    retry = list(build_resubmission(summary.path, prepared.parts))  # type: ignore[attr-defined]
    failed = table.filter(pc.not_equal(table["status"], "succeeded"))
    permanent = set(failed.filter(pc.equal(failed["status_code"], 400))["custom_id"].to_pylist())
    assert permanent
    assert set(failed["status_code"].to_pylist()) == {400, 500}
    assert {r.custom_id for r in retry} == set(failed["custom_id"].to_pylist()) - permanent
    assert count_resubmittable(summary.path) == len(retry)
    assert count_resubmittable(summary.path, include_permanent_failures=True) == failed.num_rows
    follow = write_batch_input(retry, tmp_path / "follow", endpoint=CHAT)
    clean, _ = make_client()
    fb, _ = clean.create_or_adopt(
        input_file_id=clean.upload(follow.parts[0]).id, endpoint=CHAT, idempotency_key="f"
    )
    fb = clean.wait([fb.id], timeout=3600)[fb.id]
    outs, errs = clean.download_results([fb], tmp_path / "dl2")
    fs = collect_results(
        output_files=outs,
        error_files=errs,
        prepared_inputs_path=None,
        request_ids=None,
        batches=[fb],
        endpoint=CHAT,
        dest=tmp_path / "follow.parquet",
    )
    merged = merge_results(summary.path, fs.path, tmp_path / "merged.parquet")
    assert merged.rows == 50
    assert merged.counts["succeeded"] == 50 - len(permanent) - fs.counts["failed"]
    assert isinstance(merged.cost_usd, float)
    assert merged.cost_usd > summary.cost_usd
    assert pq.read_table(merged.path).column_names == table.column_names


def test_retrieve_many_is_cheap(bc: BatchClient, counting, tmp_path: Path) -> None:
    prepared = write_batch_input(
        [{"custom_id": "a", "url": CHAT, "body": {"model": "gpt-4o-mini", "messages": []}}],
        tmp_path,
        endpoint=CHAT,
    )
    file = bc.upload(prepared.parts[0])
    ids = [
        bc.openai.batches.create(input_file_id=file.id, endpoint=CHAT, completion_window="24h").id
        for _ in range(1000)
    ]
    counting.requests.clear()
    found = bc.retrieve_many(ids)
    assert set(found) == set(ids)
    assert len(counting.requests) <= 11
    counting.requests.clear()
    assert set(bc.retrieve_many(ids[:3], since=0)) == set(ids[:3])
    assert len(counting.requests) <= 11


def test_429s_are_retried(emu, bc: BatchClient, tmp_path: Path) -> None:
    emu.inject(status=429, times=2, operation="batches.create")
    _, batch = run(bc, tmp_path, n=3)
    assert batch.status == "validating"  # type: ignore[attr-defined]


def test_download_gives_up_clearly(make_client, tmp_path: Path) -> None:
    bc, _ = make_client(download_retries=2, download_truncate_rate=1.0)
    _, batch = run(bc, tmp_path, n=3)
    final = bc.wait([batch.id], timeout=3600)[batch.id]  # type: ignore[attr-defined]
    with pytest.raises(DownloadError, match=r"failed 3 times \(last: .*\)\. Retry later") as e:
        bc.download(final.output_file_id, tmp_path / "x.jsonl")
    assert KEY not in str(e.value)
    assert not (tmp_path / "x.jsonl").exists()


def test_expiry_and_cancellation(make_client, clock, tmp_path: Path) -> None:
    bc, _ = make_client(expire_after_seconds=0.3)
    prepared, batch = run(bc, tmp_path, n=1000)
    final = bc.wait([batch.id], timeout=3600)[batch.id]  # type: ignore[attr-defined]
    assert final.status == "expired"
    summary = results(bc, tmp_path, prepared, [final])
    assert summary.rows == 1000
    assert summary.counts["expired"] > 0
    assert (
        summary.counts["expired"] + summary.counts["succeeded"] + summary.counts["failed"] == 1000
    )

    bc2, _ = make_client()
    prepared, batch = run(bc2, tmp_path / "c", n=1000, key="c")
    clock.sleep(0.3)
    assert bc2.cancel(batch.id).status in ("cancelling", "cancelled")  # type: ignore[attr-defined]
    final = bc2.wait([batch.id], timeout=3600)[batch.id]  # type: ignore[attr-defined]
    assert final.status == "cancelled"
    summary = results(bc2, tmp_path / "c", prepared, [final])
    assert summary.rows == 1000
    assert summary.counts["cancelled"] > 0
    assert summary.counts["missing"] == 0
    assert bc2.cancel(batch.id).status == "cancelled"  # idempotent


def test_cancel_finished_batch_returns_it(bc: BatchClient, tmp_path: Path) -> None:
    _, batch = run(bc, tmp_path, n=2)
    final = bc.wait([batch.id], timeout=3600)[batch.id]  # type: ignore[attr-defined]
    assert bc.cancel(final.id).status == "completed"


def test_invalid_input_fails_the_batch_and_every_row_is_missing(
    bc: BatchClient, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"custom_id": "a", "method": "POST", "url": "/v1/completions",'
        ' "body": {"model": "gpt-3.5-turbo-instruct"}}\n'
    )
    file = bc.openai.files.create(file=bad, purpose="batch")
    batch, _ = bc.create_or_adopt(input_file_id=file.id, endpoint=CHAT, idempotency_key="bad")
    final = bc.wait([batch.id], timeout=3600)[batch.id]
    assert final.status == "failed"
    assert final.errors.data[0].code == "invalid_url"
    s = collect_results(
        output_files=[],
        error_files=[],
        prepared_inputs_path=None,
        request_ids=["a"],
        batches=[final],
        endpoint=CHAT,
        dest=tmp_path / "r.parquet",
    )
    assert s.counts["missing"] == 1
    again, adopted = bc.create_or_adopt(input_file_id=file.id, endpoint=CHAT, idempotency_key="bad")
    assert not adopted
    assert again.id != final.id


def test_metadata_limits(bc: BatchClient) -> None:
    with pytest.raises(
        ValueError, match=r"17 pairs \(at most 16, including 'dagster_openai_batch_key'\)"
    ):
        bc.create_or_adopt(
            input_file_id="f",
            endpoint=CHAT,
            idempotency_key="k",
            metadata={f"k{i}": "v" for i in range(16)},
        )
    with pytest.raises(ValueError, match="value of 'x' is 513 characters"):
        bc.create_or_adopt(
            input_file_id="f", endpoint=CHAT, idempotency_key="k", metadata={"x": "v" * 513}
        )


@pytest.fixture
def html_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>login</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://user:pw@127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_wrong_base_url_errors_are_clear_over_http(emu, html_server: str) -> None:
    with serve(emu) as url:
        good = BatchClient(openai.OpenAI(api_key=KEY, base_url=url, max_retries=0))
        assert good.retrieve_many([]) == {}
        ok = good.openai.files.list(purpose="batch")
        assert ok.data == []
        cases = {
            url + "/v1": r"answered 404 .*Check base_url: it should end in a single /v1",
            "http://127.0.0.1:9/v1": (
                r"cannot reach http://127.0.0.1:9/v1/ \(ConnectError\)\. Check base_url"
            ),
            html_server: r"answered with text/html instead of JSON: it is not an OpenAI-compatible "
            r"API",
        }
        for base, message in cases.items():
            bc = BatchClient(openai.OpenAI(api_key=KEY, base_url=base, max_retries=0))
            with pytest.raises(BatchClientError, match=message) as e:
                bc.find_files([("x", 1)])
            assert KEY not in str(e.value)
            assert "pw" not in str(e.value)


def test_parts_are_uploaded_after_one_listing_and_reused_the_second_time(
    bc: BatchClient, counting, tmp_path: Path
) -> None:
    rows = [{"id": f"r{i}", "word": f"w{i}"} for i in range(30)]
    prepared = prepare_rows(rows, TEMPLATE, tmp_path / "in", max_requests=10)
    twin = prepare_rows(rows[:10], TEMPLATE, tmp_path / "twin")  # the first part's content
    parts = [*prepared.parts, twin.parts[0]]
    files = bc.upload_all(parts)
    assert counting.requests == ["GET /v1/files", *["POST /v1/files"] * 3]
    assert files[3].id == files[0].id  # same content: one upload
    assert len({f.id for f in files}) == 3
    counting.requests.clear()
    again = bc.upload_all(parts)
    assert counting.requests == ["GET /v1/files"]
    assert [f.id for f in again] == [f.id for f in files]
    counting.requests.clear()
    assert [f.id for f in bc.upload_all(parts, reuse=False)] != [f.id for f in files]
    assert counting.requests == ["POST /v1/files"] * 4


def test_parts_are_uploaded_four_at_a_time_and_come_back_in_order(
    emu: Emulator, clock: Any, tmp_path: Path
) -> None:
    """An upload is let through only once four are in flight, so uploads one after another would
    time out; the files still come back in part order, the identical last part uploaded once."""
    together = threading.Barrier(4, timeout=10)
    inner = emu.transport()

    class FourTogether(httpx2.BaseTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            if request.method == "POST" and request.url.path.endswith("/files"):
                together.wait()
            return inner.handle_request(request)

    http = httpx2.Client(transport=FourTogether())
    sdk = openai.OpenAI(api_key=KEY, base_url=EMULATOR_BASE_URL, http_client=http, max_retries=0)
    bc = BatchClient(sdk, sleep=clock.sleep, clock=clock)
    rows = [{"id": f"r{i}", "word": f"w{i}"} for i in range(40)]
    parts = prepare_rows(rows, TEMPLATE, tmp_path / "in", max_requests=10).parts
    parts = [*parts, prepare_rows(rows[30:], TEMPLATE, tmp_path / "twin").parts[0]]
    files = bc.upload_all(parts)
    assert [(f.filename, f.bytes) for f in files] == [(upload_filename(p), p.bytes) for p in parts]
    assert files[4].id == files[3].id
    assert len({f.id for f in files}) == 4
    for file, part in zip(files, parts, strict=True):
        assert sdk.files.content(file.id).read() == part.path.read_bytes()


def test_adoption_never_takes_a_batch_for_other_content_or_endpoint(
    bc: BatchClient, tmp_path: Path
) -> None:
    a = prepare_rows([{"id": "r1", "word": "a"}], TEMPLATE, tmp_path / "a").parts[0]
    b = prepare_rows([{"id": "r1", "word": "b"}], TEMPLATE, tmp_path / "b").parts[0]
    file_a = bc.upload(a)
    first, adopted = bc.create_or_adopt(
        input_file_id=file_a.id, endpoint=CHAT, idempotency_key="same-key"
    )
    assert not adopted
    # Same key, other content: a new batch, never the one that would answer other requests.
    other, adopted = bc.create_or_adopt(
        input_file_id=bc.upload(b).id, endpoint=CHAT, idempotency_key="same-key"
    )
    assert not adopted
    assert other.id != first.id
    # Same key, same bytes uploaded again under a new file id: the batch for that content is adopted
    # (found past the newer batch for other content).
    file_a2 = bc.upload(a, reuse=False)
    assert file_a2.id != file_a.id
    again, adopted = bc.create_or_adopt(
        input_file_id=file_a2.id, endpoint=CHAT, idempotency_key="same-key"
    )
    assert adopted
    assert again.id == first.id
    # Same key and file, other endpoint: not adopted.
    emb, adopted = bc.create_or_adopt(
        input_file_id=file_a.id, endpoint="/v1/embeddings", idempotency_key="same-key"
    )
    assert not adopted
    assert emb.id not in (first.id, other.id)


def test_failed_download_never_leaves_a_partial_file(make_emu, clock, tmp_path: Path) -> None:
    emu = make_emu(download_truncate_rate=1.0)
    runner = BatchClient(emu.openai_client(api_key=KEY), sleep=clock.sleep, clock=clock)
    _, batch = run(runner, tmp_path, n=20)
    final = runner.wait([batch.id], timeout=3600)[batch.id]  # type: ignore[attr-defined]
    # The first attempt is cut short (a partial file is written); the retry meets a 404, which is
    # not retried.
    bc = BatchClient(
        emu.openai_client(api_key=KEY, max_retries=0),
        sleep=lambda _: emu.inject(404, operation="files.content"),
    )
    dest = tmp_path / "dl" / "out.jsonl"
    with pytest.raises(openai.NotFoundError):
        bc.download(final.output_file_id, dest)
    assert list(dest.parent.iterdir()) == []


def test_html_page_and_wrong_key_give_clear_errors_on_every_call(
    emu, html_server: str, tmp_path: Path
) -> None:
    bc = BatchClient(
        openai.OpenAI(api_key=KEY, base_url=html_server, max_retries=0), sleep=lambda _: None
    )
    calls = {
        "retrieve": lambda: bc.retrieve("batch_x"),
        "wait": lambda: bc.wait(["batch_x"], timeout=0),
        "download": lambda: bc.download("file-x", tmp_path / "x.jsonl"),
    }
    for name, call in calls.items():
        with pytest.raises(
            BatchClientError, match="text/html instead of JSON: it is not an OpenAI-compatible API"
        ):
            call()
        assert not (tmp_path / "x.jsonl").exists(), name

    from dagster_openai_batch.emulator import Emulator, EmulatorConfig

    locked = Emulator(tmp_path / "locked", EmulatorConfig(api_key="sk-the-right-key"))
    wrong = BatchClient(locked.openai_client(api_key=KEY, max_retries=0))
    for call in (
        lambda: wrong.retrieve("batch_x"),
        lambda: wrong.find_files([("x", 1)]),
        lambda: wrong.cancel("batch_x"),
    ):
        with pytest.raises(BatchClientError, match=r"rejected the credentials \(401\)") as e:
            call()
        chain, err = [], e.value
        while err is not None:
            chain.append(f"{err} {err!r}")
            err = err.__cause__ or err.__context__
        assert KEY not in " ".join(chain)
