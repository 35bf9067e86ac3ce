"""A deterministic JSON value that satisfies a (structured-outputs style) JSON Schema."""

from __future__ import annotations

import math
import random
from typing import Any

# Past this nesting depth, optional branches are null and arrays minimal, so recursive schemas
# terminate.
_DEEP = 6
_WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
)


def instance_for(schema: dict[str, Any], rng: random.Random) -> Any:
    """A value valid against `schema` (object/array/string/number/integer/boolean/null, enum, const,
    anyOf/oneOf/allOf, $ref into $defs/definitions, required, min/max bounds)."""
    return _gen(schema, rng, schema, 0)


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    resolved: dict[str, Any] = node
    return resolved


def _gen(schema: Any, rng: random.Random, root: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        return _gen(_resolve(schema["$ref"], root), rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "anyOf" in schema or "oneOf" in schema:
        return _gen_union(schema, rng, root, depth)
    if "allOf" in schema:
        return _gen(_merge_all_of(schema["allOf"], root), rng, root, depth + 1)
    return _gen_typed(schema, rng, root, depth)


def _gen_union(schema: dict[str, Any], rng: random.Random, root: dict[str, Any], depth: int) -> Any:
    """A value of the first non-null option of ``anyOf`` (else ``oneOf``)."""
    choices = schema["anyOf"] if "anyOf" in schema else schema["oneOf"]
    options = [o for o in choices if not (isinstance(o, dict) and o.get("type") == "null")]
    if depth >= _DEEP and len(options) < len(choices):
        return None  # a recursive schema (`child: Node | None`) must end somewhere: null ends it
    return _gen((options or choices)[0], rng, root, depth + 1)


def _merge_all_of(parts: list[dict[str, Any]], root: dict[str, Any]) -> dict[str, Any]:
    """One schema holding every part of an ``allOf`` (their ``properties`` merged)."""
    merged: dict[str, Any] = {}
    for part in parts:
        part = _resolve(part["$ref"], root) if "$ref" in part else part
        for k, v in part.items():
            merged[k] = (
                {**merged.get(k, {}), **v} if isinstance(v, dict) and k == "properties" else v
            )
    return merged


def _kind(schema: dict[str, Any], deep: bool) -> str:
    """The JSON type to build for ``schema`` (null for an optional value deep down)."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = "null" if deep and "null" in kind else next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    return str(kind)


def _gen_typed(schema: dict[str, Any], rng: random.Random, root: dict[str, Any], depth: int) -> Any:
    deep = depth >= _DEEP
    kind = _kind(schema, deep)
    if kind == "object":
        props: dict[str, Any] = schema.get("properties", {})
        # Strict structured outputs return every property; deep recursion stops at the required
        # ones.
        keys = list(props) if not deep else schema.get("required", [])
        return {k: _gen(props.get(k, {}), rng, root, depth + 1) for k in keys}
    if kind == "array":
        # Deep down, arrays are as short as allowed (empty unless minItems), so recursive schemas
        # terminate.
        lo = schema.get("minItems", 0 if deep else 1)
        hi = max(lo, min(schema.get("maxItems", 3), lo + 2)) if not deep else lo
        return [
            _gen(schema.get("items", {}), rng, root, depth + 1) for _ in range(rng.randint(lo, hi))
        ]
    if kind in ("integer", "number"):
        return _number(schema, rng, kind == "integer")
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng)


def _number(schema: dict[str, Any], rng: random.Random, integer: bool) -> int | float:
    """A number within the schema's bounds (either bound may be missing, exclusive or negative)."""
    step = 1 if integer else 0
    lo = schema.get(
        "minimum", schema["exclusiveMinimum"] + step if "exclusiveMinimum" in schema else None
    )
    hi = schema.get(
        "maximum", schema["exclusiveMaximum"] - step if "exclusiveMaximum" in schema else None
    )
    if lo is None:
        lo = 0 if hi is None else min(0, hi - 100)
    if hi is None:
        hi = lo + 100
    if integer:
        return rng.randint(math.ceil(lo), max(math.ceil(lo), math.floor(hi)))
    return round(lo + (hi - lo) * (0.1 + 0.8 * rng.random()), 3)


def _string(schema: dict[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2025-01-01T00:00:00Z"
    if fmt == "date":
        return "2025-01-01"
    if fmt == "email":
        return f"{rng.choice(_WORDS)}@example.com"
    if fmt == "uuid":
        return f"{rng.getrandbits(32):08x}-0000-4000-8000-{rng.getrandbits(48):012x}"
    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))
    lo, hi = schema.get("minLength", 0), schema.get("maxLength")
    text = text.ljust(lo, "x")
    return text[:hi] if hi is not None else text
