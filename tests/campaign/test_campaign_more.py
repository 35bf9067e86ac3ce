"""The fault campaign in CI: the other half of the fixed slice of seeds (see test_campaign.py)."""

import pytest

from .engine import CI_SEEDS, run_scenario, scratch_dir

SEEDS = CI_SEEDS[1::2]


@pytest.mark.parametrize("seed", SEEDS)
def test_scenario_violates_no_invariant(seed: int) -> None:
    with scratch_dir(
        seed
    ) as workdir:  # on tmpfs where there is one: SQLite's fsyncs then cost nothing
        report = run_scenario(seed, workdir)
    assert report.ok, "\n" + report.describe()
