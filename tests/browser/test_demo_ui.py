"""The demo as a user sees it in `dagster dev`: lineage, results, automation, and one run launched
by clicking Materialize, whose results the daemon's sensor then collects on its own.

Every fact is checked through the webserver's GraphQL API as well as on the rendered page.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import LOCATION, Server

from dagster_openai_batch.dagster.stage_records import BatchStatusRecord, ResultsRecord

PIPELINES = ["review_labels", "review_embeddings"]
STAGES = ["input_file", "batch_job", "results"]


def open_page(page: Any, server: Server, path: str, *texts: str, attempts: int = 3) -> None:
    """Go to ``path`` and wait until every text shows; reload if the first render stalls."""
    for attempt in range(attempts):
        try:
            if attempt == 0:
                page.goto(f"{server.url}{path}")
            else:
                page.reload()
            for text in texts:
                page.get_by_text(text, exact=True).first.wait_for(state="visible", timeout=15_000)
            return
        except Exception:
            if attempt == attempts - 1:
                raise


def shoot(page: Any, screenshots: Path, name: str) -> None:
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(screenshots / f"{name}.png"))


ASSET_NODES = """{ assetNodes { assetKey { path } dependencyKeys { path } groupName
  partitionDefinition { type } kinds } }"""


def test_lineage_shows_each_pipeline(page, server, screenshots):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in server.graphql(ASSET_NODES)["assetNodes"]}
    for name in PIPELINES:
        deps = {
            stage: ["/".join(d["path"]) for d in nodes[f"{name}/{stage}"]["dependencyKeys"]]
            for stage in STAGES
        }
        assert deps["batch_job"] == [f"{name}/input_file"]
        assert deps["results"] == [f"{name}/batch_job"]
        assert nodes[f"{name}/results"]["groupName"] == name
        assert "openai" in nodes[f"{name}/results"]["kinds"]
    assert nodes["review_embeddings/results"]["partitionDefinition"]["type"] == "TIME_WINDOW"

    open_page(page, server, "/asset-groups", *PIPELINES)
    expand = page.locator('[aria-label="unfold_more"]')  # the collapsed group nodes
    for _ in range(5):
        if not expand.count():
            break
        expand.first.click()
    open_page(page, server, "/asset-groups", "input_file")  # re-opened expanded, zoomed to fit
    shoot(page, screenshots, "lineage")
    for stage in STAGES:
        assert page.get_by_text(stage, exact=True).count() >= 2, stage


REPO = f'repositoryLocationName: "{LOCATION}", repositoryName: "__repository__"'
AUTOMATION = f"""{{
  sensorOrError(sensorSelector: {{{REPO}, sensorName: "openai_batch_sensor"}}) {{
    ... on Sensor {{ name minIntervalSeconds sensorState {{ status }} }} }}
  schedulesOrError(repositorySelector: {{{REPO}}}) {{
    ... on Schedules {{ results {{ name cronSchedule pipelineName }} }} }} }}"""


def test_sensor_and_schedule_are_listed_and_sensor_runs(page, server, screenshots):
    data = server.graphql(AUTOMATION)
    assert data["sensorOrError"]["sensorState"]["status"] == "RUNNING"
    assert data["schedulesOrError"]["results"] == [
        {
            "name": "review_embeddings_schedule",
            "cronSchedule": "0 0 * * *",
            "pipelineName": "review_embeddings_submit",
        }
    ]

    open_page(page, server, "/automation", "openai_batch_sensor", "review_embeddings_schedule")
    shoot(page, screenshots, "automation")
    open_page(page, server, f"/locations/{LOCATION}/sensors/openai_batch_sensor", "Running")
    shoot(page, screenshots, "sensor")


RUNS = """query Runs($job: String!) { runsOrError(filter: {pipelineName: $job}) { ... on Runs {
  results { runId status tags { key value } } } } }"""


def runs(server: Server, job: str) -> list[dict[str, Any]]:
    found = server.graphql(RUNS, {"job": job})["runsOrError"]["results"]
    return [{**run, "tags": {t["key"]: t["value"] for t in run["tags"]}} for run in found]


def wait_for(what: str, probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(1)
    raise TimeoutError(f"{what} after {timeout}s")


def succeeded(server: Server, job: str) -> dict[str, Any] | None:
    """The successful run of ``job``, None while it is not there yet; fails on a failed run."""
    found = runs(server, job)
    assert not any(r["status"] in ("FAILURE", "CANCELED") for r in found), found
    return next((r for r in found if r["status"] == "SUCCESS"), None)


def click_materialize(
    page: Any, server: Server, path: str, button: str, job: str
) -> dict[str, Any]:
    open_page(page, server, path, button)
    page.get_by_text(button, exact=True).first.click()
    return wait_for(f"no successful {job} run", lambda: succeeded(server, job), timeout=90)


BATCH_JOB = ["review_labels", "batch_job"]
OBSERVATIONS = """{ assetOrError(assetKey: {path: ["review_labels", "batch_job"]}) { ... on Asset {
  assetObservations(limit: 1) { timestamp metadataEntries { label
    ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue }
    ... on FloatMetadataEntry { floatValue } } } } } }"""
seen_in_flight: dict[str, Any] = {}
"""What the batch_job Overview showed while the batches ran (filled by ``labels_collected``)."""


def latest_observation(server: Server) -> dict[str, Any]:
    """Metadata of batch_job's latest observation ({} when none), by label."""
    found = server.graphql(OBSERVATIONS)["assetOrError"]["assetObservations"]
    entries = found[0]["metadataEntries"] if found else []
    return {e["label"]: e.get("text", e.get("intValue", e.get("floatValue"))) for e in entries}


def running_observation(server: Server) -> dict[str, Any] | None:
    """The latest observation while requests are running and some are done (else None)."""
    found = latest_observation(server)
    status = found.get(BatchStatusRecord.key("status"))
    running = status in ("in_progress", "finalizing") and found.get("dagster/row_count")
    return found if running else None


def overview_progress(page: Any, server: Server, screenshots: Path, name: str) -> dict[str, Any]:
    """Open batch_job's Overview tab; returns the Row count and the snapshot's words it shows."""
    open_page(page, server, "/assets/review_labels/batch_job", "Row count", "Metadata")
    status = page.locator("div", has=page.get_by_text("Row count", exact=True)).last
    row_count = int(re.findall(r"Row count\s*([\d,]+)", status.inner_text())[0].replace(",", ""))
    page.set_viewport_size({"width": 1600, "height": 1000})
    shoot(page, screenshots, name)
    page.set_viewport_size({"width": 1440, "height": 900})
    return {
        "row_count": row_count,
        "snapshot_labelled": page.get_by_text(
            "when batch_job ran: not started", exact=True
        ).count(),
    }


@pytest.fixture(scope="module")
def labels_collected(server: Server, browser_context: Any, screenshots: Path) -> dict[str, Any]:
    """Materialize the reviews, then ``review_labels`` input_file + batch_job, by clicking in the
    UI; returns the results run the daemon's sensor then launches on its own."""
    page = browser_context.new_page()
    try:
        click_materialize(page, server, "/assets/product_reviews", "Materialize", "__ASSET_JOB")
        submit = click_materialize(
            page,
            server,
            f"/locations/{LOCATION}/jobs/review_labels_submit",
            "Materialize all",
            "review_labels_submit",
        )
        open_page(page, server, f"/runs/{submit['runId']}", "Success")
        shoot(page, screenshots, "submit_run")
        in_flight = wait_for(
            "no observation of the batches running",
            lambda: running_observation(server),
            timeout=60,
        )
        seen_in_flight.update(overview_progress(page, server, screenshots, "batch_job_in_flight"))
        seen_in_flight["observation"] = in_flight
        return wait_for(
            "the sensor never collected the results",
            lambda: succeeded(server, "review_labels_results"),
            timeout=90,
        )
    finally:
        page.close()


def test_materialize_click_then_sensor_collects_results(server, labels_collected):
    assert labels_collected["tags"]["dagster/sensor_name"] == "openai_batch_sensor"
    (latest,) = server.graphql(RESULTS)["assetOrError"]["assetMaterializations"]
    assert latest["runId"] == labels_collected["runId"]


RESULTS = """{ assetOrError(assetKey: {path: ["review_labels", "results"]}) { ... on Asset {
  assetMaterializations(limit: 1) { runId metadataEntries { label
    ... on MarkdownMetadataEntry { mdStr } } } } } }"""


def latest_preview_header(materialization: dict[str, Any]) -> str:
    preview = ResultsRecord.key("preview")
    (entry,) = [e for e in materialization["metadataEntries"] if e["label"] == preview]
    return str(entry.get("mdStr", "")).splitlines()[0]


def test_results_page_shows_counts_tokens_cost_and_preview(
    page, server, screenshots, labels_collected
):
    (latest,) = server.graphql(RESULTS)["assetOrError"]["assetMaterializations"]
    labels = {entry["label"] for entry in latest["metadataEntries"]}
    fields = ("status_succeeded", "status_failed", "input_tokens", "output_tokens", "cost_usd")
    expected = [ResultsRecord.key(field) for field in (*fields, "preview")]
    assert set(expected) <= labels

    page.set_viewport_size({"width": 1600, "height": 1000})
    try:
        open_page(page, server, "/assets/review_labels/results", *expected)
        # The summary is what the page opens on: counts, cost and tokens above the fold.
        for key in (ResultsRecord.key(f) for f in ("status_succeeded", "cost_usd")):
            box = page.get_by_text(key, exact=True).first.bounding_box()
            assert box is not None, key
            assert box["y"] + box["height"] <= 1000, f"{key} is below the fold"
        # The answer leads the preview, cut short so the table stays readable.
        assert latest_preview_header(latest).startswith("| answer | status | custom_id |")
        shoot(page, screenshots, "results")
    finally:
        page.set_viewport_size({"width": 1440, "height": 900})


def test_batch_job_overview_shows_live_progress_not_the_snapshot(
    page, server, screenshots, labels_collected
):
    """While the batches ran, the Overview's Status showed the requests done so far (from the
    sensor's latest observation); once they finished, all of them. The materialization's own
    status is labelled as the submission snapshot it is."""
    running = seen_in_flight["observation"]
    assert 0 < running["dagster/row_count"] < 300
    assert 0 < seen_in_flight["row_count"] < 300 or seen_in_flight["row_count"] == 300
    assert seen_in_flight["snapshot_labelled"]

    finished = wait_for(
        "no observation of the finished batches",
        lambda: (
            (o := latest_observation(server)).get(BatchStatusRecord.key("status")) == "completed"
            and o
        ),
        timeout=30,
    )
    assert finished["dagster/row_count"] == 300
    assert finished[BatchStatusRecord.key("progress")] == "300/300 requests done (100%)"
    assert finished[BatchStatusRecord.key("percent_done")] == 100.0
    shown = overview_progress(page, server, screenshots, "batch_job_finished")
    assert shown["row_count"] == 300
    assert shown["snapshot_labelled"]


TICKS = f"""{{ sensorOrError(sensorSelector: {{{REPO}, sensorName: "openai_batch_sensor"}}) {{
  ... on Sensor {{ sensorState {{ ticks(limit: 100) {{ status skipReason }} }} }} }} }}"""


def test_sensor_ticks_name_the_sets_in_flight_and_their_progress(
    page, server, screenshots, labels_collected
):
    ticks = server.graphql(TICKS)["sensorOrError"]["sensorState"]["ticks"]
    reasons = [t["skipReason"] or "" for t in ticks]
    running = [r for r in reasons if r.startswith("1 batch set in flight: review_labels (all): ")]
    assert any(re.search(r"in_progress, \d+/300 done \(\d+(\.\d)?%\)", r) for r in running)
    assert any("expected to finish at" in r for r in running), running

    open_page(page, server, f"/locations/{LOCATION}/sensors/openai_batch_sensor", "Running")
    page.get_by_text("All ticks", exact=True).first.wait_for(state="visible")
    # The tick details dialog (the Result column's link) of the latest tick that saw the batches
    # running.
    results = page.locator("tbody tr td:nth-child(5)").get_by_text("0 runs requested", exact=True)
    # Idle ticks pile up after the batches finish (many on a busy machine): start at the row where
    # the tick history (newest first, as the table) puts the latest running tick.
    results.first.wait_for(state="visible")  # the table renders after the page header
    skipped = [t["skipReason"] or "" for t in ticks if t["status"] == "SKIPPED"]
    latest = next(i for i, r in enumerate(skipped) if "review_labels (all): in_progress" in r)
    rows = results.count()
    for index in sorted(range(rows), key=lambda i: abs(i - latest))[:12]:
        results.nth(index).click()
        reason = page.get_by_text("Skip reason:", exact=False).first
        reason.wait_for(state="visible")
        words = reason.locator("xpath=..").inner_text()
        if "batch set in flight: review_labels (all): in_progress" in words:
            page.set_viewport_size({"width": 1600, "height": 1000})
            page.wait_for_timeout(600)  # the dialog fades in
            shoot(page, screenshots, "sensor_ticks")
            page.set_viewport_size({"width": 1440, "height": 900})
            return
        page.get_by_role("button", name="Close").last.click()
        reason.wait_for(state="hidden")
    pytest.fail("no tick in the UI's history names the batches in flight")
