"""``_score_many``: several requests scored in one model run give each request's own scores.

The batched path (used by the HTTP API's dynamic batching) mixes the (query, passage) pairs of
different queries in shared, length-sorted, padded model batches; padding is masked, so every
score matches scoring the request alone (to float rounding). The cross-encoder's int8 ONNX
backend quantises its activations per batch (dynamic quantisation), so there a score moves with
its batch-mates (by up to ~0.1 logit with the fixture's random head), as it already does across
the length-sorted batches of one request: it is checked with one pair per batch.
"""

from __future__ import annotations

import pytest

from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry

REQUESTS = [
    ("vitamin d and bone fractures", ["Vitamin D deficiency is linked to fractures.", "A fox.", "Bones " * 40]),
    ("dense vector search", ["FAISS searches vectors.", "BM25 ranks terms.", "x"]),
    ("a much longer query about the effect of sunlight exposure on vitamin levels in older adults", ["sun", "vitamins"]),
    ("one", ["only passage"]),
]


def _check(reranker) -> None:
    alone = [reranker._score(q, texts) for q, texts in REQUESTS]
    together = reranker._score_many(REQUESTS)
    assert len(together) == len(REQUESTS)
    for a, b in zip(alone, together):
        assert b.scores == pytest.approx(a.scores, abs=1e-4)
        assert list(b.truncated) == list(a.truncated)


def test_flashrank_score_many(flashrank_cache):
    reg = RerankerRegistry(RerankContext(configs={"flashrank": {"cache_dir": flashrank_cache}}))
    _check(reg.get("flashrank", {"batch_size": 4}))


@pytest.mark.slow  # fixture cross-encoder models
@pytest.mark.parametrize("options", [{"backend": "torch"}, {"backend": "onnx", "batch_size": 1},
                                     {"backend": "torch", "window": True, "max_length": 32}])
def test_cross_encoder_score_many(ce_model, tmp_path, options):
    reg = RerankerRegistry(RerankContext(onnx_cache_dir=str(tmp_path / "onnx")))
    _check(reg.get("cross-encoder", {"model": ce_model, **options}))


def test_default_score_many_is_one_score_per_request():
    bm25 = RerankerRegistry().get("bm25")
    together = bm25._score_many(REQUESTS)
    assert [s.scores for s in together] == [bm25._score(q, t).scores for q, t in REQUESTS]
