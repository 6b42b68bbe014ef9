"""Ingest and search on a SciFact slice: counts, upsert, recall per mode, provenance, filters,
deletes, restart. Real embedder, SQLite, FAISS and tantivy."""

from __future__ import annotations

import pytest

from rerank_mcp.tools.collections import delete, list_collections
from rerank_mcp.tools.ingest import ingest
from rerank_mcp.tools.rerank.registry import RerankerRegistry
from rerank_mcp.tools.search import search

pytestmark = pytest.mark.slow  # a SciFact slice embedded and indexed on both engines

COLLECTION = "scifact"  # as built by the session fixture in conftest.py
MODES = ("dense", "bm25", "hybrid")


def hit_docs(res):
    return [h.doc_id for h in res.hits]


def test_ingest_counts(built):
    r = built.result
    n = len(built.docs)
    assert (r.added, r.updated, r.unchanged, r.failed) == (n, 0, 0, 0)
    assert r.chunks_written >= n
    assert sum(o.chunks for o in r.documents) == r.chunks_written
    assert {o.id for o in r.documents} == {d["id"] for d in built.docs}
    assert all(o.status == "added" and o.chunks >= 1 for o in r.documents)


def test_reingest_is_unchanged_and_embeds_nothing(built, open_copy):
    eng = open_copy()
    listed = eng.documents(COLLECTION, limit=10_000)
    sample = [d.id for d in listed[:20]]
    chunk_ids = {d: [c.chunk_id for c in eng.document(COLLECTION, d).chunks] for d in sample}
    r = ingest(eng, COLLECTION, built.docs)
    assert (r.added, r.updated, r.unchanged, r.chunks_written) == (0, 0, len(built.docs), 0)
    # an unchanged re-ingest writes nothing: same records, same chunks
    assert eng.documents(COLLECTION, limit=10_000) == listed
    assert {d: [c.chunk_id for c in eng.document(COLLECTION, d).chunks] for d in sample} == chunk_ids
    [summary] = list_collections(eng).collections
    assert summary.documents == len(built.docs) and summary.chunks == built.result.chunks_written


def test_modified_document_replaces_its_chunks(built, open_copy):
    eng = open_copy()
    doc = built.docs[5]
    old = eng.document(COLLECTION, doc["id"])
    old_ids = {c.chunk_id for c in old.chunks}
    new_text = "Zymurgical quasiparticle flux in axolotl regeneration.\n\n" + " ".join(
        f"Sentence {i} about xenobiotic axolotl limb regrowth and its zymurgical signalling." for i in range(30)
    )
    r = ingest(eng, COLLECTION, [{"id": doc["id"], "text": new_text, "metadata": doc["metadata"]}])
    assert (r.added, r.updated, r.unchanged) == (0, 1, 0)
    assert r.documents[0].chunks > 1 and r.chunks_written == r.documents[0].chunks
    new = eng.document(COLLECTION, doc["id"])
    assert not old_ids & {c.chunk_id for c in new.chunks}
    assert eng.fetch_chunks(COLLECTION, list(old_ids)) == {}
    assert eng.count_chunks(COLLECTION) == built.result.chunks_written - len(old_ids) + r.chunks_written
    # the old text is gone from every mode, the new text is found by every mode
    old_query = built.docs[5]["text"].split("\n\n")[0]
    for mode in MODES:
        hits = search(eng, None, old_query, COLLECTION, k=50, mode=mode).hits
        assert not {h.chunk_id for h in hits} & old_ids, mode
        top = search(eng, None, "zymurgical axolotl regeneration", COLLECTION, k=3, mode=mode).hits
        assert top[0].doc_id == doc["id"], mode
    sizes = eng.index_sizes(COLLECTION)
    assert sizes["dense"] == sizes["bm25"] == sizes["chunks"] == eng.count_chunks(COLLECTION)


@pytest.mark.parametrize("mode", MODES)
def test_recall_at_10(built, mode):
    found = [
        qid for qid in built.queries if set(hit_docs(built.baseline[(mode, qid)])) & built.qrels[qid]
    ]
    assert len(found) / len(built.queries) >= 0.6, f"{mode}: {len(found)}/{len(built.queries)}"


@pytest.mark.parametrize("mode", MODES)
def test_hits_are_well_formed(built, mode):
    texts = {d["id"]: d["text"] for d in built.docs}
    for qid in built.queries:
        res = built.baseline[(mode, qid)]
        assert res.mode == mode and res.collection == COLLECTION
        assert len(res.hits) == 10
        assert [h.rank for h in res.hits] == list(range(1, 11))
        scores = [h.score for h in res.hits]
        assert scores == sorted(scores, reverse=True)
        assert len({h.chunk_id for h in res.hits}) == 10
        for h in res.hits:
            assert texts[h.doc_id][h.start : h.end] == h.text  # offsets point into the source
            assert h.metadata == built.meta[h.doc_id]
            p = h.provenance
            if mode == "dense":
                assert p.dense_rank == h.rank and p.dense_score == pytest.approx(h.score)
                assert p.bm25_rank is p.bm25_score is p.fused_rank is None
            elif mode == "bm25":
                assert p.bm25_rank == h.rank and p.bm25_score == pytest.approx(h.score)
                assert p.dense_rank is p.dense_score is p.fused_rank is None
            else:
                assert p.fused_rank == h.rank and p.fused_score == pytest.approx(h.score)
                assert p.dense_rank is not None or p.bm25_rank is not None
                assert (p.dense_rank is None) == (p.dense_score is None)
                assert (p.bm25_rank is None) == (p.bm25_score is None)
            assert p.rerank_rank is None
        assert res.fusion == ("zscore" if mode == "hybrid" else None)


@pytest.mark.parametrize("fusion", ["minmax", "zscore"])
def test_score_fusion_modes(built, open_copy, fusion):
    eng = open_copy()
    qid = next(iter(built.queries))
    res = search(eng, None, built.queries[qid], COLLECTION, k=10, mode="hybrid", fusion=fusion,
                 weights={"dense": 1.0, "bm25": 0.5})
    assert res.fusion == fusion and len(res.hits) == 10
    assert [h.provenance.fused_rank for h in res.hits] == list(range(1, 11))
    dense_only = search(eng, None, built.queries[qid], COLLECTION, k=10, mode="hybrid", fusion=fusion,
                        weights={"dense": 1.0, "bm25": 0.0})
    assert hit_docs(dense_only) == hit_docs(built.baseline[("dense", qid)])


def test_metadata_filter_restricts_hits(built, open_copy):
    eng = open_copy()
    for qid, q in list(built.queries.items())[:4]:
        for mode in MODES:
            res = search(eng, None, q, COLLECTION, k=10, mode=mode, filter={"parity": "even", "n": {"$lt": 200}})
            assert res.hits, (mode, qid)
            assert all(h.metadata["parity"] == "even" and h.metadata["n"] < 200 for h in res.hits)
            judged = search(eng, None, q, COLLECTION, k=10, mode=mode, filter='{"judged": true}')
            assert judged.hits and all(built.meta[d]["judged"] for d in hit_docs(judged))
            assert search(eng, None, q, COLLECTION, k=10, mode=mode, filter={"parity": "none"}).hits == []


def test_delete_by_id_and_by_filter(built, open_copy):
    eng = open_copy()
    # a relevant document that every mode finds for its query
    qid, target = next(
        (q, d) for q in built.queries for d in built.qrels[q]
        if all(d in hit_docs(built.baseline[(m, q)]) for m in MODES)
    )
    q = built.queries[qid]
    r = delete(eng, COLLECTION, ids=[target])
    assert r.deleted_documents == [target]
    for mode in MODES:
        assert target not in hit_docs(search(eng, None, q, COLLECTION, k=50, mode=mode)), mode
    # by filter: every odd document disappears from every mode
    r = delete(eng, COLLECTION, filter={"parity": "odd"})
    odd = {d for d, m in built.meta.items() if m["parity"] == "odd"} - {target}
    assert set(r.deleted_documents) == odd
    for q2 in list(built.queries.values())[:5]:
        for mode in MODES:
            docs = hit_docs(search(eng, None, q2, COLLECTION, k=30, mode=mode))
            assert docs and all(built.meta[d]["parity"] == "even" for d in docs), mode
    live = eng.count_chunks(COLLECTION)
    assert eng.index_sizes(COLLECTION) == {"chunks": live, "dense": live, "bm25": live}
    # and after a restart every structure agrees
    eng.close()
    eng2 = open_copy()
    assert eng2.index_sizes(COLLECTION) == {"chunks": live, "dense": live, "bm25": live}
    assert target not in hit_docs(search(eng2, None, q, COLLECTION, k=50, mode="hybrid"))
    # unknown ids delete nothing
    assert delete(eng2, COLLECTION, ids=["no-such-doc"]).deleted_documents == []


def test_drop_collection(built, open_copy):
    eng = open_copy()
    r = delete(eng, COLLECTION, drop_collection=True)
    assert r.collection_dropped
    assert list_collections(eng).collections == []
    assert eng.collection_info(COLLECTION) is None
    if open_copy.backend == "embedded":  # its derived files go too
        assert not (open_copy.data_dir / "collections" / COLLECTION).exists()


def test_restart_gives_identical_hits(built, open_copy):
    eng = open_copy()
    for qid in list(built.queries)[:8]:
        for mode in MODES:
            res = search(eng, None, built.queries[qid], COLLECTION, k=10, mode=mode)
            base = built.baseline[(mode, qid)]
            assert [h.chunk_id for h in res.hits] == [h.chunk_id for h in base.hits], (mode, qid)
            assert [h.score for h in res.hits] == pytest.approx([h.score for h in base.hits], rel=1e-5)


@pytest.mark.parametrize("fusion", ["zscore", "minmax"])
def test_asking_for_more_hits_never_reorders_the_first(built, open_copy, fusion):
    """k (and rerank.candidates) over 100 search the arms deeper; the first hits stay as they were
    (the normalisation statistics come from each arm's first 100 chunks, whatever the depth)."""
    eng = open_copy()
    assert eng.count_chunks(COLLECTION) >= 300  # arms deeper than 100 reach chunks they would not
    for q in list(built.queries.values())[:12]:
        top = {k: [h.chunk_id for h in search(eng, None, q, COLLECTION, k=k, fusion=fusion).hits] for k in (3, 100, 150)}
        deep = search(eng, None, q, COLLECTION, k=1000, fusion=fusion).hits
        assert len(deep) > 150
        ids = [h.chunk_id for h in deep]
        for k, got in top.items():
            assert got == ids[:k], (q, k)
        # more rerank candidates search the arms deeper too: each hit keeps its first-stage rank and score
        wide = search(eng, RerankerRegistry(), q, COLLECTION, k=10, fusion=fusion,
                      rerank={"reranker": "bm25", "candidates": 400})
        first = {h.chunk_id: (r, h.score) for r, h in enumerate(deep, start=1)}
        for h in wide.hits:
            assert (h.provenance.fused_rank, h.provenance.fused_score) == (
                first[h.chunk_id][0], pytest.approx(first[h.chunk_id][1])), q


def test_a_filter_of_the_wrong_value_type_says_so(built, open_copy):
    """Metadata 'n' holds numbers and 'parity' strings: a filter comparing them to the other type finds
    nothing, and the result says why; a filter of the right type, or one that simply matches nothing, says nothing."""
    eng = open_copy()
    q = next(iter(built.queries.values()))
    for flt, field, given, held in (({"n": "5"}, "n", "string", "number"),
                                    ({"n": {"$in": ["5", "6"]}}, "n", "string", "number"),
                                    ({"$and": [{"parity": 1}]}, "parity", "number", "string")):
        res = search(eng, None, q, COLLECTION, k=5, filter=flt)
        assert res.hits == []
        assert any(f"compares '{field}' to a {given}" in n and f"hold {held}s in '{field}'" in n for n in res.notes), (
            flt, res.notes)
    res = search(eng, None, q, COLLECTION, k=5, filter={"n": 5})
    assert [h.metadata["n"] for h in res.hits] and not any("compares" in n for n in res.notes)
    res = search(eng, None, q, COLLECTION, k=5, filter={"n": 10**9})
    assert res.hits == [] and not any("compares" in n for n in res.notes)
