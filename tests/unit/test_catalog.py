"""The tool catalog (tools/catalog.py) is the one declaration: the CLI's options and the fusion
choices everywhere are derived from it."""

from __future__ import annotations

import argparse
from typing import get_args

import pytest

from rerank_mcp.index import fusion
from rerank_mcp.server.cli import build_parser
from rerank_mcp.tools.catalog import CATALOG
from rerank_mcp.tools.models import Fusion, RerankStep, SearchResult

VERBS = {"search": "search", "rerank": "rerank", "compare": "compare_rerankers", "ingest": "ingest",
         "delete": "delete"}
# the verbs' own spellings of a tool argument (stdin, repeatable texts, a flattened rerank step)
OWN = {"search": {"rerank"}, "rerank": {"passages"}, "compare": {"passages", "rerankers"}, "ingest": {"paths"}}


def _verbs() -> dict[str, argparse.ArgumentParser]:
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_cli_options_carry_the_catalog_declaration(verb):
    """Each option a verb takes from its tool has the field's description as help, its choices and
    its default (settings-given defaults are filled in by the verb, so None here)."""
    spec = CATALOG[VERBS[verb]]
    actions = {a.dest: a for a in _verbs()[verb]._actions}
    shared = [n for n in spec.request.model_fields if n in actions and n not in OWN.get(verb, ())]
    assert len(shared) >= 2, (verb, sorted(actions))
    for name in shared:
        f, a = spec.request.model_fields[name], actions[name]
        assert a.help == f.description, (verb, name)
        if name in spec.setting_defaults or f.is_required() or a.metavar == "JSON":
            assert a.default is None, (verb, name)
        elif isinstance(f.get_default(), (bool, int, float, str)):
            assert a.default == f.get_default(), (verb, name)


def test_search_cli_takes_the_rerank_step_from_its_model():
    a = {x.dest: x for x in _verbs()["search"]._actions}
    assert a["candidates"].default == RerankStep.model_fields["candidates"].default == 50
    assert a["rerank"].default is None  # no rerank step unless asked for
    assert a["min_score"].type is float and a["max_tokens"].type is int


def test_fusion_methods_are_declared_once():
    """The search schema's and result's fusion values, the CLI's choices, the default and
    evaluate's pipeline names all come from index/fusion.METHODS."""
    assert get_args(Fusion) == tuple(fusion.METHODS)
    search = CATALOG["search"].request.model_fields["fusion"]
    assert search.default == fusion.DEFAULT and get_args(search.annotation) == tuple(fusion.METHODS)
    assert get_args(SearchResult.model_fields["fusion"].annotation)[0] == Fusion
    a = {x.dest: x for x in _verbs()["search"]._actions}["fusion"]
    assert a.choices == list(fusion.METHODS) and a.default == fusion.DEFAULT
    from rerank_mcp.tools.evaluate import parse_pipeline

    for name in fusion.client_side():
        assert parse_pipeline(f"hybrid-{name}").fusion == name
    for name in fusion.server_side():
        with pytest.raises(Exception, match="unknown pipeline"):
            parse_pipeline(f"hybrid-{name}")


def test_a_fusion_method_added_to_the_table_is_used_by_fuse(monkeypatch):
    """docs/extending.md's fusion example: one entry in METHODS, and fuse() takes it."""
    mean = fusion.FusionMethod("max", "the best arm's rank wins",
                               fuse=lambda arms, w, k: {d: max(1 / (k + r) for a in arms.values()
                                                               for r, (x, _) in enumerate(a, 1) if x == d)
                                                        for a in arms.values() for d, _ in a})
    monkeypatch.setitem(fusion.METHODS, "max", mean)
    out = fusion.fuse({"dense": [(1, 0.9), (2, 0.5)], "bm25": [(2, 9.0), (3, 1.0)]}, "max")
    assert [d for d, _ in out] == [1, 2, 3]
    with pytest.raises(ValueError, match="unknown fusion"):
        fusion.fuse({"dense": [(1, 1.0)]}, "server-rrf")  # the engine's to do


def test_every_tool_declares_its_hints_and_its_work():
    for spec in CATALOG.values():
        assert spec.hints.read_only != spec.writes, spec.name
        assert spec.describe(spec.defaults(_Settings())), spec.name
    assert CATALOG["delete"].hints.destructive and not CATALOG["ingest"].hints.destructive


class _Settings:
    default_collection = "default"
    reranker_default = "auto"
