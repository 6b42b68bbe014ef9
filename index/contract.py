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
import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from rerank_mcp.errors import InvalidInput, ModelMismatch, NotFound
from rerank_mcp.index import analyzers
from rerank_mcp.index.embedding import Embedder, EmbeddingCache, canonical_name, encode_cached, load_embedder
from rerank_mcp.index.filters import Filter
from rerank_mcp.index.fusion import RRF_K
from rerank_mcp.index.model_names import (
    DEFAULT_EMBEDDING_BACKEND,
    EMBEDDING_BACKENDS,
    identity,
    model_covers_cjk,
    onnx_cache_dir,
    split_identity,
)

log = logging.getLogger(__name__)

CJK_QUERY_SHARE = 0.3  # a query whose word characters are at least this share CJK is a CJK query

Ranked = list[tuple[int, float]]  # (chunk id, score), best first
# A long job's progress report: (done, total or None where unknown, what is being done). The
# one signature of every progress callback (ingest, sync, reindex, transfer, evaluation, downloads).
Progress = Callable[[float, float | None, str], None]


class BM25Stats(NamedTuple):
    """Corpus statistics of a collection's BM25 index for some analyzed terms: what a reranker
    needs to score candidates as the collection's BM25 does (unpacks as ``(N, avgdl, df)``)."""

    docs: int  # N: the documents (chunks) the index counts for IDF
    avgdl: float  # average analyzed length of a chunk
    df: dict[str, int]  # documents holding each term


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    embedding_model: str
    dim: int
    created_at: float
    documents: int = 0
    chunks: int = 0
    analyzer: str | None = None  # the BM25 analyzer (index/analyzers.py); None: made before they were recorded

    @property
    def analyzer_name(self) -> str:
        """The analyzer's name, ``legacy`` for a collection made before analyzers were recorded."""
        return self.analyzer or analyzers.LEGACY


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


@dataclass(frozen=True)
class DocumentSummary:
    """A stored document as :meth:`Index.documents` lists it."""

    id: str
    metadata: dict[str, Any]
    source: str | None
    chunks: int  # how many chunks it has
    chars: int
    content_hash: str | None
    updated_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StoredChunk:
    """A chunk of a document as :meth:`Index.document` gives it (``line``/``gap`` as in
    :class:`NewChunk`, None where not recorded)."""

    chunk_id: int
    ord: int
    text: str
    start: int
    end: int
    line: int | None = None
    gap: str | None = None


@dataclass(frozen=True)
class StoredDocument:
    """One stored document with its chunks in order."""

    id: str
    metadata: dict[str, Any]
    source: str | None
    content_hash: str | None
    chunks: list[StoredChunk] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NoEngineConfig:
    """The settings of an engine that has none."""

    @classmethod
    def from_settings(cls, settings: Any) -> NoEngineConfig:
        return cls()


@dataclass
class IndexConfig:
    """What every engine shares (the data folder, the embedding model, the analyzer), and the
    chosen engine's own settings in ``engine`` (its :attr:`Index.Config`; None: its defaults)."""

    data_dir: Path
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_backend: str = DEFAULT_EMBEDDING_BACKEND
    device: str = "cpu"
    embedding_batch_size: int | None = None  # texts per model run; None: the backend's default
    analyzer: str = analyzers.AUTO  # BM25 analyzer of new collections (index/analyzers.py); auto: from their text
    onnx_cache_dir: Path | None = None  # ONNX exports of the embedding model (default: the user's cache folder)
    engine: Any = None  # the engine's settings: EmbeddedConfig, QdrantConfig, ... (None: the engine's defaults)
    # Cache query embeddings too (eval runs the same queries many times).
    cache_queries: bool = False
    # Lets tests and benchmarks provide an embedder without loading a model.
    embedder_factory: Callable[[], Embedder] | None = field(default=None, repr=False)
    # The folder of a downloadable embedding model (a Hugging Face name), fetched if it is not here
    # and downloads are allowed; None where the name is not one. Without it, models load from the
    # Hugging Face cache only.
    model_fetcher: Callable[[str], Path | None] | None = field(default=None, repr=False)


class Embedding:
    """The configured bi-encoder, loaded on first use, with the persistent embedding cache.

    A collection records the identity of what built it (:func:`~rerank_mcp.index.model_names.identity`:
    the model, plus the backend unless torch). A collection built with the configured model on
    another backend is served with that backend (loaded on first use), for its queries and for
    new documents alike: one collection never mixes vectors of two backends."""

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        self.cache: EmbeddingCache | None = EmbeddingCache.open(config.data_dir / "embedding-cache.sqlite")
        self._embedder: Embedder | None = None
        self._others: dict[str, Any] = {}  # backend -> embedder, for collections built with another backend
        self._lock = threading.Lock()
        self.model_name = canonical_name(config.embedding_model)

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                if self.config.embedder_factory is not None:
                    self._embedder = self.config.embedder_factory()
                else:
                    self._embedder = self._load(self.config.embedding_backend)
                self.model_name = self._embedder.name
            return self._embedder

    def _load(self, backend: str):
        """The configured model on ``backend``; a downloadable model missing here is fetched
        first (``model_fetcher``), once, before any backend loads it."""
        kw = {}
        if self.config.model_fetcher is not None:
            folder = self.config.model_fetcher(self.config.embedding_model)
            if folder is not None:
                kw["folder"] = folder
        return load_embedder(self.config.embedding_model, backend, self.config.device,
                             self.config.embedding_batch_size, onnx_cache_dir(self.config.onnx_cache_dir), **kw)

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    def known_name(self) -> str:
        if self._embedder is None and self.config.embedder_factory is not None:
            _ = self.embedder  # an injected embedder's name is only known once built
        return self.model_name

    @property
    def identity(self) -> str:
        """What a collection built with the configured embedder records (model, and backend unless torch)."""
        if self._embedder is None and self.config.embedder_factory is not None:
            _ = self.embedder
        if self._embedder is not None:
            return getattr(self._embedder, "identity", self._embedder.name)
        return identity(self.model_name, self.config.embedding_backend)

    def serves(self, ident: str) -> bool:
        """Whether vectors of a collection recorded as ``ident`` can be made here: the configured
        identity, or the configured model on another known backend."""
        if ident == self.identity:
            return True
        model, backend = split_identity(ident)
        return (self.config.embedder_factory is None and model == self.known_name()
                and backend in EMBEDDING_BACKENDS)

    def embedder_for(self, collection: CollectionInfo | str | None = None):
        """The embedder whose vectors the collection holds (the configured one by default)."""
        ident = collection.embedding_model if isinstance(collection, CollectionInfo) else collection
        if ident is None or ident == self.identity:
            return self.embedder
        model, backend = split_identity(ident)
        if not self.serves(ident):
            name = collection.name if isinstance(collection, CollectionInfo) else "the collection"
            raise ModelMismatch(f"{name!r} was built with embedding model {ident!r}, which this server cannot "
                                f"run (it uses {self.identity!r})")
        with self._lock:
            emb = self._others.get(backend)
            if emb is None:
                log.info("embedding with the %s backend for collections built with it (`rerank-mcp reindex NAME` "
                         "moves a collection to the configured %s backend)", backend, self.config.embedding_backend)
                emb = self._load(backend)
                self._others[backend] = emb
            return emb

    def documents(self, texts: Sequence[str], collection: CollectionInfo | str | None = None) -> np.ndarray:
        """Passage vectors, with the model's passage prefix (e5: ``passage: ``)."""
        emb = self.embedder_for(collection)
        prefix = getattr(emb, "passage_prefix", "")
        return encode_cached(emb, [prefix + t for t in texts] if prefix else texts, self.cache)

    def query(self, text: str, collection: CollectionInfo | str | None = None) -> np.ndarray:
        """A query vector, with the model's query prefix (e5: ``query: ``)."""
        emb = self.embedder_for(collection)
        text = getattr(emb, "query_prefix", "") + text
        if self.config.cache_queries:
            return encode_cached(emb, [text], self.cache)[0]
        return emb.encode([text])[0]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.embedder.count_tokens(texts)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


class Index(abc.ABC):
    """What every engine provides. All methods are thread-safe."""

    backend: str = ""
    # The engine's own settings: a class whose no-argument instance is the defaults, with a
    # ``from_settings(settings)`` classmethod that reads them from the server's settings.
    Config: ClassVar[type] = NoEngineConfig

    def __init__(self, config: IndexConfig) -> None:
        engine = config.engine if config.engine is not None else self.Config()
        if not isinstance(engine, self.Config):
            raise InvalidInput(f"the {self.backend} engine takes its settings as {self.Config.__name__}, "
                               f"not {type(engine).__name__}")
        self.config = config
        self.engine_config = engine
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.embedding = Embedding(config)

    # ------------------------------------------------------------------ model identity
    @property
    def model_name(self) -> str:
        """The identity of the configured embedding model (recorded with each new collection)."""
        return self.embedding.model_name

    def check_model(self, info: CollectionInfo) -> None:
        """Refuse to use a collection built with another embedding model (another backend of the
        configured model is fine: :class:`Embedding` embeds that collection's text with it)."""
        if not self.embedding.serves(info.embedding_model):
            model, backend = split_identity(info.embedding_model)
            setting = f"RERANK_MCP_EMBEDDING_MODEL={model}" + (
                f" and RERANK_MCP_EMBEDDING_BACKEND={backend}" if backend != "torch" else "")
            raise ModelMismatch(
                f"collection {info.name!r} was built with embedding model {info.embedding_model!r} "
                f"(dimension {info.dim}) but the server uses {self.embedding.identity!r}. Either set "
                f"{setting} or re-embed the collection with `rerank-mcp reindex {info.name}`"
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
            raise unknown_collection(name, [c.name for c in self.collections()])
        return info

    @abc.abstractmethod
    def create_collection(self, name: str, model: str | None = None, dim: int | None = None,
                          analyzer: str | None = None) -> CollectionInfo:
        """Create the collection for ``model`` (default: the configured one) and ``analyzer`` (a
        concrete name; default: the configured one, ``auto`` resolving to English) unless it exists."""

    def open_collection(self, name: str, create: bool = False, analyzer: str | None = None,
                        sample: Sequence[str] = ()) -> CollectionInfo:
        """The collection, ready for use and checked against the embedding model; created if asked,
        with ``analyzer`` (default: the configured one; ``auto`` is resolved from ``sample``, the
        first texts going into it). An existing collection analyzed otherwise than an explicitly
        requested analyzer is an error naming ``reindex``."""
        info = self.collection_info(name)
        if info is None:
            if not create:
                self.require_collection(name)  # raises NotFound with the known names
            emb = self.embedding.embedder
            chosen = analyzers.resolve(analyzer or self.config.analyzer, sample)
            info = self.create_collection(name, self.embedding.identity, emb.dim, chosen)
        else:
            self.check_analyzer(info, analyzer)
        self.check_model(info)
        return info

    def default_analyzer(self, analyzer: str | None = None) -> str:
        """The concrete analyzer a collection created without text to look at gets."""
        return analyzers.resolve(analyzer or self.config.analyzer, ())

    @staticmethod
    def check_analyzer(info: CollectionInfo, requested: str | None) -> None:
        want = None if requested is None else analyzers.check_name(requested)
        have = info.analyzer_name
        if want not in (None, analyzers.AUTO, have):
            raise InvalidInput(
                f"collection {info.name!r} is analyzed with {have!r}, not {want!r}: a collection's analyzer is "
                f"fixed when it is created. Re-analyze it with `rerank-mcp reindex {info.name} --analyzer {want}` "
                "(BM25 only: no re-embedding), or ingest into a new collection"
            )

    def embedding_covers(self, info: CollectionInfo, query: str) -> bool:
        """False when the query is mostly Chinese, Japanese or Korean (at least :data:`CJK_QUERY_SHARE`
        of its word characters) and the collection's embedding model is known to be English-only."""
        if analyzers.cjk_share(query) < CJK_QUERY_SHARE:
            return True
        return model_covers_cjk(info.embedding_model) is not False

    def analyzer(self, collection: str | CollectionInfo) -> analyzers.Analyzer:
        """The analyzer a collection's BM25 index was built with (the query side must use the same)."""
        info = collection if isinstance(collection, CollectionInfo) else self.require_collection(collection)
        return analyzers.get_analyzer(info.analyzer)

    def set_analyzer(self, collection: str, analyzer: str, progress: Progress | None = None) -> int:
        """Re-analyze every chunk of the collection for BM25 with ``analyzer`` and record it;
        returns the number of chunks."""
        raise NotImplementedError(f"the {self.backend} engine cannot change a collection's analyzer")

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
    def documents(self, collection: str, limit: int = 100, offset: int = 0) -> list[DocumentSummary]:
        """A page of the collection's documents, by id."""

    @abc.abstractmethod
    def document(self, collection: str, doc_id: str) -> StoredDocument:
        """One document with its chunks in order; NotFound if absent."""

    @abc.abstractmethod
    def count_chunks(self, collection: str) -> int:
        ...

    def sources(self, collection: str) -> dict[str, str]:
        """``{doc_id: source}`` for every document read from a file (for keeping folders in sync)."""
        out: dict[str, str] = {}
        offset = 0
        while True:
            page = self.documents(collection, limit=1000, offset=offset)
            out.update({d.id: d.source for d in page if d.source})
            if len(page) < 1000:
                return out
            offset += len(page)

    # ------------------------------------------------------------------ retrieval
    @abc.abstractmethod
    def search_arms(
        self, collection: str, query: str, vector: np.ndarray | None, k: int, filter: Filter | None = None,
        arms: Sequence[str] = ("dense", "bm25"),
    ) -> dict[str, Ranked]:
        """The top ``k`` chunks of each arm asked for: ``dense`` by inner product with ``vector``
        (cosine: vectors are normalised), ``bm25`` by BM25 of ``query`` (k1=1.2, b=0.75, Lucene
        IDF; :mod:`rerank_mcp.index.bm25`) under the collection's analyzer."""

    def dense_search(self, collection: str, vector: np.ndarray, k: int, filter: Filter | None = None) -> Ranked:
        """Top ``k`` chunks by inner product with ``vector``."""
        return self.search_arms(collection, "", vector, k, filter, ("dense",))["dense"]

    def bm25_search(self, collection: str, query: str, k: int, filter: Filter | None = None) -> Ranked:
        """Top ``k`` chunks by BM25 under the collection's analyzer."""
        return self.search_arms(collection, query, None, k, filter, ("bm25",))["bm25"]

    def bm25_stats(self, collection: str, terms: Sequence[str]) -> BM25Stats:
        """The BM25 index's statistics for ``terms`` (analyzed with the collection's :meth:`analyzer`):
        the document count and average length its IDF and length normalisation use, and each
        term's document frequency. An engine that cannot tell raises NotImplementedError."""
        raise NotImplementedError(f"the {self.backend} engine does not report BM25 statistics")

    server_fusions: tuple[str, ...] = ()  # fusions the engine can run itself (fused_search)

    def fused_search(
        self, collection: str, query: str, vector: np.ndarray, k: int, filter: Filter | None = None,
        fusion: str = "rrf", prefetch_limit: int | None = None, rrf_k: int | None = RRF_K,
        weights: dict[str, float] | None = None,
    ) -> Ranked:
        """Hybrid search fused by the engine itself (Qdrant's RRF or DBSF); see ``server_fusions``."""
        raise InvalidInput(f"the {self.backend} engine has no server-side fusion; use fusion 'zscore', 'minmax' or 'rrf'")

    def index_sizes(self, collection: str) -> dict[str, int]:
        """Entries in each of the collection's structures (chunks, dense, bm25): equal when consistent."""
        n = self.count_chunks(collection)
        return {"chunks": n, "dense": n, "bm25": n}

    @abc.abstractmethod
    def fetch_chunks(self, collection: str, ids: Sequence[int]) -> dict[int, ChunkRow]:
        """The chunks that still exist among ``ids``."""

    @abc.abstractmethod
    def chunk_vectors(self, collection: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The dense vectors of the chunks that still exist among ``ids`` (for query feedback)."""

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

    def reindex(self, name: str, progress: Progress | None = None, analyzer: str | None = None) -> int:
        """Re-embed every chunk of a collection with the configured model; returns the chunk count.
        With ``analyzer``, re-analyze its BM25 index instead (``auto``: chosen from its text)."""
        info = self.require_collection(name)
        if analyzer is not None:
            want = analyzers.check_name(analyzer)
            if want == analyzers.AUTO:
                import itertools

                docs = itertools.islice(self.export_documents(name), 200)
                want = analyzers.resolve(want, (c.text for d in docs for c in d.chunks))
            if want == info.analyzer_name:
                return 0
            return self.set_analyzer(name, want, progress)
        emb = self.embedding.embedder
        return self.set_vectors(name, self.embedding.identity, emb.dim, self.embedding.documents, progress)

    # ------------------------------------------------------------------ lifecycle
    def open_all(self) -> list[str]:
        """Open every collection now (repairing what needs it); returns repair notes."""
        return []

    def sync(self, collection: str | None = None) -> None:
        """Pick up writes another process made (the embedded engine's derived indexes); no-op elsewhere."""
        return None

    def close(self) -> None:
        self.embedding.close()


def unknown_collection(name: str, known: Sequence[str]) -> NotFound:
    """The error for a collection that does not exist, naming those that do."""
    return NotFound(
        f"unknown collection {name!r}; "
        + (f"existing collections: {', '.join(known)}" if known else "no collections exist yet: ingest first")
    )


def check_collection_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", name):
        raise InvalidInput(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name
