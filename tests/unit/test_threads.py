"""FAISS's single-query threading must not cap the embedding model (one OpenMP runtime, per-thread
thread counts): a worker thread that served a dense search still embeds on every core."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rerank_mcp.index.threads import available_cores, single_threaded_faiss, torch_threads


def in_thread(fn):
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # pragma: no cover - reported below
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_faiss_search_leaves_the_thread_count_as_it_was():
    faiss = pytest.importorskip("faiss")
    torch = pytest.importorskip("torch")

    def work():
        before = torch.get_num_threads()
        idx = faiss.IndexFlatIP(8)
        idx.add(np.eye(8, dtype=np.float32))
        seen = []
        with single_threaded_faiss(faiss):
            seen.append(faiss.omp_get_max_threads())
            idx.search(np.ones((1, 8), np.float32), 3)
        return before, seen[0], torch.get_num_threads()

    before, during, after = in_thread(work)
    assert during == 1
    assert after == before


@pytest.mark.slow  # loads torch and the model on the torch backend
def test_dense_search_then_embedding_in_one_worker_uses_every_core(tmp_path):
    """The engine's dense search, then the embedder, in the same worker thread (as a server
    worker serves a search, then an ingest): torch runs with every available core."""
    torch = pytest.importorskip("torch")
    from rerank_mcp.index.embedding import Embedder
    from rerank_mcp.index.engine import EmbeddedIndex, IndexConfig
    from rerank_mcp.tools.ingest import ingest

    torch_embedder = Embedder("all-MiniLM-L6-v2")
    engine = EmbeddedIndex(IndexConfig(data_dir=tmp_path / "data", embedder_factory=lambda: torch_embedder))

    ingest(engine, "t", [{"id": "a", "text": "FAISS searches dense vectors."}])

    def work():
        engine.dense_search("t", engine.embedding.query("vectors"), 5)
        after_search = torch.get_num_threads()
        seen = []
        emb = engine.embedding.embedder
        real = emb.model.encode

        def spy(*a, **k):
            seen.append(torch.get_num_threads())
            return real(*a, **k)

        emb.model.encode = spy
        try:
            emb.encode(["a sentence to embed"])
        finally:
            emb.model.encode = real
        return after_search, seen

    try:
        after_search, seen = in_thread(work)
    finally:
        engine.close()
    assert seen == [available_cores()], f"embedding ran with {seen} threads, {available_cores()} cores available"


def test_torch_threads_overrides_a_capped_worker():
    torch = pytest.importorskip("torch")
    faiss = pytest.importorskip("faiss")

    def work():
        torch.get_num_threads()  # torch has already run in this worker thread
        faiss.omp_set_num_threads(1)  # what a library may leave behind in this worker thread
        torch.set_num_threads(1)  # (or torch itself, through the same OpenMP runtime)
        capped = torch.get_num_threads()
        torch_threads()
        return capped, torch.get_num_threads()

    capped, now = in_thread(work)
    assert capped == 1
    assert now == available_cores()
