"""Where the library's time goes in `bench_end_to_end.py`'s library variant: the same run (rows
asset → input_file → batch_job, wait, one sensor tick, the results run) under cProfile, against
an emulator over HTTP in its own process (not profiled).

Prints the functions of ``dagster_openai_batch`` by cumulative and by own time, then the top
functions overall by own time (pyarrow, orjson, pydantic, Dagster…). cProfile slows per-row Python
code more than C code, so read the shares, not the absolute seconds; the wait for the batches is
is not profiled.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/profile_end_to_end.py --rows 200000 [--kind emb]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

import bench_end_to_end
from bench_end_to_end import Timers, make_rows, run_library
from harness import emulator_over_http

OURS = "dagster_openai_batch/"


def show(stats: pstats.Stats, key: str, title: str, only_ours: bool, limit: int) -> None:
    entries = stats.stats  # type: ignore[attr-defined]
    index = 3 if key == "cumulative" else 2
    rows = sorted(entries.items(), key=lambda item: item[1][index], reverse=True)
    print(f"\n{title}")
    print(f"{'own s':>8} {'cum s':>8} {'calls':>10}  function")
    shown = 0
    for (file, line, name), (_, calls, own, cum, _) in rows:
        if only_ours and OURS not in file:
            continue
        if name == "wait_terminal" or "time.sleep" in name:
            continue
        where = file.split(OURS)[-1] if OURS in file else Path(file).name
        print(f"{own:>8.2f} {cum:>8.2f} {calls:>10}  {where}:{line}({name})")
        shown += 1
        if shown == limit:
            break


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--kind", choices=("chat", "emb"), default="chat")
    parser.add_argument("--limit", type=int, default=25)
    parser.add_argument(
        "--callers", action="append", default=[], help="also print the callers of this function"
    )
    parser.add_argument("--save", help="also write the raw stats here (for snakeviz etc.)")
    args = parser.parse_args()
    rows = make_rows(args.kind, args.rows)
    with (
        emulator_over_http("--pace", "fast") as (base, _),
        tempfile.TemporaryDirectory() as work,
    ):
        ns = argparse.Namespace(base_url=base, work=work)
        timers = Timers()
        profile = cProfile.Profile()
        waiting = bench_end_to_end.wait_terminal

        def unprofiled_wait(*a: object, **k: object) -> object:  # the wait is not library time
            profile.disable()
            try:
                return waiting(*a, **k)
            finally:
                profile.enable()

        bench_end_to_end.wait_terminal = unprofiled_wait  # type: ignore[assignment]
        profile.enable()
        run_library(args.kind, rows, ns, timers)
        profile.disable()
    print(f"library variant, {args.kind} {args.rows:,} rows, under cProfile (stage seconds):")
    for stage, seconds in sorted(timers.seconds.items()):
        print(f"  {stage:<40} {seconds:8.2f}")
    stats = pstats.Stats(profile)
    if args.save:
        stats.dump_stats(args.save)
    show(stats, "cumulative", "dagster_openai_batch, by cumulative time:", True, args.limit)
    show(stats, "own", "dagster_openai_batch, by own time:", True, args.limit)
    show(stats, "own", "everything, by own time:", False, args.limit)
    for name in args.callers:
        stats.print_callers(name)


if __name__ == "__main__":
    main()
