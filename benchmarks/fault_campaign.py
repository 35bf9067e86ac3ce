"""Run the randomized, seeded fault campaign (tests/campaign/engine.py) over many seeds.

    .venv/bin/python benchmarks/fault_campaign.py --count 1000 --workers 2 --start-seed 0
    .venv/bin/python benchmarks/fault_campaign.py --seeds 17,42 --verbose      # replay given seeds

Each scenario runs in a fresh worker process (forked from a server that imported Dagster once) in
its own temporary directory, deleted afterwards (``--keep`` keeps the directories of failing
scenarios). Prints the count of violations per invariant, the failing seeds and the time taken;
exits 1 if any scenario violated an invariant or crashed the harness.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from types import FrameType

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

ENGINE = "tests.campaign.engine"
SCENARIO_TIMEOUT_SECONDS = 600


def _timeout(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError(f"the scenario took more than {SCENARIO_TIMEOUT_SECONDS}s")


def play(seed: int, keep: bool) -> object:
    """One scenario in this (fresh) process; returns its ScenarioReport."""
    from tests.campaign.engine import run_scenario, scratch_root

    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(SCENARIO_TIMEOUT_SECONDS)
    workdir = Path(tempfile.mkdtemp(prefix=f"campaign-{seed}-", dir=scratch_root()))
    try:
        report = run_scenario(seed, workdir)
    finally:
        signal.alarm(0)
    if keep and not report.ok:
        report.notes.append(f"scenario directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="scenarios to run (default 100)")
    parser.add_argument("--start-seed", type=int, default=0)
    parser.add_argument(
        "--seeds", help="comma-separated seeds to run instead of --count/--start-seed"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--verbose", action="store_true", help="describe every scenario, not only failing ones"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the directories of failing scenarios"
    )
    args = parser.parse_args(argv)
    seeds = (
        [int(s) for s in args.seeds.split(",") if s.strip()]
        if args.seeds
        else list(range(args.start_seed, args.start_seed + args.count))
    )

    from tests.campaign.engine import summarize

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([ENGINE])
    reports = []
    started = time.monotonic()
    print(
        f"{len(seeds)} scenario(s), seeds {seeds[0]}..{seeds[-1]}, {args.workers} worker(s)",
        flush=True,
    )
    with ProcessPoolExecutor(
        max_workers=args.workers, mp_context=context, max_tasks_per_child=1
    ) as pool:
        futures = {pool.submit(play, seed, args.keep): seed for seed in seeds}
        for done, future in enumerate(as_completed(futures), start=1):
            seed = futures[future]
            try:
                report = future.result()
            except Exception as error:  # the worker process itself died
                print(f"seed {seed}: worker died: {type(error).__name__}: {error}", flush=True)
                continue
            reports.append(report)
            total = report.timings.get("total", 0.0)
            if args.verbose or not report.ok:
                print(f"\n[{done}/{len(seeds)}] {report.describe()}\n", flush=True)
            else:
                print(f"[{done}/{len(seeds)}] seed {seed} ok ({total:.1f}s)", flush=True)
    elapsed = time.monotonic() - started
    reports.sort(key=lambda r: r.seed)
    print()
    print(summarize(reports, elapsed))
    lost = len(seeds) - len(reports)
    if lost:
        print(f"worker processes died: {lost}")
    return 0 if lost == 0 and all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
