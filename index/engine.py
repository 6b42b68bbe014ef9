"""The index as a whole: the store of record plus per-collection derived indexes.

Opening a collection loads (or repairs) its FAISS and BM25 indexes and replays any changes
in the store they have not applied. Writes go to the store first, in one transaction per
batch; only then are the derived indexes updated, so a crash at any point loses nothing the
store acknowledged, and a search never returns a chunk that the store does not hold.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rerank_mcp.index.dense import DenseIndex
from rerank_mcp.index.embedding import Embedder, EmbeddingCache, canonical_name, load_embedder
from rerank_mcp.index.sparse import SparseIndex
from rerank_mcp.index.store import CollectionInfo, Store, check_collection_name
from rerank_mcp.errors import ModelMismatch

log = logging.getLogger(__name__)


@dataclass
class IndexConfig:
    data_dir: Path
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_backend: str = "torch"
    device: str = "cpu"
    embedding_batch_size: int = 32
    dense_index: str = "auto"
    ann_threshold: int = 100_000
    nprobe: int = 32
    # Lets tests and benchmarks provide an embedder without loading a model.
    embedder_factory: Callable[[], Embedder] | None = field(default=None, repr=False)


class Collection:
    """A collection's derived indexes, kept in step with the store."""

    def __init__(self, engine: "Engine", info: CollectionInfo) -> None:
        self.info = info
        folder = engine.config.data_dir / "collections" / info.name
        self.dense = DenseIndex(
            folder, engine.store, info.name, info.dim, engine.config.dense_index, engine.config.ann_threshold,
            engine.config.nprobe,
        )
        self.sparse = SparseIndex(folder, engine.store, info.name)
        self.dense.owner = self.sparse.owner = engine.owner
        self.dense.open()
        self.sparse.open()
        self.write_lock = threading.Lock()

    def catch_up(self) -> None:
        self.dense.catch_up()
        self.sparse.catch_up()

    def save(self) -> None:
        self.dense.maybe_save()

    def close(self) -> None:
        self.dense.save()
        self.sparse.close()


class Engine:
    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.owner = self._take_owner_lock(config.data_dir / "owner.lock")
        self.store = Store(config.data_dir / "rerank-mcp.sqlite")
        self.cache = EmbeddingCache(config.data_dir / "embedding-cache.sqlite")
        self._embedder: Embedder | None = None
        self._collections: dict[str, Collection] = {}
        self._lock = threading.RLock()
        self._embed_lock = threading.Lock()
        self.model_name = canonical_name(config.embedding_model)

    def _take_owner_lock(self, path: Path) -> bool:
        """One process per data dir owns the derived index files (writes, saves, repairs).

        A second process (the CLI while the server runs, say) still reads and writes the
        store of record: SQLite handles that. It keeps its derived indexes in memory, never
        rewrites or repairs their files, and the owner replays the second process's writes
        from the store on its next call.
        """
        import fcntl

        self._owner_fd = open(path, "a+")
        try:
            fcntl.flock(self._owner_fd.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log.info("another process owns the index files in %s: opening them read-only", path.parent)
            return False
        return True

    # ------------------------------------------------------------------ model
    @property
    def embedder(self) -> Embedder:
        with self._embed_lock:
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

    def check_model(self, info: CollectionInfo) -> None:
        if self._embedder is None and self.config.embedder_factory is not None:
            self.embedder  # an injected embedder's name is only known once built
        if info.embedding_model != self.model_name:
            raise ModelMismatch(
                f"collection {info.name!r} was built with embedding model {info.embedding_model!r} "
                f"(dimension {info.dim}) but the server uses {self.model_name!r}. Either set "
                f"RERANK_MCP_EMBEDDING_MODEL={info.embedding_model} or re-embed the collection with "
                f"`rerank-mcp reindex {info.name}`"
            )

    # ------------------------------------------------------------------ collections
    def collection(self, name: str, create: bool = False) -> Collection:
        check_collection_name(name)
        with self._lock:
            col = self._collections.get(name)
            if col is not None:
                if self.store.collection(name) is None:  # dropped meanwhile
                    self._collections.pop(name, None)
                else:
                    return col
            info = self.store.collection(name)
            if info is None:
                if not create:
                    info = self.store.require_collection(name)  # raises NotFound
                emb = self.embedder
                info = self.store.create_collection(name, emb.name, emb.dim)
            col = Collection(self, info)
            self._collections[name] = col
            return col

    def loaded(self, name: str) -> Collection | None:
        """The collection if it is already open, without opening it."""
        with self._lock:
            return self._collections.get(name)

    def open_all(self) -> list[str]:
        """Open every collection (repairing derived indexes); returns repair notes."""
        notes = []
        for info in self.store.collections():
            col = self.collection(info.name)
            for part in (col.dense, col.sparse):
                if part.repaired:
                    notes.append(f"{info.name}: {type(part).__name__} repaired: {part.repaired}")
        return notes

    def drop(self, name: str) -> int:
        import shutil

        with self._lock:
            col = self._collections.pop(name, None)
            n = self.store.drop_collection(name)
            if col is not None:
                col.sparse.close()
            folder = self.config.data_dir / "collections" / name
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
            return n

    def reindex(self, name: str, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-embed every chunk of a collection with the current model; returns the chunk count."""
        from rerank_mcp.index.embedding import encode_cached

        emb = self.embedder
        with self._lock:
            info = self.store.require_collection(name)
            rows = [r for batch in self.store.iter_chunks_since(name, -1, with_vec=False) for r in batch]
            total = len(rows)
            new = []
            for i in range(0, total, 256):
                part = rows[i : i + 256]
                new.append(encode_cached(emb, [r[1] for r in part], self.cache))
                if progress:
                    progress(min(i + 256, total), total)
            vecs = np.concatenate(new) if new else np.zeros((0, emb.dim), np.float32)
            with self.store.write() as (db, seq):
                db.executemany(
                    "UPDATE chunks SET vec=?, seq=? WHERE chunk_id=?",
                    [(v.tobytes(), seq, r[0]) for r, v in zip(rows, vecs)],
                )
                db.execute("UPDATE collections SET embedding_model=?, dim=? WHERE name=?", (emb.name, emb.dim, name))
            col = self._collections.pop(name, None)
            if col is not None:
                col.sparse.close()
            folder = self.config.data_dir / "collections" / info.name
            (folder / "dense.json").unlink(missing_ok=True)
            self.collection(name)
            return total

    def save_all(self) -> None:
        with self._lock:
            for col in self._collections.values():
                col.save()

    def close(self) -> None:
        with self._lock:
            for col in self._collections.values():
                try:
                    col.close()
                except Exception as exc:  # pragma: no cover - best effort at shutdown
                    log.warning("closing %s: %s", col.info.name, exc)
            self._collections.clear()
            self.store.close()
            self.cache.close()
            self._owner_fd.close()  # releases the owner lock
