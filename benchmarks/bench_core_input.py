"""Benchmark: rows → validated JSONL parts → uploaded, core engine vs. the bare SDK + ``json``.

Runs an emulator over HTTP in its own process, then each variant in a fresh process, and prints wall
time, MB/s (of JSONL written) and peak RSS growth over the process's RSS after imports.

    # 50,000 chat requests, and a ~240 MB input:
    .venv/bin/python benchmarks/bench_core_input.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
from harness import emulator_over_http, measure

CHAT = "/v1/chat/completions"
CASES = {"chat-50k": (50_000, 40), "large-240MB": (60_000, 3_900)}


def rows(n: int, text_len: int) -> Iterator[dict[str, Any]]:
    filler = ("lorem ipsum dolor sit amet " * (text_len // 27 + 1))[:text_len]
    for i in range(n):
        yield {"id": f"q{i}", "topic": f"topic {i % 97}", "text": f"{i} {filler}"}


def ours(base_url: str, n: int, text_len: int, out: Path) -> int:
    from dagster_openai_batch.core import BatchClient, RequestTemplate, prepare_rows

    t = RequestTemplate(
        endpoint=CHAT,
        model="gpt-4o-mini",
        custom_id_column="id",
        body={"max_tokens": 64},
        messages=[
            {"role": "system", "content": "You classify {topic}."},
            {"role": "user", "content": "{text}"},
        ],
    )
    prepared = prepare_rows(rows(n, text_len), t, out)
    bc = BatchClient(openai.OpenAI(api_key="sk-bench", base_url=base_url))
    for part in prepared.parts:
        bc.upload(part, reuse=False)
    return prepared.bytes


def baseline(base_url: str, n: int, text_len: int, out: Path) -> int:
    client = openai.OpenAI(api_key="sk-bench", base_url=base_url)
    lines = []
    for row in rows(n, text_len):
        lines.append(
            json.dumps(
                {
                    "custom_id": row["id"],
                    "method": "POST",
                    "url": CHAT,
                    "body": {
                        "model": "gpt-4o-mini",
                        "max_tokens": 64,
                        "messages": [
                            {"role": "system", "content": f"You classify {row['topic']}."},
                            {"role": "user", "content": row["text"]},
                        ],
                    },
                }
            )
        )
    ids = [json.loads(line)["custom_id"] for line in lines]  # the obvious checks: unique ids
    assert len(set(ids)) == len(ids)
    parts, current, size = [], [], 0
    for line in lines:  # split at 50,000 requests / 200 MB
        if current and (len(current) == 50_000 or size + len(line) + 1 > 200_000_000):
            parts.append(current)
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    parts.append(current)
    total = 0
    for i, part in enumerate(parts):
        path = out / f"part-{i}.jsonl"
        path.write_text("\n".join(part) + "\n")
        total += path.stat().st_size
        client.files.create(file=path, purpose="batch")
    return total


def child(args: argparse.Namespace) -> None:
    n, text_len = CASES[args.case]
    fn = ours if args.variant == "ours" else baseline
    if (
        args.variant == "ours"
    ):  # imports (pyarrow pulls in pandas, ~80 MB once) are not part of the measurement
        import pandas  # noqa: F401

        import dagster_openai_batch.core  # noqa: F401
    measure(lambda work: fn(args.base_url, n, text_len, work))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant")
    parser.add_argument("--case")
    parser.add_argument("--base-url")
    args = parser.parse_args()
    if args.variant:
        return child(args)
    with emulator_over_http() as (base, _):
        print(f"{'case':<12} {'variant':<9} {'wall s':>7} {'MB/s':>7} {'peak RSS +MB':>13}")
        for case in CASES:
            for variant in ("baseline", "ours"):
                res = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--variant",
                        variant,
                        "--case",
                        case,
                        "--base-url",
                        base,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ},
                )
                r = json.loads(res.stdout.strip().splitlines()[-1])
                print(
                    f"{case:<12} {variant:<9} {r['wall']:>7.2f} "
                    f"{r['bytes'] / 1e6 / r['wall']:>7.1f} "
                    f"{r['rss_growth'] / 1e6:>13.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
