"""Requests with several inputs through ``materialize``: one results row per custom_id, the answer
holding one entry per input."""

from pathlib import Path

import dagster as dg
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pipeline_helpers import recorded, run_sensor_until_idle

from dagster_openai_batch import (
    OpenAIBatchResource,
    RequestTemplate,
    openai_batch_assets,
    openai_batch_sensor,
)
from dagster_openai_batch.dagster.stage_records import ResultsRecord

REVIEWS = [
    {"id": "r0", "sentences": ["The kettle boils fast.", "The lid sticks."]},
    {"id": "r1", "sentences": ["Lovely colour."]},
    {"id": "r2", "sentences": ["Too loud.", "Too hot.", "Too small."]},
]


@dg.asset
def reviews() -> list[dict]:
    return REVIEWS


def test_a_list_column_rendered_as_input_gives_a_vector_per_sentence(
    instance: dg.DagsterInstance, resource: OpenAIBatchResource
) -> None:
    pipeline = openai_batch_assets(
        name="sentences",
        source=reviews,
        template=RequestTemplate(
            endpoint="/v1/embeddings",
            model="text-embedding-3-small",
            body={"dimensions": 16},
            body_fn=lambda row: {"input": row["sentences"]},
            custom_id_column="id",
        ),
    )
    defs = dg.Definitions.merge(
        pipeline.definitions(),
        dg.Definitions(
            assets=[reviews],
            sensors=[openai_batch_sensor([pipeline], minimum_interval_seconds=1)],
            resources={"openai_batch": resource},
        ),
    )
    submitted = dg.materialize(
        [reviews, pipeline.input_file, pipeline.batch_job],
        instance=instance,
        resources={"openai_batch": resource},
    )
    assert submitted.success
    _, runs = run_sensor_until_idle(defs, instance)
    assert len(runs) == 1
    record = recorded(instance, pipeline.results.key, ResultsRecord)
    table = pq.read_table(record.results_uri)
    assert table.schema.field("answer").type == pa.list_(pa.list_(pa.float32()))
    rows = {r["custom_id"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["r0", "r1", "r2"]  # one row per request, not per sentence
    for review in REVIEWS:
        row = rows[review["id"]]
        assert row["sentences"] == review["sentences"]  # the input column, kept
        assert [len(v) for v in row["answer"]] == [16] * len(review["sentences"])
        body = orjson.loads(row["response_body"])
        assert len(body["data"]) == len(review["sentences"])
        assert all("embedding" not in item for item in body["data"])  # held by answer only
        assert row["input_tokens"] == body["usage"]["prompt_tokens"]
    assert record.input_tokens == sum(r["input_tokens"] for r in rows.values())


def test_a_jsonl_source_mixing_one_and_several_moderation_inputs(
    instance: dg.DagsterInstance, resource: OpenAIBatchResource, tmp_path: Path
) -> None:
    inputs = {"m0": "a kettle", "m1": ["a kettle", "a teapot"], "m2": ["a", "b", "c"]}
    path = tmp_path / "requests.jsonl"
    path.write_bytes(
        b"".join(
            orjson.dumps(
                {
                    "custom_id": cid,
                    "method": "POST",
                    "url": "/v1/moderations",
                    "body": {"model": "omni-moderation-latest", "input": value},
                }
            )
            + b"\n"
            for cid, value in inputs.items()
        )
    )
    pipeline = openai_batch_assets(
        name="moderated", source=path, endpoint="/v1/moderations", wait=True
    )
    result = dg.materialize(
        pipeline.assets, instance=instance, resources={"openai_batch": resource}
    )
    assert result.success
    record = recorded(instance, pipeline.results.key, ResultsRecord)
    rows = {r["custom_id"]: r for r in pq.read_table(record.results_uri).to_pylist()}
    assert record.status_succeeded == 3
    assert isinstance(orjson.loads(rows["m0"]["answer"]), dict)
    for cid in ("m1", "m2"):
        flags = orjson.loads(rows[cid]["answer"])
        assert len(flags) == len(inputs[cid])  # one flags object per input, in input order
        assert [f["flagged"] for f in flags] == [
            r["flagged"] for r in orjson.loads(rows[cid]["response_body"])["results"]
        ]
