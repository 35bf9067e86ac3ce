"""The demo as a user sees it in `dagster dev`: lineage, results, automation, and one run launched
by clicking Materialize, whose results the daemon's sensor then collects on its own.

Every fact is checked through the webserver's GraphQL API as well as on the rendered page.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import LOCATION, Server

from dagster_openai_batch.dagster.stage_records import ResultsRecord

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
  assetMaterializations(limit: 1) { runId metadataEntries { label } } } } }"""


def test_results_page_shows_counts_tokens_cost_and_preview(
    page, server, screenshots, labels_collected
):
    (latest,) = server.graphql(RESULTS)["assetOrError"]["assetMaterializations"]
    labels = {entry["label"] for entry in latest["metadataEntries"]}
    fields = ("status_succeeded", "status_failed", "input_tokens", "output_tokens", "cost_usd")
    expected = [ResultsRecord.key(field) for field in (*fields, "preview")]
    assert set(expected) <= labels

    open_page(page, server, "/assets/review_labels/results", *expected)
    shoot(page, screenshots, "results")
