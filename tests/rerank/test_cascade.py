"""The ``cascade`` reranker: FlashRank fixture (stage 1) -> cross-encoder fixture (stage 2),
both real models of the published shapes (tests/fixtures/models.py). Checks the stage
semantics against each stage run on its own."""

from __future__ import annotations

import pytest

from rerank_mcp.errors import InvalidInput, NotFound
from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry

QUERY = "what lowers blood pressure"
TEXTS = [f"passage {i}: " + w for i, w in enumerate(
    "salt reduction lowers blood pressure|exercise helps the heart|the moon orbits earth|"
    "potassium rich diets and hypertension|stock prices rose|beta blockers reduce pressure|"
    "a poem about rain|sleep and cardiovascular risk|football results|meditation and blood pressure|"
    "volcanoes erupt|diuretics treat hypertension|coffee and blood pressure spikes|cats purr".split("|")
)] + ["long " + " ".join(["filler words about nothing in particular"] * 30)]


@pytest.fixture
def registry(ce_model, flashrank_cache):
    return RerankerRegistry(RerankContext(configs={"cross-encoder": {"model": ce_model}, "flashrank": {"cache_dir": flashrank_cache}}))


def test_two_stages(registry):
    stages = [
        {"reranker": "flashrank", "top_k": 5},
        {"reranker": "cross-encoder", "options": {"max_length": 24}},
    ]
    res = registry.get("cascade", {"stages": stages}).rerank(QUERY, TEXTS)
    s1 = registry.get("flashrank").rerank(QUERY, TEXTS)
    s1_order = [p.index for p in s1.passages]
    survivors = s1_order[:5]
    s2 = registry.get("cross-encoder", {"max_length": 24}).rerank(QUERY, [TEXTS[i] for i in survivors])
    expected = [survivors[p.index] for p in s2.passages] + s1_order[5:]
    assert [p.index for p in res.passages] == expected
    assert sorted(p.index for p in res.passages) == list(range(len(TEXTS)))
    scores = [p.score for p in res.passages]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    # Truncation: stage 2 ran with max_length 24, only over the survivors; union over stages.
    assert set(res.truncated) == {survivors[i] for i in s2.truncated} | set(s1.truncated)
    assert any(n.startswith("stage 1: flashrank") and "kept 5" in n for n in res.notes)
    assert any(n.startswith("stage 2: cross-encoder") and "ranked 5" in n for n in res.notes)


def test_three_stages_drop_order(registry):
    stages = [
        {"reranker": "bm25", "top_k": 8},
        {"reranker": "flashrank", "top_k": 3},
        {"reranker": "cross-encoder"},
    ]
    res = registry.get("cascade", {"stages": stages}).rerank(QUERY, TEXTS, top_n=10)
    b = [p.index for p in registry.get("bm25").rerank(QUERY, TEXTS).passages]
    f = [b[:8][p.index] for p in registry.get("flashrank").rerank(QUERY, [TEXTS[i] for i in b[:8]]).passages]
    c = [f[:3][p.index] for p in registry.get("cross-encoder").rerank(QUERY, [TEXTS[i] for i in f[:3]]).passages]
    assert [p.index for p in res.passages] == (c + f[3:] + b[8:])[:10]


def test_default_stages_are_flashrank_then_cross_encoder(registry):
    texts = TEXTS * 2  # 30 candidates: flashrank keeps 20 for the cross-encoder
    res = registry.get("cascade").rerank(QUERY, texts)
    assert any("stage 1: flashrank" in n and "ranked 30, kept 20" in n for n in res.notes)
    assert any("stage 2: cross-encoder" in n and "ranked 20" in n for n in res.notes)
    info = {i.name: i for i in registry.describe()}["cascade"]
    assert info.available


def test_bad_stages(registry):
    with pytest.raises(InvalidInput, match="top_k"):
        registry.get("cascade", {"stages": [{"reranker": "bm25"}, {"reranker": "flashrank"}]})
    with pytest.raises(NotFound, match="nope"):
        registry.get("cascade", {"stages": [{"reranker": "nope"}]})
    with pytest.raises(InvalidInput, match="non-empty"):
        registry.get("cascade", {"stages": []})
    with pytest.raises(InvalidInput, match="cascade"):
        registry.get("cascade", {"stages": [{"reranker": "cascade"}]})


def _store_registry(tmp_path, flashrank_dir, hash_embedder):
    """The server's wiring: a model store (downloads off) whose missing models are stood in for."""
    from rerank_mcp.tools.models_store import ModelStore

    store = ModelStore(flashrank_dir, "http://127.0.0.1:9", hf_cache_dir=tmp_path / "hf", downloads=False)
    ctx = RerankContext(configs={"flashrank": {"cache_dir": store.flashrank_dir}}, models=store,
                        fallback_when_missing=True, embedder=lambda model: hash_embedder)
    return RerankerRegistry(ctx)


class _Words:
    """A bi-encoder stand-in for the embedding family's collaborator: hashed bag of words."""

    name = "hash-words"

    def encode(self, texts):
        import hashlib

        import numpy as np

        out = np.zeros((len(texts), 64), np.float32)
        for r, t in enumerate(texts):
            for w in t.lower().split():
                out[r, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_stand_ins_are_named_in_used_and_in_the_stage_notes(tmp_path):
    """Neither stage's model is here: the stand-in ranked every stage, and the result says so
    (it used to leave `used` empty and note 'stage 1: flashrank (...) ranked 3, kept 3')."""
    reg = _store_registry(tmp_path, tmp_path / "no-flashrank", _Words())
    res = reg.get("cascade").rerank(QUERY, TEXTS)
    assert res.used == "embedding"
    assert res.notes[0].startswith("cascade ran with stand-ins: ranked by embedding")
    assert any(n.startswith("stage 1: embedding, standing in for flashrank (ms-marco-TinyBERT-L-2-v2, not here)")
               for n in res.notes), res.notes
    assert any(n.startswith("stage 2: embedding, standing in for cross-encoder") for n in res.notes), res.notes
    assert not any(n.startswith(("stage 1: flashrank", "stage 2: cross-encoder")) for n in res.notes)
    assert "stage 1: flashrank model" in res.fallback and "stage 2: cross-encoder model" in res.fallback
    # the embedding family's own order: the cascade ranked the passages as embedding alone does
    alone = reg.get("embedding").rerank(QUERY, TEXTS)
    assert [p.index for p in res.passages][:5] == [p.index for p in alone.passages][:5]


def test_a_stage_that_runs_as_named_is_named_and_the_other_stand_in_too(tmp_path, flashrank_cache):
    reg = _store_registry(tmp_path, flashrank_cache, _Words())  # FlashRank's model here, the cross-encoder's not
    res = reg.get("cascade").rerank(QUERY, TEXTS)
    assert any(n.startswith("stage 1: flashrank (ms-marco-TinyBERT-L-2-v2) ranked 15, kept 15") for n in res.notes)
    assert any(n.startswith("stage 2: flashrank, standing in for cross-encoder") for n in res.notes), res.notes
    assert res.used == "flashrank" and "stage 2: cross-encoder model" in res.fallback
    mixed = reg.get("cascade", {"stages": [{"reranker": "bm25", "top_k": 5}, {"reranker": "cross-encoder"}]})
    res = mixed.rerank(QUERY, TEXTS)
    assert res.used == "bm25 then flashrank"
    # every stage as named: nothing to report
    res = reg.get("cascade", {"stages": [{"reranker": "bm25", "top_k": 5}, {"reranker": "flashrank"}]}).rerank(QUERY, TEXTS)
    assert res.used is None and res.fallback is None
