"""The fault campaign in CI: half of a fixed slice of seeds (the other half is in
test_campaign_more.py, so that pytest-xdist's ``--dist loadfile`` spreads the slice over two
workers).

Each scenario plays submissions, faults and sensor ticks on a real Dagster instance and must violate
no invariant; a failure prints the drawn scenario and the command replaying it. A thousand seeds:
``.venv/bin/python benchmarks/fault_campaign.py --count 1000 --workers 2``.
"""

import itertools
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagster_openai_batch import OpenAIBatchResource
from dagster_openai_batch.emulator import Emulator

from .engine import (
    BATCH_IDS_TAG,
    CI_SEEDS,
    COVERED_FEATURES,
    INVARIANTS,
    PIPELINE,
    Scenario,
    ScenarioRun,
    draw_scenario,
    features,
    run_scenario,
    scratch_dir,
)

SEEDS = CI_SEEDS[0::2]


@pytest.mark.parametrize("seed", SEEDS)
def test_scenario_violates_no_invariant(seed: int) -> None:
    with scratch_dir(
        seed
    ) as workdir:  # on tmpfs where there is one: SQLite's fsyncs then cost nothing
        report = run_scenario(seed, workdir)
    assert report.ok, "\n" + report.describe()


def test_the_ci_slice_covers_every_fault_class() -> None:
    seen = set().union(*(features(draw_scenario(seed)) for seed in CI_SEEDS))
    assert seen >= COVERED_FEATURES, (
        f"not covered by the CI seeds: {sorted(COVERED_FEATURES - seen)}"
    )


def plant_one_violation_of_each_invariant(run: ScenarioRun) -> None:
    """After a clean scenario, break each invariant once, the way a bug would."""
    storage = run.world.home / "storage" / "openai_batch"
    # 3: a second successful results run of the same batch set (before 1: it rewrites the table)
    done = run.results_runs()[0]
    defs = run.defs.definitions(run.resource())
    rerun = defs.resolve_job_def(f"{PIPELINE}_results").execute_in_process(
        instance=run.instance,
        run_config=done.run_config,
        tags={BATCH_IDS_TAG: done.tags[BATCH_IDS_TAG]},
    )
    assert rerun.success
    # 1: one custom_id lost and another doubled in the final results table
    latest = run.latest_results(None)
    assert latest is not None
    results_uri = latest.results_uri
    table = pq.read_table(results_uri)
    pq.write_table(pa.concat_tables([table.slice(1), table.slice(1, 1)]), results_uri)
    # 2: a second batch under the key of a live one (it will run: paid twice)
    client = Emulator(run.world.emulator_dir).openai_client()
    first = client.batches.list().data[0]
    client.batches.create(
        input_file_id=first.input_file_id,
        endpoint=first.endpoint,
        completion_window="24h",
        metadata=first.metadata,
    )
    # 4: ticks failing in a row (a service nobody said was unreachable)
    run.resource = lambda: OpenAIBatchResource(  # type: ignore[method-assign]
        api_key=run.s.secret, base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_seconds=2
    )
    run.cursor = None  # re-reads the batch sets: the tick must look at the service
    run.tick_loop({}, "planted", deadline_seconds=0.5)
    # 5: the key in a log line
    (run.world.home / "storage" / "leak.log").write_text(f"Authorization: Bearer {run.s.secret}\n")
    # 6: a partial download left, and a torn Parquet file at a final path
    (storage / "output.jsonl.partial").write_bytes(b'{"custom_id": ')
    Path(results_uri).with_name("torn.parquet").write_bytes(Path(results_uri).read_bytes()[:100])


def quiet(scenario: Scenario) -> bool:
    """No fault and no process event: a clean run to plant violations into."""
    return (
        not scenario.partitioned
        and scenario.lifecycle == "normal"
        and not scenario.faults
        and not (
            scenario.kill or scenario.concurrent_launch or scenario.relaunch or scenario.resubmit
        )
    )


def test_the_checks_catch_planted_violations() -> None:
    """The harness's own test: each invariant's check reports a violation planted for it."""
    seed = next(s for s in itertools.count() if quiet(draw_scenario(s)))
    with scratch_dir(seed) as workdir:
        report = run_scenario(seed, workdir, before_checks=plant_one_violation_of_each_invariant)
    assert report.crash is None, report.crash
    missed = [name for name in INVARIANTS if not report.violations[name]]
    assert not missed, f"planted violations not reported: {missed}\n{report.describe()}"
