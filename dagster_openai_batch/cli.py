"""``dagster-openai-batch``: the command line (``demo`` runs the main job offline end to end;
``cleanup`` lists, and with ``--delete`` deletes, the files no materialization references)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dagster-openai-batch")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run the demo pipelines end to end on a Dagster instance"
    )
    demo.add_argument(
        "--home",
        type=Path,
        default=Path(".dagster_openai_batch"),
        help="DAGSTER_HOME to use (default: ./.dagster_openai_batch)",
    )
    demo.add_argument(
        "--pace",
        choices=["fast", "realistic"],
        default="fast",
        help="emulator speed (ignored when OPENAI_API_KEY is set)",
    )
    cleanup = commands.add_parser(
        "cleanup",
        help="list the batch files this library left on the service that no materialization "
        "on the Dagster instance ($DAGSTER_HOME) references; --delete deletes them",
    )
    cleanup.add_argument("--delete", action="store_true", help="delete them (default: dry run)")
    cleanup.add_argument(
        "--emulator-dir",
        help="the offline emulator's directory (else the service of "
        "--base-url or OpenAI, with the key in OPENAI_API_KEY)",
    )
    cleanup.add_argument(
        "--base-url", help="an OpenAI-compatible service's URL, e.g. http://host/v1"
    )
    cleanup.add_argument(
        "--min-age-hours",
        type=float,
        default=1.0,
        help="leave files younger than this (a run may not have recorded them yet; default 1)",
    )
    cleanup.add_argument(
        "--include-foreign",
        action="store_true",
        help="also files this library did not create (other tools' batch files)",
    )
    args = parser.parse_args(argv)
    if args.command == "cleanup":
        return _cleanup(args)

    import warnings

    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning):  # Dagster's notes on its own APIs
        warnings.filterwarnings("ignore", category=category)
    from .demo.run import format_summary, run_demo

    os.environ["DAGSTER_OPENAI_BATCH_EMULATOR_PACE"] = args.pace
    summary = run_demo(args.home)
    print(format_summary(summary))
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    """Print the orphans and a total; with ``--delete``, delete them. 1 if a delete failed."""
    import dagster as dg

    from .dagster.file_cleanup import delete_orphans, plan_cleanup
    from .dagster.resource import OpenAIBatchResource

    if not os.environ.get("DAGSTER_HOME"):
        print("Set DAGSTER_HOME to the Dagster instance whose materializations say what is in use.")
        return 2
    resource = OpenAIBatchResource(
        api_key=os.environ.get("OPENAI_API_KEY"),
        base_url=args.base_url,
        emulator_dir=args.emulator_dir,
    )
    with dg.DagsterInstance.get() as instance:
        plan = plan_cleanup(
            instance,
            resource,
            min_age_seconds=args.min_age_hours * 3600,
            include_foreign=args.include_foreign,
        )
    print(plan.report())
    if not args.delete:
        if plan.orphans:
            print("Dry run: nothing deleted. Run again with --delete to delete them.")
        return 0
    done = delete_orphans(resource, plan)
    print(
        f"Deleted {len(done.deleted)} file(s)"
        + (f", {len(done.gone)} already gone" if done.gone else "")
        + "."
    )
    for file_id, why in done.failed.items():
        print(f"Could not delete {file_id}: {why}")
    return 1 if done.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
