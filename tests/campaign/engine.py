"""A randomized, seeded fault campaign driven only through Dagster's own APIs on a real instance.

A scenario is fully determined by an integer seed (`draw_scenario`): the inputs (rows, endpoint,
partitions, splitting into parts), the service faults of the offline emulator (429/5xx storms, lost
responses of creates/cancels/uploads, dropped and truncated downloads, per-request failures, expiry,
stuck finalizing, cancellation, token limits) and the process faults (a submit run killed with
SIGKILL in a subprocess and re-run, the sensor cursor reset, two sensor ticks at once, ``batch_job``
re-launched while its batches are in flight, resubmission of failures, two ``batch_job`` runs of one
partition launched at the same moment from two processes).

`run_scenario` plays one scenario on a persistent `DagsterInstance` in ``workdir`` (other processes
share its ``DAGSTER_HOME`` and the emulator's data dir), ticks the sensor with its effects applied
until nothing is in flight (as `evaluate_sensor_once` does; two concurrent ticks are applied like
two daemons, run requests deduplicated by run key), then checks every invariant and counts each
violation separately:

1. ``results_exactly_once`` — every input custom_id exactly once in the final ``results`` of each
   submitted partition (for batches that failed validation: no results, and a red
   ``batches_accepted``);
2. ``one_paid_batch`` — at most one paid batch per idempotency key (pipeline, partition, content,
   part; ``new_batches`` runs get their own key), a later batch being legitimate only once the
   earlier one could no longer be adopted (expired or cancelled before the later one was created);
3. ``one_results_run`` — at most one successful results run per batch set, exactly one for the
   newest;
4. ``no_repeated_failed_tick`` — never two failed sensor ticks in a row;
5. ``key_nowhere`` — the API key in no file of the Dagster home, the emulator's data, the subprocess
   logs, nor any error text the harness saw;
6. ``no_partial_file`` — no ``*.partial`` file left, every results Parquet readable, every stored
   JSONL part whole.

The emulator's fault plan is seeded per client, and a client is built per run or tick, so the
harness gives each phase (run, tick) its own fault seed, derived from the scenario seed: a real
service does not replay the same faults for every new connection. A run that fails (faults can
exhaust the library's retries) is launched again, as an operator would, up to `RUN_ATTEMPTS` times.

Other processes (the killed submit, the two racing ``batch_job`` runs) are forked from a server that
imported this module once (`multiprocessing` forkserver): each is a fresh process started in
milliseconds. Scenario directories go to tmpfs where there is one (`scratch_root`): Dagster's SQLite
storage then costs no fsyncs. Each scenario takes a few seconds; the module must be imported under
an ``if __name__ == "__main__"`` guard in scripts (as any user of `multiprocessing`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from dagster_openai_batch import (
    OpenAIBatchResource,
    RequestTemplate,
    openai_batch_assets,
    openai_batch_sensor,
)
from dagster_openai_batch.dagster.sensor import SensorCursor
from dagster_openai_batch.dagster.stage_records import (
    BatchJobRecord,
    ResultsRecord,
    StageRecordError,
    latest_record,
)
from dagster_openai_batch.demo.run import SENSOR_NAME, evaluate_sensor_once, launch_run_requests
from dagster_openai_batch.emulator import Emulator
from dagster_openai_batch.emulator.store import Store

PIPELINE = "campaign"
PARTITION_KEYS = ("p0", "p1")
IDEMPOTENCY_KEY = "dagster_openai_batch_key"
BATCH_IDS_TAG = "openai_batch/batch_ids"
ACCEPTED = "batches_accepted"

INVARIANTS = (
    "1_results_exactly_once",
    "2_one_paid_batch",
    "3_one_results_run",
    "4_no_repeated_failed_tick",
    "5_key_nowhere",
    "6_no_partial_file",
)

ENDPOINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "/v1/chat/completions": (
        "gpt-4o-mini",
        {"messages": [{"role": "user", "content": "Answer in one line: {text}"}]},
    ),
    "/v1/embeddings": ("text-embedding-3-small", {"prompt": "{text}"}),
    "/v1/responses": ("gpt-4.1-mini", {"prompt": "Answer in one line: {text}"}),
    "/v1/completions": ("gpt-3.5-turbo-instruct", {"prompt": "Q: {text}\nA:"}),
}
LIFECYCLES = ("normal", "expire_partial", "expire_stuck", "cancel", "cancel_stuck", "token_limit")
LIFECYCLE_WEIGHTS = (46, 12, 8, 12, 10, 12)

LIGHT_CREATE_FAILURE = 0.25
LIGHT_DOWNLOAD_FAILURE = 0.1
CI_SLICE = 24

TICK_DEADLINE_SECONDS = 60.0
TICK_PAUSE_SECONDS = 0.1
PROCESS_DEADLINE_SECONDS = 120.0
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
"""Run config keeping the runs' logs (failures included: faults make many) off the terminal."""
RUN_ATTEMPTS = 5
"""How often the harness, as an operator would, launches a run that failed (faults may exhaust the
library's retries); after that it gives up on that run (`ScenarioReport.gave_up`)."""


# ---------------------------------------------------------------- scenario


@dataclass
class Scenario:
    """Everything a seed decides."""

    seed: int
    endpoint: str
    model: str
    partitioned: bool
    partitions: list[str | None]
    rows: dict[str, int]
    """Rows per submitted partition label (``all`` when unpartitioned)."""
    max_requests_per_file: int
    lifecycle: str
    faults: dict[str, Any]
    """``Faults`` fields for the emulator (the harness adds a seed per phase)."""
    kill: bool
    kill_step: str
    """The step of the submit run during which the process is killed (``input_file``,
    ``batch_job``)."""
    kill_delay: float
    """Seconds after that step started at which the process is killed."""
    concurrent_launch: bool
    relaunch: bool
    relaunch_new_batches: bool
    relaunch_tick: int
    cancel_tick: int | None
    cursor_reset_tick: int | None
    concurrent_tick: int | None
    concurrent_tick_keeps: int
    """Which of the two concurrent ticks' cursors is stored (the last writer)."""
    resubmit: bool

    @property
    def secret(self) -> str:
        return f"sk-campaign-SECRET-{self.seed}"

    @property
    def token_limit(self) -> bool:
        return self.lifecycle == "token_limit"

    def parts(self, partition: str | None) -> int:
        return math.ceil(self.rows[label(partition)] / self.max_requests_per_file)

    def expected_ids(self, partition: str | None) -> list[str]:
        return [row["id"] for row in make_rows(self, partition)]

    @property
    def light(self) -> bool:
        """Cheap enough for CI (a few seconds): creates and downloads fail seldom, so the library's
        backoffs (seconds each) stay short. Heavier storms run in the benchmark."""
        http, lost = (
            self.faults.get("http_error_rate", 0.0),
            self.faults.get("lost_response_rate", 0.0),
        )
        downloads = self.faults.get("download_drop_rate", 0.0) + self.faults.get(
            "download_truncate_rate", 0.0
        )
        return (
            http + (1 - http) * lost <= LIGHT_CREATE_FAILURE and downloads <= LIGHT_DOWNLOAD_FAILURE
        )

    def summary(self) -> str:
        where = ",".join(label(p) for p in self.partitions)
        sizes = "+".join(f"{self.rows[label(p)]}r/{self.parts(p)}p" for p in self.partitions)
        process = [
            name
            for name, on in (
                (f"kill@{self.kill_step}+{self.kill_delay:.2f}s", self.kill),
                ("concurrent_launch", self.concurrent_launch),
                (
                    "relaunch" + ("(new_batches)" if self.relaunch_new_batches else ""),
                    self.relaunch,
                ),
                (f"cursor_reset@{self.cursor_reset_tick}", self.cursor_reset_tick is not None),
                (f"concurrent_tick@{self.concurrent_tick}", self.concurrent_tick is not None),
                ("resubmit", self.resubmit),
            )
            if on
        ]
        faults = ", ".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
        return (
            f"seed {self.seed}: {self.endpoint} [{where}] {sizes}; lifecycle {self.lifecycle}; "
            f"faults {{{faults}}}; process [{', '.join(process)}]"
        )


def label(partition: str | None) -> str:
    return partition or "all"


def _rate(rng: random.Random, chance: float, low: float, high: float) -> float | None:
    """A fault rate in [low, high] with probability ``chance``, skewed towards ``low`` (storms are
    rarer than drizzle). Always two draws, so the draws that follow stay aligned."""
    on, value = rng.random() < chance, round(low + (high - low) * rng.random() ** 2, 3)
    return value if on else None


def draw_scenario(seed: int) -> Scenario:
    """The scenario of ``seed`` (deterministic)."""
    rng = random.Random(seed)
    endpoint = rng.choice(sorted(ENDPOINTS))
    model = ENDPOINTS[endpoint][0]
    partitioned = rng.random() < 0.4
    partitions: list[str | None] = (
        list(rng.choice([["p0"], ["p1"], ["p0", "p1"]])) if partitioned else [None]
    )
    rows = {label(p): rng.randint(1, 80) for p in partitions}
    target_parts = rng.randint(1, 3)
    max_requests_per_file = max(1, math.ceil(max(rows.values()) / target_parts))
    lifecycle = rng.choices(LIFECYCLES, LIFECYCLE_WEIGHTS)[0]

    faults: dict[str, Any] = {}
    for name, chance, low, high in (
        ("http_error_rate", 0.5, 0.02, 0.3),
        ("lost_response_rate", 0.5, 0.05, 0.5),
        ("download_drop_rate", 0.2, 0.02, 0.1),
        ("download_truncate_rate", 0.2, 0.02, 0.1),
        ("request_error_rate", 0.4, 0.02, 0.4),
    ):
        value = _rate(rng, chance, low, high)
        if value is not None:
            faults[name] = value
    expire_partial = round(rng.uniform(0.05, 0.25), 3)
    expire_held = round(rng.uniform(1.0, 2.5), 3)
    if lifecycle == "expire_partial":
        faults["expire_after_seconds"] = expire_partial
    elif lifecycle == "expire_stuck":
        faults.update(stuck_finalizing=True, expire_after_seconds=expire_held)
    elif lifecycle == "cancel_stuck":
        faults["stuck_finalizing"] = True
    elif lifecycle == "token_limit":
        faults["token_limits"] = {model: 5}

    kill = rng.random() < 0.25
    kill_step = rng.choice(
        ("input_file", "batch_job", "batch_job")
    )  # the create path twice as often
    # batch_job takes ~0.1 s here (input_file longer): the kill lands within the step, mostly.
    kill_delay = round(rng.random() * (0.08 if kill_step == "batch_job" else 0.25), 3)
    concurrent_launch = (not kill) and rng.random() < 0.2
    relaunch = rng.random() < 0.3
    relaunch_new_batches = relaunch and rng.random() < 0.2
    relaunch_tick = rng.randint(1, 2)
    cancel_tick = rng.randint(relaunch_tick, 3) if lifecycle in ("cancel", "cancel_stuck") else None
    cursor_reset_tick = rng.randint(1, 4) if rng.random() < 0.3 else None
    concurrent_tick = rng.randint(1, 4) if rng.random() < 0.3 else None
    concurrent_tick_keeps = rng.randint(0, 1)
    resubmit = lifecycle != "token_limit" and rng.random() < 0.3
    return Scenario(
        seed=seed,
        endpoint=endpoint,
        model=model,
        partitioned=partitioned,
        partitions=partitions,
        rows=rows,
        max_requests_per_file=max_requests_per_file,
        lifecycle=lifecycle,
        faults=faults,
        kill=kill,
        kill_step=kill_step,
        kill_delay=kill_delay,
        concurrent_launch=concurrent_launch,
        relaunch=relaunch,
        relaunch_new_batches=relaunch_new_batches,
        relaunch_tick=relaunch_tick,
        cancel_tick=cancel_tick,
        cursor_reset_tick=cursor_reset_tick,
        concurrent_tick=concurrent_tick,
        concurrent_tick_keeps=concurrent_tick_keeps,
        resubmit=resubmit,
    )


def features(scenario: Scenario) -> set[str]:
    """The classes of input, fault and process event a scenario exercises (for coverage)."""
    found = {scenario.lifecycle, scenario.endpoint, *scenario.faults}
    found.discard("seed")
    for name in ("kill", "concurrent_launch", "relaunch", "resubmit", "partitioned"):
        if getattr(scenario, name):
            found.add(name)
    if scenario.relaunch_new_batches:
        found.add("new_batches")
    if scenario.cursor_reset_tick is not None:
        found.add("cursor_reset")
    if scenario.concurrent_tick is not None:
        found.add("concurrent_tick")
    if len(scenario.partitions) > 1:
        found.add("two_partitions")
    if any(scenario.parts(p) > 1 for p in scenario.partitions):
        found.add("split")
    return found


COVERED_FEATURES = frozenset(
    {
        *LIFECYCLES,
        *ENDPOINTS,
        "http_error_rate",
        "lost_response_rate",
        "download_drop_rate",
        "download_truncate_rate",
        "request_error_rate",
        "expire_after_seconds",
        "stuck_finalizing",
        "token_limits",
        "kill",
        "concurrent_launch",
        "relaunch",
        "new_batches",
        "resubmit",
        "partitioned",
        "cursor_reset",
        "concurrent_tick",
        "two_partitions",
        "split",
    }
)
"""Every class the campaign draws; the CI slice must exercise each (test_campaign.py checks)."""


def light_seeds(count: int, start: int = 0) -> list[int]:
    """The first ``count`` seeds from ``start`` whose scenario is `Scenario.light`."""
    seeds: list[int] = []
    seed = start
    while len(seeds) < count:
        if draw_scenario(seed).light:
            seeds.append(seed)
        seed += 1
    return seeds


def make_rows(scenario: Scenario, partition: str | None) -> list[dict[str, Any]]:
    """The source rows of one partition (deterministic)."""
    name = label(partition)
    count = scenario.rows.get(name, 1)
    return [
        {
            "id": f"{name}-{i:03d}",
            "text": f"Scenario {scenario.seed}, {name}, question {i}: what is {i} + {i}?",
        }
        for i in range(count)
    ]


# ---------------------------------------------------------------- definitions


@dataclass
class CampaignDefinitions:
    """The source asset, the pipeline and the sensor of one scenario (built the same in every
    process)."""

    scenario: Scenario
    source: dg.AssetsDefinition
    pipeline: Any
    sensor: dg.SensorDefinition

    def definitions(self, resource: OpenAIBatchResource) -> dg.Definitions:
        return dg.Definitions.merge(
            self.pipeline.definitions(),
            dg.Definitions(
                assets=[self.source], sensors=[self.sensor], resources={"openai_batch": resource}
            ),
        )

    @property
    def submit_assets(self) -> list[dg.AssetsDefinition]:
        return [self.source, self.pipeline.input_file, self.pipeline.batch_job]


def build_definitions(scenario: Scenario) -> CampaignDefinitions:
    partitions_def = (
        dg.StaticPartitionsDefinition(list(PARTITION_KEYS)) if scenario.partitioned else None
    )

    @dg.asset(name="campaign_rows", partitions_def=partitions_def)
    def campaign_rows(context) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]  # dagster reads the hint
        return make_rows(scenario, context.partition_key if context.has_partition_key else None)

    model, fields = ENDPOINTS[scenario.endpoint]
    template = RequestTemplate(
        endpoint=scenario.endpoint, model=model, custom_id_column="id", **fields
    )
    pipeline = openai_batch_assets(
        name=PIPELINE,
        source=campaign_rows,
        template=template,
        partitions_def=partitions_def,
        max_requests_per_file=scenario.max_requests_per_file,
    )
    sensor = openai_batch_sensor([pipeline], minimum_interval_seconds=1)
    return CampaignDefinitions(
        scenario=scenario, source=campaign_rows, pipeline=pipeline, sensor=sensor
    )


class StartingLineResource(OpenAIBatchResource):
    """The library's resource, whose run waits at a starting line while it sets its resources up.

    Dagster sets resources up just before the first step, here ``batch_job`` (the only step of the
    run): two processes' runs released together then look for and create their batches at the same
    moment, not a few hundred milliseconds apart as two whole launches (serialized by SQLite's
    locks) would.
    """

    ready_file: str
    go_file: str

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        Path(self.ready_file).touch()
        deadline = time.monotonic() + PROCESS_DEADLINE_SECONDS
        while not Path(self.go_file).exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        super().setup_for_execution(context)


def phase_resource(
    scenario: Scenario,
    emulator_dir: Path,
    phase: int,
    *,
    held: bool = True,
    barrier: tuple[str, str] | None = None,
) -> OpenAIBatchResource:
    """The resource of one phase (a run or a tick): the scenario's faults with this phase's seed.

    ``held=False`` once a hold (stuck finalizing) is over, so batches created later can finish;
    ``barrier`` (ready file, go file): a `StartingLineResource`.
    """
    faults = {**scenario.faults, "seed": scenario.seed * 1000 + phase}
    if not held:
        faults.pop("stuck_finalizing", None)
    common: dict[str, Any] = {
        "api_key": scenario.secret,
        "emulator_dir": str(emulator_dir),
        "emulator_pace": "fast",
        "emulator_faults": faults,
    }
    if barrier is not None:
        return StartingLineResource(**common, ready_file=barrier[0], go_file=barrier[1])
    return OpenAIBatchResource(**common)


class World:
    """The paths, the instance and the definitions of one scenario, as seen from one process."""

    def __init__(self, scenario: Scenario, workdir: Path) -> None:
        self.scenario = scenario
        self.workdir = Path(workdir)
        self.home = self.workdir / "dagster_home"
        self.emulator_dir = self.workdir / "emulator"
        self.logs = self.workdir / "logs"
        for path in (self.home, self.emulator_dir, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        settings = self.home / "dagster.yaml"
        if not settings.exists():
            settings.write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
        self.instance = dg.DagsterInstance.local_temp(str(self.home))
        self.defs = build_definitions(scenario)

    def materialize(
        self,
        action: str,
        partition: str | None,
        resource: OpenAIBatchResource,
        config: dict[str, Any] | None = None,
    ) -> dg.ExecuteInProcessResult:
        """``submit`` (rows, input_file, batch_job), ``input`` (rows, input_file) or ``batch_job``
        alone."""
        selection = {
            "submit": None,
            "input": [self.defs.source, self.defs.pipeline.input_file],
            "batch_job": [self.defs.pipeline.batch_job],
        }[action]
        run_config: dict[str, Any] = dict(QUIET)
        if config:
            run_config["ops"] = {self.defs.pipeline.batch_job.op.name: {"config": config}}
        return dg.materialize(
            self.defs.submit_assets,
            instance=self.instance,
            resources={"openai_batch": resource},
            partition_key=partition,
            selection=selection,
            run_config=run_config,
            raise_on_error=False,
        )


# ---------------------------------------------------------------- report


@dataclass
class ScenarioReport:
    seed: int
    scenario: dict[str, Any]
    summary: str
    timings: dict[str, float] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(
        default_factory=lambda: {name: [] for name in INVARIANTS}
    )
    notes: list[str] = field(default_factory=list)
    """What happened on the way (kill outcome, failed runs and ticks, …): for replaying a
    failure."""
    crash: str | None = None
    """A traceback if the harness itself failed (not an invariant violation)."""
    counters: Counter[str] = field(default_factory=Counter)
    """How often things happened that are not violations (a tick failing once, a run launched again,
    a duplicate batch cancelled before it ran, …): evidence that the faults were exercised."""
    gave_up: list[str] = field(default_factory=list)
    """Runs that failed `RUN_ATTEMPTS` times (a partition never submitted has no results to
    check)."""

    @property
    def ok(self) -> bool:
        return self.crash is None and not any(self.violations.values())

    def describe(self) -> str:
        lines = [
            self.summary,
            "timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()),
        ]
        if self.counters:
            lines.append(
                "happened: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.counters.items()))
            )
        for name, found in self.violations.items():
            for text in found:
                lines.append(f"VIOLATION {name}: {text}")
        if self.crash:
            lines.append("HARNESS CRASH:\n" + self.crash)
        lines += [f"GAVE UP after {RUN_ATTEMPTS} attempts: {text}" for text in self.gave_up]
        lines += [f"  note: {note}" for note in self.notes]
        lines.append(
            f"replay: .venv/bin/python benchmarks/fault_campaign.py --seeds {self.seed} --verbose"
        )
        return "\n".join(lines)


# ---------------------------------------------------------------- the run


class TickFailed(Exception):
    """A sensor tick raised (one of two concurrent ticks included)."""


def _first_line(text: str, limit: int = 300) -> str:
    return (text.strip().splitlines() or [""])[0][:limit]


def _last_cause(text: str) -> str:
    """The most telling line of a Dagster error text: the last "caused by" exception, else the first
    line."""
    causes = [
        line for line in text.splitlines() if line and not line.startswith(" ") and "Error" in line
    ]
    return _first_line(causes[-1] if causes else text)


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.event_type in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                return f"{event.step_key or 'run'}: {error.to_string().strip()}"
    return "failed (no error recorded)"


class ScenarioRun:
    def __init__(self, scenario: Scenario, workdir: Path, report: ScenarioReport) -> None:
        self.s = scenario
        self.world = World(scenario, workdir)
        self.instance = self.world.instance
        self.defs = self.world.defs
        self.report = report
        self.phase = 0
        self.held = True
        self.cursor: str | None = None
        self.failed_ticks_in_a_row = 0
        self.errors_seen: list[str] = []
        self.deadline_hit: list[str] = []
        self.processes: list[BaseProcess] = []

    # -- helpers

    def note(self, text: str) -> None:
        self.report.notes.append(text)

    def violation(self, invariant: str, text: str) -> None:
        self.report.violations[invariant].append(text)

    def next_phase(self) -> int:
        self.phase += 1
        return self.phase

    def resource(self) -> OpenAIBatchResource:
        return phase_resource(self.s, self.world.emulator_dir, self.next_phase(), held=self.held)

    def operate(
        self, action: str, partition: str | None, config: dict[str, Any] | None = None
    ) -> bool:
        """Launch a run in process; relaunch a failed one, as an operator would, up to
        `RUN_ATTEMPTS` times."""
        what = f"{action}{' ' + json.dumps(config) if config else ''} [{label(partition)}]"
        for attempt in range(1, RUN_ATTEMPTS + 1):
            started = time.monotonic()
            result = self.world.materialize(action, partition, self.resource(), config)
            took = time.monotonic() - started
            if result.success:
                if attempt > 1 or took > 5:
                    self.note(f"{what}: succeeded at attempt {attempt} ({took:.1f}s)")
                return True
            text = _failure_text(result)
            self.errors_seen.append(text)
            self.report.counters["run attempt failed"] += 1
            self.note(f"{what}: attempt {attempt} failed after {took:.1f}s: {_last_cause(text)}")
        self.report.gave_up.append(f"{what}: {_last_cause(text)}")
        return False

    # -- subprocesses

    def spawn(
        self,
        action: str,
        partition: str | None,
        name: str,
        barrier: tuple[Path, Path] | None = None,
    ) -> BaseProcess:
        """A run in another process (see `_process_main`), logging to ``logs/<name>.log``."""
        process = _process_context().Process(
            target=_process_main,
            name=f"campaign-{self.s.seed}-{name}",
            args=(
                str(self.world.workdir),
                self.s.seed,
                action,
                partition,
                self.next_phase(),
                None if barrier is None else (str(barrier[0]), str(barrier[1])),
                str(self.world.logs / f"{name}.log"),
            ),
        )
        process.start()
        self.processes.append(process)
        return process

    def reap(self) -> None:
        """Kill (SIGKILL, by pid) and wait for any process of this scenario still running."""
        for process in self.processes:
            if process.exitcode is None:
                process.kill()
            process.join(timeout=30)
            if process.exitcode is None:
                self.note(f"process {process.pid} did not exit after SIGKILL")

    def run_ids(self) -> set[str]:
        return {run.run_id for run in self.instance.get_runs()}

    def killed_submit(self, partition: str | None) -> None:
        """A submit run in another process, killed with SIGKILL `kill_delay` s after its `kill_step`
        started (waiting on the run's events, not on the clock)."""
        known = self.run_ids()
        process = self.spawn("submit", partition, "killed-submit")
        step_key = f"{PIPELINE}__{self.s.kill_step}"
        deadline = time.monotonic() + PROCESS_DEADLINE_SECONDS
        run_id: str | None = None
        reached = False
        while process.exitcode is None and time.monotonic() < deadline:
            if run_id is None:
                new = [r.run_id for r in self.instance.get_runs(limit=5) if r.run_id not in known]
                run_id = new[0] if new else None
            if run_id is not None:
                started = self.instance.get_records_for_run(
                    run_id, of_type=dg.DagsterEventType.STEP_START
                ).records
                if any(r.event_log_entry.step_key == step_key for r in started):
                    reached = True
                    break
            time.sleep(0.005)
        if reached:
            time.sleep(self.s.kill_delay)
        where = f"[{label(partition)}] {self.s.kill_step}+{self.s.kill_delay:.2f}s"
        if process.exitcode is None:
            os.kill(process.pid, signal.SIGKILL)
            process.join(timeout=30)
            stage = self.last_step(run_id) if run_id else "before its run started"
            self.report.counters[f"killed in {self.s.kill_step}"] += 1
            self.note(f"submit {where} killed with SIGKILL; its last event: {stage}")
        else:
            self.report.counters["submit ended before the kill"] += 1
            self.note(f"submit {where}: the process exited {process.exitcode} before the kill")

    def last_step(self, run_id: str) -> str:
        records = self.instance.get_records_for_run(run_id).records
        for record in reversed(records):
            event = record.event_log_entry.dagster_event
            if event is not None and event.step_key:
                return f"{event.event_type_value} {event.step_key}"
        return "no step event"

    def concurrent_batch_jobs(self, partition: str | None) -> bool:
        """Two batch_job runs of one partition, from two processes, released at the same moment."""
        if not self.operate("input", partition):
            return False
        barrier_dir = self.world.workdir / "barrier"
        barrier_dir.mkdir(exist_ok=True)
        go = barrier_dir / "go"
        readies = [barrier_dir / f"ready-{i}" for i in range(2)]
        processes = [
            self.spawn("batch_job", partition, f"concurrent-{i}", (readies[i], go))
            for i in range(2)
        ]
        deadline = time.monotonic() + PROCESS_DEADLINE_SECONDS
        while not all(r.exists() for r in readies):
            if any(p.exitcode is not None for p in processes) or time.monotonic() > deadline:
                break
            time.sleep(0.002)
        go.touch()
        codes = []
        for process in processes:
            process.join(timeout=PROCESS_DEADLINE_SECONDS)
            if process.exitcode is None:
                process.kill()
                process.join(timeout=30)
            codes.append(process.exitcode)
        self.note(f"two concurrent batch_job [{label(partition)}] processes exited {codes}")
        self.report.counters[f"concurrent batch_job runs succeeded: {codes.count(0)} of 2"] += 1
        return 0 in codes

    # -- the sensor

    def apply(
        self, defs: dg.Definitions, result: dg.SensorResult, launched_keys: set[str]
    ) -> list[str]:
        """Apply one tick's result as the daemon does: events, then run requests deduplicated by
        run_key."""
        for event in result.asset_events:
            self.instance.report_runless_asset_event(event)
        return launch_run_requests(
            defs,
            self.instance,
            result.run_requests or [],
            sensor_name=SENSOR_NAME,
            run_config=QUIET,
            launched_keys=launched_keys,
        )

    def concurrent_tick(
        self, defs: dg.Definitions, cursor: str | None
    ) -> tuple[str | None, list[str]]:
        """Two evaluations of the sensor at once (two instance objects, like two daemons), both
        applied."""
        sensor = defs.resolve_sensor_def(SENSOR_NAME)
        other = dg.DagsterInstance.local_temp(str(self.world.home))
        results: list[dg.SensorResult | None] = [None, None]
        errors: list[BaseException | None] = [None, None]
        barrier = threading.Barrier(2, timeout=60)

        def evaluate(i: int, instance: dg.DagsterInstance) -> None:
            try:
                barrier.wait()
                with dg.build_sensor_context(
                    instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
                ) as context:
                    result = sensor(context)
                assert isinstance(result, dg.SensorResult)
                results[i] = result
            except BaseException as error:
                errors[i] = error

        threads = [
            threading.Thread(target=evaluate, args=(i, inst))
            for i, inst in enumerate((self.instance, other))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        try:
            launched: list[str] = []
            keys: set[str] = set()
            for result in results:
                if result is not None:
                    launched += self.apply(defs, result, keys)
        finally:
            other.dispose()
        failed = [e for e in errors if e is not None]
        if failed or any(t.is_alive() for t in threads):
            raise TickFailed(
                f"{type(failed[0]).__name__}: {failed[0]}" if failed else "a tick hung"
            )
        keep = results[self.s.concurrent_tick_keeps]
        assert keep is not None
        self.note(f"two concurrent ticks launched {len(launched)} run(s)")
        return keep.cursor, launched

    def in_flight(self) -> list[Any]:
        return SensorCursor.model_validate_json(self.cursor).in_flight if self.cursor else []

    def tick_loop(
        self, events: dict[str, int], stage: str, deadline_seconds: float = TICK_DEADLINE_SECONDS
    ) -> None:
        """Tick until nothing is in flight and no event is pending (at most ``deadline_seconds``).

        ``events`` maps ``relaunch``/``cancel``/``cursor_reset``/``concurrent_tick`` to the tick
        before which it happens (an event still pending when the sensor is idle happens at the next
        tick).
        """
        order = ("relaunch", "cancel", "cursor_reset", "concurrent_tick")
        pending = dict(events)
        started = time.monotonic()
        launched: list[str] = []
        slowest = [0.0]
        try:
            self._ticks(order, pending, started + deadline_seconds, stage, launched, slowest)
        finally:
            self.note(
                f"{stage}: {len(launched)} results run(s) launched; slowest tick "
                f"{slowest[0]:.2f}s; {time.monotonic() - started:.2f}s in all"
            )

    def _ticks(
        self,
        order: Sequence[str],
        pending: dict[str, int],
        deadline: float,
        stage: str,
        launched: list[str],
        slowest: list[float],
    ) -> None:
        tick = 0
        while True:
            tick += 1
            due = [name for name in order if name in pending and pending[name] <= tick]
            for name in due:
                del pending[name]
            self._before_tick(due, stage, tick)
            defs = self.defs.definitions(self.resource())
            succeeded = False
            tick_started = time.monotonic()
            try:
                if "concurrent_tick" in due:
                    self.cursor, runs = self.concurrent_tick(defs, self.cursor)
                else:
                    self.cursor, runs = evaluate_sensor_once(
                        defs, self.instance, self.cursor, quiet=True
                    )
                launched += runs
                succeeded = True
                self.failed_ticks_in_a_row = 0
            except Exception as error:
                self._tick_failed(error, stage, tick)
            slowest[0] = max(slowest[0], time.monotonic() - tick_started)
            if succeeded and not self.in_flight():
                if not pending:
                    return
                for name in pending:
                    pending[name] = tick + 1
            if time.monotonic() > deadline:
                still = [
                    f"{label(i.partition)}:{i.batch_ids}:{i.progress}" for i in self.in_flight()
                ]
                self.deadline_hit.append(f"{stage}: still in flight at the deadline: {still}")
                self.report.counters["tick loop reached its deadline"] += 1
                self.note(self.deadline_hit[-1])
                return
            time.sleep(TICK_PAUSE_SECONDS)

    def _before_tick(self, due: Sequence[str], stage: str, tick: int) -> None:
        """The events due before ``tick``: relaunch, cancel, cursor reset."""
        if "relaunch" in due:
            self.relaunch()
        if "cancel" in due:
            self.cancel()
        if "cursor_reset" in due:
            self.note(f"{stage}: cursor reset to None before tick {tick}")
            self.cursor = None

    def _tick_failed(self, error: Exception, stage: str, tick: int) -> None:
        """Count a failed tick; two in a row are one violation per streak (its length kept up to
        date)."""
        text = f"{type(error).__name__}: {error}"
        self.errors_seen.append(text + "".join(traceback.format_exception(error)))
        self.failed_ticks_in_a_row += 1
        self.report.counters["tick failed"] += 1
        if self.failed_ticks_in_a_row <= 2:
            self.note(f"{stage}: tick {tick} failed: {_first_line(text)}")
        if self.failed_ticks_in_a_row < 2:
            return
        streak = (
            f"{self.failed_ticks_in_a_row} ticks failed in a row (the last: {stage} tick "
            f"{tick}): {_first_line(text)}"
        )
        found = self.report.violations["4_no_repeated_failed_tick"]
        if self.failed_ticks_in_a_row == 2:
            found.append(streak)
        else:
            found[-1] = streak

    def relaunch(self) -> None:
        partition = self.s.partitions[0]
        config = {"new_batches": True} if self.s.relaunch_new_batches else None
        flying = len(self.in_flight())
        ok = self.operate("batch_job", partition, config)
        self.note(
            f"re-launched batch_job [{label(partition)}]{' with new_batches' if config else ''} "
            f"({flying} set(s) in flight per the cursor): {'ok' if ok else 'failed'}"
        )

    def cancel(self) -> None:
        for partition in self.s.partitions:
            ok = self.operate("batch_job", partition, {"cancel": True})
            self.note(f"cancel [{label(partition)}]: {'ok' if ok else 'failed'}")
        self.held = False

    # -- the scenario

    def play(self) -> None:
        timings = self.report.timings
        start = time.monotonic()
        for index, partition in enumerate(self.s.partitions):
            if index == 0 and self.s.kill:
                self.killed_submit(partition)
            if index == 0 and self.s.concurrent_launch and self.concurrent_batch_jobs(partition):
                continue
            self.operate("submit", partition)
        timings["submit"] = time.monotonic() - start

        start = time.monotonic()
        self.tick_loop(self._collect_events(), "collect")
        self.held = False
        timings["collect"] = time.monotonic() - start

        if self.s.resubmit:
            start = time.monotonic()
            resent = 0
            for partition in self.s.partitions:
                if self.latest_results(partition) is None:
                    self.note(f"resubmit [{label(partition)}] skipped: no results to resubmit from")
                    continue
                resent += self.operate("batch_job", partition, {"resubmit_failed": True})
            if resent:
                self.tick_loop({}, "resubmit")
            timings["resubmit"] = time.monotonic() - start

    def _collect_events(self) -> dict[str, int]:
        """The scenario's events during collection, each with the tick it happens before."""
        ticks = {
            "relaunch": self.s.relaunch_tick if self.s.relaunch else None,
            "cancel": self.s.cancel_tick,
            "cursor_reset": self.s.cursor_reset_tick,
            "concurrent_tick": self.s.concurrent_tick,
        }
        return {name: tick for name, tick in ticks.items() if tick is not None}

    # -- checks

    def latest_results(self, partition: str | None) -> ResultsRecord | None:
        return latest_record(
            self.instance, self.defs.pipeline.results.key, partition, ResultsRecord
        )

    def latest_batch_ids(self, partition: str | None) -> list[str]:
        job = latest_record(
            self.instance, self.defs.pipeline.batch_job.key, partition, BatchJobRecord
        )
        return job.batch_id_list if job is not None else []

    def results_runs(self) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(dg.RunsFilter(job_name=f"{PIPELINE}_results")))

    def accepted_evaluations(self, partition: str | None) -> list[bool]:
        """``batches_accepted`` outcomes for the partition (in runs or runless), oldest first."""
        key = dg.AssetCheckKey(self.defs.pipeline.batch_job.key, ACCEPTED)
        records = self.instance.event_log_storage.get_asset_check_execution_history(key, limit=1000)
        done = {
            AssetCheckExecutionRecordStatus.SUCCEEDED: True,
            AssetCheckExecutionRecordStatus.FAILED: False,
        }
        return [
            done[r.status]
            for r in sorted(records, key=lambda r: r.id)
            if r.partition == partition and r.status in done
        ]

    def check(self) -> None:
        self.check_results()
        self.check_paid_batches()
        self.check_results_runs()
        self.check_key()
        self.check_files()

    def check_results(self) -> None:
        late = f" ({'; '.join(self.deadline_hit)})" if self.deadline_hit else ""
        for partition in self.s.partitions:
            where = f"[{label(partition)}]"
            latest = self.latest_results(partition)
            if self.s.token_limit:
                evaluations = self.accepted_evaluations(partition)
                if latest is not None:
                    self.violation(
                        "1_results_exactly_once",
                        f"{where}: results materialized although every batch failed validation",
                    )
                if not evaluations:
                    self.violation(
                        "1_results_exactly_once", f"{where}: batches_accepted never evaluated{late}"
                    )
                elif evaluations[-1]:
                    self.violation(
                        "1_results_exactly_once",
                        f"{where}: batches_accepted passed although every batch failed validation",
                    )
                continue
            if latest is None:
                if not self.latest_batch_ids(partition) and self.report.gave_up:
                    self.note(
                        f"{where}: never submitted (the harness gave up), so no results to check"
                    )
                    continue
                self.violation(
                    "1_results_exactly_once", f"{where}: no results materialization{late}"
                )
                continue
            uri = latest.results_uri
            try:
                ids = pq.read_table(uri, columns=["custom_id"]).column("custom_id").to_pylist()
            except Exception as error:
                self.violation(
                    "1_results_exactly_once", f"{where}: results table {uri} unreadable: {error}"
                )
                continue
            expected = set(self.s.expected_ids(partition))
            counts = Counter(ids)
            missing = sorted(expected - counts.keys())
            duplicated = sorted(i for i, n in counts.items() if n > 1)
            unexpected = sorted(counts.keys() - expected)
            if missing or duplicated or unexpected:
                self.violation(
                    "1_results_exactly_once",
                    f"{where}: of {len(expected)} custom_ids, {len(missing)} missing "
                    f"{missing[:3]}, {len(duplicated)} duplicated {duplicated[:3]}, "
                    f"{len(unexpected)} unexpected {unexpected[:3]} in {Path(uri).name} "
                    f"(batches {latest.batch_id_list}){late}",
                )

    def check_paid_batches(self) -> None:
        client = Emulator(self.world.emulator_dir).openai_client()
        batches = list(client.batches.list(limit=100))  # every page
        store = Store(self.world.emulator_dir)
        groups: dict[str, list[Any]] = defaultdict(list)
        for batch in batches:
            key = (batch.metadata or {}).get(IDEMPOTENCY_KEY)
            if key is None:
                self.violation("2_one_paid_batch", f"batch {batch.id} carries no {IDEMPOTENCY_KEY}")
                continue
            groups[key].append(batch)
        paid_total = 0
        for key, group in groups.items():
            rows = {b.id: store.get_batch(b.id) or {} for b in group}
            paid = sorted(
                (b for b in group if _is_paid(b)), key=lambda b: rows[b.id].get("created_at", 0.0)
            )
            paid_total += len(paid)
            unpaid_duplicates = sum(
                b.status in ("cancelled", "cancelling") and not _is_paid(b) for b in group
            )
            if unpaid_duplicates and len(group) > 1:
                self.report.counters["batch of a key cancelled before it ran, beside another"] += (
                    unpaid_duplicates
                )
            for index, later in enumerate(paid[1:], start=1):
                created = rows[later.id].get("created_at", 0.0)
                live = [a for a in paid[:index] if _adoptable_until(a, rows[a.id]) > created]
                if live:
                    first = live[0]
                    after = created - rows[first.id].get("created_at", 0.0)
                    self.violation(
                        "2_one_paid_batch",
                        f"key {key!r}: {later.id} ({later.status}, {_done(later)} run, by run "
                        f"{_run_of(later)}) created {after:+.2f}s after {first.id} "
                        f"({first.status}, {_done(first)} run, by run {_run_of(first)}) "
                        "which could still be adopted",
                    )
        self.note(
            f"{len(batches)} batch(es) on the service, {len(groups)} key(s), {paid_total} paid"
        )

    def _step_error(self, run_id: str) -> str:
        """The innermost error of a run's failed step, in one line."""
        for record in self.instance.get_records_for_run(run_id).records:
            event = record.event_log_entry.dagster_event
            if event is not None and event.event_type_value == "STEP_FAILURE":
                error = event.event_specific_data.error
                while error is not None and error.cause is not None:
                    error = error.cause
                return f"{error.cls_name}: {error.message.strip()[:300]}" if error else "unknown"
        return "no step failed (run-level failure)"

    def check_results_runs(self) -> None:
        successes: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        for run in self.results_runs():
            tag = run.tags.get(BATCH_IDS_TAG, "")
            if run.status == dg.DagsterRunStatus.SUCCESS:
                successes[tag] += 1
            elif run.status == dg.DagsterRunStatus.FAILURE:
                failures[tag] += 1
                self.note(f"results run {run.run_id[:8]} failed: {self._step_error(run.run_id)}")
        for tag, count in successes.items():
            if count > 1:
                self.violation(
                    "3_one_results_run", f"{count} successful results runs for batch set {tag}"
                )
        if failures:
            self.report.counters["results run failed"] += sum(failures.values())
            self.note(f"failed results runs: {dict(failures)}")
        for partition in self.s.partitions:
            tag = ",".join(self.latest_batch_ids(partition))[:1000]
            if (
                tag and successes[tag] == 0 and not self.s.token_limit
            ):  # (no output: checked under 1)
                why = f" ({failures[tag]} failed)" if failures[tag] else ""
                self.violation(
                    "3_one_results_run",
                    f"[{label(partition)}]: no successful results run for the newest set "
                    f"{tag}{why}",
                )

    def check_key(self) -> None:
        secret = self.s.secret.encode()
        for root in (self.world.home, self.world.emulator_dir, self.world.logs):
            for path in _files(root):
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                if secret in data:
                    self.violation(
                        "5_key_nowhere", f"the API key is in {path.relative_to(self.world.workdir)}"
                    )
        for text in self.errors_seen:
            if self.s.secret in text:
                self.violation("5_key_nowhere", f"the API key is in an error: {_first_line(text)}")

    def check_files(self) -> None:
        workdir = self.world.workdir
        for path in _files(workdir):
            if path.name.endswith(".partial"):
                self.violation(
                    "6_no_partial_file", f"partial file left: {path.relative_to(workdir)}"
                )
        storage = self.world.home / "storage" / "openai_batch"
        uris = self.recorded_results_uris()
        uris |= {str(p) for p in _files(storage) if p.suffix == ".parquet"}
        for uri in sorted(uris):
            try:
                pq.read_table(uri)
            except Exception as error:
                self.violation(
                    "6_no_partial_file", f"unreadable Parquet {uri}: {_first_line(str(error))}"
                )
        for path in _files(storage):
            if path.suffix == ".jsonl":
                try:
                    _read_jsonl(path)
                except ValueError as error:
                    self.violation(
                        "6_no_partial_file", f"broken JSONL {path.relative_to(workdir)}: {error}"
                    )
        leftovers = [p for p in _files(storage) if p.name.endswith(".tmp")]
        if leftovers:
            self.note(
                f"{len(leftovers)} temporary file(s) left beside final paths (not at them): "
                f"{[p.name for p in leftovers[:3]]}"
            )

    def recorded_results_uris(self) -> set[str]:
        """The tables every ``results`` materialization recorded."""
        uris: set[str] = set()
        records = self.instance.fetch_materializations(
            self.defs.pipeline.results.key, limit=10_000
        ).records
        for record in records:
            if record.asset_materialization is not None:
                with contextlib.suppress(StageRecordError):
                    results = ResultsRecord.read(record.asset_materialization.metadata)
                    if results.results_uri:
                        uris.add(results.results_uri)
        return uris


def _run_of(batch: Any) -> str:
    """The short id of the Dagster run that created ``batch``."""
    return str((batch.metadata or {}).get("dagster_run_id", "?"))[:8]


def _read_jsonl(path: Path) -> None:
    """Parse every line of ``path`` (ValueError on a broken one)."""
    for line in path.read_bytes().splitlines():
        if line.strip():
            json.loads(line)


def _files(root: Path) -> Iterable[Path]:
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file()]


def _done(batch: Any) -> int:
    counts = batch.request_counts
    return (counts.completed + counts.failed) if counts else 0


def _is_paid(batch: Any) -> bool:
    """Whether a batch costs anything: not one that failed validation, nor one that ended
    (cancelled, expired) before any request ran. A batch still running counts: it will be billed."""
    if batch.status == "failed":
        return False
    return not (batch.status in ("cancelled", "cancelling", "expired") and _done(batch) == 0)


def _adoptable_until(batch: Any, row: dict[str, Any]) -> float:
    """Until when (emulator time) the library could adopt ``batch`` instead of creating another."""
    if batch.status == "expired":
        return float(row.get("plan", {}).get("expires_at") or math.inf)
    if batch.status in ("cancelled", "cancelling"):
        return float(row.get("cancel_at") or math.inf)
    if batch.status == "failed":
        return -math.inf
    return math.inf


# ---------------------------------------------------------------- entry points


def run_scenario(
    seed: int, workdir: Path, *, before_checks: Callable[[ScenarioRun], None] | None = None
) -> ScenarioReport:
    """Play scenario ``seed`` in ``workdir`` (created if needed; left in place) and check every
    invariant.

    ``before_checks`` (for the harness's own tests) gets the played `ScenarioRun` before the checks.
    """
    started = time.monotonic()
    scenario = draw_scenario(seed)
    report = ScenarioReport(seed=seed, scenario=asdict(scenario), summary=scenario.summary())
    run: ScenarioRun | None = None
    dagster_logger = logging.getLogger("dagster")
    level = dagster_logger.level
    dagster_logger.setLevel(
        logging.CRITICAL
    )  # sensor and run logs stay in the instance, off the terminal
    logs = Path(workdir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # Sensor ticks log through a console handler of their own: to a file (searched for the key too).
    with (
        warnings.catch_warnings(),
        (logs / "harness-stderr.log").open("w") as stderr,
        contextlib.redirect_stderr(stderr),
    ):
        warnings.simplefilter("ignore")
        try:
            run = ScenarioRun(scenario, Path(workdir), report)
            report.timings["setup"] = time.monotonic() - started
            run.play()
            check_start = time.monotonic()
            if before_checks is not None:
                before_checks(run)
            run.reap()
            run.check()
            report.timings["check"] = time.monotonic() - check_start
        except Exception:
            report.crash = traceback.format_exc()
        finally:
            if run is not None:
                run.reap()
                run.instance.dispose()
            dagster_logger.setLevel(level)
    report.timings["total"] = time.monotonic() - started
    return report


def summarize(reports: Sequence[ScenarioReport], elapsed: float | None = None) -> str:
    """Scenarios run, violations per invariant (and the seeds), harness crashes, times."""
    lines = []
    crashed = [r.seed for r in reports if r.crash]
    totals = [r.timings.get("total", 0.0) for r in reports]
    head = f"Scenarios run: {len(reports)}; harness crashes: {len(crashed)}"
    if elapsed is not None:
        head += f"; wall time {elapsed:.1f}s"
    lines.append(head)
    if totals:
        slowest = max(reports, key=lambda r: r.timings.get("total", 0.0))
        lines.append(
            f"Time per scenario: mean {sum(totals) / len(totals):.2f}s, "
            f"max {max(totals):.2f}s (seed {slowest.seed})"
        )
    lines.append(f"{'invariant':<28} {'scenarios':>9} {'violations':>10}  seeds")
    for name in INVARIANTS:
        seeds = [r.seed for r in reports if r.violations.get(name)]
        count = sum(len(r.violations.get(name, [])) for r in reports)
        shown = ", ".join(map(str, seeds[:40])) + (" …" if len(seeds) > 40 else "")
        lines.append(f"{name:<28} {len(seeds):>9} {count:>10}  {shown}")
    if crashed:
        lines.append(f"harness crashes: seeds {', '.join(map(str, crashed))}")
    gave_up = [r.seed for r in reports if r.gave_up]
    if gave_up:
        lines.append(
            f"scenarios where the harness gave up on a run after {RUN_ATTEMPTS} failed attempts "
            f"(faults, not violations): {len(gave_up)}, seeds {', '.join(map(str, gave_up[:40]))}"
        )
    happened: Counter[str] = Counter()
    for r in reports:
        happened.update({name: 1 for name in r.counters})  # scenarios in which it happened
    if happened:
        lines.append(
            "happened (in how many scenarios): "
            + ", ".join(f"{k} {v}" for k, v in sorted(happened.items()))
        )
    covered: Counter[str] = Counter()
    for r in reports:
        covered.update(features(draw_scenario(r.seed)))
    lines.append(
        "coverage (scenarios per class): "
        + ", ".join(f"{k} {v}" for k, v in sorted(covered.items()))
    )
    return "\n".join(lines)


_preloaded = False


def _process_context() -> Any:
    """Processes forked from a server that imported this module once (fresh processes that start in
    milliseconds, not the seconds an interpreter needs to import Dagster)."""
    global _preloaded
    context = multiprocessing.get_context("forkserver")
    if not _preloaded:
        context.set_forkserver_preload([__name__])
        _preloaded = True
    return context


def _process_main(
    workdir: str,
    seed: int,
    action: str,
    partition: str | None,
    phase: int,
    barrier: tuple[str, str] | None,
    log_path: str,
) -> None:
    """One run in another process: the scenario's definitions on the same Dagster home and emulator
    dir.

    With ``barrier`` (ready file, go file): the run says it is ready when it sets its resources up,
    and goes on when told, to race another process (see `StartingLineResource`).
    """
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    warnings.simplefilter("ignore")
    os.environ.pop("DAGSTER_OPENAI_BATCH_STORAGE", None)
    scenario = draw_scenario(seed)
    world = World(scenario, Path(workdir))
    os.environ["DAGSTER_HOME"] = str(world.home)
    resource = phase_resource(scenario, world.emulator_dir, phase, barrier=barrier)
    result = world.materialize(action, partition, resource)
    print(
        f"run {result.run_id}: {'success' if result.success else _failure_text(result)}", flush=True
    )
    sys.exit(0 if result.success else 1)


def scratch_root() -> str | None:
    """Where scenario directories go: ``$CAMPAIGN_TMPDIR``, else ``/dev/shm`` when it is a writable
    tmpfs (SQLite's fsyncs then cost nothing: a scenario runs 2-3x faster), else the system's temp
    dir."""
    chosen = os.environ.get("CAMPAIGN_TMPDIR")
    if chosen:
        return chosen
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@contextlib.contextmanager
def scratch_dir(seed: int) -> Iterator[Path]:
    """A fresh directory for one scenario, deleted afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"campaign-{seed}-", dir=scratch_root()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


CI_SEEDS = light_seeds(CI_SLICE)
"""The fixed slice of seeds the test suite runs."""
