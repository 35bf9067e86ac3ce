"""What the core benchmarks share: an emulator over HTTP in its own process, and one measured
run."""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import psutil


@contextmanager
def emulator_over_http(*args: str) -> Iterator[tuple[str, Path]]:
    """Start ``python -m dagster_openai_batch.emulator`` (extra CLI ``args``); yield its base URL
    and data dir. A SIGTERM to this process (``kill``, ``timeout``) stops the emulator too."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster_openai_batch.emulator",
                "--port",
                str(port),
                "--data-dir",
                data,
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}/v1"
            for _ in range(100):
                try:
                    openai.OpenAI(api_key="x", base_url=base, max_retries=0).batches.list(limit=1)
                    break
                except openai.APIConnectionError:
                    time.sleep(0.1)
            yield base, Path(data)
        finally:
            server.terminate()
            server.wait()


def measure(run: Callable[[Path], int]) -> None:
    """Run ``run(work_dir) -> bytes processed`` once; print wall time, bytes and peak RSS growth as
    JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        before = psutil.Process().memory_info().rss
        start = time.perf_counter()
        size = run(Path(tmp))
        wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"wall": wall, "bytes": size, "rss_growth": max(peak - before, 0)}))
