"""Benchmark: push large chat batches through the emulator over real HTTP with the official SDK.

The server runs in a subprocess so its RSS can be sampled with psutil. Two sizes show that memory
does not grow with file size. Usage: python benchmarks/bench_emulator.py [N ...]   (default: 5000
50000)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import openai
import orjson
import psutil

PADDING = (
    "Summarise the following text in one sentence. " * 10
)  # ~600-byte lines: 50k requests ≈ 30 MB


def write_input(path: Path, n: int) -> int:
    """Write an n-request chat batch input file, line by line; its size in bytes."""
    with open(path, "wb") as fh:
        for i in range(n):
            fh.write(
                orjson.dumps(
                    {
                        "custom_id": f"req-{i}",
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {
                            "model": "gpt-4o-mini",
                            "max_tokens": 64,
                            "messages": [
                                {"role": "system", "content": "You are terse."},
                                {"role": "user", "content": f"{PADDING} Item {i}."},
                            ],
                        },
                    }
                )
                + b"\n"
            )
    return path.stat().st_size


class PeakRss(threading.Thread):
    """Samples a process's RSS every 10 ms and keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc, self.peak, self.stopped = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.01)


def bench(n: int, work: Path) -> None:
    data_dir, src, dst = work / f"data-{n}", work / f"input-{n}.jsonl", work / f"output-{n}.jsonl"
    size = write_input(src, n)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_openai_batch.emulator",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--validating-seconds",
            "0.05",
            "--seconds-per-request",
            "0.00001",
            "--finalizing-seconds",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        idle_rss = psutil.Process(server.pid).memory_info().rss
        sampler = PeakRss(server.pid)
        sampler.start()
        client = openai.OpenAI(api_key="sk-bench", base_url=url, max_retries=2)
        stages: dict[str, float] = {}

        t = time.perf_counter()
        with open(src, "rb") as fh:
            file_id = client.files.create(file=(src.name, fh), purpose="batch").id
        stages["upload"] = time.perf_counter() - t

        t = time.perf_counter()
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        stages["create"] = time.perf_counter() - t

        t = time.perf_counter()
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(0.05)
            batch = client.batches.retrieve(batch.id)
        stages["wait (validate+run+write)"] = time.perf_counter() - t
        assert batch.status == "completed", batch
        assert batch.output_file_id, batch

        t = time.perf_counter()
        with (
            client.files.with_streaming_response.content(batch.output_file_id) as response,
            open(dst, "wb") as out,
        ):
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
        stages["download"] = time.perf_counter() - t
        sampler.stopped.set()
        sampler.join()

        total = sum(stages.values())
        print(
            f"\n{n:,} requests, input {size / 1e6:.1f} MB, output {dst.stat().st_size / 1e6:.1f} MB"
        )
        for name, seconds in stages.items():
            print(f"  {name:<28}{seconds:7.2f} s")
        print(f"  {'total':<28}{total:7.2f} s   ({n / total:,.0f} requests/s end to end)")
        print(
            f"  emulator RSS: idle {idle_rss / 2**20:.0f} MiB, peak {sampler.peak / 2**20:.0f} MiB"
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [5_000, 50_000]
    with tempfile.TemporaryDirectory(prefix="bench-emulator-") as work:
        for n in sizes:
            bench(n, Path(work))


if __name__ == "__main__":
    main()
