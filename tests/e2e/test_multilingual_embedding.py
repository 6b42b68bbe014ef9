"""A collection built with a multilingual embedding model, through a real MCP client session.

The local Hugging Face-compatible hub (tests/fixtures/hub.py) serves fixture models of the
published architectures and tokenizer type (tests/fixtures/multilingual.py: XLM-R's SentencePiece
Unigram tokenizer, tiny random weights) under the real names: ``intfloat/multilingual-e5-small``
(a BERT encoder over XLM-R's vocabulary, mean pooling, as published) and ``BAAI/bge-m3``
(XLM-RoBERTa, CLS pooling). The server fetches the model on first
use (or after ``models pull`` with downloads off), runs it on the default ONNX int8 path, records
it as the collection's model, and embeds queries and passages with the e5 prefixes. The fixture
weights are random, so what is checked is the plumbing, not retrieval quality: the dense scores
the server returns equal those of sentence-transformers running the same files in fp32 with the
prefixes (within int8 rounding).
"""

from __future__ import annotations

import numpy as np
import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from tests.e2e.test_languages import DOCS
from tests.fixtures.hub import FakeHub
from tests.fixtures.multilingual import build_xlmr_encoder

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # slow: fixture multilingual embedders served from a local hub

E5 = "intfloat/multilingual-e5-small"
M3 = "BAAI/bge-m3"
QUERY = "大熊猫每天吃什么"


@pytest.fixture(scope="module")
def e5_folder(tmp_path_factory):
    return build_xlmr_encoder(tmp_path_factory.mktemp("e5") / "model", arch="bert")  # as multilingual-e5-small


@pytest.fixture(scope="module")
def m3_folder(tmp_path_factory):
    return build_xlmr_encoder(tmp_path_factory.mktemp("m3") / "model", pooling="cls")


@pytest.fixture
def hub(monkeypatch, tmp_path, e5_folder, m3_folder):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHub() as h:
        h.add_repo(E5, folder=e5_folder)
        h.add_repo(M3, folder=m3_folder)
        monkeypatch.setenv("HF_ENDPOINT", h.base_url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
        yield h


def _settings(settings, model, **kw):
    return settings.model_copy(update={"embedding_model": model, "onnx_cache_dir": settings.data_dir / "onnx", **kw})


def _fp32(folder, query_prefix, passage_prefix):
    """What sentence-transformers gives for the fixture's files in fp32: cosines of the query
    against every document."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder))
    q = st.encode([query_prefix + QUERY], normalize_embeddings=True)[0]
    p = st.encode([passage_prefix + d["text"] for d in DOCS], normalize_embeddings=True)
    return {d["id"]: float(v) for d, v in zip(DOCS, p @ q)}


def _cached(settings, texts) -> int:
    import sqlite3

    from rerank_mcp.index.embedding import EmbeddingCache

    db = sqlite3.connect(str(settings.data_dir / "embedding-cache.sqlite"))
    try:
        keys = [EmbeddingCache.key(t) for t in texts]
        return db.execute(f"SELECT COUNT(*) FROM vecs WHERE hash IN ({','.join('?' * len(keys))})", keys).fetchone()[0]
    finally:
        db.close()


async def _ingest_and_search(settings):
    async with Client(build_server(settings)) as c:
        r = await c.call_tool("ingest", {"collection": "zh", "documents": DOCS})
        assert not r.is_error, r.content
        r = await c.call_tool("list_collections", {})
        (coll,) = r.structured_content["collections"]
        r = await c.call_tool("search", {"query": QUERY, "collection": "zh", "mode": "dense", "k": len(DOCS)})
        assert not r.is_error, r.content
        hits = {h["doc_id"]: h["score"] for h in r.structured_content["hits"]}
        r = await c.call_tool("search", {"query": QUERY, "collection": "zh", "mode": "hybrid", "k": 3})
        assert not r.is_error and len(r.structured_content["hits"]) == 3  # both arms run (random dense weights)
        return coll, hits


async def test_e5_model_is_fetched_on_first_use_recorded_and_prefixed_on_both_sides(settings, hub, e5_folder):
    coll, hits = await _ingest_and_search(_settings(settings, E5))
    assert hub.gets(f"/{E5}/resolve/"), "the model came from the hub on first use"
    assert coll["embedding_model"] == f"{E5}#onnx-smooth-l0" and coll["dim"] == 32
    assert set(hits) == {d["id"] for d in DOCS}
    want = _fp32(e5_folder, "query: ", "passage: ")
    bare = _fp32(e5_folder, "", "")
    # int8 rounding of the prefixed fp32 scores, far from the scores without the prefixes
    err = np.mean([abs(hits[k] - want[k]) for k in hits])
    err_bare = np.mean([abs(hits[k] - bare[k]) for k in hits])
    assert err < 0.008 and err_bare > 3 * err, (err, err_bare)
    # what ingest embedded (and cached): the passages with their prefix
    assert _cached(settings, ["passage: " + d["text"] for d in DOCS]) == len(DOCS)
    assert _cached(settings, [d["text"] for d in DOCS]) == 0

    # A second server on the same data dir, downloads off: the collection's model is in the cache.
    hub.requests.clear()
    coll2, hits2 = await _ingest_and_search(_settings(settings, E5, download_models=False))
    assert coll2["embedding_model"] == coll["embedding_model"] and not hub.gets("/resolve/")
    assert hits2 == pytest.approx(hits, abs=1e-6)


async def test_the_qdrant_engine_records_and_uses_the_model_too(settings, hub, e5_folder):
    s = _settings(settings, E5, backend="qdrant", qdrant_path=str(settings.data_dir / "qdrant"))
    coll, hits = await _ingest_and_search(s)
    assert coll["embedding_model"] == f"{E5}#onnx-smooth-l0" and coll["dim"] == 32
    want = _fp32(e5_folder, "query: ", "passage: ")
    assert np.mean([abs(hits[k] - want[k]) for k in hits]) < 0.008


async def test_bge_m3_pools_the_first_token(settings, hub, m3_folder):
    coll, hits = await _ingest_and_search(_settings(settings, M3))
    assert coll["embedding_model"] == f"{M3}#onnx-smooth-l0"
    want = _fp32(m3_folder, "", "")  # CLS pooling, no prefixes
    assert np.mean([abs(hits[k] - want[k]) for k in hits]) < 0.008
    assert _cached(settings, [d["text"] for d in DOCS]) == len(DOCS)


async def test_downloads_off_names_models_pull_and_stores_nothing_then_pull_works(settings, hub, tmp_path):
    s = _settings(settings, E5, download_models=False)
    async with Client(build_server(s)) as c:
        r = await c.call_tool("ingest", {"collection": "zh", "documents": DOCS})
        assert r.is_error
        msg = r.content[0].text
        assert f"embedding model '{E5}' is not on this machine" in msg and f"rerank-mcp models pull {E5}" in msg
        r = await c.call_tool("list_collections", {})
        assert r.structured_content["collections"] == []
    assert not hub.gets("/resolve/")

    # `rerank-mcp models pull` (the same store the CLI verb uses) fetches it ahead of time
    from rerank_mcp.server.state import model_store
    from rerank_mcp.tools.models_store import model_ref

    model_store(settings.model_copy(update={"download_models": True})).pull(model_ref(E5))
    coll, hits = await _ingest_and_search(s)
    assert coll["embedding_model"] == f"{E5}#onnx-smooth-l0" and len(hits) == len(DOCS)
    assert np.isfinite(list(hits.values())).all()
