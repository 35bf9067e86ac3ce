"""Build a deterministic JSON value that satisfies a (structured-outputs style) JSON Schema."""

from __future__ import annotations

import random
from typing import Any

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


def instance_for(schema: dict[str, Any], rng: random.Random) -> Any:
    """A value valid against `schema` (object/array/string/number/integer/boolean/null, enum, const,
    anyOf/oneOf/allOf, $ref into $defs/definitions, required, min/max bounds)."""
    return _gen(schema, rng, schema, 0)


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _gen(schema: Any, rng: random.Random, root: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        return _gen(_resolve(schema["$ref"], root), rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if not (isinstance(o, dict) and o.get("type") == "null")]
            return _gen((options or schema[key])[0], rng, root, depth + 1)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _resolve(part["$ref"], root) if "$ref" in part else part
            for k, v in part.items():
                merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) and k == "properties" else v
        return _gen(merged, rng, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props: dict[str, Any] = schema.get("properties", {})
        # Strict structured outputs return every property; deep recursion stops at the required ones.
        keys = list(props) if depth < 8 else schema.get("required", [])
        return {k: _gen(props.get(k, {}), rng, root, depth + 1) for k in keys}
    if kind == "array":
        lo = schema.get("minItems", 1)
        hi = max(lo, min(schema.get("maxItems", 3), lo + 2)) if depth < 8 else lo
        return [_gen(schema.get("items", {}), rng, root, depth + 1) for _ in range(rng.randint(lo, hi))]
    if kind == "integer":
        lo = int(schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1))
        hi = int(schema.get("maximum", schema.get("exclusiveMaximum", lo + 101) - 1))
        return rng.randint(lo, max(lo, hi))
    if kind == "number":
        lo = float(schema.get("minimum", schema.get("exclusiveMinimum", 0.0)))
        hi = float(schema.get("maximum", schema.get("exclusiveMaximum", lo + 100.0)))
        return round(lo + (hi - lo) * (0.1 + 0.8 * rng.random()), 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng)


def _string(schema: dict[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2025-01-01T00:00:00Z"
    if fmt == "date":
        return "2025-01-01"
    if fmt == "email":
        return f"{rng.choice(_WORDS)}@example.com"
    if fmt == "uuid":
        return "%08x-0000-4000-8000-%012x" % (rng.getrandbits(32), rng.getrandbits(48))
    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))
    lo, hi = schema.get("minLength", 0), schema.get("maxLength")
    text = text.ljust(lo, "x")
    return text[:hi] if hi is not None else text
