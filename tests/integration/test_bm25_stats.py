"""``Index.bm25_stats`` on both engines, and the ``bm25`` reranker inside ``search`` scoring with
them: reranking BM25's own candidates gives back BM25's order and scores.

The collection is small and synthetic (a model-free embedder: the dense side is not under
test); BM25 runs for real (tantivy for the embedded engine, Qdrant's sparse vectors with its
IDF modifier in qdrant-client's local mode)."""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter

import numpy as np
import pytest

from rerank_mcp.index.tokenize import tokenize
from rerank_mcp.tools.ingest import ingest
from rerank_mcp.tools.rerank.registry import RerankerRegistry
from rerank_mcp.tools.search import search
from tests.conftest import ENGINES, open_engine

WORDS = ("retrieval ranking passage query index corpus token stemming lexical dense sparse vector model "
         "score fusion hybrid neural cross encoder bi relevance judgment collection document chunk").split()


class TinyEmbedder:
    """Hashed bag of words, 32-d: a stand-in bi-encoder (this test is about BM25)."""

    name = identity = cache_key = "test/tiny-bow-32"
    backend = "torch"
    dim = 32
    max_seq_length = 512

    def count_tokens(self, texts):
        return [len(re.findall(r"\w+", t)) for t in texts]

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def docs(n=60, seed=7):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randint(4, 40)  # lengths on both sides of tantivy's exact-length range (24)
        words = [rng.choice(WORDS[: 6 + i % len(WORDS)]) for _ in range(k)]
        out.append({"id": f"d{i}", "text": " ".join(words)})
    return out


@pytest.fixture(params=ENGINES)
def filled(request, tmp_path):
    eng = open_engine(request.param, tmp_path / "data", TinyEmbedder())
    ds = docs()
    ingest(eng, "c", ds, chunk_size=200, chunk_overlap=0)
    yield eng, ds
    eng.close()


def test_bm25_stats_count_the_collection(filled):
    eng, ds = filled
    analysed = [tokenize(d["text"]) for d in ds]
    terms = ["retriev", "fusion", "absentterm"]
    n, avgdl, df = eng.bm25_stats("c", terms)
    assert n == len(ds)  # one chunk per document here
    assert avgdl == pytest.approx(sum(map(len, analysed)) / len(ds), rel=1e-6)
    want = Counter(t for toks in analysed for t in set(toks))
    assert df == {"retriev": want["retriev"], "fusion": want["fusion"], "absentterm": 0}
    assert 0 < df["retriev"] < len(ds)


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
def test_bm25_rerank_inside_search_scores_as_the_collection_does(filled, mode):
    eng, _ = filled
    reg = RerankerRegistry()
    for query in ("retrieval fusion", "sparse vector model", "dense passage ranking query"):
        plain = search(eng, None, query, "c", k=50, mode="bm25")
        arm = {h.chunk_id: h.score for h in plain.hits}
        res = search(eng, reg, query, "c", k=50, mode=mode, rerank={"reranker": "bm25", "candidates": 50})
        reranked = {h.chunk_id: h.provenance.rerank_score for h in res.hits if h.provenance.rerank_score is not None}
        shared = set(arm) & set(reranked)
        assert shared
        for cid in shared:  # the engine's own BM25 scores (float32 in tantivy), recomputed by the reranker
            assert reranked[cid] == pytest.approx(arm[cid], rel=1e-4, abs=1e-5)
        if mode == "bm25":  # the same order as BM25's (up to ties)
            order = [arm[h.chunk_id] for h in res.hits]
            assert set(h.chunk_id for h in res.hits) == set(arm)
            assert all(a >= b - 1e-4 for a, b in zip(order, order[1:]))


def test_bm25_lengths_are_counted_as_both_engines_count_them():
    """Exact below 24, then 24 plus the largest value <= n - 24 that has at most 4 significant
    bits (tantivy's one-byte field norm); the reranker counts lengths with the same function."""
    import bisect

    from rerank_mcp.index.bm25 import fieldnorm
    from rerank_mcp.tools.rerank import bm25 as bm25_reranker

    assert bm25_reranker.fieldnorm is fieldnorm
    representable = [v for v in range(2**17) if v < 16 or v & ((1 << (v.bit_length() - 4)) - 1) == 0]
    for n in range(100_000):
        want = n if n < 24 else 24 + representable[bisect.bisect_right(representable, n - 24) - 1]
        assert fieldnorm(n) == want, n
    assert fieldnorm(23) == 23 and fieldnorm(41) == 40  # rounded down past 24
