"""Metadata filters, compiled to parameterised SQL over the documents' JSON metadata.

A filter is a JSON object. Each key is a metadata field (letters, digits, ``_ . -``); its
value is either a plain value (equality) or an object of operators::

    {"lang": "en", "year": {"$gte": 2020}, "tag": {"$in": ["a", "b"]}}
    {"$or": [{"lang": "en"}, {"lang": "de"}]}

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists``; combinators ``$and $or $not``.
As in MongoDB, ``$ne`` and ``$nin`` also match documents without the field, and ``$not`` is
the exact complement of its filter.
Field names are validated and values are bound as parameters, so a filter can never inject SQL.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rerank_mcp.errors import InvalidInput

_FIELD_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_CMP = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
MAX_DEPTH = 8
MAX_CLAUSES = 64


def _scalar(value: Any, where: str) -> Any:
    if isinstance(value, bool):
        return 1 if value else 0  # json_extract returns 1/0 for JSON booleans
    if value is None or isinstance(value, (int, float, str)):
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise InvalidInput(f"filter value at {where} is out of the 64-bit integer range")
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput(f"filter value at {where} contains unpaired surrogates (invalid Unicode)") from None
        return value
    raise InvalidInput(f"filter value at {where} must be a string, number, boolean or null, got {type(value).__name__}")


class _Compiler:
    def __init__(self, column: str) -> None:
        self.column = column
        self.params: list[Any] = []
        self.clauses = 0

    def field(self, name: str) -> str:
        if not isinstance(name, str) or not _FIELD_RE.match(name):
            raise InvalidInput(
                f"malformed filter: field name {name!r} must be 1-128 letters, digits, '_', '.' or '-'"
            )
        path = "$." + ".".join(f'"{part}"' for part in name.split("."))
        self.params.append(path)
        return f"json_extract({self.column}, ?)"

    def compile(self, flt: Any, depth: int = 0) -> str:
        if depth > MAX_DEPTH:
            raise InvalidInput(f"malformed filter: nested deeper than {MAX_DEPTH} levels")
        if not isinstance(flt, dict):
            raise InvalidInput(f"malformed filter: expected a JSON object, got {type(flt).__name__}")
        if not flt:
            return "1"
        parts = []
        for key, value in flt.items():
            self.clauses += 1
            if self.clauses > MAX_CLAUSES:
                raise InvalidInput(f"malformed filter: more than {MAX_CLAUSES} clauses")
            if key in ("$and", "$or"):
                if not isinstance(value, list) or not value:
                    raise InvalidInput(f"malformed filter: {key} takes a non-empty list of filters")
                joiner = " AND " if key == "$and" else " OR "
                parts.append("(" + joiner.join(self.compile(v, depth + 1) for v in value) + ")")
            elif key == "$not":
                # the complement: a condition that is NULL (field missing) counts as false
                parts.append("NOT COALESCE(" + self.compile(value, depth + 1) + ", 0)")
            elif key.startswith("$"):
                raise InvalidInput(f"malformed filter: unknown operator {key!r} at top level")
            else:
                parts.append(self.condition(key, value, depth))
        return "(" + " AND ".join(parts) + ")"

    def condition(self, name: str, value: Any, depth: int) -> str:
        if not isinstance(value, dict):
            if value is None:
                return f"{self.field(name)} IS NULL"
            col = self.field(name)
            self.params.append(_scalar(value, name))
            return f"{col} = ?"
        if not value:
            raise InvalidInput(f"malformed filter: empty operator object for field {name!r}")
        parts = []
        for op, arg in value.items():
            if op in _CMP:
                col = self.field(name)
                if arg is None and op in ("$eq", "$ne"):
                    parts.append(f"{col} IS {'NOT ' if op == '$ne' else ''}NULL")
                    continue
                if op == "$ne":  # like MongoDB: true where the field is missing or null
                    col2 = self.field(name)
                    self.params.append(_scalar(arg, f"{name}.{op}"))
                    parts.append(f"({col} IS NULL OR {col2} != ?)")
                    continue
                self.params.append(_scalar(arg, f"{name}.{op}"))
                parts.append(f"{col} {_CMP[op]} ?")
            elif op in ("$in", "$nin"):
                if not isinstance(arg, list) or not arg or len(arg) > 1000:
                    raise InvalidInput(f"malformed filter: {name}.{op} takes a list of 1 to 1000 values")
                col = self.field(name)
                col2 = self.field(name) if op == "$nin" else ""
                vals = [_scalar(v, f"{name}.{op}") for v in arg]
                self.params.extend(vals)
                marks = ",".join("?" * len(vals))
                if op == "$nin":  # like MongoDB: true where the field is missing or null
                    parts.append(f"({col} IS NULL OR {col2} NOT IN ({marks}))")
                else:
                    parts.append(f"{col} IN ({marks})")
            elif op == "$exists":
                if not isinstance(arg, bool):
                    raise InvalidInput(f"malformed filter: {name}.$exists takes true or false")
                col = self.field(name)
                parts.append(f"{col} IS {'NOT ' if arg else ''}NULL")
            else:
                raise InvalidInput(
                    f"malformed filter: unknown operator {op!r} for field {name!r}; "
                    f"use one of {', '.join(list(_CMP) + ['$in', '$nin', '$exists'])}"
                )
        return "(" + " AND ".join(parts) + ")"


def parse_filter(flt: Any) -> dict | None:
    """Accept a filter as a dict or a JSON string; ``None``/empty means no filter."""
    if flt is None or flt == "" or flt == {}:
        return None
    if isinstance(flt, str):
        try:
            flt = json.loads(flt)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"malformed filter: not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(flt, dict):
        raise InvalidInput(f"malformed filter: expected a JSON object, got {type(flt).__name__}")
    return flt


def compile_filter(flt: dict, column: str = "metadata") -> tuple[str, list[Any]]:
    """Compile a filter into a SQL boolean expression and its parameters."""
    c = _Compiler(column)
    sql = c.compile(flt)
    return sql, c.params
