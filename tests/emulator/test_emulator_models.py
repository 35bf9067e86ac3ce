"""The model catalogue through the SDK: snapshots reported, unserved models refused in validation,
configured extras, fingerprints and reasoning models' choices; every real model the repo names is
in the catalogue."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from emu_helpers import chat_line, start
from openai.types import Batch
from openai.types.chat import ChatCompletion

from dagster_openai_batch.emulator import EmulatorConfig
from dagster_openai_batch.emulator.models import SERVED

REPO = Path(__file__).resolve().parents[2]


def _line(endpoint: str, model: str, i: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model}
    if endpoint == "/v1/embeddings":
        body["input"] = f"text {i}"
    elif endpoint == "/v1/completions":
        body["prompt"] = f"Q {i}"
    elif endpoint == "/v1/responses":
        body["input"] = f"question {i}"
    else:
        body["messages"] = [{"role": "user", "content": f"question {i}"}]
    return {"custom_id": f"r{i}", "method": "POST", "url": endpoint, "body": body}


def _finish(client: openai.OpenAI, clock, batch_id: str) -> tuple[Batch, list[dict[str, Any]]]:
    clock.advance(5)
    b = client.batches.retrieve(batch_id)
    lines = []
    if b.output_file_id:
        content = client.files.content(b.output_file_id).content
        lines = [orjson.loads(x) for x in content.splitlines()]
    return b, lines


@pytest.mark.parametrize(
    ("endpoint", "model", "snapshot"),
    [
        ("/v1/chat/completions", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
        ("/v1/chat/completions", "gpt-4o", "gpt-4o-2024-08-06"),
        ("/v1/chat/completions", "o3-mini", "o3-mini-2025-01-31"),
        ("/v1/chat/completions", "gpt-4o-2024-11-20", "gpt-4o-2024-11-20"),
        ("/v1/chat/completions", "gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18"),
        ("/v1/responses", "gpt-4.1-mini", "gpt-4.1-mini-2025-04-14"),
        ("/v1/responses", "gpt-5-mini", "gpt-5-mini-2025-08-07"),
        ("/v1/embeddings", "text-embedding-3-small", "text-embedding-3-small"),
        ("/v1/completions", "gpt-3.5-turbo-instruct", "gpt-3.5-turbo-instruct"),
    ],
)
def test_batch_and_bodies_report_the_dated_snapshot(
    client: openai.OpenAI, clock, endpoint: str, model: str, snapshot: str
) -> None:
    batch_id = start(client, [_line(endpoint, model, i) for i in range(3)], endpoint=endpoint)
    b, lines = _finish(client, clock, batch_id)
    assert (b.status, b.model) == ("completed", snapshot)
    assert [x["response"]["body"]["model"] for x in lines] == [snapshot] * 3


@pytest.mark.parametrize(
    ("endpoint", "model"),
    [
        ("/v1/chat/completions", "gpt-4o-mini-turbo-ultra"),
        ("/v1/chat/completions", "text-embedding-3-small"),  # served, but not on this endpoint
        ("/v1/embeddings", "gpt-4o-mini"),
        ("/v1/chat/completions", "gpt-4o-mini-2099-01-01"),
    ],
)
def test_a_model_the_endpoint_does_not_serve_fails_validation(
    client: openai.OpenAI, clock, endpoint: str, model: str
) -> None:
    lines = [_line(endpoint, "text-embedding-3-small" if "embed" in endpoint else "gpt-4o-mini")]
    lines.append(_line(endpoint, model, 1))
    b, _ = _finish(client, clock, start(client, lines, endpoint=endpoint))
    assert b.status == "failed"
    assert b.model is None
    assert b.errors is not None
    err = b.errors.data[0]
    assert (err.code, err.param, err.line) == ("model_not_found", "body.model", 2)
    assert f"'{model}' is not supported by the Batch API" in (err.message or "")


@pytest.mark.parametrize(
    "emulator_config",
    [EmulatorConfig(extra_models={"my-finetune": "ft:gpt-4o-mini:acme::abc123"})],
)
def test_extra_models_from_the_configuration(client: openai.OpenAI, clock) -> None:
    b, lines = _finish(client, clock, start(client, [chat_line(1, model="my-finetune")]))
    assert b.model == "ft:gpt-4o-mini:acme::abc123"
    assert lines[0]["response"]["body"]["model"] == "ft:gpt-4o-mini:acme::abc123"
    refused, _ = _finish(client, clock, start(client, [chat_line(1, model="other")]))
    assert refused.status == "failed"


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(accept_any_model=True)])
def test_a_compatible_service_accepts_any_model(client: openai.OpenAI, clock) -> None:
    model = "meta-llama/Llama-3.3-70B-Instruct"
    b, lines = _finish(client, clock, start(client, [chat_line(1, model=model)]))
    assert (b.status, b.model, lines[0]["response"]["body"]["model"]) == ("completed", model, model)


def test_fingerprints_and_reasoning_choices(client: openai.OpenAI, clock) -> None:
    bodies = {}
    for model in ("gpt-4o-mini", "o3-mini", "gpt-5-mini"):
        _, lines = _finish(client, clock, start(client, [chat_line(1, model=model)]))
        bodies[model] = lines[0]["response"]["body"]
        ChatCompletion.model_validate(bodies[model])
    assert re.fullmatch(r"fp_[0-9a-f]{10}", bodies["gpt-4o-mini"]["system_fingerprint"])
    assert re.fullmatch(r"fp_[0-9a-f]{10}", bodies["o3-mini"]["system_fingerprint"])
    assert bodies["gpt-4o-mini"]["system_fingerprint"] != bodies["o3-mini"]["system_fingerprint"]
    assert bodies["gpt-5-mini"]["system_fingerprint"] is None
    assert "logprobs" in bodies["gpt-4o-mini"]["choices"][0]
    assert "logprobs" not in bodies["o3-mini"]["choices"][0]
    assert "logprobs" not in bodies["gpt-5-mini"]["choices"][0]


_MODEL_NAME = re.compile(
    r"""["'](gpt-[0-9][\w.-]*|o[1-9](?:-[\w-]+)?|text-embedding-[\w-]+|omni-moderation-[\w-]+"""
    r"""|dall-e-[23]|gpt-image-[\w-]+|sora-[\w-]+|davinci-002|babbage-002)["']"""
)
_SCANNED = ("README.md", "definitions.py", "dagster_openai_batch", "tests", "benchmarks")
# The catalogues themselves, the price table (it also names retired models and model families),
# and a test that names a model no catalogue knows, on purpose.
_NOT_REQUESTS = {
    REPO / "dagster_openai_batch" / "emulator" / "models.py",
    REPO / "dagster_openai_batch" / "core" / "model_catalogue.py",
    REPO / "dagster_openai_batch" / "core" / "pricing.py",
    REPO / "tests" / "dagster_layer" / "test_compatible_services.py",
    Path(__file__),
}


def test_every_model_the_repo_names_is_in_the_catalogue() -> None:
    served = {name for names in SERVED.values() for name in (*names, *names.values())}
    paths = [REPO / p for p in _SCANNED]
    files = [p for path in paths for p in ([path] if path.is_file() else path.rglob("*"))]
    found: dict[str, Path] = {}
    for f in files:
        if f.suffix in (".py", ".md", ".yaml", ".jsonl", ".json") and f not in _NOT_REQUESTS:
            for name in _MODEL_NAME.findall(f.read_text(errors="ignore")):
                found.setdefault(name, f)
    assert "gpt-4o-mini" in found  # the scan sees the repo
    assert {n: str(f) for n, f in found.items() if n not in served} == {}


def test_every_unserved_model_is_reported_on_its_own_line(client: openai.OpenAI, clock) -> None:
    lines = [chat_line(0), chat_line(1, model="nope-1"), chat_line(2, model="nope-2")]
    b, _ = _finish(client, clock, start(client, lines))
    assert b.errors is not None
    assert [(e.code, e.line) for e in b.errors.data] == [
        ("model_not_found", 2),
        ("model_not_found", 3),
    ]
