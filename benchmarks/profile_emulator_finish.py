"""Where the emulator's time goes when a 50,000-request chat batch finishes (issue 11 notes that
``batches.retrieve`` takes seconds then): the emulator in process on a controlled clock, and
cProfile around the retrieve that first sees the batch validated and the one that first sees it
completed (the call that writes its result files).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/profile_emulator_finish.py [--requests 50000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import orjson

from dagster_openai_batch.emulator import Emulator, EmulatorConfig, Pace


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()
    clock = Clock()
    pace = Pace.fast()
    with tempfile.TemporaryDirectory() as data:
        emulator = Emulator(Path(data), EmulatorConfig(pace=pace), clock=clock)
        client = emulator.openai_client()
        lines = b"".join(
            orjson.dumps(
                {
                    "custom_id": f"q{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": f"What is {i} plus {i % 97}?"}],
                    },
                }
            )
            + b"\n"
            for i in range(args.requests)
        )
        file = client.files.create(file=("in.jsonl", lines), purpose="batch")
        batch = client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        run_seconds = args.requests * pace.seconds_per_request + pace.finalizing_seconds + 1
        for label, advance in (
            ("validated (the input is validated in this call)", pace.validating_seconds + 0.01),
            ("completed (the result files are written in this call)", run_seconds),
            ("completed, asked again", 1),
        ):
            clock.now += advance
            profile = cProfile.Profile()
            started = time.perf_counter()
            profile.enable()
            status = client.batches.retrieve(batch.id).status
            profile.disable()
            print(f"retrieve, {label}: {status}, {time.perf_counter() - started:.2f}s")
            if time.perf_counter() - started > 0.3:
                stats = pstats.Stats(profile)
                stats.sort_stats("cumulative").print_stats("dagster_openai_batch/emulator", 12)
                stats.sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
