"""Orphan cleanup on a Dagster instance: the files the library left on the service that no
materialization references (``dagster-openai-batch cleanup``, or the job
:func:`openai_batch_cleanup_job`).

A file is referenced when any materialization of any asset on the instance records its id
(``openai_batch/file_ids``) or the id of a batch using it (``openai_batch/batch_ids``,
``openai_batch/source_batch_ids``); see :func:`~..core.file_lifecycle.plan_cleanup` for the rest
of the rules.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from ..core.file_lifecycle import DEFAULT_MIN_AGE_SECONDS, CleanupPlan, Deletion, delete_files
from ..core.file_lifecycle import plan_cleanup as plan_service_cleanup
from .pipeline import RESOURCE_KEY
from .resource import OpenAIBatchResource
from .stage_records import NAMESPACE, with_legacy_keys

_PAGE = 1000
_FILE_FIELDS = ("file_ids",)
_BATCH_FIELDS = ("batch_ids", "source_batch_ids")


def _all_metadata(instance: dg.DagsterInstance) -> Iterator[Mapping[str, Any]]:
    """The metadata of every materialization on the instance, page by page."""
    for key in instance.get_asset_keys():
        cursor = None
        while True:
            page = instance.fetch_materializations(key, limit=_PAGE, cursor=cursor)
            for record in page.records:
                if record.asset_materialization is not None:
                    yield record.asset_materialization.metadata
            if not page.has_more:
                break
            cursor = page.cursor


def _ids(metadata: Mapping[str, Any], fields: tuple[str, ...]) -> Iterator[str]:
    for name in fields:
        value = metadata.get(f"{NAMESPACE}/{name}")
        data = value.value if isinstance(value, dg.MetadataValue) else value
        if isinstance(data, list):
            yield from (item for item in data if isinstance(item, str))


def referenced_ids(instance: dg.DagsterInstance) -> tuple[set[str], set[str]]:
    """``(file ids, batch ids)`` that materializations on ``instance`` record."""
    files: set[str] = set()
    batches: set[str] = set()
    for metadata in _all_metadata(instance):
        readable = with_legacy_keys(metadata)
        files.update(_ids(readable, _FILE_FIELDS))
        batches.update(_ids(readable, _BATCH_FIELDS))
    return files, batches


def plan_cleanup(
    instance: dg.DagsterInstance,
    resource: OpenAIBatchResource,
    *,
    min_age_seconds: float = DEFAULT_MIN_AGE_SECONDS,
    include_foreign: bool = False,
) -> CleanupPlan:
    """The orphaned files of ``resource``'s service with respect to ``instance`` (nothing is
    deleted)."""
    files, batches = referenced_ids(instance)
    with resource.get_batch_client() as client:
        return plan_service_cleanup(
            client,
            referenced_file_ids=files,
            referenced_batch_ids=batches,
            min_age_seconds=min_age_seconds,
            include_foreign=include_foreign,
        )


def delete_orphans(resource: OpenAIBatchResource, plan: CleanupPlan) -> Deletion:
    """Delete the files ``plan`` found (a failure is reported, the others still go)."""
    with resource.get_batch_client() as client:
        return delete_files(client, [f.id for f in plan.orphans])


class CleanupConfig(dg.Config):
    """Run config of the cleanup job."""

    delete: bool = False
    """Delete the orphans; by default only list them (a dry run)."""
    min_age_hours: float = DEFAULT_MIN_AGE_SECONDS / 3600
    """Leave files younger than this: a run may have uploaded them and not yet recorded them."""
    include_foreign: bool = False
    """Also files the library did not create."""


def openai_batch_cleanup_job(
    name: str = "openai_batch_cleanup", resource_key: str = RESOURCE_KEY
) -> dg.JobDefinition:
    """A job listing (and with run config ``delete: true``, deleting) the orphaned files of the
    resource under ``resource_key``: what ``dagster-openai-batch cleanup`` does, from the UI or a
    schedule. Its output metadata holds the orphans' count and bytes and what was deleted."""

    @dg.op(name=name, required_resource_keys={resource_key}, out=dg.Out(dg.Nothing))
    def cleanup(context: dg.OpExecutionContext, config: CleanupConfig) -> Iterator[dg.Output[None]]:
        resource = getattr(context.resources, resource_key)
        plan = plan_cleanup(
            context.instance,
            resource,
            min_age_seconds=config.min_age_hours * 3600,
            include_foreign=config.include_foreign,
        )
        context.log.info(plan.report())
        metadata: dict[str, Any] = {
            "openai_batch/orphans": dg.MetadataValue.json([f.id for f in plan.orphans]),
            "openai_batch/orphan_bytes": plan.bytes,
        }
        if config.delete:
            done = delete_orphans(resource, plan)
            for file_id, why in done.failed.items():
                context.log.warning(f"Could not delete file {file_id} ({why}); it stays.")
            metadata["openai_batch/deleted_files"] = dg.MetadataValue.json(done.deleted)
            metadata["openai_batch/delete_failures"] = dg.MetadataValue.json(done.failed)
        yield dg.Output(None, metadata=metadata)

    @dg.job(
        name=name,
        description="List the batch files no materialization references "
        "(run config delete: true deletes them).",
    )
    def cleanup_job() -> None:
        cleanup()

    return cleanup_job
