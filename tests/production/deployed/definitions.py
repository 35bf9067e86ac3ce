"""The code location the production-shaped test deploys: a two-partition pipeline in Python, a
YAML pipeline (``defs/transcripts``), and downstream assets that read both pipelines' results.

Everything deployment-specific comes from the environment, as it would in production: the OpenAI
key and base URL, the object store (``AWS_*``), the results location
(``DAGSTER_OPENAI_BATCH_STORAGE``). Nothing here knows it runs in a test.
"""

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager, S3Resource

from dagster_openai_batch import (
    BatchResults,
    OpenAIBatchResource,
    RequestTemplate,
    openai_batch_assets,
    openai_batch_sensor,
)
from dagster_openai_batch.dagster.component import load_pipelines_from_defs_folder

from . import defs as yaml_defs

REGIONS = dg.StaticPartitionsDefinition(["eu", "us"])
TICKETS_PER_REGION = {"eu": 30, "us": 20}


def ticket_rows(context: dg.AssetExecutionContext) -> list[dict[str, str]]:
    region = context.partition_key
    return [
        {"ticket_id": f"{region}-{i:03d}", "text": f"Ticket {i} from {region}: my order is late."}
        for i in range(TICKETS_PER_REGION[region])
    ]


tickets = openai_batch_assets(
    name="tickets",
    source=ticket_rows,
    template=RequestTemplate(
        endpoint="/v1/chat/completions",
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Classify this support ticket: {text}"}],
        custom_id_column="ticket_id",
    ),
    partitions_def=REGIONS,
    max_requests_per_file=20,  # eu: 30 tickets -> 2 files, 2 batches
)

YAML_DEFS, (transcripts,) = load_pipelines_from_defs_folder(yaml_defs)


@dg.asset(ins={"answers": dg.AssetIn(key=tickets.results.key)}, group_name="reports")
def ticket_report(answers: dict[str, BatchResults]) -> dg.Output[dict[str, int]]:
    """Answered tickets per region, read from the results tables on the object store."""
    counts = {region: handle.to_arrow(["custom_id"]).num_rows for region, handle in answers.items()}
    uris = ",".join(sorted(handle.uri for handle in answers.values()))
    return dg.Output(counts, metadata={"rows": sum(counts.values()), "uris": uris})


@dg.asset(ins={"vectors": dg.AssetIn(key=transcripts.results.key)}, group_name="reports")
def transcript_report(vectors: BatchResults) -> dg.Output[int]:
    """Embedded transcripts, read through the handle the deployment's IO manager stored."""
    rows = vectors.to_arrow(["custom_id"]).num_rows
    return dg.Output(rows, metadata={"rows": rows, "table_uri": vectors.uri})


defs = dg.Definitions.merge(
    tickets.definitions(),
    YAML_DEFS,
    dg.Definitions(
        assets=[ticket_report, transcript_report],
        jobs=[dg.define_asset_job("reports", selection=[ticket_report, transcript_report])],
        sensors=[openai_batch_sensor([tickets], minimum_interval_seconds=2)],
        resources={
            "openai_batch": OpenAIBatchResource(
                api_key=dg.EnvVar("OPENAI_API_KEY"), base_url=dg.EnvVar("OPENAI_BASE_URL")
            ),
            # The deployment's IO manager: the YAML pipeline's BatchResults handle and the
            # reports go to the object store, so a run on any machine can load them.
            "io_manager": S3PickleIOManager(
                s3_resource=S3Resource(), s3_bucket="openai-batch-results", s3_prefix="io"
            ),
        },
    ),
)
