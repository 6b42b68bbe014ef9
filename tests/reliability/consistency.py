"""Is a collection consistent after an interrupted write? Shared by the cancellation and
SIGTERM tests.

Every stored document is whole (exactly the chunks a clean ingest of its text produces), the
collection's document and chunk counts agree with the documents stored, and search finds
exactly the stored chunks: a dense search for everything returns each of them once, BM25
and hybrid return none that the store does not hold, and the embedded engine's FAISS and
BM25 indexes hold as many chunks as the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rerank_mcp.index.chunking import chunk_text
from rerank_mcp.tools.search import SearchLimits, search

EVERYTHING = SearchLimits(max_k=10**7)


def check_collection(engine: Any, collection: str, texts: Mapping[str, str], chunk_size: int,
                     chunk_overlap: int) -> dict[str, int]:
    """Assert the collection is consistent; return its document and chunk counts.
    ``texts``: the text ingested under each document id."""
    info = {c.name: c for c in engine.collections()}.get(collection)  # the listing carries the counts
    if info is None:
        return {"documents": 0, "chunks": 0}
    docs = engine.documents(collection, limit=10**7)
    count = engine.embedding.count_tokens
    chunk_ids: set[int] = set()
    for d in docs:
        assert d.id in texts, f"{d.id}: a document nobody ingested"
        full = engine.document(collection, d.id)
        want = [c.text for c in chunk_text(texts[d.id], chunk_size, chunk_overlap, count)]
        assert [c.text for c in full.chunks] == want, f"{d.id} is not whole"
        assert d.chunks == len(want), f"{d.id}: {d.chunks} chunks recorded, {len(want)} stored"
        chunk_ids.update(c.chunk_id for c in full.chunks)
    n_chunks = sum(d.chunks for d in docs)
    assert len(chunk_ids) == n_chunks
    assert info.documents == len(docs), f"collection says {info.documents} documents, {len(docs)} stored"
    assert info.chunks == n_chunks == engine.count_chunks(collection)
    if engine.backend == "embedded":
        col = engine.collection(collection)
        assert col.dense.size == n_chunks, "dense index disagrees with the store"
        assert col.sparse.size == n_chunks, "BM25 index disagrees with the store"
    if n_chunks:
        dense = search(engine, None, "alpha vector", collection, k=n_chunks + 10, mode="dense", limits=EVERYTHING)
        assert sorted(h.chunk_id for h in dense.hits) == sorted(chunk_ids), "dense search disagrees with the store"
        for mode in ("bm25", "hybrid"):
            res = search(engine, None, "alpha vector omega", collection, k=n_chunks + 10, mode=mode, limits=EVERYTHING)
            assert {h.chunk_id for h in res.hits} <= chunk_ids, f"{mode} search returned chunks the store lacks"
    return {"documents": len(docs), "chunks": n_chunks}
