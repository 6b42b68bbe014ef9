"""The metadata filter language: parsed once into a small tree, then compiled per engine.

A filter is a JSON object. Each key is a metadata field (letters, digits, ``_ . -``; dots reach
into nested objects); its value is either a plain value (equality) or an object of operators::

    {"lang": "en", "year": {"$gte": 2020}, "tag": {"$in": ["a", "b"]}}
    {"$or": [{"lang": "en"}, {"lang": "de"}]}

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists``; combinators ``$and $or $not``.
As in MongoDB, ``$ne`` and ``$nin`` also match documents without the field, ``null`` equals a
missing field, and ``$not`` is the exact complement of its filter. A list-valued field matches
when one of its elements does (``{"tags": "a"}`` matches ``"tags": ["a", "b"]``; ``$ne`` and
``$nin`` when none does), as in MongoDB and in Qdrant's payload filters.

``parse_filter`` validates a filter and returns its tree (:class:`Cond`, :class:`And`,
:class:`Or`, :class:`Not`); the tree is what crosses the index contract. Each engine compiles
it: :func:`compile_filter` here to parameterised SQL for the embedded store (field names are
validated and values bound as parameters, so a filter can never inject SQL), and the Qdrant
engine to Qdrant's filter objects. Both walk the tree with :class:`FilterCompiler`, and an
engine that cannot test a missing field directly asks :func:`missing_value` what a condition
says about a document without it.
"""

from __future__ import annotations

import abc
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rerank_mcp.errors import InvalidInput

_FIELD_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_CMP = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = (*_CMP, "$in", "$nin", "$exists")
MAX_DEPTH = 8
MAX_CLAUSES = 64


@dataclass(frozen=True)
class Cond:
    """``field op value``. ``value`` is a scalar (str, int, float, bool or None), a tuple of
    scalars for ``$in``/``$nin``, or a bool for ``$exists``."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class And:
    items: tuple[Filter, ...]  # empty: matches everything


@dataclass(frozen=True)
class Or:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    item: Filter


Filter = Cond | And | Or | Not


def _scalar(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise InvalidInput(f"filter value at {where} is out of the 64-bit integer range")
        if isinstance(value, float) and value != value:
            raise InvalidInput(f"filter value at {where} is not a finite number")
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput(f"filter value at {where} contains unpaired surrogates (invalid Unicode)") from None
        return value
    raise InvalidInput(f"filter value at {where} must be a string, number, boolean or null, got {type(value).__name__}")


class _Parser:
    def __init__(self) -> None:
        self.clauses = 0

    @staticmethod
    def field(name: Any) -> str:
        if not isinstance(name, str) or not _FIELD_RE.match(name):
            raise InvalidInput(
                f"malformed filter: field name {name!r} must be 1-128 letters, digits, '_', '.' or '-'"
            )
        return name

    def parse(self, flt: Any, depth: int = 0) -> Filter:
        if depth > MAX_DEPTH:
            raise InvalidInput(f"malformed filter: nested deeper than {MAX_DEPTH} levels")
        if not isinstance(flt, dict):
            raise InvalidInput(f"malformed filter: expected a JSON object, got {type(flt).__name__}")
        parts: list[Filter] = []
        for key, value in flt.items():
            self.clauses += 1
            if self.clauses > MAX_CLAUSES:
                raise InvalidInput(f"malformed filter: more than {MAX_CLAUSES} clauses")
            if key in ("$and", "$or"):
                if not isinstance(value, list) or not value:
                    raise InvalidInput(f"malformed filter: {key} takes a non-empty list of filters")
                items = tuple(self.parse(v, depth + 1) for v in value)
                parts.append(And(items) if key == "$and" else Or(items))
            elif key == "$not":
                parts.append(Not(self.parse(value, depth + 1)))
            elif isinstance(key, str) and key.startswith("$"):
                raise InvalidInput(f"malformed filter: unknown operator {key!r} at top level")
            else:
                parts.extend(self.condition(key, value))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def condition(self, name: Any, value: Any) -> list[Filter]:
        name = self.field(name)
        if not isinstance(value, dict):
            return [Cond(name, "$eq", _scalar(value, name))]
        if not value:
            raise InvalidInput(f"malformed filter: empty operator object for field {name!r}")
        out: list[Filter] = []
        for op, arg in value.items():
            if op in _CMP:
                out.append(Cond(name, op, _scalar(arg, f"{name}.{op}")))
            elif op in ("$in", "$nin"):
                if not isinstance(arg, list) or not arg or len(arg) > 1000:
                    raise InvalidInput(f"malformed filter: {name}.{op} takes a list of 1 to 1000 values")
                out.append(Cond(name, op, tuple(_scalar(v, f"{name}.{op}") for v in arg)))
            elif op == "$exists":
                if not isinstance(arg, bool):
                    raise InvalidInput(f"malformed filter: {name}.$exists takes true or false")
                out.append(Cond(name, op, arg))
            else:
                raise InvalidInput(
                    f"malformed filter: unknown operator {op!r} for field {name!r}; use one of {', '.join(OPERATORS)}"
                )
        return out


def parse_filter(flt: Any) -> Filter | None:
    """Validate a filter given as a dict or a JSON string; ``None``/empty means no filter."""
    if isinstance(flt, (Cond, And, Or, Not)):
        return flt
    if flt is None or flt == "" or flt == {}:
        return None
    if isinstance(flt, str):
        try:
            flt = json.loads(flt)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"malformed filter: not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(flt, dict):
        raise InvalidInput(f"malformed filter: expected a JSON object, got {type(flt).__name__}")
    return _Parser().parse(flt)


# ------------------------------------------------------------------------------------ compilers
T = TypeVar("T")


class FilterCompiler(abc.ABC, Generic[T]):
    """The walk over a filter tree that every engine's compiler shares: ``$and``, ``$or`` and
    ``$not`` become :meth:`all_of`, :meth:`any_of` and :meth:`negate` of the compiled children
    (in the tree's order), each condition :meth:`cond`. ``$not`` must be the exact complement: a
    condition on a missing field is false, never unknown."""

    def compile(self, f: Filter) -> T:
        if isinstance(f, And):
            return self.all_of([self.compile(x) for x in f.items])
        if isinstance(f, Or):
            return self.any_of([self.compile(x) for x in f.items])
        if isinstance(f, Not):
            return self.negate(self.compile(f.item))
        return self.cond(f)

    @abc.abstractmethod
    def all_of(self, items: Sequence[T]) -> T:
        """All of ``items`` (none: matches everything)."""

    @abc.abstractmethod
    def any_of(self, items: Sequence[T]) -> T:
        """At least one of ``items`` (never empty)."""

    @abc.abstractmethod
    def negate(self, item: T) -> T:
        """The complement of ``item``."""

    @abc.abstractmethod
    def cond(self, c: Cond) -> T:
        """One condition."""


def missing_value(c: Cond) -> bool:
    """What condition ``c`` says about a document without the field (MongoDB's semantics:
    ``null`` equals missing, ``$ne``/``$nin`` match it, order comparisons never do)."""
    if c.op == "$exists":
        return not c.value
    if c.op == "$eq":
        return c.value is None
    if c.op == "$ne":
        return c.value is not None
    if c.op == "$in":
        return None in c.value
    if c.op == "$nin":
        return None not in c.value
    return False


# ------------------------------------------------------------------------------------ SQL
class _SqlCompiler(FilterCompiler[str]):
    def __init__(self, column: str) -> None:
        self.column = column
        self.params: list[Any] = []

    def path(self, name: str) -> str:
        return "$." + ".".join(f'"{part}"' for part in name.split("."))

    def field(self, name: str) -> str:
        self.params.append(self.path(name))
        return f"json_extract({self.column}, ?)"

    def any_element(self, name: str, test: str) -> str:
        """``test`` (on ``value``) holds for the field's value, or for an element of a list-valued
        field: json_each gives a scalar as one row and a list as its elements (none when missing)."""
        self.params.append(self.path(name))
        return f"EXISTS (SELECT 1 FROM json_each({self.column}, ?) WHERE {test})"

    def value(self, v: Any) -> None:
        self.params.append((1 if v else 0) if isinstance(v, bool) else v)  # json_extract gives 1/0 for booleans

    def all_of(self, items: Sequence[str]) -> str:
        return "(" + " AND ".join(items) + ")" if items else "1"

    def any_of(self, items: Sequence[str]) -> str:
        return "(" + " OR ".join(items) + ")"

    def negate(self, item: str) -> str:
        # the complement: a condition that is NULL (field missing) counts as false
        return "NOT COALESCE(" + item + ", 0)"

    def membership(self, c: Cond) -> str:
        """``$in`` / ``$nin``; like MongoDB, null in the list stands for a missing or null field.
        Parameters are appended in the order their ``?`` appear."""
        has_null = any(v is None for v in c.value)
        vals = [v for v in c.value if v is not None]

        def listed() -> str:  # the value, or an element of a list, is one of ``vals``
            sql = self.any_element(c.field, f"value IN ({','.join('?' * len(vals))})")
            for v in vals:
                self.value(v)
            return sql if c.op == "$in" else f"NOT {sql}"

        if c.op == "$in":
            parts = ([f"{self.field(c.field)} IS NULL"] if has_null else []) + ([listed()] if vals else [])
            return "(" + " OR ".join(parts) + ")"
        if has_null:  # the field must exist (not null) and be none of the values
            return "(" + " AND ".join([f"{self.field(c.field)} IS NOT NULL"] + ([listed()] if vals else [])) + ")"
        return listed()  # missing or null fields match (no element is listed)

    def cond(self, c: Cond) -> str:
        op, arg = c.op, c.value
        if op in ("$in", "$nin"):
            return self.membership(c)
        if op == "$exists":
            return f"{self.field(c.field)} IS {'NOT ' if arg else ''}NULL"
        if op in ("$eq", "$ne") and arg is None:
            return f"{self.field(c.field)} IS {'NOT ' if op == '$ne' else ''}NULL"
        if op == "$ne":  # like MongoDB: true where the field is missing or null, or no element is equal
            sql = self.any_element(c.field, "value = ?")
            self.value(arg)
            return f"NOT {sql}"
        sql = self.any_element(c.field, f"value {_CMP[op]} ?")
        self.value(arg)
        return sql


def compile_filter(flt: Filter | dict, column: str = "metadata") -> tuple[str, list[Any]]:
    """Compile a filter (its tree, or a dict to parse first) into a SQL condition and its parameters."""
    tree = parse_filter(flt) if not isinstance(flt, (Cond, And, Or, Not)) else flt
    c = _SqlCompiler(column)
    return (c.compile(tree) if tree is not None else "1"), c.params
