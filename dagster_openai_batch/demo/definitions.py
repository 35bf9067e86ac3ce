"""The demo: product reviews classified with a structured output, and their daily embeddings.

Runs on the offline emulator unless ``OPENAI_API_KEY`` is set (then on OpenAI, at batch prices);
the backend in use is in every asset's metadata (``backend``).
"""

import os
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import BaseModel, Field

from ..core.templates import RequestTemplate
from ..dagster import OpenAIBatchResource, openai_batch_assets, openai_batch_sensor
from ..dagster.component import load_pipelines_from_defs_folder
from . import defs as yaml_defs
from .reviews import make_reviews

DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_offset=0)


class ReviewLabel(BaseModel):
    """What the model must answer for each review (a JSON schema structured output)."""

    sentiment: Literal["positive", "neutral", "negative"]
    topic: Literal["quality", "delivery", "support", "noise", "battery", "design", "other"]
    confidence: float = Field(ge=0, le=1)


@dg.asset(group_name="reviews", kinds={"python"})
def product_reviews() -> list[dict[str, object]]:
    """300 product reviews (the demo's dataset)."""
    return make_reviews(300, seed=7)


@dg.asset(group_name="reviews", kinds={"python"}, partitions_def=DAILY)
def daily_reviews(context: dg.AssetExecutionContext) -> list[dict[str, object]]:
    """The reviews that arrived on one day (40 a day)."""
    day = context.partition_key
    return make_reviews(40, seed=int(day.replace("-", "")), prefix=f"rev-{day}")


review_labels = openai_batch_assets(
    name="review_labels",
    source=product_reviews,
    template=RequestTemplate(
        endpoint="/v1/chat/completions",
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Label the product review. Answer in JSON."},
            {"role": "user", "content": "Product: {product}\nRating: {rating}/5\nReview: {text}"},
        ],
        response_model=ReviewLabel,
        body={"temperature": 0},
        custom_id_column="review_id",
    ),
)


YAML_DEFS, (review_embeddings,) = load_pipelines_from_defs_folder(yaml_defs)
PIPELINES = [review_labels, review_embeddings]


def demo_home() -> Path:
    """Where the demo keeps its emulator state: ``$DAGSTER_HOME`` or ``./.dagster_openai_batch``."""
    home = os.environ.get("DAGSTER_HOME")
    return Path(home) if home else Path.cwd() / ".dagster_openai_batch"


def demo_resource() -> OpenAIBatchResource:
    """OpenAI when ``OPENAI_API_KEY`` is set, else the emulator (state shared by every process)."""
    if os.environ.get("OPENAI_API_KEY"):
        return OpenAIBatchResource(api_key=dg.EnvVar("OPENAI_API_KEY"))
    pace = os.environ.get("DAGSTER_OPENAI_BATCH_EMULATOR_PACE", "realistic")
    return OpenAIBatchResource(
        emulator_dir=str(demo_home() / "openai-emulator"),
        emulator_pace=pace,  # type: ignore[arg-type]
    )


defs = dg.Definitions.merge(
    review_labels.definitions(),
    YAML_DEFS,
    dg.Definitions(
        assets=[product_reviews, daily_reviews],
        sensors=[openai_batch_sensor(PIPELINES, minimum_interval_seconds=5)],
        resources={"openai_batch": demo_resource()},
    ),
)
