"""The ``embedding`` reranker's ``blend`` option: weighted RRF (k=60) of the input order and
the cosine order, applied only when the input order is a ranking (``ordered=True``). A fake
bi-encoder (fixed vectors) is the collaborator; the fusion is real."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_mcp.errors import InvalidInput
from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry

# Cosine with the query [1, 0]: d0 0.0, d1 0.6, d2 1.0, d3 0.8, d4 -1.0
VECS = {"q": [1.0, 0.0], "d0": [0.0, 1.0], "d1": [0.6, 0.8], "d2": [1.0, 0.0], "d3": [0.8, 0.6], "d4": [-1.0, 0.0]}
TEXTS = ["d0", "d1", "d2", "d3", "d4"]


class FakeEmbedder:
    name = "fake"

    def encode(self, texts):
        return np.array([VECS[t] for t in texts], dtype=np.float32)


@pytest.fixture
def reg():
    return RerankerRegistry(RerankContext(embedder=lambda model: FakeEmbedder()))


def order(res):
    return [p.index for p in res.passages]


def test_blend_zero_is_pure_cosine(reg):
    res = reg.get("embedding").rerank("q", TEXTS)
    assert order(res) == [2, 3, 1, 0, 4]
    assert [round(p.score, 4) for p in res.passages] == [1.0, 0.8, 0.6, 0.0, -1.0]
    assert order(reg.get("embedding", {"blend": 0}).rerank("q", TEXTS)) == [2, 3, 1, 0, 4]


def test_blend_one_keeps_the_input_order(reg):
    res = reg.get("embedding", {"blend": 1.0}).rerank("q", TEXTS, ordered=True)
    assert order(res) == [0, 1, 2, 3, 4]
    assert res.blend == 1.0 and res.ordered


def test_blend_is_not_applied_to_unordered_passages(reg):
    """Passages whose order is not a ranking are ranked by the reranker alone, with its own scores."""
    res = reg.get("embedding", {"blend": 1.0}).rerank("q", TEXTS)
    assert order(res) == [2, 3, 1, 0, 4]
    assert [round(p.score, 4) for p in res.passages] == [1.0, 0.8, 0.6, 0.0, -1.0]
    assert res.blend is None and not res.ordered
    assert any("not applied" in n and "ordered=true" in n for n in res.notes)


def test_blend_by_position_protects_the_top_of_the_input_order(reg):
    """Weights 0.75 (input ranks 1-3), 0.6 (4-10), 0.4 (below) for the input order."""
    res = reg.get("embedding", {"blend_by_position": True}).rerank("q", TEXTS, ordered=True)
    cos_rank = {2: 1, 3: 2, 1: 3, 0: 4, 4: 5}
    w = {0: 0.75, 1: 0.75, 2: 0.75, 3: 0.6, 4: 0.6}
    want = {i: w[i] / (60 + i + 1) + (1 - w[i]) / (60 + cos_rank[i]) for i in range(5)}
    for p in res.passages:
        assert p.score == pytest.approx(want[p.index], rel=1e-12)
    assert order(res) == sorted(range(5), key=lambda i: -want[i])
    assert any("0.75 at its ranks 1-3" in n for n in res.notes)


def test_blend_is_weighted_rrf(reg):
    b = 0.7
    res = reg.get("embedding", {"blend": b}).rerank("q", TEXTS, ordered=True)
    cos_rank = {2: 1, 3: 2, 1: 3, 0: 4, 4: 5}
    want = {i: b / (60 + i + 1) + (1 - b) / (60 + cos_rank[i]) for i in range(5)}
    for p in res.passages:
        assert p.score == pytest.approx(want[p.index], rel=1e-12)
    assert order(res) == sorted(range(5), key=lambda i: -want[i])
    assert any("weighted RRF" in n for n in res.notes)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True, None])
def test_blend_must_be_in_unit_interval(reg, bad):
    with pytest.raises(InvalidInput, match="blend"):
        reg.get("embedding", {"blend": bad})
