"""A partitioned batch pipeline that another process can submit:
``DAGSTER_HOME=HOME python submitter.py EMULATOR PARTITION``.

Used to launch submissions at the same moment from several processes, and to kill one mid-way.
"""

import sys

import dagster as dg

from dagster_openai_batch import (
    OpenAIBatchResource,
    RequestTemplate,
    openai_batch_assets,
    openai_batch_sensor,
)

PARTITIONS = dg.StaticPartitionsDefinition(["a", "b"])


@dg.asset(partitions_def=PARTITIONS)
def questions(context: dg.AssetExecutionContext) -> list[dict]:
    return [{"id": f"{context.partition_key}{i}", "question": f"Explain {i}."} for i in range(30)]


PIPELINE = openai_batch_assets(
    name="qa",
    source=questions,
    partitions_def=PARTITIONS,
    max_requests_per_file=10,  # three parts, three batches
    template=RequestTemplate(
        endpoint="/v1/chat/completions",
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "{question}"}],
        custom_id_column="id",
    ),
)
SUBMIT = [questions, PIPELINE.input_file, PIPELINE.batch_job]


def definitions(resource: OpenAIBatchResource) -> dg.Definitions:
    return dg.Definitions.merge(
        PIPELINE.definitions(),
        dg.Definitions(
            assets=[questions],
            sensors=[openai_batch_sensor([PIPELINE])],
            resources={"openai_batch": resource},
        ),
    )


def submit(
    instance: dg.DagsterInstance, resource: OpenAIBatchResource, partition: str, **config: object
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        SUBMIT,
        instance=instance,
        resources={"openai_batch": resource},
        partition_key=partition,
        raise_on_error=False,
        run_config={"ops": {PIPELINE.batch_job.op.name: {"config": config}}},
    )


if __name__ == "__main__":
    emulator_dir, partition = sys.argv[1:3]
    with dg.DagsterInstance.get() as instance:
        result = submit(
            instance,
            OpenAIBatchResource(emulator_dir=emulator_dir, emulator_pace="fast"),
            partition,
        )
    sys.exit(0 if result.success else 1)
