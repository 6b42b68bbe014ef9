"""Dense pseudo-relevance feedback (``search(feedback=True)``) on both engines: the arms' candidates
are scored again with the query vector moved toward the first stage's top chunks, their vectors
read from the engine (``Index.chunk_vectors``).

A model-free embedder (hashed bag of words) keeps it fast; SQLite, FAISS and tantivy (and
Qdrant's local mode) run for real."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_mcp.errors import InvalidInput
from rerank_mcp.tools.feedback import FEEDBACK_BETA, FEEDBACK_CHUNKS, feedback_vector, rescore
from rerank_mcp.tools.ingest import ingest
from rerank_mcp.tools.search import search
from tests.conftest import ENGINES, open_engine
from tests.integration.test_bm25_stats import TinyEmbedder, docs

QUERIES = ("retrieval fusion", "sparse vector model", "dense passage ranking query")


@pytest.fixture(params=ENGINES)
def filled(request, tmp_path):
    eng = open_engine(request.param, tmp_path / "data", TinyEmbedder())
    ds = docs()
    ingest(eng, "c", ds, chunk_size=200, chunk_overlap=0)
    yield eng, ds
    eng.close()


def _all_vectors(eng) -> dict[int, np.ndarray]:
    return {int(i): v for ids, vecs in eng.iter_vectors("c") for i, v in zip(ids, vecs)}


def test_chunk_vectors_are_the_stored_vectors_of_live_chunks(filled):
    eng, _ = filled
    stored = _all_vectors(eng)
    some = sorted(stored)[:7]
    got = eng.chunk_vectors("c", [*some, 10**9])  # an id that never existed is left out
    assert set(got) == set(some)
    for cid in some:
        np.testing.assert_allclose(got[cid], stored[cid], rtol=1e-6)
    doc = eng.fetch_chunks("c", [some[0]])[some[0]].doc_id
    eng.delete("c", [doc])
    assert some[0] not in eng.chunk_vectors("c", some)  # a deleted chunk has no vector any more


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_feedback_scores_the_candidates_with_the_moved_query_vector(filled, mode):
    eng, _ = filled
    emb = TinyEmbedder()
    stored = _all_vectors(eng)
    for query in QUERIES:
        plain = search(eng, None, query, "c", k=100, mode=mode)
        res = search(eng, None, query, "c", k=100, mode=mode, feedback=True)
        assert "feedback_ms" in res.timings_ms and "feedback_ms" not in plain.timings_ms
        # the first stage the feedback reads: the plain search's ranking (fused for hybrid)
        first = [(h.chunk_id, h.score) for h in plain.hits][:FEEDBACK_CHUNKS]
        qv = emb.encode([query])[0]
        want = qv + FEEDBACK_BETA * np.mean([stored[c] for c, _ in first], axis=0)
        want /= np.linalg.norm(want)
        dense = [(h.chunk_id, h.provenance.dense_score) for h in res.hits if h.provenance.dense_score is not None]
        assert dense
        for cid, s in dense:  # the dense arm's scores are inner products with the moved vector
            assert s == pytest.approx(float(stored[cid] @ want), abs=1e-4)
        assert any(abs(s - float(stored[cid] @ qv)) > 1e-3 for cid, s in dense)  # and not with the query's own


def test_feedback_vector_skips_chunks_without_vectors():
    q = np.array([1.0, 0.0], np.float32)
    v = feedback_vector(q, [(1, 0.9), (2, 0.8)], {2: np.array([0.0, 1.0], np.float32)}, m=2, beta=1.0)
    np.testing.assert_allclose(v, np.array([1.0, 1.0]) / np.sqrt(2), rtol=1e-6)
    assert feedback_vector(q, [(1, 0.9)], {}) is None


def test_rescore_ranks_the_given_vectors_by_inner_product():
    vecs = {7: np.array([1.0, 0.0], np.float32), 3: np.array([0.0, 1.0], np.float32),
            5: np.array([1.0, 0.0], np.float32)}
    assert rescore(np.array([0.6, 0.8], np.float32), vecs, 10) == [
        (3, pytest.approx(0.8)), (5, pytest.approx(0.6)), (7, pytest.approx(0.6))]  # ties by id
    assert [c for c, _ in rescore(np.array([1.0, 0.0], np.float32), vecs, 2)] == [5, 7]
    assert rescore(np.array([1.0, 0.0], np.float32), {}, 5) == []


def test_feedback_is_refused_for_bm25_and_for_non_booleans(filled):
    eng, _ = filled
    with pytest.raises(InvalidInput, match="feedback moves the dense query vector"):
        search(eng, None, "retrieval", "c", mode="bm25", feedback=True)
    with pytest.raises(InvalidInput, match="feedback must be true or false"):
        search(eng, None, "retrieval", "c", feedback="yes")  # type: ignore[arg-type]


def test_feedback_with_the_dense_arm_weighted_zero_says_it_was_skipped(filled):
    eng, _ = filled
    res = search(eng, None, "retrieval fusion", "c", weights={"dense": 0, "bm25": 1}, feedback=True)
    plain = search(eng, None, "retrieval fusion", "c", weights={"dense": 0, "bm25": 1})
    assert [h.chunk_id for h in res.hits] == [h.chunk_id for h in plain.hits]
    assert any("feedback skipped" in n for n in res.notes)


def test_cli_search_feedback(tmp_path, capsys):
    import json

    from rerank_mcp.server.cli import run

    base = ["--data-dir", str(tmp_path / "data"), "--json"]
    assert run([*base, "ingest", "-c", "kb", "--text", "Vitamin D deficiency and bone fractures in older adults.",
                "--text", "FAISS searches dense vectors.", "--id", "vitd", "--id", "faiss"]) == 0
    capsys.readouterr()
    assert run([*base, "search", "vitamin bones", "-c", "kb", "--feedback"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hits"][0]["doc_id"] == "vitd" and "feedback_ms" in out["timings_ms"]
    assert run([*base, "search", "vitamin", "-c", "kb", "--mode", "bm25", "--feedback"]) == 1
    assert "feedback moves the dense query vector" in capsys.readouterr().err


def test_eval_pipeline_feedback_runs_search_with_feedback(filled):
    from rerank_mcp.tools.evaluate import doc_ranking, evaluate_collection

    eng, ds = filled
    judgments = [{"query_id": f"q{i}", "query": q, "relevant": [ds[i]["id"]]} for i, q in enumerate(QUERIES)]
    res = evaluate_collection(eng, None, "c", judgments, ["hybrid", "hybrid(feedback)"])
    for out, q in zip(res.per_query, QUERIES):
        want = doc_ranking(search(eng, None, q, "c", k=100, feedback=True).hits)[:10]
        plain = doc_ranking(search(eng, None, q, "c", k=100).hits)[:10]
        assert out.top_docs["hybrid(feedback)"] == want and out.top_docs["hybrid"] == plain
    assert any(o.top_docs["hybrid(feedback)"] != o.top_docs["hybrid"] for o in res.per_query)


@pytest.mark.slow
def test_feedback_with_a_server_side_fusion_searches_again_with_the_moved_vector(tmp_path):
    """Qdrant's own fusion leaves the client no arms to score again: the engine searches with ``q'``."""
    eng = open_engine("qdrant", tmp_path / "data", TinyEmbedder())
    try:
        ingest(eng, "c", docs(), chunk_size=200, chunk_overlap=0)
        emb, stored = TinyEmbedder(), _all_vectors(eng)
        changed = 0
        for query in QUERIES:
            plain = search(eng, None, query, "c", k=100, fusion="server-rrf")
            res = search(eng, None, query, "c", k=100, fusion="server-rrf", feedback=True)
            qv = emb.encode([query])[0]
            want = qv + FEEDBACK_BETA * np.mean([stored[h.chunk_id] for h in plain.hits[:FEEDBACK_CHUNKS]], axis=0)
            want /= np.linalg.norm(want)
            again = eng.fused_search("c", query, want.astype(np.float32), 100, None, "rrf")
            assert [h.chunk_id for h in res.hits] == [c for c, _ in again if c in {h.chunk_id for h in res.hits}]
            assert "feedback_ms" in res.timings_ms
            changed += [h.chunk_id for h in res.hits] != [h.chunk_id for h in plain.hits]
        assert changed  # the moved vector changed at least one ranking
    finally:
        eng.close()
