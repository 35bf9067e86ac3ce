"""The JSON-schema subset strict structured outputs accept, checked before anything is sent.

With ``strict: true`` the service refuses, request by request, a schema it cannot enforce: an
object not closed by ``additionalProperties: false`` (an open ``dict[str, Any]`` field), a
property left out of ``required``, a composition keyword (``allOf``, ``not``, ``oneOf``,
``if``/``then``/``else``, ``dependentRequired``/``dependentSchemas``), a value without a type
(``Any``), an array without ``items`` (a tuple), a string ``format`` outside its list, a root
that is not an object, or a schema past its size limits (10 levels of nesting, 5,000
properties, 1,000 enum values). :func:`strict_schema_problems` names each such place.

>>> schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": []}
>>> for problem in strict_schema_problems(schema):
...     print(problem)
(root): an open object (additionalProperties is not false); give it fixed fields (a nested ...
(root): 'a' not in 'required'; every field must be required (make an optional one nullable: ...
"""

from collections.abc import Iterator
from typing import Any, Final

UNSUPPORTED_KEYWORDS: Final[dict[str, str]] = {
    "allOf": "merge the models into one",
    "not": "describe what is allowed instead",
    "oneOf": "use a plain union (anyOf), not a discriminated one",
    "if": "use anyOf",
    "then": "use anyOf",
    "else": "use anyOf",
    "dependentRequired": "make every field required (nullable where optional)",
    "dependentSchemas": "use anyOf",
}
"""Keywords strict structured outputs refuse, with what to do instead."""
SUPPORTED_FORMATS: Final = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
MAX_NESTING: Final = 10
MAX_PROPERTIES: Final = 5_000
MAX_ENUM_VALUES: Final = 1_000


def _where(path: tuple[str, ...]) -> str:
    """``('properties', 'a', 'items', '$defs'…)`` as the field path ``a[]``."""
    names: list[str] = []
    for i, part in enumerate(path):
        before = path[i - 1] if i else ""
        if before in ("properties", "$defs", "definitions"):
            names.append(("." if names else "") + part)
        elif part == "items":
            names.append("[]")
    return "".join(names) or "(root)"


def strict_schema_problems(schema: Any) -> list[str]:
    """What strict structured outputs would refuse in ``schema``, one sentence per place."""
    if not isinstance(schema, dict):
        return ["(root): the schema must be a JSON object"]
    problems = []
    if "anyOf" in schema or schema.get("type") != "object":
        problems.append("(root): the root must be an object (not anyOf); wrap it in a model")
    properties = enums = 0
    for path, node, depth in _nodes(schema, (), 0):
        where = _where(path)
        problems.extend(_node_problems(where, node))
        if isinstance(node.get("properties"), dict):
            properties += len(node["properties"])
            if depth > MAX_NESTING:
                problems.append(
                    f"{where}: nested {depth} objects deep (at most {MAX_NESTING}); flatten it"
                )
        if isinstance(node.get("enum"), list):
            enums += len(node["enum"])
    if properties > MAX_PROPERTIES:
        problems.append(f"(root): {properties:,} properties in all (at most {MAX_PROPERTIES:,})")
    if enums > MAX_ENUM_VALUES:
        problems.append(f"(root): {enums:,} enum values in all (at most {MAX_ENUM_VALUES:,})")
    return problems


def _node_problems(where: str, node: dict[str, Any]) -> Iterator[str]:
    for keyword, fix in UNSUPPORTED_KEYWORDS.items():
        if keyword in node:
            yield f"{where}: '{keyword}' is not supported; {fix}"
    is_object = node.get("type") == "object" or "properties" in node
    if is_object and node.get("additionalProperties") is not False:
        yield (
            f"{where}: an open object (additionalProperties is not false); give it fixed "
            "fields (a nested BaseModel)"
        )
    properties = node.get("properties")
    if isinstance(properties, dict):
        left_out = [name for name in properties if name not in (node.get("required") or [])]
        if left_out:
            yield (
                f"{where}: {', '.join(map(repr, left_out))} not in 'required'; every field must "
                "be required (make an optional one nullable: `x: str | None`)"
            )
    if not any(key in node for key in ("type", "anyOf", "$ref", "enum", "const")):
        yield f"{where}: no type (Any); give it a type"
    if node.get("type") == "array" and not isinstance(node.get("items"), dict):
        yield f"{where}: an array without `items` (a tuple); use list[...] of one type"
    fmt = node.get("format")
    if fmt is not None and fmt not in SUPPORTED_FORMATS:
        yield (
            f"{where}: format {fmt!r} is not supported (only "
            f"{', '.join(sorted(SUPPORTED_FORMATS))}); use a plain str"
        )


def _nodes(
    node: dict[str, Any], path: tuple[str, ...], depth: int
) -> Iterator[tuple[tuple[str, ...], dict[str, Any], int]]:
    """Every schema in ``node`` with its path and object depth (``node`` first)."""
    depth += "properties" in node
    yield path, node, depth
    for key in ("$defs", "definitions", "properties"):
        children = node.get(key)
        if isinstance(children, dict):
            for name, child in children.items():
                if isinstance(child, dict):
                    # A definition is reached through a $ref: its depth is counted from the root.
                    yield from _nodes(
                        child, (*path, key, name), 0 if key != "properties" else depth
                    )
    for key in ("items", "additionalProperties", "not", "if", "then", "else"):
        child = node.get(key)
        if isinstance(child, dict):
            yield from _nodes(child, (*path, key), depth)
    for key in ("anyOf", "oneOf", "allOf"):
        for i, child in enumerate(node.get(key) or []):
            if isinstance(child, dict):
                yield from _nodes(child, (*path, key, str(i)), depth)
