"""Adding an engine is one class implementing the index contract plus one line in
``index/engines.py`` (docs/adr/0006): an engine kept in memory, built from the parts engines
share (the filter walk, BM25 term weights and sparse vectors), is registered with that one line
and then serves ingest and search through the tools, every search mode and a filter included."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest

from rerank_mcp.errors import InvalidInput, NotFound
from rerank_mcp.index import bm25, engines
from rerank_mcp.index.contract import (
    ChunkRow,
    CollectionInfo,
    DocumentSummary,
    DocumentWrite,
    ExportedDocument,
    Index,
    IndexConfig,
    NewChunk,
    Ranked,
    StoredChunk,
    StoredDocument,
    check_collection_name,
)
from rerank_mcp.index.filters import Cond, Filter, FilterCompiler
from rerank_mcp.tools.ingest import ingest
from rerank_mcp.tools.search import search
from tests.fixtures.fakes import HashEmbedder

Predicate = Callable[[dict], bool]


class PythonFilter(FilterCompiler[Predicate]):
    """The filter tree as a Python predicate over a metadata dict (equality and ``$in`` only)."""

    def all_of(self, items: Sequence[Predicate]) -> Predicate:
        return lambda m: all(p(m) for p in items)

    def any_of(self, items: Sequence[Predicate]) -> Predicate:
        return lambda m: any(p(m) for p in items)

    def negate(self, item: Predicate) -> Predicate:
        return lambda m: not item(m)

    def cond(self, c: Cond) -> Predicate:
        if c.op == "$eq":
            return lambda m: m.get(c.field) == c.value
        if c.op == "$in":
            return lambda m: m.get(c.field) in c.value
        raise InvalidInput(f"the memory engine has no {c.op}")


class MemoryIndex(Index):
    backend = "memory"

    def __init__(self, config: IndexConfig) -> None:
        super().__init__(config)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._cols: dict[str, CollectionInfo] = {}
        self._docs: dict[str, dict[str, tuple[DocumentWrite, list[int]]]] = {}
        self._chunks: dict[int, tuple[str, str, int, NewChunk]] = {}  # id -> (collection, doc, ord, chunk)

    def collections(self) -> list[CollectionInfo]:
        return [self.collection_info(n) for n in sorted(self._cols)]

    def collection_info(self, name: str) -> CollectionInfo | None:
        info = self._cols.get(check_collection_name(name))
        if info is None:
            return None
        docs = self._docs[name]
        return CollectionInfo(info.name, info.embedding_model, info.dim, info.created_at, len(docs),
                              sum(len(ids) for _, ids in docs.values()), info.analyzer)

    def create_collection(self, name, model=None, dim=None, analyzer=None) -> CollectionInfo:
        with self._lock:
            if name not in self._cols:
                self._cols[name] = CollectionInfo(name, model or self.embedding.identity,
                                                  dim or self.embedding.embedder.dim, 0.0,
                                                  analyzer=self.default_analyzer(analyzer))
                self._docs[name] = {}
            return self._cols[name]

    def drop(self, name: str) -> int:
        with self._lock:
            n = len(self._docs.pop(self.require_collection(name).name))
            del self._cols[name]
            return n

    def doc_hashes(self, collection: str, doc_ids: Sequence[str]) -> dict[str, str]:
        docs = self._docs[collection]
        return {d: docs[d][0].content_hash for d in doc_ids if d in docs}

    def upsert(self, collection: str, docs: Sequence[DocumentWrite]) -> None:
        with self._lock:
            self.delete(collection, [d.doc_id for d in docs])
            for d in docs:
                ids = [next(self._ids) for _ in d.chunks]
                for o, (cid, c) in enumerate(zip(ids, d.chunks)):
                    self._chunks[cid] = (collection, d.doc_id, o, c)
                self._docs[collection][d.doc_id] = (d, ids)

    def delete(self, collection: str, ids=None, filter: Filter | None = None) -> list[str]:
        with self._lock:
            keep = PythonFilter().compile(filter) if filter is not None else (lambda m: True)
            gone = [d for d, (w, _) in self._docs[collection].items()
                    if (ids is None or d in ids) and keep(w.metadata)]
            for d in gone:
                for cid in self._docs[collection].pop(d)[1]:
                    del self._chunks[cid]
            return gone

    def documents(self, collection: str, limit: int = 100, offset: int = 0) -> list[DocumentSummary]:
        docs = self._docs[self.require_collection(collection).name]
        return [DocumentSummary(d, w.metadata, w.source, len(ids), w.chars, w.content_hash, None)
                for d, (w, ids) in sorted(docs.items())[offset : offset + limit]]

    def document(self, collection: str, doc_id: str) -> StoredDocument:
        if doc_id not in self._docs[collection]:
            raise NotFound(f"no document {doc_id!r}")
        w, ids = self._docs[collection][doc_id]
        return StoredDocument(doc_id, w.metadata, w.source, w.content_hash,
                              [StoredChunk(cid, o, c.text, c.start, c.end, c.line, c.gap)
                               for o, (cid, c) in enumerate(zip(ids, w.chunks))])

    def count_chunks(self, collection: str) -> int:
        return sum(len(ids) for _, ids in self._docs[collection].values())

    def search_arms(self, collection, query, vector, k, filter=None, arms=("dense", "bm25")) -> dict[str, Ranked]:
        allowed = PythonFilter().compile(filter) if filter is not None else (lambda m: True)
        live = {cid: c for cid, (col, d, _, c) in self._chunks.items()
                if col == collection and allowed(self._docs[col][d][0].metadata)}
        out: dict[str, Ranked] = {}
        if "dense" in arms:
            scored = [(cid, float(np.dot(c.vec, vector))) for cid, c in live.items()]
            out["dense"] = sorted(scored, key=lambda x: -x[1])[:k]
        if "bm25" in arms:
            analyzer = self.analyzer(collection)
            tokens = {cid: analyzer.tokenize(c.text) for cid, c in live.items()}
            avgdl = sum(map(len, tokens.values())) / max(len(tokens), 1)
            vectors = {cid: dict(zip(*bm25.bm25_document_vector(t, avgdl))) for cid, t in tokens.items()}
            q, _ = bm25.bm25_query_vector(query, analyzer)
            df = {t: sum(t in v for v in vectors.values()) for t in q}
            scores = [(cid, sum(bm25.idf(len(vectors), df[t]) * v[t] for t in q if t in v))
                      for cid, v in vectors.items()]
            out["bm25"] = sorted([s for s in scores if s[1] > 0], key=lambda x: -x[1])[:k]
        return out

    def fetch_chunks(self, collection: str, ids: Sequence[int]) -> dict[int, ChunkRow]:
        out = {}
        for cid in ids:
            if cid in self._chunks:
                col, d, o, c = self._chunks[cid]
                out[cid] = ChunkRow(cid, d, o, c.text, c.start, c.end, self._docs[col][d][0].metadata, c.line, c.gap)
        return out

    def chunk_vectors(self, collection: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
        return {cid: self._chunks[cid][3].vec for cid in ids if cid in self._chunks}

    def export_documents(self, collection: str) -> Iterator[ExportedDocument]:
        for d, (w, _) in sorted(self._docs[collection].items()):
            yield ExportedDocument(d, w.content_hash, w.metadata, w.source, w.chars, list(w.chunks))

    def set_vectors(self, collection, model, dim, vectors, progress=None) -> int:
        raise NotImplementedError


DOCS = [
    {"id": "volcano", "text": "A volcano erupts molten rock and lava.", "metadata": {"kind": "geo"}},
    {"id": "bread", "text": "Bread is baked from flour, water and yeast.", "metadata": {"kind": "food"}},
    {"id": "river", "text": "Rivers carry water to the sea.", "metadata": {"kind": "geo"}},
]


@pytest.fixture
def memory_engine(tmp_path, monkeypatch):
    monkeypatch.setitem(engines.ENGINES, "memory", f"{__name__}:MemoryIndex")  # the one line
    emb = HashEmbedder()
    index = engines.open_index(IndexConfig(data_dir=tmp_path, embedder_factory=lambda: emb), "memory")
    yield index
    index.close()


def test_an_engine_is_one_class_and_one_registry_line(memory_engine):
    assert isinstance(memory_engine, MemoryIndex) and memory_engine.backend == "memory"
    res = ingest(memory_engine, "kb", DOCS, chunk_size=32, chunk_overlap=0)
    assert res.added == 3 and res.failed == 0
    assert [d.id for d in memory_engine.documents("kb")] == ["bread", "river", "volcano"]
    for mode in ("dense", "bm25", "hybrid"):
        hits = search(memory_engine, None, "molten lava volcano", "kb", k=2, mode=mode).hits
        assert hits[0].doc_id == "volcano", mode
    geo = search(memory_engine, None, "water", "kb", k=3, mode="bm25", filter={"kind": "geo"}).hits
    assert [h.doc_id for h in geo] == ["river"]  # bread holds "water" too, but is food


def test_the_registry_names_its_engines_and_their_settings(tmp_path, monkeypatch):
    monkeypatch.setitem(engines.ENGINES, "memory", f"{__name__}:MemoryIndex")
    assert engines.engine_class("memory") is MemoryIndex
    assert engines.engine_config("memory", object()) == MemoryIndex.Config()  # an engine without settings
    with pytest.raises(InvalidInput, match="unknown index backend 'nope'.*embedded, qdrant"):
        engines.open_index(IndexConfig(data_dir=tmp_path), "nope")


def test_an_engine_refuses_another_engines_settings(tmp_path):
    from rerank_mcp.index.engine import EmbeddedConfig
    from rerank_mcp.index.qdrant import QdrantConfig

    with pytest.raises(InvalidInput, match="embedded engine takes its settings as EmbeddedConfig, not QdrantConfig"):
        engines.open_index(IndexConfig(data_dir=tmp_path, engine=QdrantConfig(path=":memory:")), "embedded")
    settings = type("S", (), {"dense_index": "flat", "ann_threshold": 7})()
    assert engines.engine_config("embedded", settings) == EmbeddedConfig(dense_index="flat", ann_threshold=7)
