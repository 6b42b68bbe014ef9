"""The Qdrant engine against a real Qdrant server: runs when RERANK_MCP_TEST_QDRANT_URL is set
(and RERANK_MCP_TEST_QDRANT_API_KEY where the server wants a key), skipped otherwise.

Everything it creates is named ``rerank_mcp__test-<random>...`` and dropped at the end."""

from __future__ import annotations

import hashlib
import os
import secrets

import pytest

URL = os.environ.get("RERANK_MCP_TEST_QDRANT_URL")
KEY = os.environ.get("RERANK_MCP_TEST_QDRANT_API_KEY") or None
pytestmark = pytest.mark.skipif(not URL, reason="set RERANK_MCP_TEST_QDRANT_URL to test against a Qdrant server")

pytest.importorskip("qdrant_client")

from rerank_mcp.errors import ModelMismatch, NotFound, UpstreamError
from rerank_mcp.index.contract import DocumentWrite, IndexConfig, NewChunk
from rerank_mcp.index.filters import parse_filter
from rerank_mcp.index.qdrant import QdrantConfig, QdrantIndex, compile_filter
from tests.fixtures.fakes import BowEmbedder
from tests.fixtures.filter_cases import OPERATOR_CASES, ROWS

EMB = BowEmbedder("test/server-bow-32")


def doc(doc_id, text, meta):
    parts = text.split("|")
    return DocumentWrite(doc_id, hashlib.sha256(text.encode()).hexdigest(), meta, None, len(text),
                         [NewChunk(p, 0, len(p), len(p.split()), v) for p, v in zip(parts, EMB.encode(parts))])


@pytest.fixture
def server(tmp_path):
    ix = QdrantIndex(IndexConfig(data_dir=tmp_path / "d", engine=QdrantConfig(url=URL, api_key=KEY, retries=2,
                                 timeout_s=20), embedder_factory=lambda: EMB))
    name = f"test-{secrets.token_hex(4)}"
    yield ix, name
    try:
        ix.drop(name)
    except NotFound:
        pass
    ix.close()


def test_round_trip_on_a_server(server):
    ix, name = server
    ix.open_collection(name, create=True)
    ix.upsert(name, [
        doc("a", "Apples grow on trees.|Cider is pressed from apples.", {"lang": "en", "year": 2020}),
        doc("b", "Rivers carry water to the sea.", {"lang": "en", "year": 2022}),
        doc("c", "Berge sind hoch.", {"lang": "de"}),
    ])
    assert {c.name: (c.documents, c.chunks) for c in ix.collections()}[name] == (3, 4)
    hits = ix.bm25_search(name, "apples cider", 5)
    assert {r.doc_id for r in ix.fetch_chunks(name, [h[0] for h in hits]).values()} == {"a"}
    arms = ix.search_arms(name, "water", EMB.encode(["rivers water sea"])[0], 3, parse_filter({"year": {"$gte": 2021}}))
    assert {r.doc_id for r in ix.fetch_chunks(name, [h[0] for h in arms["dense"]]).values()} == {"b"}
    assert ix.fused_search(name, "water", EMB.encode(["water"])[0], 3)
    assert ix.fused_search(name, "water", EMB.encode(["water"])[0], 3, fusion="dbsf")
    ix.upsert(name, [doc("a", "Pears now.", {"lang": "en"})])
    assert ix.count_chunks(name) == 3 and ix.bm25_search(name, "cider", 5) == []
    assert ix.delete(name, filter=parse_filter({"lang": "de"})) == ["c"]
    assert [d.doc_id for d in ix.export_documents(name)] == ["a", "b"]
    other = BowEmbedder("test/other")
    ix.set_vectors(name, other.name, 32, other.encode)
    with pytest.raises(ModelMismatch):
        ix.open_collection(name)


def test_filter_semantics_on_a_server(server):
    ix, name = server
    from qdrant_client import models

    raw = f"rerank_mcp__{name}__rows"
    c = ix.q.client
    c.create_collection(raw, vectors_config={})
    try:
        names = list(ROWS)
        c.upsert(raw, [models.PointStruct(id=i + 1, vector={}, payload={"metadata": v})
                       for i, v in enumerate(ROWS.values())], wait=True)
        for flt, expect in OPERATOR_CASES:
            recs, _ = c.scroll(raw, scroll_filter=compile_filter(parse_filter(flt)), limit=100)
            assert {names[int(r.id) - 1] for r in recs} == expect, flt
    finally:
        c.delete_collection(raw)


def test_bad_key_is_refused_without_leaking_it(tmp_path):
    if not KEY:
        pytest.skip("the server takes no API key")
    wrong = "wrong-" + secrets.token_hex(8)
    ix = QdrantIndex(IndexConfig(data_dir=tmp_path / "d", engine=QdrantConfig(url=URL, api_key=wrong, retries=0)))
    try:
        with pytest.raises(UpstreamError) as ei:
            ix.collections()
        assert URL in str(ei.value) and wrong not in str(ei.value)
    finally:
        ix.close()
