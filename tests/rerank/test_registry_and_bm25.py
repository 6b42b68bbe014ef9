"""Registry wiring of the families (describe(), NotFound, missing-dependency messages, option
errors), import hygiene (no torch at import), and the ``bm25`` reranker's own semantics."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rerank_mcp.errors import DependencyMissing, InvalidInput, NotFound
from rerank_mcp.tools.rerank import registry as registry_mod
from rerank_mcp.tools.rerank.registry import Family, RerankContext, RerankerRegistry


def info(reg):
    return {i.name: i for i in reg.describe()}


def test_every_family_resolves_to_a_reranker_class():
    reg = RerankerRegistry()
    for name in reg.names():
        cls = reg.resolve_class(name)
        assert cls.family == name


def test_cohere_availability_follows_the_key(no_cohere_env, monkeypatch):
    assert info(RerankerRegistry(RerankContext()))["cohere"].reason == (
        "no API key: set RERANK_MCP_COHERE_API_KEY or CO_API_KEY"
    )
    assert info(RerankerRegistry(RerankContext(configs={"cohere": {"api_key": "k"}})))["cohere"].available
    monkeypatch.setenv("CO_API_KEY", "k2")
    assert info(RerankerRegistry(RerankContext()))["cohere"].available


def test_rankllm_availability_follows_base_url():
    i = info(RerankerRegistry(RerankContext()))["rankllm"]
    assert not i.available and "base_url" in i.reason and i.needs_network
    assert info(RerankerRegistry(RerankContext(configs={"rankllm": {"base_url": "http://127.0.0.1:1/v1"}})))["rankllm"].available


def test_local_families_available():
    i = info(RerankerRegistry(RerankContext()))
    assert i["bm25"].available and i["embedding"].available


def test_unknown_family_is_not_found():
    with pytest.raises(NotFound, match="unknown reranker 'colbert'"):
        RerankerRegistry().get("colbert")


def test_missing_dependency_names_the_package(monkeypatch):
    fam = Family("fake", "rerank_mcp.tools.rerank.bm25:BM25Reranker", ("no_such_module_zz",), "fake-rerank-pkg", "test only")
    monkeypatch.setitem(registry_mod.FAMILIES, "fake", fam)
    reg = RerankerRegistry()
    assert "pip install fake-rerank-pkg" in info(reg)["fake"].reason
    with pytest.raises(DependencyMissing, match="pip install fake-rerank-pkg"):
        reg.get("fake")


def test_unknown_option_names_it():
    with pytest.raises(InvalidInput, match="k3"):
        RerankerRegistry().get("bm25", {"k3": 1})


def test_importing_rerankers_imports_no_model_library():
    code = (
        "import sys\n"
        "import rerank_mcp.tools.rerank, rerank_mcp.tools.rerank.registry\n"
        "from rerank_mcp.tools.rerank.registry import FAMILIES\n"
        "import rerank_mcp.tools.models_store\n"
        "for f in FAMILIES.values():\n"
        "    __import__(f.target.split(':')[0])\n"
        "bad = [m for m in ('torch','transformers','sentence_transformers','onnxruntime','flashrank','cohere') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))


# -- bm25 ------------------------------------------------------------------------------------


def test_bm25_ranks_term_matches_first_even_when_most_candidates_match():
    texts = ["cats purr", "dogs bark loudly", "cats and more cats", "cat food for cats"]
    res = RerankerRegistry().get("bm25").rerank("cats", texts)
    assert [p.index for p in res.passages][-1] == 1
    assert res.passages[-1].score == 0.0 and all(p.score > 0 for p in res.passages[:-1])


def test_bm25_variants_and_parameters_change_scores():
    texts = ["apple banana", "apple apple apple cherry date elder fig grape", "banana cherry", "kiwi"]
    reg = RerankerRegistry()
    s = {}
    for opts in ({}, {"variant": "l"}, {"variant": "plus"}, {"k1": 0.1}, {"b": 0.0}, {"idf": "okapi"}):
        res = reg.get("bm25", opts).rerank("apple cherry", texts)
        s[str(opts)] = tuple(round(p.score, 6) for p in sorted(res.passages, key=lambda p: p.index))
    assert len(set(s.values())) == len(s)


def test_bm25_uses_the_project_analyzer():
    # Stemming and stopwords: "running" matches "runs"; "the" matches nothing.
    res = RerankerRegistry().get("bm25").rerank("the running", ["the the the", "she runs daily", "the walk"])
    assert res.passages[0].index == 1 and res.passages[0].score > 0


def test_bm25_query_without_terms_keeps_order():
    res = RerankerRegistry().get("bm25").rerank("the of and", ["b", "a", "c"])
    assert [p.index for p in res.passages] == [0, 1, 2] and res.notes


def test_bm25_bad_options():
    reg = RerankerRegistry()
    with pytest.raises(InvalidInput, match="variant"):
        reg.get("bm25", {"variant": "bm26"})
    with pytest.raises(InvalidInput, match="b must be"):
        reg.get("bm25", {"b": 2})
    with pytest.raises(InvalidInput, match="no model"):
        reg.get("bm25", {"model": "x"})
