"""Prices of dated snapshots: results report the snapshot (`gpt-4o-mini-2024-07-18`), priced like
its base model."""

import pytest

from dagster_openai_batch.core.pricing import BATCH_PRICES, cost_usd, price_for
from dagster_openai_batch.emulator.models import SERVED

SNAPSHOTS = sorted(
    {
        (base, snap)
        for names in SERVED.values()
        for base, snap in names.items()
        if base in BATCH_PRICES
    }
)
"""(priced model, the snapshot the emulator's catalogue resolves it to)."""


@pytest.mark.parametrize(("base", "snapshot"), SNAPSHOTS)
def test_a_snapshot_is_priced_like_its_base_model(base: str, snapshot: str) -> None:
    assert price_for(snapshot) == price_for(base) == BATCH_PRICES[base]


def test_the_usual_snapshots_are_priced() -> None:
    assert ("gpt-4o-mini", "gpt-4o-mini-2024-07-18") in SNAPSHOTS
    assert ("gpt-3.5-turbo", "gpt-3.5-turbo-0125") in SNAPSHOTS
    million = 1_000_000
    assert cost_usd(
        "gpt-4o-2024-08-06", input_tokens=million, cached_tokens=0, output_tokens=million
    ) == cost_usd("gpt-4o", input_tokens=million, cached_tokens=0, output_tokens=million)
    assert price_for("GPT-4.1-MINI-2025-04-14") == BATCH_PRICES["gpt-4.1-mini"]
    assert price_for("my-finetune-2024-01-01") is None
