"""The demo as a user sees it in `dagster dev`: lineage, results, automation, and one run launched
by clicking Materialize, whose results the daemon's sensor then collects on its own.

Every fact is checked through the webserver's GraphQL API as well as on the rendered page.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conftest import LOCATION, Server

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


ASSET_NODES = """{ assetNodes { assetKey { path } dependencyKeys { path } groupName partitionDefinition { type }
  kinds } }"""


def test_lineage_shows_each_pipeline(page, server, screenshots):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in server.graphql(ASSET_NODES)["assetNodes"]}
    for name in PIPELINES:
        deps = {stage: ["/".join(d["path"]) for d in nodes[f"{name}/{stage}"]["dependencyKeys"]] for stage in STAGES}
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
