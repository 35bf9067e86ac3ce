"""``dagster-openai-batch``: the command line (``demo`` runs the main job offline end to end)."""

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
    args = parser.parse_args(argv)

    import warnings

    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning):  # Dagster's notes on its own APIs
        warnings.filterwarnings("ignore", category=category)
    from .demo.run import format_summary, run_demo

    os.environ["DAGSTER_OPENAI_BATCH_EMULATOR_PACE"] = args.pace
    summary = run_demo(args.home)
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
