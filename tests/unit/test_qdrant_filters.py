"""The filter tree compiled to Qdrant filters, run by qdrant-client's local mode over the same
rows as the SQL compiler's tests, with the same expected results (tests/fixtures/filter_cases.py);
and, for many more filters, checked against the SQL compiler itself on those rows."""

from __future__ import annotations

import itertools
from contextlib import closing

import pytest

pytest.importorskip("qdrant_client")

from qdrant_client import QdrantClient, models

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.filters import parse_filter
from rerank_mcp.index.qdrant import compile_filter
from tests.fixtures.filter_cases import (
    ALL,
    client_over_rows,
    rows_db,
    run_qdrant,
    run_sql,
)


@pytest.fixture(scope="module")
def client():
    with client_over_rows() as c:
        yield c


@pytest.fixture(scope="module")
def db():
    with closing(rows_db()) as con:
        yield con


run = run_qdrant


def test_numbers_compare_by_value_ints_and_floats_alike(client):
    assert run(client, {"year": 2019.0}) == {"a"}
    assert run(client, {"score": {"$in": [0.5, 2.5]}}) == {"a", "c"}
    assert run(client, {"year": {"$in": [2019, 2023]}}) == {"a", "c"}
    assert run(client, {"score": {"$gte": 1.5, "$lte": 2.5}}) == {"b", "c"}


def test_booleans_are_not_numbers(client):
    assert run(client, {"draft": 1}) == set()
    assert run(client, {"year": True}) == set()


def test_null_inside_in_and_nin_means_missing(client):
    # as in MongoDB: {"$in": [null, ...]} also matches documents without the field
    assert run(client, {"lang": {"$in": [None, "de"]}}) == {"b", "d", "e", "f"}
    assert run(client, {"lang": {"$nin": [None, "de"]}}) == {"a", "c"}


def test_empty_path_segment_is_a_missing_field(client):
    assert run(client, {"nested.": "v1"}) == set()
    assert run(client, {"nested.": {"$exists": False}}) == ALL
    assert run(client, {"nested.": {"$ne": "v1"}}) == ALL


def test_order_comparison_with_null_matches_nothing(client):
    assert run(client, {"year": {"$gt": None}}) == set()


def test_string_ranges_need_dates():
    with pytest.raises(InvalidInput, match="numbers and ISO 8601 dates"):
        compile_filter(parse_filter({"lang": {"$gt": "de"}}))
    f = compile_filter(parse_filter({"day": {"$gte": "2024-01-31"}}))
    assert isinstance(f.must[0].range, models.DatetimeRange)


def test_dates(client):
    c = QdrantClient(location=":memory:")
    c.create_collection("d", vectors_config={})
    c.upsert("d", [models.PointStruct(id=i, vector={}, payload={"metadata": {"day": day}})
                   for i, day in enumerate(["2023-12-31", "2024-02-01T10:00:00Z", "not a date"], start=1)])
    recs, _ = c.scroll("d", scroll_filter=compile_filter(parse_filter({"day": {"$gte": "2024-01-31"}})))
    assert [r.id for r in recs] == [2]
    c.close()


def test_no_filter():
    assert compile_filter(None) is None


# ---------------------------------------------------------------- against the SQL compiler
ATOMS = [
    {"lang": "en"}, {"lang": None}, {"lang": {"$ne": "de"}}, {"lang": {"$ne": None}}, {"lang": {"$in": ["de", "fr"]}},
    {"lang": {"$nin": ["de", "en"]}}, {"year": {"$gte": 2021}}, {"year": {"$lt": 2020.5}}, {"year": 2020},
    {"year": {"$ne": 2019}}, {"score": {"$gt": 1.0}}, {"draft": True}, {"draft": {"$ne": False}},
    {"tags": {"$exists": True}}, {"tags": {"$exists": False}}, {"nested.k": "v2"}, {"nested.k": {"$nin": ["v1"]}},
    {"nested": {"$exists": True}}, {"missing": {"$ne": 1}}, {"missing": {"$lte": 3}},
]


def _combos():
    for a in ATOMS:
        yield a
        yield {"$not": a}
    for a, b in itertools.combinations(ATOMS, 2):
        yield {"$and": [a, b]}
        yield {"$or": [a, {"$not": b}]}
        yield {"$not": {"$or": [a, b]}}


def test_agrees_with_the_sql_compiler(client, db):
    disagreements = []
    n = 0
    for flt in _combos():
        n += 1
        got, want = run(client, flt), run_sql(db, flt)
        if got != want:
            disagreements.append((flt, sorted(got), sorted(want)))
    assert n > 400
    assert not disagreements, disagreements[:5]
