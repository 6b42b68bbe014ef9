"""The shared filter cases (tests/fixtures/filter_cases.py) on both compilers: SQL over a real
SQLite JSON column, and Qdrant filters run by qdrant-client's local mode over the same rows.
Each engine's own cases stay in tests/unit/test_filters.py and tests/unit/test_qdrant_filters.py."""

from __future__ import annotations

from contextlib import closing

import pytest

from tests.fixtures.filter_cases import (
    ALL,
    COMBINATOR_CASES,
    NE_NIN_CASES,
    NOT_INNERS,
    OPERATOR_CASES,
    client_over_rows,
    rows_db,
    run_qdrant,
    run_sql,
)


@pytest.fixture(scope="module", params=["sqlite", "qdrant"])
def run(request):
    """``run(filter) -> set of row names`` on one engine."""
    if request.param == "sqlite":
        with closing(rows_db()) as con:
            yield lambda flt: run_sql(con, flt)
        return
    pytest.importorskip("qdrant_client")
    with client_over_rows() as c:
        yield lambda flt: run_qdrant(c, flt)


@pytest.mark.parametrize("flt,expect", OPERATOR_CASES)
def test_operators(run, flt, expect):
    assert run(flt) == expect


def test_ne_and_nin_match_documents_without_the_field(run):
    for flt, expect in NE_NIN_CASES:
        assert run(flt) == expect, flt


def test_combinators(run):
    for flt, expect in COMBINATOR_CASES:
        assert run(flt) == expect, flt


@pytest.mark.parametrize("inner", NOT_INNERS)
def test_not_is_the_complement(run, inner):
    assert run({"$not": inner}) == ALL - run(inner)
