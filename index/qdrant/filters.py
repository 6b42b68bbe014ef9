"""The filter tree (:mod:`rerank_mcp.index.filters`) compiled to Qdrant ``Filter`` objects over
payload keys, with the SQL compiler's (MongoDB-like) semantics: ``$ne``/``$nin`` match a missing
field, ``null`` equals missing (Qdrant's ``is_empty``), ``$not`` is the exact complement
(conditions here are two-valued: a missing field makes a comparison false, as
``COALESCE(..., 0)`` does in SQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.filters import Cond, Filter, FilterCompiler, missing_value
from rerank_mcp.index.qdrant.client import models


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_datetime(v: str) -> bool:
    try:
        datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


class QdrantFilterCompiler(FilterCompiler[Any]):
    """The tree to Qdrant conditions over payload keys ``prefix + field``."""

    def __init__(self, prefix: str) -> None:
        self.m = models()
        self.prefix = prefix

    def never(self):
        return self.m.HasIdCondition(has_id=[])

    def always(self):
        return self.m.Filter()

    def all_of(self, items: Sequence[Any]):
        return self.m.Filter(must=list(items)) if items else self.always()

    def any_of(self, items: Sequence[Any]):
        return self.m.Filter(should=list(items))

    def negate(self, item: Any):
        return self.m.Filter(must_not=[item])

    def empty(self, key: str):
        return self.m.IsEmptyCondition(is_empty=self.m.PayloadField(key=key))

    def eq(self, key: str, v: Any):
        m = self.m
        if v is None:
            return self.empty(key)
        if isinstance(v, (str, bool)) or (isinstance(v, int) and abs(v) > 2**53):
            return m.FieldCondition(key=key, match=m.MatchValue(value=v))
        # numbers compare by value, ints and floats alike (2 == 2.0, as in SQL)
        return m.FieldCondition(key=key, range=m.Range(gte=v, lte=v))

    def member_of(self, key: str, values: Sequence[Any]):
        m = self.m
        strs = [v for v in values if isinstance(v, str)]
        parts = [m.FieldCondition(key=key, match=m.MatchAny(any=strs))] if strs else []
        parts += [self.eq(key, v) for v in dict.fromkeys(v for v in values if not isinstance(v, str))]
        return parts[0] if len(parts) == 1 else m.Filter(should=parts)

    def cond(self, c: Cond):
        m = self.m
        if any(not part for part in c.field.split(".")):  # no payload key can have an empty name
            return self.always() if missing_value(c) else self.never()
        key = self.prefix + c.field
        op, v = c.op, c.value
        if op == "$exists":
            return m.Filter(must_not=[self.empty(key)]) if v else self.empty(key)
        if op == "$eq":
            return self.eq(key, v)
        if op == "$ne":
            return m.Filter(must_not=[self.eq(key, v)])
        if op == "$in":
            return self.member_of(key, v)
        if op == "$nin":
            return m.Filter(must_not=[self.member_of(key, v)])
        bound = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}[op]
        if v is None:  # an order comparison with null holds for nothing
            return self.never()
        if _is_number(v):
            return m.FieldCondition(key=key, range=m.Range(**{bound: v}))
        if isinstance(v, str) and _is_datetime(v):
            return m.FieldCondition(key=key, range=m.DatetimeRange(**{bound: v}))
        raise InvalidInput(
            f"filter {c.field}.{op}: the qdrant backend compares only numbers and ISO 8601 dates "
            f"with {op}, got {v!r}"
        )


def compile_filter(flt: Filter | None, prefix: str = "metadata."):
    """Compile a parsed filter into a ``qdrant_client.models.Filter`` over payload keys
    ``prefix + field`` (None for no filter)."""
    if flt is None:
        return None
    out = QdrantFilterCompiler(prefix).compile(flt)
    m = models()
    return out if isinstance(out, m.Filter) else m.Filter(must=[out])
