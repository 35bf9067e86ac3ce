"""Benchmark: download + parse + join 50,000 chat results to Parquet, core engine vs. the bare SDK +
``json``.

Runs an emulator over HTTP in its own process, completes one 50,000-request batch (not timed), then
runs each variant in a fresh process and prints wall time, MB/s (of result JSONL) and peak RSS
growth.

    .venv/bin/python benchmarks/bench_core_results.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import openai
from harness import emulator_over_http, measure

CHAT = "/v1/chat/completions"
N = 50_000


def ours(client: openai.OpenAI, batch_id: str, inputs: Path, out: Path) -> int:
    from dagster_openai_batch.core import BatchClient, collect_results

    bc = BatchClient(client)
    batch = bc.retrieve(batch_id)
    outs, errs = bc.download_results([batch], out)
    summary = collect_results(
        output_files=outs,
        error_files=errs,
        prepared_inputs_path=inputs,
        request_ids=None,
        batches=[batch],
        endpoint=CHAT,
        dest=out / "results.parquet",
    )
    assert summary.rows == N
    return sum(p.stat().st_size for p in [*outs, *errs])


def baseline(client: openai.OpenAI, batch_id: str, inputs: Path, out: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    batch = client.batches.retrieve(batch_id)
    data = client.files.content(batch.output_file_id).content
    by_id = {}
    for line in data.decode().splitlines():
        item = json.loads(line)
        by_id[item["custom_id"]] = item
    rows = []
    for row in pq.read_table(inputs).to_pylist():
        item = by_id.get(row["custom_id"])
        body = item["response"]["body"] if item else {}
        usage = body.get("usage", {})
        rows.append(
            {
                **row,
                "status": "succeeded" if item else "missing",
                "response_body": json.dumps(body),
                "answer": body["choices"][0]["message"]["content"] if item else None,
                "input_tokens": usage.get("prompt_tokens"),
                "output_tokens": usage.get("completion_tokens"),
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), out / "results.parquet")
    return len(data)


def child(args: argparse.Namespace) -> None:
    import pandas  # noqa: F401  (imports are not part of the measurement)
    import pyarrow.parquet  # noqa: F401

    import dagster_openai_batch.core  # noqa: F401

    client = openai.OpenAI(api_key="sk-bench", base_url=args.base_url)
    fn = ours if args.variant == "ours" else baseline
    measure(lambda work: fn(client, args.batch_id, Path(args.inputs), work))


def setup(base: str, work: Path) -> tuple[str, Path]:
    from dagster_openai_batch.core import BatchClient, RequestTemplate, prepare_rows

    t = RequestTemplate(
        endpoint=CHAT, model="gpt-4o-mini", prompt="Classify: {text}", custom_id_column="id"
    )
    prepared = prepare_rows(({"id": f"q{i}", "text": f"item {i} " * 20} for i in range(N)), t, work)
    bc = BatchClient(openai.OpenAI(api_key="sk-bench", base_url=base))
    batch, _ = bc.create_or_adopt(
        input_file_id=bc.upload(prepared.parts[0]).id, endpoint=CHAT, idempotency_key="bench"
    )
    final = bc.wait([batch.id], timeout=600, poll_interval=1)[batch.id]
    assert final.status == "completed", final.status
    assert prepared.inputs_path is not None
    return batch.id, prepared.inputs_path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant")
    parser.add_argument("--base-url")
    parser.add_argument("--batch-id")
    parser.add_argument("--inputs")
    args = parser.parse_args()
    if args.variant:
        return child(args)
    with emulator_over_http("--seconds-per-request", "0.00001") as (base, data):
        batch_id, inputs = setup(base, data / "work")
        print(f"{'variant':<9} {'wall s':>7} {'MB/s':>7} {'peak RSS +MB':>13}")
        for variant in ("baseline", "ours"):
            res = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--variant",
                    variant,
                    "--base-url",
                    base,
                    "--batch-id",
                    batch_id,
                    "--inputs",
                    str(inputs),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(
                f"{variant:<9} {r['wall']:>7.2f} {r['bytes'] / 1e6 / r['wall']:>7.1f} "
                f"{r['rss_growth'] / 1e6:>13.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
