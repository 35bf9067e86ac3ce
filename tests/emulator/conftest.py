"""Helpers for the emulator tests: contract validation (OpenAPI + line schemas) and input-file
builders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from emu_helpers import line_validator, validate_response
from openapi_core import OpenAPI

SPEC_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "openai-spec"


def _relax(schema: dict[str, Any]) -> None:
    """Optional properties may be null on the real API (see the spec README)."""
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        if name not in required:
            schema["properties"][name] = {"anyOf": [prop, {"type": "null"}]}


@pytest.fixture(scope="session")
def openapi() -> OpenAPI:
    spec = json.loads((SPEC_DIR / "files-batches.openapi.json").read_text())
    schemas = spec["components"]["schemas"]
    listing = schemas["ListFilesResponse"]
    listing["required"] = [r for r in listing["required"] if r not in ("first_id", "last_id")]
    for schema in schemas.values():
        _relax(schema)
    return OpenAPI.from_dict(spec)


@pytest.fixture(scope="session")
def line_schemas() -> dict[str, Any]:
    return json.loads((SPEC_DIR / "batch-lines.2025-06.schemas.json").read_text())


@pytest.fixture
def check(openapi: OpenAPI) -> Callable[[Any], Any]:
    """Validate a `with_raw_response` result against the OpenAPI spec; returns the raw JSON."""
    return lambda raw: validate_response(openapi, raw)


@pytest.fixture
def check_lines(line_schemas: dict[str, Any]) -> Callable[[bytes], list[dict[str, Any]]]:
    """Parse a result file and validate every line against BatchRequestOutput."""
    return line_validator(line_schemas)
