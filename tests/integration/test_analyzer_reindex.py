"""A collection keeps the analyzer it was created with; `reindex --analyzer` moves it to another
(BM25 only: vectors untouched), on both engines; legacy collections score as they always did."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_mcp.index.contract import DocumentWrite, IndexConfig, NewChunk
from rerank_mcp.index.engines import open_index
from rerank_mcp.index.qdrant import QdrantConfig
from tests.fixtures.fakes import HashEmbedder

ZH = {"panda": "大熊猫每天吃竹子，是中国的国宝。", "rail": "高速铁路连接台北和高雄。", "en": "Pandas eat bamboo every day."}


def _engine(kind, tmp_path):
    emb = HashEmbedder()
    cfg = IndexConfig(data_dir=tmp_path / "data", embedder_factory=lambda: emb,
                      engine=QdrantConfig(path=str(tmp_path / "q")) if kind == "qdrant" else None)
    return open_index(cfg, kind), emb


def _write(ix, emb, name):
    docs = []
    for doc_id, text in ZH.items():
        v = emb.encode([text])[0]
        docs.append(DocumentWrite(doc_id, doc_id, {}, None, len(text), [NewChunk(text, 0, len(text), 8, v)]))
    ix.upsert(name, docs)


@pytest.mark.parametrize("kind", ["embedded", "qdrant"])
def test_reindex_with_an_analyzer_makes_a_legacy_collection_searchable_in_chinese(kind, tmp_path):
    pytest.importorskip("qdrant_client")
    ix, emb = _engine(kind, tmp_path)
    try:
        ix.create_collection("old", analyzer="legacy")  # as collections made before analyzers were recorded
        _write(ix, emb, "old")
        assert ix.analyzer("old").name == "legacy"
        assert ix.bm25_search("old", "大熊猫", 5) == []  # a whole CJK run is one legacy token
        before = {int(i): v.copy() for ids, vs in ix.iter_vectors("old") for i, v in zip(ids, vs)} \
            if kind == "embedded" else None
        n = ix.reindex("old", analyzer="auto")
        assert n == 3
        assert ix.collection_info("old").analyzer == "english"
        hits = ix.bm25_search("old", "大熊猫", 5)
        rows = ix.fetch_chunks("old", [c for c, _ in hits])
        assert rows[hits[0][0]].doc_id == "panda"
        assert rows_of(ix, "old", "臺北") == ["rail"]  # Traditional folded on the query side too
        assert rows_of(ix, "old", "panda") == ["en"]
        if before is not None:  # only BM25 changed
            after = {int(i): v for ids, vs in ix.iter_vectors("old") for i, v in zip(ids, vs)}
            assert after.keys() == before.keys()
            assert all(np.array_equal(after[k], before[k]) for k in before)
        assert ix.reindex("old", analyzer="english") == 0  # already: nothing to do
        _write(ix, emb, "old")  # later writes use the recorded analyzer
        assert rows_of(ix, "old", "竹子") == ["panda"]
    finally:
        ix.close()


def rows_of(ix, name, query):
    hits = ix.bm25_search(name, query, 5)
    rows = ix.fetch_chunks(name, [c for c, _ in hits])
    return [rows[c].doc_id for c, _ in hits]


def test_the_analyzer_survives_a_restart_and_the_bm25_index_is_rebuilt_when_it_changes(tmp_path):
    ix, emb = _engine("embedded", tmp_path)
    ix.create_collection("zh", analyzer="english")
    _write(ix, emb, "zh")
    assert rows_of(ix, "zh", "猫") == ["panda"]  # unigrams: one character matches
    ix.close()
    ix, emb = _engine("embedded", tmp_path)
    try:
        assert ix.collection_info("zh").analyzer == "english"
        assert rows_of(ix, "zh", "猫") == ["panda"]
        ix.reindex("zh", analyzer="english+bigram")
        assert rows_of(ix, "zh", "猫") == []  # bigrams only: a lone character is no term of "熊猫"
        assert rows_of(ix, "zh", "熊猫") == ["panda"]
    finally:
        ix.close()
    ix, emb = _engine("embedded", tmp_path)
    try:
        assert ix.collection("zh").sparse.repaired is None  # the sidecar names the analyzer it was built with
        assert rows_of(ix, "zh", "熊猫") == ["panda"]
    finally:
        ix.close()
