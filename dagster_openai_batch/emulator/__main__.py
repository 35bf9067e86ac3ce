"""`python -m dagster_openai_batch.emulator`: serve the emulator over HTTP until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from . import Emulator, EmulatorConfig, Faults, Pace
from .models import DEFAULT_AZURE_DEPLOYMENTS
from .server import base_url, make_http_server


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dagster_openai_batch.emulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--pace", choices=("fast", "realistic"), default="fast")
    for name in (
        "validating-seconds",
        "seconds-per-request",
        "finalizing-seconds",
        "cancelling-seconds",
    ):
        p.add_argument(f"--{name}", type=float, help="override this field of the chosen pace")
    p.add_argument("--api-key", help="accept only this Bearer token (default: any non-empty one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--http-error-rate", type=float, default=0.0)
    p.add_argument("--download-truncate-rate", type=float, default=0.0)
    p.add_argument("--download-drop-rate", type=float, default=0.0)
    p.add_argument("--request-error-rate", type=float, default=0.0)
    p.add_argument(
        "--lost-response-rate",
        type=float,
        default=0.0,
        help="share of batches.create/cancel and files.create calls carried out whose response is "
        "lost",
    )
    p.add_argument("--stuck-finalizing", action="store_true")
    p.add_argument("--expire-after-seconds", type=float)
    p.add_argument(
        "--token-limit",
        action="append",
        default=[],
        metavar="MODEL=TOKENS",
        help="enqueued-token limit for a model (repeatable)",
    )
    p.add_argument(
        "--file-not-ready-rate",
        type=float,
        default=0.0,
        help='share of batch creates right after upload answered 400 "Cannot find file"',
    )
    p.add_argument(
        "--batch-creations-per-hour", type=int, help="creation cap (429 past it; real: 2000)"
    )
    p.add_argument(
        "--flavour",
        choices=("openai", "azure"),
        default="openai",
        help="azure: Azure OpenAI global batch (routes under /openai, model = deployment)",
    )
    p.add_argument(
        "--azure-deployment",
        action="append",
        default=[],
        metavar="DEPLOYMENT=MODEL",
        help="an Azure deployment (repeatable; replaces the default one per model)",
    )
    p.add_argument(
        "--extra-model",
        action="append",
        default=[],
        metavar="NAME=SNAPSHOT",
        help="serve a model beyond the catalogue on every endpoint (repeatable)",
    )
    p.add_argument("--accept-any-model", action="store_true", help="serve any model name")
    p.add_argument(
        "--validate-on-read",
        action="store_true",
        help="validate a batch's input on the first read that needs it, not in the background"
        " right after it is created",
    )
    p.add_argument(
        "--omit-cancelled-lines",
        action="store_true",
        help="write no batch_cancelled lines for a cancelled batch's never-run requests",
    )
    return p


def _pairs(items: list[str]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items)


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Build the emulator config from parsed CLI arguments."""
    pace = Pace.fast() if args.pace == "fast" else Pace.realistic()
    overrides = {k: getattr(args, k) for k in Pace.model_fields if getattr(args, k) is not None}
    limits = {model: int(tokens) for model, tokens in _pairs(args.token_limit).items()}
    faults = Faults(
        seed=args.seed,
        http_error_rate=args.http_error_rate,
        download_truncate_rate=args.download_truncate_rate,
        download_drop_rate=args.download_drop_rate,
        request_error_rate=args.request_error_rate,
        lost_response_rate=args.lost_response_rate,
        stuck_finalizing=args.stuck_finalizing,
        expire_after_seconds=args.expire_after_seconds,
        token_limits=limits,
        file_not_ready_rate=args.file_not_ready_rate,
        batch_creations_per_hour=args.batch_creations_per_hour,
    )
    return EmulatorConfig(
        pace=pace.model_copy(update=overrides),
        faults=faults,
        api_key=args.api_key,
        flavour=args.flavour,
        extra_models=_pairs(args.extra_model),
        accept_any_model=args.accept_any_model,
        cancelled_error_lines=not args.omit_cancelled_lines,
        validate_at_create=not args.validate_on_read,
        azure_deployments=_pairs(args.azure_deployment) or dict(DEFAULT_AZURE_DEPLOYMENTS),
    )


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, print the base URL, serve until a signal arrives."""
    args = _parser().parse_args(argv)
    config = config_from_args(args)
    server = make_http_server(Emulator(args.data_dir, config), args.host, args.port)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(base_url(server, config.flavour), flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
