"""The index contract: the one facade everything above ``index/`` goes through.

Tools, the CLI, eval and bench see an :class:`Index`; two engines implement it:

- ``embedded`` (:mod:`rerank_mcp.index.engine`): SQLite as the store of record, FAISS and
  tantivy derived from it, all in one data directory;
- ``qdrant`` (:mod:`rerank_mcp.index.qdrant`): a Qdrant server or cluster through
  ``qdrant-client``, or qdrant-client's local mode.

Nothing above ``index/`` touches a store, FAISS, tantivy, a lock, SQL or a private attribute:
where a tool needs more, this contract gains a method. Filters cross it as the parsed filter
tree (:mod:`rerank_mcp.index.filters`), never as SQL. Chunk ids are integers chosen by the
engine; they identify a chunk inside its collection until the chunk is replaced or deleted.

The embedding model lives here too (:class:`Embedding`), shared by both engines: a collection
records the model it was built with, and using it with another model is a
:class:`~rerank_mcp.errors.ModelMismatch` naming the way out.
"""

from __future__ import annotations

import abc
import re
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from rerank_mcp.errors import InvalidInput, ModelMismatch, NotFound
from rerank_mcp.index.embedding import Embedder, EmbeddingCache, canonical_name, encode_cached, load_embedder
from rerank_mcp.index.filters import Filter

log = logging.getLogger(__name__)

Ranked = list[tuple[int, float]]  # (chunk id, score), best first
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    embedding_model: str
    dim: int
    created_at: float
    documents: int = 0
    chunks: int = 0


@dataclass(frozen=True)
class ChunkRow:
    """A stored chunk with its document's id and metadata."""

    chunk_id: int
    doc_id: str
    ord: int
    text: str
    start: int
    end: int
    metadata: dict[str, Any]
    line: int | None = None  # the 1-based line of ``start`` in the document (None: ingested before lines were kept)
    gap: str | None = None  # the text between the previous chunk's end and ``start`` (see NewChunk)


@dataclass(frozen=True)
class NewChunk:
    text: str
    start: int
    end: int
    tokens: int
    vec: np.ndarray
    # The 1-based line of ``start`` in the document's text, and the text between the previous
    # chunk's end and ``start`` ('' where they overlap or touch; before the first chunk: the text
    # before it). Chunk texts, gaps and offsets together give back the document's text.
    line: int | None = None
    gap: str | None = None


@dataclass(frozen=True)
class DocumentWrite:
    """One document to insert or replace, with its chunks already embedded."""

    doc_id: str
    content_hash: str
    metadata: dict[str, Any]
    source: str | None
    chars: int
    chunks: Sequence[NewChunk]


@dataclass(frozen=True)
class ExportedDocument:
    """A document as ``export`` writes it: everything needed to rebuild it without re-embedding."""

    doc_id: str
    content_hash: str
    metadata: dict[str, Any]
    source: str | None
    chars: int
    chunks: list[NewChunk] = field(default_factory=list)


@dataclass
class IndexConfig:
    data_dir: Path
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_backend: str = "torch"
    device: str = "cpu"
    embedding_batch_size: int = 32
    # embedded engine
    dense_index: str = "auto"
    ann_threshold: int = 100_000
    nprobe: int = 32
    # qdrant engine
    qdrant_url: str | None = None
    qdrant_api_key: str | None = field(default=None, repr=False)
    qdrant_path: str | None = None
    qdrant_timeout_s: float = 30.0
    qdrant_retries: int = 3
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    # Cache query embeddings too (eval runs the same queries many times).
    cache_queries: bool = False
    # Lets tests and benchmarks provide an embedder without loading a model.
    embedder_factory: Callable[[], Embedder] | None = field(default=None, repr=False)


class Embedding:
    """The configured bi-encoder, loaded on first use, with the persistent embedding cache."""

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        self.cache: EmbeddingCache | None = EmbeddingCache(config.data_dir / "embedding-cache.sqlite")
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()
        self.model_name = canonical_name(config.embedding_model)

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                if self.config.embedder_factory is not None:
                    self._embedder = self.config.embedder_factory()
                else:
                    self._embedder = load_embedder(
                        self.config.embedding_model, self.config.embedding_backend, self.config.device,
                        self.config.embedding_batch_size, self.config.data_dir / "onnx",
                    )
                self.model_name = self._embedder.name
            return self._embedder

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    def known_name(self) -> str:
        if self._embedder is None and self.config.embedder_factory is not None:
            self.embedder  # an injected embedder's name is only known once built
        return self.model_name

    def documents(self, texts: Sequence[str]) -> np.ndarray:
        return encode_cached(self.embedder, texts, self.cache)

    def query(self, text: str) -> np.ndarray:
        if self.config.cache_queries:
            return encode_cached(self.embedder, [text], self.cache)[0]
        return self.embedder.encode([text])[0]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.embedder.count_tokens(texts)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


class Index(abc.ABC):
    """What every engine provides. All methods are thread-safe."""

    backend: str = ""

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.embedding = Embedding(config)

    # ------------------------------------------------------------------ model identity
    @property
    def model_name(self) -> str:
        """The identity of the configured embedding model (recorded with each new collection)."""
        return self.embedding.model_name

    def check_model(self, info: CollectionInfo) -> None:
        """Refuse to use a collection built with another embedding model."""
        if info.embedding_model != self.embedding.known_name():
            raise ModelMismatch(
                f"collection {info.name!r} was built with embedding model {info.embedding_model!r} "
                f"(dimension {info.dim}) but the server uses {self.model_name!r}. Either set "
                f"RERANK_MCP_EMBEDDING_MODEL={info.embedding_model} or re-embed the collection with "
                f"`rerank-mcp reindex {info.name}`"
            )

    # ------------------------------------------------------------------ collections
    @abc.abstractmethod
    def collections(self) -> list[CollectionInfo]:
        """Every collection with its document and chunk counts, by name."""

    @abc.abstractmethod
    def collection_info(self, name: str) -> CollectionInfo | None:
        """The collection (counts not filled in), or None."""

    def require_collection(self, name: str) -> CollectionInfo:
        info = self.collection_info(name)
        if info is None:
            known = [c.name for c in self.collections()]
            raise NotFound(
                f"unknown collection {name!r}; "
                + (f"existing collections: {', '.join(known)}" if known else "no collections exist yet: ingest first")
            )
        return info

    @abc.abstractmethod
    def create_collection(self, name: str, model: str | None = None, dim: int | None = None) -> CollectionInfo:
        """Create the collection for ``model`` (default: the configured one) unless it exists."""

    def open_collection(self, name: str, create: bool = False) -> CollectionInfo:
        """The collection, ready for use and checked against the embedding model; created if asked."""
        info = self.collection_info(name)
        if info is None:
            if not create:
                self.require_collection(name)  # raises NotFound with the known names
            emb = self.embedding.embedder
            info = self.create_collection(name, emb.name, emb.dim)
        self.check_model(info)
        return info

    @abc.abstractmethod
    def drop(self, name: str) -> int:
        """Delete the collection and everything in it; returns how many documents it held."""

    def dense_index_kind(self, name: str) -> str | None:
        """What kind of dense index serves the collection, where known without opening it."""
        return None

    # ------------------------------------------------------------------ documents
    @abc.abstractmethod
    def doc_hashes(self, collection: str, doc_ids: Sequence[str]) -> dict[str, str]:
        """The stored content hash of each of ``doc_ids`` that exists."""

    @abc.abstractmethod
    def upsert(self, collection: str, docs: Sequence[DocumentWrite]) -> None:
        """Insert or replace documents. When it returns they are stored durably and searchable;
        a replaced document's old chunks are gone. If it raises, each document is either its
        previous version or the new one, never a mix."""

    @abc.abstractmethod
    def delete(self, collection: str, ids: Sequence[str] | None = None, filter: Filter | None = None) -> list[str]:
        """Delete documents whose id is in ``ids`` and that match ``filter`` (either may be
        None, not both); returns the deleted ids."""

    @abc.abstractmethod
    def documents(self, collection: str, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Documents by id: ``{id, metadata, source, chunks, chars, content_hash, updated_at}``."""

    @abc.abstractmethod
    def document(self, collection: str, doc_id: str) -> dict[str, Any]:
        """One document ``{id, metadata, source, content_hash, chunks: [{chunk_id, ord, text, start, end,
        line, gap}]}`` (``line``/``gap`` as in :class:`NewChunk`, None where not recorded); NotFound if absent."""

    @abc.abstractmethod
    def count_chunks(self, collection: str) -> int:
        ...

    def sources(self, collection: str) -> dict[str, str]:
        """``{doc_id: source}`` for every document read from a file (for keeping folders in sync)."""
        out: dict[str, str] = {}
        offset = 0
        while True:
            page = self.documents(collection, limit=1000, offset=offset)
            out.update({d["id"]: d["source"] for d in page if d.get("source")})
            if len(page) < 1000:
                return out
            offset += len(page)

    # ------------------------------------------------------------------ retrieval
    @abc.abstractmethod
    def dense_search(self, collection: str, vector: np.ndarray, k: int, filter: Filter | None = None) -> Ranked:
        """Top ``k`` chunks by inner product with ``vector`` (cosine: vectors are normalised)."""

    @abc.abstractmethod
    def bm25_search(self, collection: str, query: str, k: int, filter: Filter | None = None) -> Ranked:
        """Top ``k`` chunks by BM25 (k1=1.2, b=0.75, Lucene IDF) under the project's analyzer."""

    def search_arms(
        self, collection: str, query: str, vector: np.ndarray | None, k: int, filter: Filter | None = None,
        arms: Sequence[str] = ("dense", "bm25"),
    ) -> dict[str, Ranked]:
        """Several arms at once; an engine that can batch them in one request overrides this."""
        out: dict[str, Ranked] = {}
        if "dense" in arms:
            assert vector is not None
            out["dense"] = self.dense_search(collection, vector, k, filter)
        if "bm25" in arms:
            out["bm25"] = self.bm25_search(collection, query, k, filter)
        return out

    server_fusions: tuple[str, ...] = ()  # fusions the engine can run itself (fused_search)

    def fused_search(
        self, collection: str, query: str, vector: np.ndarray, k: int, filter: Filter | None = None,
        fusion: str = "rrf", prefetch_limit: int | None = None, rrf_k: int | None = 60,
        weights: dict[str, float] | None = None,
    ) -> Ranked:
        """Hybrid search fused by the engine itself (Qdrant's RRF or DBSF); see ``server_fusions``."""
        from rerank_mcp.errors import InvalidInput

        raise InvalidInput(f"the {self.backend} engine has no server-side fusion; use fusion 'zscore', 'minmax' or 'rrf'")

    def index_sizes(self, collection: str) -> dict[str, int]:
        """Entries in each of the collection's structures (chunks, dense, bm25): equal when consistent."""
        n = self.count_chunks(collection)
        return {"chunks": n, "dense": n, "bm25": n}

    @abc.abstractmethod
    def fetch_chunks(self, collection: str, ids: Sequence[int]) -> dict[int, ChunkRow]:
        """The chunks that still exist among ``ids``."""

    def iter_vectors(self, collection: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every chunk's (ids, vectors), in batches: for exact-recall checks of ANN indexes."""
        raise NotImplementedError(f"the {self.backend} engine does not list raw vectors")

    # ------------------------------------------------------------------ whole collections
    @abc.abstractmethod
    def export_documents(self, collection: str) -> Iterator[ExportedDocument]:
        """Every document with its chunks and their vectors, by id."""

    @abc.abstractmethod
    def set_vectors(self, collection: str, model: str, dim: int, vectors: Callable[[list[str]], np.ndarray],
                    progress: Progress | None = None) -> int:
        """Replace every chunk's vector with ``vectors(texts)`` and record ``model``/``dim`` as the
        collection's embedding model; returns the number of chunks."""

    def reindex(self, name: str, progress: Progress | None = None) -> int:
        """Re-embed every chunk of a collection with the configured model; returns the chunk count."""
        emb = self.embedding.embedder
        self.require_collection(name)
        return self.set_vectors(name, emb.name, emb.dim, self.embedding.documents, progress)

    # ------------------------------------------------------------------ lifecycle
    def open_all(self) -> list[str]:
        """Open every collection now (repairing what needs it); returns repair notes."""
        return []

    def sync(self, collection: str | None = None) -> None:
        """Pick up writes another process made (the embedded engine's derived indexes); no-op elsewhere."""

    def close(self) -> None:
        self.embedding.close()


def check_collection_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", name):
        raise InvalidInput(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name
