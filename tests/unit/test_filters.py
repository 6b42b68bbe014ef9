"""Metadata filters compiled to SQL and run against a real SQLite JSON column: parsing, limits and
what only SQL does. The cases shared with the Qdrant compiler run on both in
tests/unit/test_filter_engines.py."""

from __future__ import annotations

from contextlib import closing

import pytest

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.filters import MAX_DEPTH, compile_filter, parse_filter
from tests.fixtures.filter_cases import (
    ROWS,
    rows_db,
    run_sql,
)

run = run_sql


@pytest.fixture(scope="module")
def db():
    with closing(rows_db()) as con:
        yield con


def test_values_are_bound_not_interpolated(db):
    assert run(db, {"lang": "en' OR '1'='1"}) == set()
    sql, params = compile_filter({"lang": "x'); DROP TABLE docs; --"})
    assert "DROP" not in sql and "x'); DROP TABLE docs; --" in params
    assert run(db, {"lang": "x'); DROP TABLE docs; --"}) == set()
    assert db.execute("SELECT COUNT(*) FROM docs").fetchone()[0] == len(ROWS)


@pytest.mark.parametrize(
    "flt,needle",
    [
        ({"lang": {"$regex": "e.*"}}, "unknown operator '$regex'"),
        ({"$nor": [{"lang": "en"}]}, "unknown operator '$nor'"),
        ({"a') OR 1=1 --": "x"}, "field name"),
        ({'a"b': 1}, "field name"),
        ({"": 1}, "field name"),
        ({"x" * 200: 1}, "field name"),
        ({"lang": {"$in": "en"}}, "$in"),
        ({"lang": {"$in": []}}, "$in"),
        ({"lang": {"$exists": "yes"}}, "$exists"),
        ({"lang": {}}, "empty operator"),
        ({"lang": ["en", "de"]}, "must be a string, number"),
        ({"lang": {"$gt": {"a": 1}}}, "must be a string, number"),
        ({"year": 2**70}, "64-bit"),
        ({"$or": []}, "$or"),
        ({"$and": {"lang": "en"}}, "$and"),
        ({"$or": ["lang"]}, "expected a JSON object"),
        ({"$not": "lang"}, "expected a JSON object"),
        ([{"lang": "en"}], "expected a JSON object"),
        (42, "expected a JSON object"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed(flt, needle):
    with pytest.raises(InvalidInput) as ei:
        compile_filter(parse_filter(flt))
    assert "malformed filter" in str(ei.value) or "filter value" in str(ei.value)
    assert needle in str(ei.value)


def test_too_deep():
    flt: dict = {"lang": "en"}
    for _ in range(MAX_DEPTH + 1):
        flt = {"$not": flt}
    with pytest.raises(InvalidInput, match="deeper than"):
        compile_filter(flt)
    ok: dict = {"lang": "en"}
    for _ in range(MAX_DEPTH - 1):
        ok = {"$and": [ok]}
    compile_filter(ok)


def test_too_many_clauses():
    with pytest.raises(InvalidInput, match="clauses"):
        compile_filter({"$or": [{f"f{i}": i} for i in range(100)]})


@pytest.mark.parametrize("empty", [None, "", {}])
def test_no_filter(empty):
    assert parse_filter(empty) is None


@pytest.mark.parametrize(
    "flt,expect",
    [
        ({"lang": {"$in": [None, "de"]}}, {"b", "d", "e", "f"}),
        ({"lang": {"$in": [None]}}, {"d", "e", "f"}),
        ({"lang": {"$nin": [None, "de"]}}, {"a", "c"}),
        ({"lang": {"$nin": [None]}}, {"a", "b", "c"}),
    ],
)
def test_null_inside_in_and_nin_stands_for_a_missing_field(db, flt, expect):
    assert run(db, flt) == expect
