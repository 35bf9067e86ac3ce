"""End-to-end benchmark (issue 11): rows → batches → Parquet results, the floor vs. the bare SDK
vs. this library through Dagster.

For each size, an emulator serves over HTTP in its own process (fast pace), and each variant runs in
a fresh process that first builds its rows (not measured) and then:

- ``floor``: the least any tool must do: request dicts as orjson lines written to disk, and the
  output files parsed with orjson (downloaded from the bare variant's batches beforehand, untimed);
- ``bare``: what a user writes without us: request dicts, ``json.dumps`` lines, split at 50,000
  requests per file, ``files.create``, ``batches.create``, wait (untimed), download the output,
  ``json.loads`` each line, pandas merge with the input rows on custom_id, ``to_parquet``;
- ``library``: ``dg.materialize`` of a rows asset → ``input_file`` → ``batch_job`` on a temporary
  Dagster instance, wait (untimed), one ``openai_batch_sensor`` tick, then the results run it
  requests (the resolved ``results_job`` executed in process with the run request's config).

Waiting for the service to finish the batches is excluded (and reported apart). The library's stages
are split by wrapping its functions with timers (negligible overhead) and by the step durations in
the run's event log; "Dagster run overhead" is a run's wall time minus its steps'.

Before and after each variant its process times a fixed loop (:func:`machine_check`), and the report
prints those times: on a shared machine they show how fast it was at the time, so a ratio between
variants run minutes apart can be read against the noise.

Peak RSS growth is the peak of the process's RSS plus the private memory of the library's
result-line helper processes (sampled every 20 ms), minus the process's RSS after imports and after
building the rows (the user's own object), as the issue asks.

Usage (from the repository root):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_end_to_end.py            # all sizes
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_end_to_end.py --quick    # 2,000 and 20,000
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_end_to_end.py --sizes chat:200000,emb:200000
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_end_to_end.py --runs 3   # the issue's verdict

With ``--runs N`` everything runs N times, the bare SDK and the library in alternate order (a drift
in the machine's speed over a size then favours neither), and the report ends with each target in
every run, its median and the verdict on the median: on a shared machine whose speed swings about
twofold within minutes, one run's ratio of two variants measured minutes apart is one draw of that
noise.

Sizes are ``kind:rows`` with kind ``chat`` or ``emb`` (a bare number means chat). The default is
chat at 2,000 (for the library's own share of a small run), 50,000, 200,000 and 1,000,000 and
embeddings at 200,000. Embeddings ask for ``dimensions: 256`` (as the demo does): at the model's
1,536 the emulator's output for 200,000 rows would be ~6 GB of JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import psutil
from harness import emulator_over_http

CHAT, EMB = "/v1/chat/completions", "/v1/embeddings"
PER_FILE = 50_000
DEFAULT_SIZES = "chat:2000,chat:50000,chat:200000,chat:1000000,emb:200000"
QUICK_SIZES = "chat:2000,chat:20000"
VARIANTS = ("bare", "library", "floor")
MB = 1e6


# ---------------------------------------------------------------- shared by the variants


def make_rows(kind: str, n: int) -> list[dict[str, Any]]:
    """The user's rows (built before measuring)."""
    if kind == "chat":
        return [
            {"id": f"q{i}", "question": f"What is {i} plus {i % 97}? Answer in one word."}
            for i in range(n)
        ]
    return [
        {"id": f"d{i}", "text": f"review {i}: the kettle boils fast, {i % 89}"} for i in range(n)
    ]


def request_body(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    if kind == "chat":
        return {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": row["question"]}],
        }
    return {"model": "text-embedding-3-small", "input": row["text"], "dimensions": 256}


def template(kind: str) -> Any:
    from dagster_openai_batch import RequestTemplate

    if kind == "chat":
        return RequestTemplate(
            endpoint=CHAT,
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "{question}"}],
            custom_id_column="id",
        )
    return RequestTemplate(
        endpoint=EMB,
        model="text-embedding-3-small",
        prompt="{text}",
        body={"dimensions": 256},
        custom_id_column="id",
    )


class Timers:
    """Wall seconds per stage; ``wrap`` times every call of a function (nested calls count once
    per stage name)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.intervals: list[tuple[str, float, float]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            end = time.perf_counter()
            self.seconds[name] += end - start
            self.intervals.append((name, start, end))

    def peak_rss(self, samples: list[tuple[float, int]], base: int) -> dict[str, int]:
        """Each stage's peak RSS growth over ``base``, from (time, RSS) samples."""
        peaks: dict[str, int] = {}
        for name, start, end in self.intervals:
            inside = [rss for t, rss in samples if start <= t <= end]
            if inside:
                peaks[name] = max(peaks.get(name, 0), max(inside) - base)
        return peaks

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        original = getattr(owner, attr)
        timers = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            with timers.stage(name):
                return original(*args, **kwargs)

        setattr(owner, attr, timed)

    def wrap_generator(self, owner: Any, attr: str, name: str) -> None:
        """Time a generator function's own work: each step of its iteration."""
        original = getattr(owner, attr)
        timers = self

        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with timers.stage(name):
                gen = original(*args, **kwargs)
            while True:
                with timers.stage(name):
                    try:
                        item = next(gen)
                    except StopIteration:
                        return
                yield item

        setattr(owner, attr, timed)


SLOWEST_RETRIEVE = [0.0]
"""The slowest ``batches.retrieve`` answer while waiting (the emulator does a finished batch's work
-- validating the input, writing the result files -- inside the call that first sees it)."""


def wait_terminal(client: Any, batch_ids: list[str]) -> list[Any]:
    """Poll until every batch is terminal (untimed by the caller)."""
    terminal = {"completed", "failed", "expired", "cancelled"}
    done: dict[str, Any] = {}
    deadline = time.monotonic() + 3600
    while len(done) < len(batch_ids):
        for batch_id in batch_ids:
            if batch_id not in done:
                started = time.perf_counter()
                batch = client.batches.retrieve(batch_id)
                SLOWEST_RETRIEVE[0] = max(SLOWEST_RETRIEVE[0], time.perf_counter() - started)
                if batch.status in terminal:
                    done[batch_id] = batch
        if len(done) < len(batch_ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"batches not finished: {set(batch_ids) - set(done)}")
            time.sleep(1)
    return [done[i] for i in batch_ids]


# ---------------------------------------------------------------- variants (child processes)


def run_floor(kind: str, rows: list[dict[str, Any]], args: argparse.Namespace, t: Timers) -> dict:
    import openai
    import orjson

    work = Path(args.work)
    client = openai.OpenAI(api_key="sk-bench", base_url=args.base_url)
    local = []
    for i, file_id in enumerate(json.loads(args.output_file_ids)):  # untimed: given files
        path = work / f"floor-out-{i}.jsonl"
        with client.files.with_streaming_response.content(file_id) as response:
            response.stream_to_file(path)
        local.append(path)
    url = CHAT if kind == "chat" else EMB
    with t.stage("input hot path"), open(work / "floor-in.jsonl", "wb") as f:
        dumps = orjson.dumps
        for row in rows:
            line = {"custom_id": row["id"], "method": "POST", "url": url}
            line["body"] = request_body(kind, row)
            f.write(dumps(line) + b"\n")
    parsed = 0
    with t.stage("results hot path"):
        loads = orjson.loads
        for path in local:
            with open(path, "rb") as f:
                for line in f:
                    loads(line)
                    parsed += 1
    assert parsed == len(rows), parsed
    t.seconds["total"] = t.seconds["input hot path"] + t.seconds["results hot path"]
    return {}


def run_bare(kind: str, rows: list[dict[str, Any]], args: argparse.Namespace, t: Timers) -> dict:
    import openai
    import pandas as pd

    work = Path(args.work)
    client = openai.OpenAI(api_key="sk-bench", base_url=args.base_url)
    url = CHAT if kind == "chat" else EMB
    with t.stage("input hot path"):
        lines = [
            json.dumps(
                {"custom_id": r["id"], "method": "POST", "url": url, "body": request_body(kind, r)}
            )
            for r in rows
        ]
        paths = []
        for start in range(0, len(lines), PER_FILE):
            path = work / f"bare-{start // PER_FILE:03d}.jsonl"
            path.write_text("\n".join(lines[start : start + PER_FILE]) + "\n")
            paths.append(path)
        del lines
    with t.stage("upload + create"):
        batch_ids = []
        for path in paths:
            file = client.files.create(file=path, purpose="batch")
            batch = client.batches.create(
                input_file_id=file.id, endpoint=url, completion_window="24h"
            )
            batch_ids.append(batch.id)
    with t.stage("wait (untimed)"):
        batches = wait_terminal(client, batch_ids)
    assert all(b.status == "completed" for b in batches), [b.status for b in batches]
    with t.stage("download"):
        texts = [client.files.content(b.output_file_id).text for b in batches]
    with t.stage("results hot path"):
        out = []
        for text in texts:
            for line in text.splitlines():
                item = json.loads(line)
                body = item["response"]["body"]
                if kind == "chat":
                    value = body["choices"][0]["message"]["content"]
                    out.append(
                        {
                            "id": item["custom_id"],
                            "answer": value,
                            "input_tokens": body["usage"]["prompt_tokens"],
                            "output_tokens": body["usage"]["completion_tokens"],
                        }
                    )
                else:
                    out.append(
                        {
                            "id": item["custom_id"],
                            "embedding": body["data"][0]["embedding"],
                            "input_tokens": body["usage"]["prompt_tokens"],
                        }
                    )
        del texts
        merged = pd.DataFrame(rows).merge(pd.DataFrame(out), on="id", how="left")
        del out
        merged.to_parquet(work / "bare-results.parquet")
        assert len(merged) == len(rows)
    t.seconds["total"] = sum(
        t.seconds[k] for k in ("input hot path", "upload + create", "download", "results hot path")
    )
    return {"output_file_ids": [b.output_file_id for b in batches]}


def run_library(kind: str, rows: list[dict[str, Any]], args: argparse.Namespace, t: Timers) -> dict:
    import dagster as dg
    import openai

    from dagster_openai_batch import OpenAIBatchResource, openai_batch_assets, openai_batch_sensor
    from dagster_openai_batch.core.client import BatchClient
    from dagster_openai_batch.dagster import asset_bodies
    from dagster_openai_batch.dagster.stage_records import BatchJobRecord, latest_record

    # Where the time goes inside the steps (the rest of a step is Dagster's per-step work).
    t.wrap(asset_bodies, "prepare_rows", "input hot path")
    t.wrap(asset_bodies, "_store_input", "lib: copy input to storage")
    t.wrap(BatchClient, "upload_all", "upload + create")
    t.wrap(asset_bodies, "_current_set", "upload + create")
    t.wrap(BatchClient, "create_or_adopt_many", "upload + create")
    t.wrap(BatchClient, "download_results", "download")
    t.wrap(asset_bodies, "download_file", "lib: read input back from storage")
    t.wrap(asset_bodies, "readable_path", "lib: read input back from storage")
    t.wrap(asset_bodies, "collect_results", "results hot path")
    # The asset bodies as a whole: the library's code in the steps, Dagster's per-step work aside.
    for body in ("materialize_input_file", "materialize_batch_job", "materialize_results"):
        t.wrap_generator(asset_bodies, body, "lib: asset bodies")
    t.wrap(asset_bodies, "check_batches_accepted", "lib: asset bodies")

    @dg.asset(io_manager_key="rows_io")
    def bench_rows() -> Any:
        return rows

    pipeline = openai_batch_assets(name="bench", source=bench_rows, template=template(kind))
    openai_resource = OpenAIBatchResource(api_key="sk-bench", base_url=args.base_url)
    sensor = openai_batch_sensor([pipeline])
    resources = {"openai_batch": openai_resource, "rows_io": dg.mem_io_manager}
    defs = dg.Definitions.merge(
        pipeline.definitions(),
        dg.Definitions(assets=[bench_rows], sensors=[sensor], resources=resources),
    )
    results_job = defs.resolve_job_def(pipeline.results_job.name)
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as instance:
        with t.stage("submit run (wall)"):
            submit = dg.materialize(
                [bench_rows, pipeline.input_file, pipeline.batch_job],
                instance=instance,
                resources=resources,
            )
        assert submit.success
        steps = step_seconds(instance, submit.run_id)
        t.seconds["Dagster run overhead"] += t.seconds["submit run (wall)"] - sum(steps.values())
        for step, seconds in steps.items():
            t.seconds[f"step: {step}"] += seconds
        record = latest_record(instance, pipeline.batch_job.key, None, BatchJobRecord)
        assert record is not None
        client = openai.OpenAI(api_key="sk-bench", base_url=args.base_url)
        with t.stage("wait (untimed)"):
            wait_terminal(client, record.batch_id_list)
        with (
            t.stage("sensor tick"),
            dg.build_sensor_context(
                instance=instance, resources={"openai_batch": openai_resource}
            ) as context,
        ):
            tick = sensor(context)
        assert tick is not None
        assert len(tick.run_requests) == 1, tick
        request = tick.run_requests[0]
        with t.stage("results run (wall)"):
            collected = results_job.execute_in_process(
                run_config=request.run_config,
                instance=instance,
                partition_key=request.partition_key,
                resources=resources,
            )
        assert collected.success
        steps = step_seconds(instance, collected.run_id)
        t.seconds["Dagster run overhead"] += t.seconds["results run (wall)"] - sum(steps.values())
        for step, seconds in steps.items():
            t.seconds[f"step: {step}"] += seconds
        results = collected.output_for_node(pipeline.results_op_name)
        assert results.rows == len(rows), results.rows
        extra["batches"] = len(record.batch_id_list)
    t.seconds["total"] = sum(
        t.seconds[k] for k in ("submit run (wall)", "sensor tick", "results run (wall)")
    )
    return extra


def children_rss(page: int) -> int:
    """The private memory of this process's result-line helper processes, from /proc: what they
    add (the shared libraries they map are this process's too, already in its RSS). A child
    Dagster starts for its own machinery is not counted, as before."""
    total = 0
    for listing in Path("/proc/self/task").glob("*/children"):
        for pid in listing.read_text().split():
            with contextlib.suppress(OSError, ValueError):  # it has just ended
                if b"core.result_lines" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                    total += 1024 * sum(
                        int(line.split()[1]) for line in rollup if line.startswith("Private_")
                    )
    return total


def step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    """Each step's duration (STEP_START to its success or failure) from the run's event log."""
    starts: dict[str, float] = {}
    out: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            out[event.step_key] = entry.timestamp - starts[event.step_key]
    return out


_CHECK_LINE = (
    b'{"id": "batch_req_1", "custom_id": "q1", "response": {"status_code": 200, "body": '
    b'{"model": "gpt-4o-mini", "choices": [{"message": {"content": "Two."}}], '
    b'"usage": {"prompt_tokens": 16, "completion_tokens": 2}}}, "error": null}'
)


def machine_check() -> float:
    """Milliseconds for a fixed piece of work (20,000 orjson round trips of a result line with some
    Python around them), best of three: run before and after each variant, it shows how fast the
    machine was at the time, so a ratio between variants can be read against the noise."""
    import orjson

    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for i in range(20_000):
            line = orjson.loads(_CHECK_LINE)
            line["custom_id"] = f"q{i}"
            orjson.dumps(line)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def child(args: argparse.Namespace) -> None:
    runner: Callable[..., dict] = {"floor": run_floor, "bare": run_bare, "library": run_library}[
        args.variant
    ]
    # Imports are not part of the measurement.
    import openai  # noqa: F401
    import orjson  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    if args.variant == "library":
        import dagster  # noqa: F401

        import dagster_openai_batch  # noqa: F401
    rows = make_rows(args.kind, args.rows)
    before = psutil.Process().memory_info().rss
    timers = Timers()
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:  # RSS every 20 ms, to tell which stage holds the peak
        page = os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/statm") as statm:
            while not stop.wait(0.02):
                statm.seek(0)
                samples.append(
                    (time.perf_counter(), int(statm.read().split()[1]) * page + children_rss(page))
                )

    check_before = machine_check()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with timers.stage("process: variant wall (incl. setup and wait)"):
        extra = runner(args.kind, rows, args, timers)  # sets timers.seconds["total"]
    stop.set()
    sampler.join()
    check_after = machine_check()
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        max((rss for _, rss in samples), default=0),
    )
    print(
        json.dumps(
            {
                "seconds": timers.seconds,
                "rss_after_rows": before,
                "rss_growth": max(peak - before, 0),
                "slowest_retrieve": SLOWEST_RETRIEVE[0],
                "stage_rss_growth": timers.peak_rss(samples, before),
                "machine_check_ms": [check_before, check_after],
                **extra,
            }
        )
    )


# ---------------------------------------------------------------- parent: run and report


def run_variant(
    variant: str, kind: str, n: int, base: str, work: Path, extra: list[str]
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--variant", variant, "--kind", kind, "--rows", str(n)]
    cmd += ["--base-url", base, "--work", str(work), *extra]
    started = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-4000:])
        raise RuntimeError(f"{variant} {kind}:{n} failed")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - started
    return out


TIMED = ("input hot path", "upload + create", "download", "results hot path")
STAGES = (*TIMED, "download + results hot path", "total")
"""The library parses result files while others download: "download + results hot path" counts
that parse wherever it fell."""
LIBRARY_DETAIL = (
    "lib: asset bodies",
    "lib: copy input to storage",
    "lib: read input back from storage",
    "sensor tick",
    "submit run (wall)",
    "results run (wall)",
    "Dagster run overhead",
)


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def report(kind: str, n: int, results: dict[str, dict[str, Any]]) -> None:
    print(f"\n== {kind} {n:,} rows ==")
    print(
        f"{'rows':>9} | {'stage':<40} | {'floor s':>8} | {'bare s':>8} | {'library s':>9} | "
        f"{'lib/bare':>8} | {'lib/floor':>9}"
    )
    get = {v: results[v]["seconds"] for v in results}
    for seconds in get.values():
        if "download" in seconds and "results hot path" in seconds:
            seconds["download + results hot path"] = (
                seconds["download"] + seconds["results hot path"]
            )
    for stage in STAGES:
        f, b, lib = (get[v].get(stage) if v in get else None for v in ("floor", "bare", "library"))
        print(
            f"{n:>9,} | {stage:<40} | {fmt(f):>8} | {fmt(b):>8} | {fmt(lib):>9} | "
            f"{ratio(lib, b):>8} | {ratio(lib, f):>9}"
        )
    if "library" in get:
        lib = get["library"]
        details = [*LIBRARY_DETAIL, *sorted(k for k in lib if k.startswith("step: "))]
        for stage in details:
            print(f"{n:>9,} | {stage:<40} | {'':>8} | {'':>8} | {fmt(lib.get(stage)):>9} |")
    for v in ("bare", "library"):
        if v in get:
            print(
                f"{n:>9,} | {'wait (untimed, ' + v + ')':<40} | "
                f"{fmt(get[v].get('wait (untimed)'))} s; slowest batches.retrieve "
                f"{results[v]['slowest_retrieve']:.2f} s"
            )
    rss = ", ".join(
        f"{v} {results[v]['rss_growth'] / MB:.0f} MB"
        for v in ("floor", "bare", "library")
        if v in results
    )
    rows_mb = next(iter(results.values()))["rss_after_rows"] / MB
    for v in ("bare", "library"):
        if v in results:
            by_stage = results[v]["stage_rss_growth"]
            shown = [k for k in (*TIMED, *LIBRARY_DETAIL) if k in by_stage]
            print(
                f"peak RSS growth by stage, {v} (sampled every 20 ms): "
                + ", ".join(f"{k} {by_stage[k] / MB:.0f} MB" for k in shown)
            )
    print(f"peak RSS growth beyond rows (RSS after imports+rows ~{rows_mb:.0f} MB): {rss}")
    checks = {v: results[v]["machine_check_ms"] for v in results}
    print(
        "machine check (a fixed loop, ms, before -> after each variant; higher is slower): "
        + ", ".join(f"{v} {before:.0f} -> {after:.0f}" for v, (before, after) in checks.items())
    )
    print(
        "process wall (incl. imports, rows, wait): "
        + ", ".join(f"{v} {results[v]['process_seconds']:.0f}s" for v in results),
        flush=True,
    )


class Target(NamedTuple):
    """One issue-11 target as a run measured it (``value`` None: not measured)."""

    label: str
    value: float | None
    limit: float
    unit: str

    def met(self) -> bool:
        return self.value is not None and self.value <= self.limit


def targets(all_results: dict[tuple[str, int], dict[str, dict[str, Any]]]) -> list[Target]:
    """The issue-11 targets as one run measured them."""

    def sec(key: tuple[str, int], v: str, stage: str) -> float | None:
        return all_results.get(key, {}).get(v, {}).get("seconds", {}).get(stage)

    def quotient(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    out = [
        Target(
            f"library/bare SDK at {n:,} chat rows",
            quotient(sec(("chat", n), "library", "total"), sec(("chat", n), "bare", "total")),
            limit,
            "x",
        )
        for n, limit in ((200_000, 1.0), (1_000_000, 0.7))
    ]
    out += [
        Target(
            f"{stage} vs floor, {key[0]} {key[1]:,}",
            quotient(sec(key, "library", stage), sec(key, "floor", stage)),
            3.0,
            "x",
        )
        for key in sorted(all_results)
        if key[1] >= 50_000
        for stage in ("input hot path", "results hot path")
    ]
    big = all_results.get(("chat", 1_000_000), {}).get("library")
    out.append(
        Target(
            "library peak RSS growth at 1,000,000 chat rows",
            big["rss_growth"] / MB if big else None,
            250,
            " MB",
        )
    )
    small = all_results.get(("chat", 2000), {}).get("library")
    own = None
    if small is not None:
        own = small["seconds"].get("lib: asset bodies", 0.0) + small["seconds"].get(
            "sensor tick", 0.0
        )
    out.append(
        Target(
            "library's own share of a 2,000-row run (asset bodies + sensor tick)", own, 0.5, " s"
        )
    )
    return out


def machine_spread(runs: list[dict[tuple[str, int], dict[str, dict[str, Any]]]]) -> str:
    """How much the machine's fixed loop varied over ``runs``."""
    checks = [
        ms
        for all_results in runs
        for results in all_results.values()
        for r in results.values()
        for ms in r["machine_check_ms"]
    ]
    if not checks:
        return ""
    return (
        f"(the machine's fixed loop took {min(checks):.0f}-{max(checks):.0f} ms: its speed varied "
        f"{max(checks) / min(checks):.2f}x)"
    )


def verdict(all_results: dict[tuple[str, int], dict[str, dict[str, Any]]]) -> None:
    print("\n== issue 11 targets ==")
    print(machine_spread([all_results]))
    for t in targets(all_results):
        if t.value is None:
            print(f"- {t.label}: not measured")
        else:
            ok = "MET" if t.met() else "NOT met"
            print(f"- {t.label}: {t.value:.2f}{t.unit} (target <= {t.limit}{t.unit}): {ok}")
    small = all_results.get(("chat", 2000), {}).get("library")
    if small is not None:
        s = small["seconds"]
        steps = sum(v for k, v in s.items() if k.startswith("step: ") and "bench_rows" not in k)
        steps += s.get("sensor tick", 0.0)
        print(f"  (its steps as Dagster times them, plus the sensor tick: {steps:.2f} s)")
        hot = sum(
            s.get(k, 0.0)
            for k in (
                *TIMED,
                "lib: copy input to storage",
                "lib: read input back from storage",
            )
        )
        print(f"  (of which inside the library's own functions, timed by wrappers: {hot:.2f} s)")


def summary(runs: list[dict[tuple[str, int], dict[str, dict[str, Any]]]]) -> None:
    """Each target in every run, its median over the runs and the verdict on that median."""
    print(f"\n== issue 11 targets over {len(runs)} runs (verdict on the median) ==")
    print(machine_spread(runs))
    per_run = [targets(all_results) for all_results in runs]
    for measured in zip(*per_run, strict=True):
        first = measured[0]
        values = [t.value for t in measured if t.value is not None]
        if not values:
            print(f"- {first.label}: not measured")
            continue
        middle = statistics.median(values)
        shown = ", ".join(f"{v:.2f}" for v in values)
        met = sum(t.met() for t in measured)
        ok = "MET" if middle <= first.limit else "NOT met"
        print(
            f"- {first.label}: {shown} -> median {middle:.2f}{first.unit} "
            f"(target <= {first.limit}{first.unit}; met in {met} of {len(measured)}): {ok}"
        )


def parse_sizes(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.split(","):
        kind, _, n = item.strip().rpartition(":")
        kind = kind or "chat"
        if kind not in ("chat", "emb"):
            raise SystemExit(f"unknown kind {kind!r} (chat or emb)")
        out.append((kind, int(n.replace("_", ""))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help=f"kind:rows,... (default {DEFAULT_SIZES})")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_SIZES}")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="run everything this many times, the bare SDK and the library in alternate order, "
        "then print each target per run and the verdict on its median",
    )
    # child-process arguments
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--output-file-ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return child(args)
    if args.runs < 1:
        raise SystemExit("--runs: give 1 or more")
    sizes = parse_sizes(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    if "floor" in variants and "bare" not in variants:
        raise SystemExit("the floor parses the bare variant's output files: include bare")
    runs: list[dict[tuple[str, int], dict[str, dict[str, Any]]]] = []
    began = time.perf_counter()
    for run in range(args.runs):
        # Alternate runs start with the library, so a drift in the machine's speed over a size
        # favours neither the bare SDK nor the library (the floor reads the bare SDK's files).
        order = (
            variants if run % 2 == 0 else sorted(variants, key=("library", "bare", "floor").index)
        )
        if args.runs > 1:
            print(f"\n######## run {run + 1} of {args.runs} ({', '.join(order)})", flush=True)
        all_results: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
        for kind, n in sizes:
            started = time.perf_counter()
            results: dict[str, dict[str, Any]] = {}
            with (
                emulator_over_http("--pace", "fast") as (base, _),
                tempfile.TemporaryDirectory() as w,
            ):
                for variant in order:
                    extra = []
                    if variant == "floor":
                        ids = results["bare"]["output_file_ids"]
                        extra = ["--output-file-ids", json.dumps(ids)]
                    work = Path(w) / variant
                    work.mkdir()
                    results[variant] = run_variant(variant, kind, n, base, work, extra)
            all_results[(kind, n)] = results
            report(kind, n, results)
            print(f"({kind} {n:,}: {time.perf_counter() - started:.0f}s for this size)", flush=True)
        verdict(all_results)
        runs.append(all_results)
    if args.runs > 1:
        summary(runs)
    print(f"\nwhole benchmark: {time.perf_counter() - began:.0f}s (cores: {os.cpu_count()})")


if __name__ == "__main__":
    main()
