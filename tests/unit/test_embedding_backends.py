"""Embedding backends: choosing one, and collections built with one backend used with another.

Model-free: ``load_embedder`` is replaced by salted hash embedders (one "model" whose vectors
differ per backend), so what is checked is which backend embeds what, not the models.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures.fakes import BackendHashEmbedder

MODEL = "test/model"


@pytest.fixture
def loads(monkeypatch):
    """Replace real model loading: every (model, backend) loaded is recorded and built once."""
    from rerank_mcp.index import contract

    made: dict[tuple[str, str], BackendHashEmbedder] = {}

    def fake_load(name, backend="torch", device="cpu", batch_size=None, cache_dir=None):
        return made.setdefault((name, backend), BackendHashEmbedder(name, backend))

    monkeypatch.setattr(contract, "load_embedder", fake_load)
    return made


def _engine(kind, tmp_path, backend, model=MODEL):
    from rerank_mcp.index.contract import IndexConfig
    from rerank_mcp.index.engines import open_index
    from rerank_mcp.index.qdrant import QdrantConfig

    cfg = IndexConfig(data_dir=tmp_path / "data", embedding_model=model, embedding_backend=backend,
                      engine=QdrantConfig(path=str(tmp_path / "data" / "qdrant")) if kind == "qdrant" else None)
    return open_index(cfg, kind)


DOCS = [{"id": "a", "text": "the cat sat on the mat"}, {"id": "b", "text": "stock markets fell sharply today"}]


def test_identity_records_the_backend_except_torch():
    from rerank_mcp.index.model_names import identity, split_identity

    assert identity("sentence-transformers/all-MiniLM-L6-v2", "torch") == "sentence-transformers/all-MiniLM-L6-v2"
    assert identity("m", "onnx-mixed") == "m#onnx-mixed"
    assert split_identity("m#onnx-mixed") == ("m", "onnx-mixed")
    assert split_identity("m#onnx") == ("m", "onnx")
    assert split_identity("sentence-transformers/all-MiniLM-L6-v2") == ("sentence-transformers/all-MiniLM-L6-v2", "torch")
    assert split_identity("/models/odd#name") == ("/models/odd#name", "torch")  # not a backend: part of the name


@pytest.mark.parametrize("kind", ["embedded", "qdrant"])
def test_collection_keeps_its_backend_when_the_server_uses_another(kind, tmp_path, loads):
    from rerank_mcp.tools.ingest import ingest
    from rerank_mcp.tools.search import search

    old = _engine(kind, tmp_path, "torch")
    ingest(old, "c", DOCS)
    assert old.collection_info("c").embedding_model == MODEL  # torch: the bare name, as before
    old.close()

    new = _engine(kind, tmp_path, "onnx-mixed")
    try:
        res = search(new, None, "cat on a mat", "c", k=2, mode="dense")
        assert res.hits[0].doc_id == "a"
        torch_e, mixed = loads[(MODEL, "torch")], loads.get((MODEL, "onnx-mixed"))
        # the query went through the collection's backend, not the configured one
        q = new.embedding.query("cat on a mat", new.collection_info("c"))
        np.testing.assert_allclose(q, torch_e.encode(["cat on a mat"])[0])
        assert mixed is None or mixed.calls == 0
        # new documents in the old collection are embedded with its backend too: no mixed vectors
        before = torch_e.calls
        ingest(new, "c", [{"id": "c", "text": "dogs bark at night"}])
        assert torch_e.calls > before
        assert mixed is None or mixed.calls == 0
        hit = search(new, None, "dogs bark at night", "c", k=1, mode="dense").hits[0]
        assert hit.doc_id == "c" and hit.score == pytest.approx(1.0, abs=1e-5)  # query and chunk vectors from one backend
        # a new collection is built with the configured backend and says so
        ingest(new, "fresh", DOCS)
        assert new.collection_info("fresh").embedding_model == f"{MODEL}#onnx-mixed"
        assert loads[(MODEL, "onnx-mixed")].calls > 0
        hit = search(new, None, "stock markets fell sharply today", "fresh", k=1, mode="dense").hits[0]
        assert hit.score == pytest.approx(1.0, abs=1e-5)
    finally:
        new.close()


def test_reindex_moves_a_collection_to_the_configured_backend(tmp_path, loads):
    from rerank_mcp.tools.ingest import ingest

    old = _engine("embedded", tmp_path, "torch")
    ingest(old, "c", DOCS)
    old.close()
    new = _engine("embedded", tmp_path, "onnx")
    try:
        new.reindex("c")
        info = new.collection_info("c")
        assert info.embedding_model == f"{MODEL}#onnx"
        q = new.embedding.query("the cat sat on the mat", info)
        np.testing.assert_allclose(q, loads[(MODEL, "onnx")].encode(["the cat sat on the mat"])[0])
    finally:
        new.close()


def test_another_model_is_refused_with_the_way_out(tmp_path, loads):
    from rerank_mcp.errors import ModelMismatch
    from rerank_mcp.tools.ingest import ingest
    from rerank_mcp.tools.search import search

    old = _engine("embedded", tmp_path, "onnx-mixed", model="test/other")
    ingest(old, "c", DOCS)
    old.close()
    new = _engine("embedded", tmp_path, "torch")
    try:
        with pytest.raises(ModelMismatch) as err:
            search(new, None, "cat", "c", mode="dense")
        msg = str(err.value)
        assert "RERANK_MCP_EMBEDDING_MODEL=test/other" in msg
        assert "RERANK_MCP_EMBEDDING_BACKEND=onnx-mixed" in msg
        assert "rerank-mcp reindex c" in msg
    finally:
        new.close()


def test_settings_select_the_backend(monkeypatch, tmp_path):
    from rerank_mcp.server.settings import load_settings
    from rerank_mcp.server.state import index_config

    monkeypatch.delenv("RERANK_MCP_EMBEDDING_BACKEND", raising=False)
    assert load_settings(data_dir=tmp_path).embedding_backend == "onnx-smooth-l0"  # the default
    assert index_config(load_settings(data_dir=tmp_path)).embedding_backend == "onnx-smooth-l0"
    monkeypatch.setenv("RERANK_MCP_EMBEDDING_BACKEND", "onnx-mixed")
    s = load_settings(data_dir=tmp_path)
    assert s.embedding_backend == "onnx-mixed"
    assert index_config(s).embedding_backend == "onnx-mixed"
    monkeypatch.setenv("RERANK_MCP_EMBEDDING_BACKEND", "tensorrt")
    with pytest.raises(Exception, match="embedding_backend"):
        load_settings(data_dir=tmp_path)


@pytest.mark.parametrize("backend,keep", [("onnx", None), ("onnx-mixed", "FFN_OUTPUT"),
                                          ("onnx-mixed-l0", "FIRST_FFN_OUTPUT"),
                                          ("onnx-smooth-l0", "SMOOTH_FIRST_FFN_OUTPUT"),
                                          ("onnx-smooth-l01", "SMOOTH_FIRST_TWO_FFN_OUTPUTS")])
def test_load_embedder_builds_the_onnx_variant(monkeypatch, tmp_path, backend, keep):
    from rerank_mcp.index import embedding, onnx_embed

    seen = {}

    class Recorder:
        def __init__(self, name, folder, cache_dir, batch_size, max_len, keep_fp32=None, backend=None, **kw):
            seen.update(name=name, cache_dir=cache_dir, keep_fp32=keep_fp32, backend=backend)

    monkeypatch.setattr(onnx_embed, "OnnxEmbedder", Recorder)
    embedding.load_embedder("all-MiniLM-L6-v2", backend, cache_dir=tmp_path)
    assert seen["backend"] == backend and seen["cache_dir"] == tmp_path
    assert seen["keep_fp32"] == (getattr(onnx_embed, keep) if keep else None)


def test_unknown_backend_names_the_known_ones():
    from rerank_mcp.errors import DependencyMissing
    from rerank_mcp.index.embedding import load_embedder

    with pytest.raises(DependencyMissing, match="torch, onnx, onnx-mixed"):
        load_embedder("all-MiniLM-L6-v2", "tensorrt")


@pytest.mark.parametrize("n,batch,workers", [(1, 4, 2), (7, 4, 2), (217, 4, 2), (217, 32, 2), (64, 32, 1), (9, 4, 3)])
def test_batches_are_sorted_balanced_and_longest_first(n, batch, workers):
    import random

    from rerank_mcp.index.onnx_embed import plan_batches

    rng = random.Random(n)
    lengths = [rng.randint(3, 130) for _ in range(n)]
    batches = plan_batches(lengths, batch, workers)
    flat = [int(i) for b in batches for i in b]
    assert sorted(flat) == list(range(n))  # every text once
    sizes = [len(b) for b in batches]
    assert max(sizes) <= batch and max(sizes) - min(sizes) <= 1
    if len(batches) > 1 and workers > 1:
        assert len(batches) % workers == 0  # no worker waits alone for a last batch
    widths = [max(lengths[i] for i in b) for b in batches]
    assert widths == sorted(widths, reverse=True)  # longest first
    for b in batches:  # each batch holds neighbours in length order: little padding
        inside = sorted(lengths[i] for i in b)
        others = [lengths[i] for c in batches if c is not b for i in c]
        assert not any(inside[0] < x < inside[-1] for x in others)


def test_onnx_backends_default_to_small_batches(monkeypatch, tmp_path):
    from rerank_mcp.index import embedding, onnx_embed

    seen = {}

    class Recorder:
        def __init__(self, name, folder, cache_dir, batch_size, max_len, keep_fp32=None, backend=None, **kw):
            seen["batch"] = batch_size

    monkeypatch.setattr(onnx_embed, "OnnxEmbedder", Recorder)
    embedding.load_embedder("all-MiniLM-L6-v2", "onnx-mixed-l0", cache_dir=tmp_path)
    assert seen["batch"] == embedding.DEFAULT_BATCH["onnx"] == 4
    embedding.load_embedder("all-MiniLM-L6-v2", "onnx-mixed-l0", cache_dir=tmp_path, batch_size=16)
    assert seen["batch"] == 16  # a setting wins
