"""The embedded engine: the store of record plus per-collection derived indexes.

Opening a collection loads (or repairs) its FAISS and BM25 indexes and replays any changes
in the store they have not applied. Writes go to the store first, in one transaction per
batch; only then are the derived indexes updated, so a crash at any point loses nothing the
store acknowledged, and a search never returns a chunk that the store does not hold.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rerank_mcp.errors import NotFound
from rerank_mcp.index.analyzers import get_analyzer
from rerank_mcp.index.contract import (
    BM25Stats,
    ChunkRow,
    CollectionInfo,
    DocumentSummary,
    DocumentWrite,
    ExportedDocument,
    Index,
    IndexConfig,
    Progress,
    Ranked,
    StoredDocument,
    check_collection_name,
)
from rerank_mcp.index.dense import DenseIndex
from rerank_mcp.index.filters import Filter, compile_filter
from rerank_mcp.index.sparse import SparseIndex
from rerank_mcp.index.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedConfig:
    """The embedded engine's settings: which dense index serves a collection."""

    dense_index: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    ann_threshold: int = 100_000  # above this many vectors "auto" builds an ANN index
    nprobe: int = 32  # IVF lists searched per query

    @classmethod
    def from_settings(cls, settings: Any) -> EmbeddedConfig:
        """From the server's settings (``RERANK_MCP_DENSE_INDEX``, ``RERANK_MCP_ANN_THRESHOLD``)."""
        return cls(dense_index=settings.dense_index, ann_threshold=settings.ann_threshold)


class Collection:
    """A collection's derived indexes, kept in step with the store."""

    def __init__(self, engine: EmbeddedIndex, info: CollectionInfo) -> None:
        self.info = info
        folder = engine.config.data_dir / "collections" / info.name
        cfg = engine.engine_config
        self.dense = DenseIndex(folder, engine.store, info.name, info.dim, cfg.dense_index, cfg.ann_threshold,
                                cfg.nprobe)
        self.sparse = SparseIndex(folder, engine.store, info.name, get_analyzer(info.analyzer))
        self.dense.owner = self.sparse.owner = engine.owner
        self.dense.open()
        self.sparse.open()
        self.write_lock = threading.Lock()

    def catch_up(self, dense: bool = True, sparse: bool = True) -> None:
        if dense:
            self.dense.catch_up()
        if sparse:
            self.sparse.catch_up()

    def catch_up_after_write(self) -> None:
        """After a committed write: the call has stored its documents, so it succeeds even if an
        index cannot follow now (a full disk); the next call (or the watch thread) catches up."""
        try:
            self.catch_up()
        except Exception as exc:
            log.warning("collection %r: stored, but the index update failed and is retried later: %s",
                        self.info.name, exc)

    def same_as(self, info: CollectionInfo | None) -> bool:
        """Whether ``info`` (the store's record now) is the collection these indexes were built
        for: not dropped, nor dropped and created again, nor re-embedded by another process."""
        return info is not None and (info.embedding_model, info.dim, info.created_at) == (
            self.info.embedding_model, self.info.dim, self.info.created_at)

    def save(self) -> None:
        self.dense.maybe_save()

    def close(self) -> None:
        self.dense.save()
        self.sparse.close()


class EmbeddedIndex(Index):
    """The index contract on one machine: SQLite (store of record) + FAISS + tantivy in ``data_dir``.

    The write -> catch-up -> save protocol lives here: each write is one store transaction,
    then the derived indexes replay it; a search first replays what another process wrote.
    """

    backend = "embedded"
    Config = EmbeddedConfig
    engine_config: EmbeddedConfig

    # How often a process checks the store for another process's writes (the owner indexes them
    # for BM25 even while idle) and whether the owner lock came free (then it takes it over).
    WATCH_S = 1.0

    def __init__(self, config: IndexConfig) -> None:
        super().__init__(config)
        self.owner = self._take_owner_lock(config.data_dir / "owner.lock")
        self.store = Store(config.data_dir / "rerank-mcp.sqlite")
        self._collections: dict[str, Collection] = {}
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        if self._owner_fd is not None:
            self._watcher = threading.Thread(target=self._watch, name="index-watch", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        """Keep the derived indexes in step with writes made by other processes, with no call
        here to prompt it: the owner replays them (so BM25 in every process finds a second
        process's acknowledged writes even while the owner is idle); a non-owner takes over the
        index files once the owner has exited."""
        seen = -1
        existing = {c.name for c in self.store.collections()}  # opened on use, as before
        while not self._closed.wait(self.WATCH_S):
            try:
                if not self.owner and not self._try_take_over():
                    continue
                seq = self.store.seq()
                if seq == seen:
                    continue
                now = {c.name for c in self.store.collections()}
                with self._lock:
                    # open: those in use here, and those another process created since we started
                    names = sorted(set(self._collections) | (now - existing))
                existing &= now
                for name in names:
                    if self._closed.is_set():
                        return
                    try:
                        col = self._col(name)
                    except NotFound:
                        continue
                    if min(col.dense.applied_seq, col.sparse.applied_seq) >= seq:
                        continue  # our own writes: applied by the call that made them
                    if col.write_lock.acquire(blocking=False):  # else a write here catches up itself
                        try:
                            col.catch_up()
                        finally:
                            col.write_lock.release()
                seen = seq
            except Exception as exc:  # the engine closing under it, a disk error: try again later
                if self._closed.is_set():
                    return
                log.debug("index watch: %s", exc)

    def _try_take_over(self) -> bool:
        """Become the owner if the owner lock is free now; the open collections are reopened as
        the owner's (their files repaired and caught up from the store)."""
        import fcntl

        with self._lock:
            if self._closed.is_set() or self._owner_fd is None:
                return False
            try:
                fcntl.flock(self._owner_fd.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False
            log.info("the process that owned the index files in %s has exited: taking them over",
                     self.config.data_dir)
            self.owner = True
            names = list(self._collections)
            for col in self._collections.values():
                col.sparse.close()
            self._collections.clear()
            for name in names:
                try:
                    self._col(name)
                except NotFound:
                    pass
            return True

    def _take_owner_lock(self, path: Path) -> bool:
        """One process per data dir owns the derived index files (writes, saves, repairs).

        A second process (the CLI while the server runs, say) still reads and writes the
        store of record: SQLite handles that. It keeps its derived indexes in memory, never
        rewrites or repairs their files, and the owner replays the second process's writes
        from the store on its next call.
        """
        import fcntl

        try:
            self._owner_fd = open(path, "a+")
        except OSError as exc:  # a read-only data dir: nothing here may be written, so no owner
            log.warning("cannot open %s for writing (%s): opening the index read-only", path, exc.strerror or exc)
            self._owner_fd = None
            return False
        try:
            fcntl.flock(self._owner_fd.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log.info("another process owns the index files in %s: opening them read-only", path.parent)
            return False
        return True

    # ------------------------------------------------------------------ collections
    def _col(self, name: str) -> Collection:
        """The collection with its derived indexes open (and repaired, and caught up on first open)."""
        check_collection_name(name)
        with self._lock:
            col = self._collections.get(name)
            if col is not None:
                now = self.store.collection(name)
                if col.same_as(now):
                    if now.analyzer == col.info.analyzer:
                        return col
                    # re-analyzed by another process: the same collection, its BM25 index rebuilt on open
                    self._collections.pop(name, None)
                    col.close()
                else:
                    # dropped (and maybe created again) by another process: these indexes are stale,
                    # and their files, if ours, belong to a collection that no longer exists
                    self._collections.pop(name, None)
                    self._discard(col, name)
            info = self.store.require_collection(name)  # raises NotFound
            col = Collection(self, info)
            self._collections[name] = col
            return col

    def _discard(self, col: Collection | None, name: str) -> None:
        """Close a collection's derived indexes without saving them; the owner removes their files."""
        import shutil

        if col is not None:
            col.sparse.close()
        if self.owner:
            folder = self.config.data_dir / "collections" / name
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)

    def collection(self, name: str) -> Collection:
        """The engine's own handle on a collection's derived indexes (for its tests and repairs;
        not part of the contract)."""
        return self._col(name)

    def collections(self) -> list[CollectionInfo]:
        return self.store.collections()

    def collection_info(self, name: str) -> CollectionInfo | None:
        check_collection_name(name)
        return self.store.collection(name)

    def create_collection(self, name: str, model: str | None = None, dim: int | None = None,
                          analyzer: str | None = None) -> CollectionInfo:
        check_collection_name(name)
        if model is None or dim is None:
            emb = self.embedding.embedder
            model, dim = self.embedding.identity, emb.dim
        info = self.store.create_collection(name, model, dim, self.default_analyzer(analyzer))
        self._col(name)
        return info

    def open_collection(self, name: str, create: bool = False, analyzer: str | None = None,
                        sample: Sequence[str] = ()) -> CollectionInfo:
        info = super().open_collection(name, create, analyzer, sample)
        self._col(name)
        return info

    def set_analyzer(self, collection: str, analyzer: str, progress: Progress | None = None) -> int:
        get_analyzer(analyzer)  # validates
        with self._lock:
            self.store.require_collection(collection)
            col = self._collections.pop(collection, None)
            if col is not None:
                col.sparse.close()
            self.store.set_analyzer(collection, analyzer)
            col = self._col(collection)  # the BM25 index sees another analyzer in its sidecar: rebuilt
            n = self.store.count_chunks(collection)
            if progress:
                progress(n, n, f"re-analyzed {n} chunks")
            return n

    def dense_index_kind(self, name: str) -> str | None:
        with self._lock:
            col = self._collections.get(name)
        return col.dense.kind if col is not None else None

    def open_all(self) -> list[str]:
        notes = []
        if self.owner:  # index files of collections another process dropped while we were away
            import shutil

            known = {c.name for c in self.store.collections()}
            root = self.config.data_dir / "collections"
            for folder in sorted(root.iterdir()) if root.is_dir() else []:
                if folder.is_dir() and folder.name not in known:
                    log.info("removing the index files of dropped collection %r", folder.name)
                    shutil.rmtree(folder, ignore_errors=True)
        for info in self.store.collections():
            col = self._col(info.name)
            for part in (col.dense, col.sparse):
                if part.repaired:
                    notes.append(f"{info.name}: {type(part).__name__} repaired: {part.repaired}")
        return notes

    def drop(self, name: str) -> int:
        """Drop a collection from the store. Its index files are removed by the owner of the data
        dir: here if this process owns it, else by the owner on its next look at the collection
        (removing them under the owner's open writers broke it)."""
        check_collection_name(name)
        with self._lock:
            col = self._collections.pop(name, None)
            n = self.store.drop_collection(name)
            self._discard(col, name)
            return n

    # ------------------------------------------------------------------ documents
    def doc_hashes(self, collection: str, doc_ids: Sequence[str]) -> dict[str, str]:
        return self.store.doc_hashes(collection, doc_ids)

    def upsert(self, collection: str, docs: Sequence[DocumentWrite]) -> None:
        col = self._col(collection)
        rows = [(d.doc_id, d.content_hash, d.metadata, d.source, d.chars, d.chunks) for d in docs]
        with col.write_lock:
            self.store.upsert_documents(collection, rows)  # one transaction: all or nothing
        col.catch_up_after_write()
        col.save()

    def delete(self, collection: str, ids: Sequence[str] | None = None, filter: Filter | None = None) -> list[str]:
        if not ids and filter is None:
            return []
        clauses: list[str] = []
        params: list[Any] = []
        if ids:
            clauses.append(f"doc_id IN ({','.join('?' * len(ids))})")
            params.extend(ids)
        if filter is not None:
            sql, p = compile_filter(filter, "metadata")
            clauses.append(sql)
            params.extend(p)
        col = self._col(collection)
        with col.write_lock:
            deleted = self.store.delete_documents(collection, " AND ".join(clauses), params)
        col.catch_up_after_write()
        col.save()
        return deleted

    def documents(self, collection: str, limit: int = 100, offset: int = 0) -> list[DocumentSummary]:
        self.store.require_collection(collection)
        return self.store.documents(collection, limit, offset)

    def document(self, collection: str, doc_id: str) -> StoredDocument:
        self.store.require_collection(collection)
        return self.store.document(collection, doc_id)

    def count_chunks(self, collection: str) -> int:
        return self.store.count_chunks(collection)

    def sources(self, collection: str) -> dict[str, str]:
        self.store.require_collection(collection)
        return self.store.sources(collection)

    # ------------------------------------------------------------------ retrieval
    def _allowed(self, collection: str, filter: Filter | None) -> np.ndarray | None:
        if filter is None:
            return None
        sql, params = compile_filter(filter, "d.metadata")
        return self.store.chunk_ids_matching(collection, sql, params)

    def sync(self, collection: str | None = None) -> None:
        with self._lock:
            cols = [self._col(collection)] if collection else list(self._collections.values())
        for col in cols:
            col.catch_up()  # another process or a crash may have left the derived indexes behind

    def bm25_stats(self, collection: str, terms: Sequence[str]) -> BM25Stats:
        col = self._col(collection)
        col.catch_up()
        n, avgdl, df = col.sparse.stats(list(terms))
        return BM25Stats(n, avgdl, df)

    def search_arms(
        self, collection: str, query: str, vector: np.ndarray | None, k: int, filter: Filter | None = None,
        arms: Sequence[str] = ("dense", "bm25"),
    ) -> dict[str, Ranked]:
        col = self._col(collection)
        col.catch_up(dense="dense" in arms, sparse="bm25" in arms)
        allowed = self._allowed(collection, filter)
        out: dict[str, Ranked] = {}
        if "dense" in arms:
            out["dense"] = col.dense.search(vector, k, allowed)
        if "bm25" in arms:
            out["bm25"] = col.sparse.search(query, k, allowed)
        return out

    def fetch_chunks(self, collection: str, ids: Sequence[int]) -> dict[int, ChunkRow]:
        return self.store.chunks_by_id(collection, ids)

    def chunk_vectors(self, collection: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
        self.store.require_collection(collection)
        return self.store.vectors_by_id(collection, ids)

    def index_sizes(self, collection: str) -> dict[str, int]:
        col = self._col(collection)
        return {"chunks": self.store.count_chunks(collection), "dense": col.dense.size, "bm25": col.sparse.size}

    def iter_vectors(self, collection: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        info = self.store.require_collection(collection)
        for rows in self.store.iter_chunks_since(collection, -1, with_text=False):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(-1, info.dim)
            yield ids, vecs

    # ------------------------------------------------------------------ whole collections
    def export_documents(self, collection: str) -> Iterator[ExportedDocument]:
        self.store.require_collection(collection)
        return self.store.export_documents(collection)

    def set_vectors(self, collection: str, model: str, dim: int, vectors: Callable[[list[str]], np.ndarray],
                    progress: Progress | None = None) -> int:
        with self._lock:
            info = self.store.require_collection(collection)
            rows = [r for batch in self.store.iter_chunks_since(collection, -1, with_vec=False) for r in batch]
            total = len(rows)
            new = []
            for i in range(0, total, 256):
                part = rows[i : i + 256]
                new.append(np.asarray(vectors([r[1] for r in part]), dtype=np.float32))
                if progress:
                    progress(min(i + 256, total), total, f"re-embedded {min(i + 256, total)} of {total} chunks")
            vecs = np.concatenate(new) if new else np.zeros((0, dim), np.float32)
            with self.store.write() as (db, seq):
                db.executemany(
                    "UPDATE chunks SET vec=?, seq=? WHERE chunk_id=?",
                    [(v.tobytes(), seq, r[0]) for r, v in zip(rows, vecs)],
                )
                db.execute("UPDATE collections SET embedding_model=?, dim=? WHERE name=?", (model, dim, collection))
            col = self._collections.pop(collection, None)
            if col is not None:
                col.sparse.close()
            folder = self.config.data_dir / "collections" / info.name
            (folder / "dense.json").unlink(missing_ok=True)
            self._col(collection)
            return total

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._closed.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(10)
        with self._lock:
            for col in self._collections.values():
                try:
                    col.close()
                except Exception as exc:  # pragma: no cover - best effort at shutdown
                    log.warning("closing %s: %s", col.info.name, exc)
            self._collections.clear()
            self.store.close()
            super().close()
            if self._owner_fd is not None:
                self._owner_fd.close()  # releases the owner lock
