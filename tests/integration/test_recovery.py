"""Durability: derived indexes rebuilt from the store when missing or damaged, a corrupt store
refused clearly, embedding-model mismatches refused, and incremental BM25 catch-up."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rerank_mcp.errors import ModelMismatch, StoreCorrupt
from rerank_mcp.index.engine import EmbeddedIndex, IndexConfig
from rerank_mcp.tools.ingest import ingest
from rerank_mcp.tools.search import search

COLLECTION = "scifact"  # as built_embedded by the session fixture in conftest.py
MODES = ("dense", "bm25", "hybrid")


def _truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])


def _garbage(p):
    p.write_bytes(b"\x00garbage" * 64)


def _bm25_files(folder):
    return [p for p in (folder / "bm25").iterdir() if p.is_file()]


DAMAGE = {
    "dense.faiss deleted": lambda f: (f / "dense.faiss").unlink(),
    "dense.faiss truncated": lambda f: _truncate(f / "dense.faiss"),
    "dense.faiss garbage": lambda f: _garbage(f / "dense.faiss"),
    "dense.json deleted": lambda f: (f / "dense.json").unlink(),
    "dense.json garbage": lambda f: _garbage(f / "dense.json"),
    "bm25 folder deleted": lambda f: shutil.rmtree(f / "bm25"),
    "bm25 folder emptied": lambda f: [p.unlink() for p in _bm25_files(f)],
    "bm25 meta.json garbage": lambda f: _garbage(f / "bm25" / "meta.json"),
    "bm25 segments truncated": lambda f: [_truncate(p) for p in _bm25_files(f) if p.name != "meta.json"],
    "bm25.json deleted": lambda f: (f / "bm25.json").unlink(),
}


@pytest.mark.slow  # works on a copy of the SciFact slice the session builds
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_derived_index_is_rebuilt(built_embedded, open_embedded_copy, damage):
    folder = open_embedded_copy.data_dir / "collections" / COLLECTION
    DAMAGE[damage](folder)
    eng = open_embedded_copy()
    notes = eng.open_all()
    assert notes and any(("DenseIndex" if "dense" in damage else "SparseIndex") in n for n in notes), notes
    col = eng.collection(COLLECTION)
    live = eng.store.count_chunks(COLLECTION)
    assert col.dense.size == col.sparse.size == live
    mode = "dense" if "dense" in damage else "bm25"
    for qid in list(built_embedded.queries)[:5]:
        res = search(eng, None, built_embedded.queries[qid], COLLECTION, k=10, mode=mode)
        base = built_embedded.baseline[(mode, qid)]
        assert [h.chunk_id for h in res.hits] == [h.chunk_id for h in base.hits], (damage, qid)
        assert [h.score for h in res.hits] == pytest.approx([h.score for h in base.hits], rel=1e-4)
    # the repaired index was persisted: the next open needs no repair
    eng.close()
    assert open_embedded_copy().open_all() == []


@pytest.mark.slow  # works on a copy of the SciFact slice the session builds
def test_unsaved_changes_are_replayed_after_a_crash(built_embedded, open_embedded_copy):
    """The store acknowledged it, the derived files never heard of it: replay on open."""
    eng = open_embedded_copy()
    folder = open_embedded_copy.data_dir / "collections" / COLLECTION
    saved = {p: p.read_bytes() for p in (folder / "dense.faiss", folder / "dense.json", folder / "bm25.json")}
    r = ingest(eng, COLLECTION, [{"id": "crash-doc", "text": "Quokka telomerase in marsupial zygotes."}])
    assert r.added == 1
    eng.store.close()
    eng.embedding.cache.close()  # simulate a crash: the engine's derived indexes are never closed/saved
    for p, data in saved.items():  # and the sidecars still describe the old state
        p.write_bytes(data)
    eng2 = open_embedded_copy()
    for mode in MODES:
        assert search(eng2, None, "quokka telomerase", COLLECTION, k=3, mode=mode).hits[0].doc_id == "crash-doc"


@pytest.mark.parametrize("how", ["garbage", "truncated header"])
def test_corrupt_store_is_refused(tmp_path, embedder, how):
    data = tmp_path / "data"
    eng = EmbeddedIndex(IndexConfig(data_dir=data, embedder_factory=lambda: embedder))
    ingest(eng, "c", [{"id": "a", "text": "some text to store"}])
    eng.close()
    db = data / "rerank-mcp.sqlite"
    for extra in ("-wal", "-shm"):
        (data / f"rerank-mcp.sqlite{extra}").unlink(missing_ok=True)
    if how == "garbage":
        _garbage(db)
    else:
        raw = bytearray(db.read_bytes())
        raw[:16] = b"NOT SQLITE AT AL"
        db.write_bytes(bytes(raw))
    with pytest.raises(StoreCorrupt) as ei:
        EmbeddedIndex(IndexConfig(data_dir=data, embedder_factory=lambda: embedder))
    msg = str(ei.value)
    assert "rerank-mcp.sqlite" in msg and "unreadable" in msg and "re-ingest" in msg


class HashEmbedder:
    """A stand-in collaborator with another model identity (deterministic, no weights)."""

    name = "test/hash-embedder"
    dim = 384
    batch_size = 32

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, hash(w) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


def test_model_mismatch_is_refused_and_reindex_fixes_it(tmp_path, embedder):
    data = tmp_path / "data"
    other = EmbeddedIndex(IndexConfig(data_dir=data, embedding_model="test/hash-embedder", embedder_factory=HashEmbedder))
    ingest(other, "c", [{"id": "a", "text": "Penguins huddle to keep warm."}, {"id": "b", "text": "Volcanoes erupt."}])
    other.close()
    eng = EmbeddedIndex(IndexConfig(data_dir=data, embedder_factory=lambda: embedder))
    try:
        seq = eng.store.seq()
        for call in (
            lambda: search(eng, None, "penguins", "c", mode="dense"),
            lambda: search(eng, None, "penguins", "c", mode="bm25"),
            lambda: ingest(eng, "c", [{"id": "z", "text": "new text"}]),
        ):
            with pytest.raises(ModelMismatch) as ei:
                call()
            assert "test/hash-embedder" in str(ei.value) and "reindex" in str(ei.value)
        assert eng.store.seq() == seq
        assert eng.reindex("c") == 2
        assert search(eng, None, "penguins keeping warm", "c", mode="dense").hits[0].doc_id == "a"
    finally:
        eng.close()


@pytest.mark.slow  # works on a copy of the SciFact slice the session builds
def test_bm25_catch_up_is_incremental(built_embedded, open_embedded_copy, monkeypatch):
    eng = open_embedded_copy()
    col = eng.collection(COLLECTION)
    before = col.sparse.size
    calls: list[int] = []
    real_catch_up = col.sparse.catch_up

    def spy(*a, **kw):
        n = real_catch_up(*a, **kw)
        if n:  # the engine's idle poll for other processes' writes catches up too, finding nothing
            calls.append(n)
        return n

    def no_rebuild():
        raise AssertionError("adding one document must not rebuild the BM25 index")

    monkeypatch.setattr(col.sparse, "catch_up", spy)
    monkeypatch.setattr(col.sparse, "rebuild", no_rebuild)
    text = "Capybara microbiome studies.\n\n" + " ".join(f"Capybara gut flora finding number {i}." for i in range(60))
    r = ingest(eng, COLLECTION, [{"id": "capybara", "text": text}])
    n = r.documents[0].chunks
    assert n > 1 and calls == [n]
    assert col.sparse.size == before + n
    # replacing it: the old chunks (tombstones) and the new ones, nothing else
    calls.clear()
    r2 = ingest(eng, COLLECTION, [{"id": "capybara", "text": text + " One more capybara sentence."}])
    assert calls == [n + r2.documents[0].chunks]
    assert col.sparse.size == before + r2.documents[0].chunks
    assert search(eng, None, "capybara gut flora", COLLECTION, k=1, mode="bm25").hits[0].doc_id == "capybara"
