"""`openai_batch_assets`: one batch pipeline, assets ``input_file → batch_job → results``.

Example:
    >>> import dagster as dg
    >>> from dagster_openai_batch import RequestTemplate, openai_batch_assets
    >>> @dg.asset
    ... def reviews() -> list[dict]:
    ...     return [{"id": "r1", "text": "Great kettle"}]
    >>> pipeline = openai_batch_assets(
    ...     name="review_sentiment",
    ...     source=reviews,
    ...     template=RequestTemplate(
    ...         endpoint="/v1/chat/completions", model="gpt-4o-mini",
    ...         messages=[{"role": "user", "content": "Sentiment of: {text}"}],
    ...         custom_id_column="id",
    ...     ),
    ... )
    >>> [key.to_user_string() for key in pipeline.asset_keys]
    ['review_sentiment/input_file', 'review_sentiment/batch_job', 'review_sentiment/results']
"""

import inspect
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from ..core.errors import OpenAIBatchError
from ..core.service_profile import MAX_REQUESTS_ANY_SERVICE
from ..core.storage import join_uri, safe_segment
from ..core.templates import RequestTemplate
from ..core.vocabulary import BatchEndpoint, as_endpoint
from . import asset_bodies
from .checks import ACCEPTED, ACCEPTED_DESCRIPTION, check_specs
from .results_io import batch_results_io_manager
from .translator import (
    STAGES,
    OpenAIBatchStageProps,
    OpenAIBatchTranslator,
    Stage,
    StageExecution,
)

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

RESOURCE_KEY = "openai_batch"
DEFAULT_POOL = "openai_batch_submit"
Source = (
    dg.AssetKey | dg.AssetsDefinition | dg.AssetSpec | Callable[..., Any] | os.PathLike[str] | str
)


class PipelineDefinitionError(OpenAIBatchError, ValueError):
    """`openai_batch_assets` was given arguments that cannot make a pipeline (raised at load)."""


class BatchJobConfig(dg.Config):
    """Run config of ``batch_job``."""

    wait: bool | None = None
    """Block until the batches finish (default: the pipeline's ``wait``). For small jobs."""
    resubmit_failed: bool = False
    """Instead of the input file, send the failed/expired/cancelled/missing rows of the latest
    results as a follow-up batch; ``results`` then merges the answers back by custom_id."""
    include_permanent_failures: bool = False
    """With ``resubmit_failed``: also resend requests that failed with a 4xx other than 429
    (e.g. context_length_exceeded), which usually fail again."""
    new_batches: bool = False
    """Create new batches even if batches for the same input exist (they are paid again); for
    deliberate re-runs, e.g. sampling with temperature > 0."""
    max_estimated_cost_usd: float | None = None
    """Refuse, before any batch is created, an input whose estimated cost at batch rates (the
    upper bound ``input_file`` records) is above this many USD."""
    cancel: bool = False
    """Cancel the batches of the latest ``batch_job`` instead of creating any; the sensor then
    materializes ``results`` with what finished (the rest is ``cancelled``)."""


class ResultsConfig(dg.Config):
    """Run config of ``results`` (the sensor fills it in)."""

    batch_ids: list[str] = Field(default_factory=list)
    """The batches to collect; empty means those of the latest ``batch_job`` materialization."""
    allow_superseded: bool = False
    """Collect ``batch_ids`` even though a newer ``batch_job`` submission exists for the partition
    (by default the newest submission wins and older sets are never collected over it)."""


class AcceptedConfig(dg.Config):
    """Run config of the ``batches_accepted`` check (the sensor fills it in)."""

    batch_ids: list[str] = Field(default_factory=list)
    """The batches to look at; empty means those of the latest ``batch_job`` materialization."""


@dataclass(frozen=True)
class OpenAIBatchPipeline:
    """The definitions of one batch pipeline, ready for `dagster.Definitions`."""

    name: str
    endpoint: BatchEndpoint
    input_file: dg.AssetsDefinition
    batch_job: dg.AssetsDefinition
    results: dg.AssetsDefinition
    submit_job: "UnresolvedAssetJobDefinition | dg.JobDefinition"
    results_job: "UnresolvedAssetJobDefinition | dg.JobDefinition"
    """As built, or as `Definitions` resolved them (see `load_pipelines_from_defs_folder`)."""
    accepted_check: dg.AssetChecksDefinition
    """``batches_accepted`` on ``batch_job`` (evaluated in the results runs the sensor launches)."""
    schedules: list[Any] = field(default_factory=list)
    """Schedule definitions (time-partitioned ones resolve when put in `Definitions`)."""
    partitions_def: dg.PartitionsDefinition | None = None
    resource_key: str = RESOURCE_KEY

    @property
    def asset_keys(self) -> list[dg.AssetKey]:
        return [self.input_file.key, self.batch_job.key, self.results.key]

    @property
    def results_op_name(self) -> str:
        return self.results.op.name

    @property
    def accepted_check_key(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.batch_job.key, ACCEPTED)

    @property
    def accepted_check_op_name(self) -> str:
        return self.accepted_check.node_def.name

    @property
    def assets(self) -> list[dg.AssetsDefinition]:
        return [self.input_file, self.batch_job, self.results]

    @property
    def jobs(self) -> list["UnresolvedAssetJobDefinition | dg.JobDefinition"]:
        return [self.submit_job, self.results_job]

    def definitions(self) -> dg.Definitions:
        """Assets, checks, jobs and schedules of this pipeline (no resource, no sensor)."""
        return dg.Definitions(
            assets=self.assets,
            asset_checks=[self.accepted_check],
            jobs=self.jobs,
            schedules=self.schedules,
        )


def _source_key(source: Source) -> dg.AssetKey | None:
    if isinstance(source, dg.AssetsDefinition):
        return source.key
    if isinstance(source, dg.AssetSpec):
        return source.key
    if isinstance(source, dg.AssetKey):
        return source
    if isinstance(source, str) and not source.lower().endswith(".jsonl"):
        return dg.AssetKey.from_user_string(source)
    return None


def _call_rows_fn(fn: Callable[..., Any], context: dg.AssetExecutionContext) -> Any:
    return fn(context) if inspect.signature(fn).parameters else fn()


def openai_batch_assets(
    *,
    name: str,
    source: Source,
    template: RequestTemplate | None = None,
    endpoint: BatchEndpoint | str | None = None,
    partitions_def: dg.PartitionsDefinition | None = None,
    group_name: str | None = None,
    resource_key: str = RESOURCE_KEY,
    storage: str | None = None,
    results_io_manager_key: str | None = None,
    wait: bool = False,
    wait_timeout_seconds: float = 3600.0,
    max_failed_share: float = 0.05,
    schedule: bool | str = False,
    max_requests_per_file: int | None = None,
    pool: str | None = DEFAULT_POOL,
    translator: OpenAIBatchTranslator | None = None,
    delete_input_files: bool = False,
    delete_result_files: bool = False,
) -> OpenAIBatchPipeline:
    """Declare one batch pipeline: ``<name>/input_file → <name>/batch_job → <name>/results``.

    Args:
        name: The pipeline's name (a valid Dagster name): key prefix and group of its assets,
            prefix of its jobs and schedule.
        source: Where the rows come from: an upstream asset (key, definition or spec) whose value
            is a list of dicts, a pandas/polars DataFrame or a pyarrow Table; a function returning
            such rows (it may take the asset context); or the path of an existing JSONL request
            file.
        template: Turns each row into a request (required unless ``source`` is a JSONL file).
        endpoint: The batch endpoint; defaults to the template's.
        group_name: The assets' group (default: ``name``).
        partitions_def: Any partitions definition: one batch set per partition key.
        storage: Local directory or URI (``s3://…``, ``gs://…``, ``abfs://…``, ``az://…``) for
            the input rows and results tables; default ``$DAGSTER_OPENAI_BATCH_STORAGE``, else
            ``<Dagster instance storage>/openai_batch`` (a path only this machine sees).
        results_io_manager_key: Store the `BatchResults` handle ``results`` returns through this
            IO manager of the deployment (e.g. ``io_manager`` set to an ``S3PickleIOManager``).
            By default nothing is pickled: downstream assets get a handle rebuilt from the
            results materialization recorded in the instance.
        wait: ``batch_job`` blocks until the batches finish (small jobs, one run).
        max_failed_share: The ``failed_share`` check fails above this share of failed requests.
        schedule: ``True`` submits new partitions of a time-partitioned pipeline on the
            partitions' cadence; a cron string submits on that cron (unpartitioned pipelines).
        max_requests_per_file: Split the input into files (one batch each) of at most this many
            requests (default: the backend's limit, 50,000 on OpenAI and 100,000 on Azure;
            smaller batches finish sooner). Files are also split at 200 MB and 50,000 embedding
            inputs.
        pool: The Dagster concurrency pool of ``batch_job`` (default ``openai_batch_submit``).
            With a limit of 1 (``dagster instance concurrency set openai_batch_submit 1``, or
            ``concurrency: {pools: {default_limit: 1}}`` in ``dagster.yaml``), submissions run one
            at a time, so two runs launched together never both create a batch; without a limit,
            ``batch_job`` still settles such a race by cancelling the younger duplicate before it
            runs.
        translator: Sets each stage's asset spec (key, group, owners, tags, description,
            automation condition…) and execution (pool, retry policy, op tags); see
            `OpenAIBatchTranslator`.
        delete_input_files: Once ``results`` is recorded, delete the collected batches' input
            files from the service (a follow-up resubmission reads the copy kept in ``storage``);
            a file a batch in flight still uses stays.
        delete_result_files: Once ``results`` is recorded, delete the batches' output and error
            files from the service (the results table keeps every answer; collecting that set
            again then fails, saying so).
    """
    if max_requests_per_file is not None and not (
        1 <= max_requests_per_file <= MAX_REQUESTS_ANY_SERVICE
    ):
        raise PipelineDefinitionError(
            f"openai_batch_assets({name!r}): max_requests_per_file must be "
            f"1..{MAX_REQUESTS_ANY_SERVICE} (or left out: the backend's limit)"
        )
    source_key, jsonl_path, resolved_endpoint = _resolve_source(name, source, template, endpoint)
    specs, executions = _translate(
        translator or OpenAIBatchTranslator(),
        name=name,
        endpoint=resolved_endpoint,
        source_key=source_key,
        group_name=group_name or name,
        pool=pool,
    )
    keys = asset_bodies.StageKeys(
        input_file=specs["input_file"].key,
        batch_job=specs["batch_job"].key,
        results=specs["results"].key,
    )

    def asset_args(stage: Stage, *links: dg.AssetKey) -> dict[str, Any]:
        return _asset_args(
            specs[stage],
            executions[stage],
            links,
            partitions_def=partitions_def,
            resource_key=resource_key,
            # input_file and batch_job may materialize nothing (no rows; nothing to resubmit):
            # what follows them in the run is then skipped, and the run still succeeds.
            output_required=stage == "results",
        )

    def stage_context(context: dg.AssetExecutionContext) -> asset_bodies.StageContext:
        return asset_bodies.StageContext(
            context=context,
            resource=getattr(context.resources, resource_key),
            keys=keys,
            pipeline=name,
            endpoint=resolved_endpoint,
            storage_root=_storage_root(context, storage, name),
            max_requests_per_file=max_requests_per_file,
        )

    if source_key is not None:

        @dg.asset(ins={"rows": dg.AssetIn(key=source_key)}, **asset_args("input_file"))
        def input_file(
            context: dg.AssetExecutionContext, rows: Any
        ) -> Iterator[dg.MaterializeResult[Any]]:
            yield from asset_bodies.materialize_input_file(
                stage_context(context), rows=rows, template=template
            )

    else:

        @dg.asset(**asset_args("input_file"))
        def input_file(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult[Any]]:
            if jsonl_path is not None:
                yield from asset_bodies.materialize_input_file(
                    stage_context(context), jsonl_path=jsonl_path
                )
                return
            rows = _call_rows_fn(source, context)  # type: ignore[arg-type]
            yield from asset_bodies.materialize_input_file(
                stage_context(context), rows=rows, template=template
            )

    @dg.asset(**asset_args("batch_job", keys.input_file))
    def batch_job(
        context: dg.AssetExecutionContext, config: BatchJobConfig
    ) -> Iterator[dg.MaterializeResult[Any]]:
        if config.cancel:
            yield from asset_bodies.cancel_batch_job(stage_context(context))
            return
        yield from asset_bodies.materialize_batch_job(
            stage_context(context),
            wait=wait if config.wait is None else config.wait,
            wait_timeout_seconds=wait_timeout_seconds,
            resubmit_failed=config.resubmit_failed,
            include_permanent_failures=config.include_permanent_failures,
            new_batches=config.new_batches,
            max_estimated_cost_usd=config.max_estimated_cost_usd,
        )

    # The results IO manager (beta) and a partitioned check (preview) are what the pipeline
    # needs; Dagster's notes on them are not the user's to read at every start-up.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)

        @dg.asset(
            check_specs=check_specs(keys.results, max_failed_share),
            **_results_io(results_io_manager_key),
            **asset_args("results", keys.batch_job),
        )
        def results(context: dg.AssetExecutionContext, config: ResultsConfig) -> Iterator[Any]:
            yield from asset_bodies.materialize_results(
                stage_context(context),
                batch_ids=config.batch_ids,
                allow_superseded=config.allow_superseded,
                max_failed_share=max_failed_share,
                delete_input_files=delete_input_files,
                delete_result_files=delete_result_files,
            )

        @dg.asset_check(
            asset=keys.batch_job,
            name=ACCEPTED,
            description=ACCEPTED_DESCRIPTION,
            required_resource_keys={resource_key},
            partitions_def=partitions_def,
        )
        def batches_accepted(
            context: dg.AssetCheckExecutionContext, config: AcceptedConfig
        ) -> dg.AssetCheckResult:
            partition = context.partition_key if context.has_partition_key else None
            return asset_bodies.check_batches_accepted(
                context.instance,
                getattr(context.resources, resource_key),
                keys.batch_job,
                partition,
                batch_ids=config.batch_ids,
            )

    submit_job = dg.define_asset_job(
        f"{name}_submit",
        selection=dg.AssetSelection.assets(keys.input_file, keys.batch_job),
        description=f"Build, upload and submit the {name} batch (the sensor collects the results).",
    )
    results_job = dg.define_asset_job(
        f"{name}_results",
        selection=dg.AssetSelection.assets(keys.results)
        | dg.AssetSelection.checks(batches_accepted),
        description=f"Download and parse the {name} batch results; check the batches were "
        "accepted.",
    )
    schedules = _schedules(name, submit_job, partitions_def, schedule)
    return OpenAIBatchPipeline(
        name=name,
        endpoint=resolved_endpoint,
        input_file=input_file,
        batch_job=batch_job,
        results=results,
        submit_job=submit_job,
        results_job=results_job,
        accepted_check=batches_accepted,
        schedules=schedules,
        partitions_def=partitions_def,
        resource_key=resource_key,
    )


def _asset_args(
    spec: dg.AssetSpec,
    execution: StageExecution,
    links: Sequence[dg.AssetKey],
    *,
    partitions_def: dg.PartitionsDefinition | None,
    resource_key: str,
    output_required: bool,
) -> dict[str, Any]:
    """`dg.asset` arguments of a stage: its spec and execution, linked to the stages before it."""
    return {
        "key": spec.key,
        "deps": [*links, *(dep.asset_key for dep in spec.deps)],
        "description": spec.description,
        "metadata": spec.metadata,
        "group_name": spec.group_name,
        "code_version": spec.code_version,
        "automation_condition": spec.automation_condition,
        "freshness_policy": spec.freshness_policy,
        "owners": spec.owners,
        "tags": spec.tags,
        "kinds": spec.kinds,
        "pool": execution.pool,
        "retry_policy": execution.retry_policy,
        "op_tags": execution.op_tags,
        "partitions_def": partitions_def,
        "required_resource_keys": {resource_key},
        "output_required": output_required,
    }


def _results_io(io_manager_key: str | None) -> dict[str, Any]:
    """The ``results`` asset's IO manager: the deployment's by key, else the record-based one."""
    if io_manager_key is not None:
        return {"io_manager_key": io_manager_key}
    return {"io_manager_def": batch_results_io_manager}


def _storage_root(context: dg.AssetExecutionContext, storage: str | None, name: str) -> str:
    """Where this pipeline's tables go for the context's partition."""
    root = storage or os.environ.get("DAGSTER_OPENAI_BATCH_STORAGE")
    if root is None:
        root = os.path.join(context.instance.storage_directory(), "openai_batch")
    partition = context.partition_key if context.has_partition_key else "all"
    return join_uri(root, safe_segment(name), safe_segment(partition))


def _resolve_source(
    name: str,
    source: Source,
    template: RequestTemplate | None,
    endpoint: BatchEndpoint | str | None,
) -> tuple[dg.AssetKey | None, Path | None, BatchEndpoint]:
    """The source's asset key or JSONL path, and the endpoint; clear errors for bad combinations."""
    source_key = _source_key(source)
    jsonl_path = (
        Path(source) if isinstance(source, (str, os.PathLike)) and source_key is None else None
    )
    if template is None:
        if jsonl_path is None:
            raise PipelineDefinitionError(
                f"openai_batch_assets({name!r}): give a template, or a .jsonl file as source"
            )
        if endpoint is None:
            raise PipelineDefinitionError(
                f"openai_batch_assets({name!r}): a .jsonl source needs endpoint= (the url of "
                "its lines, e.g. '/v1/chat/completions')"
            )
        return source_key, jsonl_path, _endpoint(name, endpoint)
    resolved = _endpoint(name, endpoint or template.endpoint)
    if template.endpoint != resolved:
        raise PipelineDefinitionError(
            f"openai_batch_assets({name!r}): endpoint {resolved} differs from the "
            f"template's {template.endpoint}"
        )
    return source_key, jsonl_path, resolved


def _endpoint(name: str, endpoint: str) -> BatchEndpoint:
    try:
        return as_endpoint(endpoint)
    except ValueError as e:
        raise PipelineDefinitionError(f"openai_batch_assets({name!r}): {e}") from None


def _translate(
    translator: OpenAIBatchTranslator,
    *,
    name: str,
    endpoint: str,
    source_key: dg.AssetKey | None,
    group_name: str,
    pool: str | None,
) -> tuple[dict[Stage, dg.AssetSpec], dict[Stage, StageExecution]]:
    """Each stage's asset spec and execution settings, as the translator gives them."""
    specs: dict[Stage, dg.AssetSpec] = {}
    executions: dict[Stage, StageExecution] = {}
    for stage in STAGES:
        props = OpenAIBatchStageProps(
            pipeline=name,
            stage=stage,
            endpoint=endpoint,
            source_key=source_key,
            group_name=group_name,
            pool=pool if stage == "batch_job" else None,
        )
        specs[stage] = translator.get_asset_spec(props)
        executions[stage] = translator.get_execution(props)
    return specs, executions


def _schedules(
    name: str,
    submit_job: "UnresolvedAssetJobDefinition",
    partitions_def: dg.PartitionsDefinition | None,
    schedule: bool | str,
) -> list[Any]:
    if schedule is False:
        return []
    if isinstance(schedule, str):
        return [
            dg.ScheduleDefinition(name=f"{name}_schedule", job=submit_job, cron_schedule=schedule)
        ]
    if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        raise PipelineDefinitionError(
            f"openai_batch_assets({name!r}): schedule=True needs time-based partitions; "
            "pass a cron string instead"
        )
    return [dg.build_schedule_from_partitioned_job(submit_job, name=f"{name}_schedule")]


def pipelines_definitions(
    pipelines: Sequence[OpenAIBatchPipeline], **kwargs: Any
) -> dg.Definitions:
    """Merge several pipelines' definitions with extra `Definitions` arguments."""
    return dg.Definitions.merge(*(p.definitions() for p in pipelines), dg.Definitions(**kwargs))
