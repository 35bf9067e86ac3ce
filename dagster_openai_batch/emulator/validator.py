"""The server's validation process (``python -m dagster_openai_batch.emulator.validator``): it
validates the batches the server claimed at create time, one JSON job a line on its standard input
(data dir, config, batch row, claim token), and exits at the end of its input."""

import logging
import sys
import time

import orjson

from .batches import Batches
from .config import EmulatorConfig
from .faults import FaultPlan
from .store import Store


def main() -> None:
    """Validate each batch given; on a failure the claim is given back, and the first read that
    needs the outcome validates."""
    stores: dict[str, Store] = {}
    for line in sys.stdin.buffer:
        job = orjson.loads(line)
        config = EmulatorConfig.model_validate(job["config"])
        if job["data_dir"] not in stores:
            stores[job["data_dir"]] = Store(job["data_dir"])
        batches = Batches(stores[job["data_dir"]], config, time.time, FaultPlan(config.faults))
        try:
            batches.validate_claimed(job["row"], job["token"])
        except Exception:
            logging.getLogger(__name__).exception("validating %s", job["row"]["id"])


if __name__ == "__main__":
    main()
