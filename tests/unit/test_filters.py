"""Metadata filters compiled to SQL and run against a real SQLite JSON column."""

from __future__ import annotations

import json
import sqlite3

import pytest

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.filters import MAX_DEPTH, compile_filter, parse_filter

ROWS = {
    "a": {"lang": "en", "year": 2019, "tags": "x", "score": 0.5, "draft": True, "nested": {"k": "v1"}},
    "b": {"lang": "de", "year": 2021, "tags": "y", "score": 1.5, "draft": False, "nested": {"k": "v2"}},
    "c": {"lang": "en", "year": 2023, "score": 2.5, "draft": False},
    "d": {"lang": None, "year": 2020},
    "e": {},
}


@pytest.fixture(scope="module")
def db():
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE docs (id TEXT, metadata TEXT)")
    con.executemany("INSERT INTO docs VALUES (?, ?)", [(k, json.dumps(v)) for k, v in ROWS.items()])
    yield con
    con.close()


def run(db, flt) -> set[str]:
    sql, params = compile_filter(parse_filter(flt) or {})
    return {r[0] for r in db.execute(f"SELECT id FROM docs WHERE {sql}", params)}


ALL = set(ROWS)


@pytest.mark.parametrize(
    "flt,expect",
    [
        ({"lang": "en"}, {"a", "c"}),
        ({"lang": {"$eq": "de"}}, {"b"}),
        ({"year": {"$gt": 2020}}, {"b", "c"}),
        ({"year": {"$gte": 2021}}, {"b", "c"}),
        ({"year": {"$lt": 2020}}, {"a"}),
        ({"year": {"$lte": 2020}}, {"a", "d"}),
        ({"year": {"$gte": 2020, "$lt": 2023}}, {"b", "d"}),
        ({"score": {"$gt": 1.0}}, {"b", "c"}),
        ({"lang": {"$in": ["de", "fr"]}}, {"b"}),
        ({"draft": True}, {"a"}),
        ({"draft": False}, {"b", "c"}),
        ({"nested.k": "v2"}, {"b"}),
        ({"tags": {"$exists": True}}, {"a", "b"}),
        ({"tags": {"$exists": False}}, {"c", "d", "e"}),
        ({"lang": None}, {"d", "e"}),
        ({"lang": {"$eq": None}}, {"d", "e"}),
        ({"lang": {"$ne": None}}, {"a", "b", "c"}),
        ({"missing": "x"}, set()),
        ({}, ALL),
        ('{"lang": "en", "year": {"$gt": 2020}}', {"c"}),  # JSON string form
    ],
)
def test_operators(db, flt, expect):
    assert run(db, flt) == expect


def test_ne_and_nin_match_documents_without_the_field(db):
    # Mongo semantics: "not equal" holds for a document that has no such value
    assert run(db, {"lang": {"$ne": "en"}}) == {"b", "d", "e"}
    assert run(db, {"lang": {"$nin": ["en"]}}) == {"b", "d", "e"}


def test_combinators(db):
    assert run(db, {"$or": [{"lang": "de"}, {"year": 2023}]}) == {"b", "c"}
    assert run(db, {"$and": [{"lang": "en"}, {"year": {"$gt": 2020}}]}) == {"c"}
    assert run(db, {"$or": [{"$and": [{"lang": "en"}, {"draft": True}]}, {"year": 2020}]}) == {"a", "d"}


@pytest.mark.parametrize("inner", [{"lang": "en"}, {"year": {"$gt": 2020}}, {"tags": "x"}, {"$or": [{"lang": "de"}, {"year": 2019}]}])
def test_not_is_the_complement(db, inner):
    assert run(db, {"$not": inner}) == ALL - run(db, inner)


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
        ({"lang": {"$in": [None, "de"]}}, {"b", "d", "e"}),
        ({"lang": {"$in": [None]}}, {"d", "e"}),
        ({"lang": {"$nin": [None, "de"]}}, {"a", "c"}),
        ({"lang": {"$nin": [None]}}, {"a", "b", "c"}),
    ],
)
def test_null_inside_in_and_nin_stands_for_a_missing_field(db, flt, expect):
    assert run(db, flt) == expect
