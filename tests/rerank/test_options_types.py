"""Options as types: every family declares a pydantic model, the base class validates against it
(unknown and ill-typed options are errors naming the valid ones), ``list_rerankers`` publishes
its JSON schema, and ``blend`` works for every family. Adding a family is one module and one
registry line."""

from __future__ import annotations

import sys
import textwrap
import types

import pytest

from rerank_mcp.errors import InvalidInput
from rerank_mcp.tools.rerank import registry as registry_mod
from rerank_mcp.tools.rerank.base import weighted_rrf
from rerank_mcp.tools.rerank.registry import FAMILIES, Family, RerankContext, RerankerRegistry

TEXTS = ["cats purr softly", "dogs bark loudly at night", "cats and more cats", "a cat food for cats", "kiwi"]


def reg() -> RerankerRegistry:
    return RerankerRegistry(RerankContext(configs={"cohere": {"api_key": "k"}, "rankllm": {"base_url": "http://127.0.0.1:9/v1"}}))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_publishes_an_options_schema_with_blend(family):
    cls = reg().resolve_class(family)
    schema = cls.options_schema()
    assert schema["type"] == "object" and schema.get("additionalProperties") is False
    assert "blend" in schema["properties"]
    assert schema["properties"]["blend"]["maximum"] == 1.0


@pytest.mark.parametrize("family", list(FAMILIES))
def test_unknown_option_lists_the_valid_ones(family):
    cls = reg().resolve_class(family)
    with pytest.raises(InvalidInput) as err:
        reg().get(family, {"no_such_option": 1})
    msg = str(err.value)
    assert "unknown option 'no_such_option'" in msg and "Valid options:" in msg
    for name in cls.Options.model_fields:
        assert f"{name} (" in msg


@pytest.mark.parametrize(("family", "options", "what"), [
    ("bm25", {"k1": "1.2"}, "bm25 option k1 must be a valid number"),
    ("bm25", {"variant": "bm26"}, "bm25 option variant must be one of okapi, l, plus"),
    ("bm25", {"corpus": "yes"}, "bm25 option corpus must be a valid boolean"),
    ("embedding", {"batch_size": 2.5}, "embedding option batch_size must be a valid integer"),
    ("embedding", {"blend": True}, "embedding option blend must be a valid number"),
    ("cross-encoder", {"normalize": 1}, "cross-encoder option normalize must be a valid boolean"),
    ("cross-encoder", {"backend": "tensorrt"}, "cross-encoder option backend must be one of torch, onnx"),
    ("flashrank", {"max_length": "long"}, "flashrank option max_length must be a valid integer"),
    ("cohere", {"max_retries": 11}, "cohere option max_retries must be less than or equal to 10"),
    ("rankllm", {"prompt": "chatty"}, "rankllm option prompt must be one of rankgpt, rankzephyr"),
    ("cascade", {"stages": [{"reranker": "bm25", "top_k": "ten"}]}, "cascade option stages.0.top_k must be"),
    ("cascade", {"stages": [{"reranker": "bm25", "topk": 3}]}, "unknown option 'stages.0.topk'"),
    ("auto", {"blend": 2}, "auto option blend must be less than or equal to 1"),
])
def test_ill_typed_option_names_it_and_the_valid_ones(family, options, what):
    with pytest.raises(InvalidInput) as err:
        reg().get(family, options)
    assert what in str(err.value) and "Valid options:" in str(err.value)


def test_a_family_without_a_model_says_so():
    with pytest.raises(InvalidInput, match="the bm25 reranker has no model.*Valid options: blend"):
        reg().get("bm25", {"model": "x"})


@pytest.mark.slow  # builds fixture cross-encoder and FlashRank models
def test_blend_is_applied_by_the_base_class_for_every_family(ce_model, flashrank_cache):
    r = RerankerRegistry(RerankContext(configs={"cross-encoder": {"model": ce_model}, "flashrank": {"cache_dir": flashrank_cache}}))
    for family in ("bm25", "cross-encoder", "flashrank"):
        alone = r.get(family).rerank("cats", TEXTS)
        kept = r.get(family, {"blend": 1.0}).rerank("cats", TEXTS, ordered=True)
        assert [p.index for p in kept.passages] == list(range(len(TEXTS))), family  # blend 1: the input order
        half = r.get(family, {"blend": 0.5}).rerank("cats", TEXTS, ordered=True)
        raw = [0.0] * len(TEXTS)
        for p in alone.passages:
            raw[p.index] = p.score
        want = weighted_rrf(raw, 0.5)
        assert {p.index: p.score for p in half.passages} == pytest.approx(dict(enumerate(want)), rel=1e-9)
        assert any(f"the {family} order (weight 0.5)" in n for n in half.notes), half.notes


def test_family_defaults_from_the_configuration_sit_under_call_options():
    r = RerankerRegistry(RerankContext(family_options={"bm25": {"variant": "plus", "b": 0.5}}))
    assert r.get("bm25").variant == "BM25Plus" and r.get("bm25").b == 0.5
    assert r.get("bm25", {"variant": "l"}).variant == "BM25L"


MODULE = textwrap.dedent('''
    from typing import Sequence
    from pydantic import Field
    from rerank_mcp.tools.rerank.base import RerankOptions, Reranker, Scored

    class LengthOptions(RerankOptions):
        longest_first: bool = Field(True, description="longer passages first")

    class LengthReranker(Reranker):
        family = "length"
        Options = LengthOptions
        options: LengthOptions  # validated, handed to the base class whole: no constructor to write

        def _score(self, query: str, texts: Sequence[str]) -> Scored:
            sign = 1.0 if self.options.longest_first else -1.0
            return Scored([sign * len(t) for t in texts])
''')


def test_adding_a_family_is_one_module_and_one_registry_line(monkeypatch):
    mod = types.ModuleType("length_family_for_test")
    exec(MODULE, mod.__dict__)
    monkeypatch.setitem(sys.modules, "length_family_for_test", mod)
    monkeypatch.setitem(registry_mod.FAMILIES, "length", Family(
        "length", "length_family_for_test:LengthReranker", (), None, "longest passage first; a test family."))
    r = RerankerRegistry()
    info = {i.name: i for i in r.describe()}["length"]
    assert info.status == "ready" and info.options_schema["properties"]["longest_first"]["type"] == "boolean"
    assert "'length' (longest passage first" in registry_mod.families_help()
    res = r.get("length", {"longest_first": False, "blend": 0.0}).rerank("q", ["aaa", "a", "aa"])
    assert [p.index for p in res.passages] == [1, 2, 0]
    with pytest.raises(InvalidInput, match="longest_first"):
        r.get("length", {"longest_first": "no"})
    from rerank_mcp.tools.reranking import rerank

    assert rerank(r, "q", ["aaa", "a"], "length").passages[0].index == 0


def test_bm25_with_the_collection_statistics():
    import math

    from rerank_mcp.index.bm25 import fieldnorm
    from rerank_mcp.index.tokenize import tokenize

    asked = []

    def corpus(terms):
        asked.append(list(terms))
        return 1000, 12.0, {"cat": 40, "purr": 2}

    bm = reg().get("bm25")
    res = bm.rerank("cats purr", TEXTS, corpus=corpus)
    assert asked == [["cat", "purr"]]
    assert "BM25 with the collection's statistics (N=1000" in res.notes[0]
    idf = {t: math.log(1 + (1000 - n + 0.5) / (n + 0.5)) for t, n in {"cat": 40, "purr": 2}.items()}

    def want(text):
        toks = tokenize(text)
        norm = 1.2 * (1 - 0.75 + 0.75 * fieldnorm(len(toks)) / 12.0)
        return sum(idf[t] * toks.count(t) * 2.2 / (toks.count(t) + norm) for t in idf if t in toks)

    assert {p.index: p.score for p in res.passages} == pytest.approx({i: want(t) for i, t in enumerate(TEXTS)})
    assert res.passages[0].index == 0  # the rare term "purr" decides
    # corpus=false: over the candidates only, as outside search
    alone = reg().get("bm25", {"corpus": False}).rerank("cats purr", TEXTS, corpus=corpus)
    assert len(asked) == 1 and not any("collection" in n for n in alone.notes)
