"""Benchmark: rows → validated JSONL parts → uploaded, core engine vs. the bare SDK + ``json``.

Runs an emulator over HTTP in its own process, then each variant in a fresh process, and prints wall
time, MB/s (of JSONL written) and peak RSS growth over the process's RSS after imports.

    # 50,000 chat requests, and a ~240 MB input:
    .venv/bin/python benchmarks/bench_core_input.py

``--hot-path N`` measures instead the input hot path alone, in this process, as CPU microseconds
per row (steadier than wall time on a loaded machine; best of 3): the floor (request dicts as
orjson lines written to disk) vs ``prepare_rows`` for ``bench_end_to_end.py``'s chat and embedding
rows, and a JSONL file's floor (each line parsed and written back with orjson) vs ``prepare_jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
from bench_end_to_end import CHAT as CHAT_URL
from bench_end_to_end import EMB, make_rows, request_body, template
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


def cpu_us_per_row(n: int, work: Callable[[Path], object]) -> float:
    """The best of 3 runs of ``work`` (given an empty directory), in CPU microseconds per row."""
    best = float("inf")
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.process_time()
            work(Path(tmp))
            best = min(best, time.process_time() - started)
    return best / n * 1e6


def write_floor(kind: str, rows: list[dict[str, Any]], path: Path) -> None:
    """The floor: request dicts as orjson lines written to disk (as in bench_end_to_end.py)."""
    url = CHAT_URL if kind == "chat" else EMB
    with open(path, "wb") as f:
        for row in rows:
            line = {"custom_id": row["id"], "method": "POST", "url": url}
            line["body"] = request_body(kind, row)
            f.write(orjson.dumps(line) + b"\n")


def copy_jsonl(source: Path, path: Path) -> None:
    """A JSONL file's floor: each line parsed and written back with orjson."""
    with open(source, "rb") as f, open(path, "wb") as out:
        for raw in f:
            out.write(orjson.dumps(orjson.loads(raw)) + b"\n")


def hot_path(n: int) -> None:
    import pandas  # noqa: F401  (imports are not part of the measurement)
    import pyarrow as pa

    from dagster_openai_batch.core import prepare_jsonl, prepare_rows

    pa.array(["warm-up"])  # pyarrow's first type inference imports what it needs
    print(f"{'input':<16} {'floor us/row':>12} {'library us/row':>15} {'ratio':>6}")

    def show(name: str, base: float, ours: float) -> None:
        print(f"{name:<16} {base:>12.2f} {ours:>15.2f} {ours / base:>5.2f}x", flush=True)

    for kind in ("chat", "emb"):
        rows, t = make_rows(kind, n), template(kind)
        base = cpu_us_per_row(n, lambda out: write_floor(kind, rows, out / "floor.jsonl"))  # noqa: B023
        ours = cpu_us_per_row(n, lambda out: prepare_rows(rows, t, out))  # noqa: B023
        show(f"{kind} rows", base, ours)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "input.jsonl"
        write_floor("chat", make_rows("chat", n), source)
        base = cpu_us_per_row(n, lambda out: copy_jsonl(source, out / "copy.jsonl"))
        ours = cpu_us_per_row(n, lambda out: prepare_jsonl(source, out))
        show("chat JSONL file", base, ours)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant")
    parser.add_argument("--case")
    parser.add_argument("--base-url")
    parser.add_argument("--hot-path", type=int, metavar="ROWS")
    args = parser.parse_args()
    if args.hot_path:
        return hot_path(args.hot_path)
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
