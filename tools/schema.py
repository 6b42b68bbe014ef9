"""JSON Schema shaping for tool results.

pydantic writes ``X | None`` as ``anyOf: [{type: X}, {type: null}]``. MCP clients validate
every structured result against the tool's output schema, and ``anyOf`` makes a validator try
each branch: for a search result with many optional provenance fields that dominated the
client's round trip (jsonschema, about 10 ms of a 15 ms call). ``type: [X, "null"]`` means the
same thing and is checked in one step.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def slim_schema(schema: Any, output: bool = False) -> None:
    """A published tool schema without what only costs an agent's context, in place: every
    ``title`` (pydantic's field name in title case, or the model's name, which its ``$defs`` key
    already gives), models' docstrings, ``additionalProperties: true`` (the default), ``default: null`` (a field not required may be left out),
    nullable scalars as type arrays (:func:`compact_nullable`) and, in an output schema, defaults
    and descriptions (results carry their values; the tool's description says what they are).
    What a value may be is unchanged."""
    if isinstance(schema, list):
        for v in schema:
            slim_schema(v, output)
        return
    if not isinstance(schema, dict):
        return
    if isinstance(schema.get("title"), str):
        del schema["title"]
    if "$ref" not in schema and "properties" in schema and isinstance(schema.get("description"), str):
        del schema["description"]  # a model's docstring: its fields say what it holds
    if schema.get("additionalProperties") is True:
        del schema["additionalProperties"]  # JSON Schema's default
    if output:
        schema.pop("default", None)
        if isinstance(schema.get("description"), str):
            del schema["description"]  # the tool's description says what its result holds
    elif "default" in schema and schema["default"] is None:
        del schema["default"]  # not required is optional
    if isinstance(schema.get("properties"), dict):
        compact_nullable(schema)
        for v in schema["properties"].values():
            slim_schema(v, output)
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            for v in schema[key].values():
                slim_schema(v, output)
    for key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "not"):
        if key in schema:
            slim_schema(schema[key], output)


def compact_nullable(schema: dict[str, Any], *_: Any) -> None:
    """``json_schema_extra`` hook: rewrite nullable scalar properties as type arrays, in place."""
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if not isinstance(branches, list) or len(branches) != 2:
            continue
        null = [b for b in branches if b == {"type": "null"}]
        other = [b for b in branches if b != {"type": "null"}]
        if len(null) != 1 or len(other) != 1:
            continue
        kind = other[0]
        if set(kind) - {"type", "items", "additionalProperties", "minimum", "maximum", "enum"}:
            continue  # a $ref or a nested object: leave it as it is
        t = kind.get("type")
        if not isinstance(t, str):
            continue
        del prop["anyOf"]
        prop.update({k: v for k, v in kind.items() if k != "type"})
        prop["type"] = [t, "null"]
        if "enum" in prop:
            prop["enum"] = [*prop["enum"], None]


class Frozen(BaseModel):
    """The base of every result model: immutable, its nullable fields written compactly in the
    JSON schema (:func:`compact_nullable`)."""

    model_config = ConfigDict(frozen=True, json_schema_extra=compact_nullable)
