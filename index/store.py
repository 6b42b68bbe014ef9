"""The store of record: one SQLite database (WAL) for collections, documents and chunks.

Every write transaction takes the next value of a global change sequence number. Chunks carry
the sequence number that wrote them, and deleted chunks leave a tombstone with the sequence
number that deleted them, so a derived index (FAISS, BM25) that remembers the last sequence
number it applied can catch up by replaying what is newer. Chunk ids are never reused.
Vectors are kept here too, so derived indexes can be rebuilt without re-embedding.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rerank_mcp.errors import DataDirError, NotFound, StoreCorrupt
from rerank_mcp.index.contract import (
    ChunkRow,
    CollectionInfo,
    DocumentSummary,
    ExportedDocument,
    NewChunk,
    StoredChunk,
    StoredDocument,
    unknown_collection,
)

SCHEMA_VERSION = 1

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY,
    embedding_model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    created_at REAL NOT NULL,
    analyzer TEXT  -- NULL: made before analyzers were recorded (the legacy analyzer)
);
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
    doc_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    source TEXT,
    n_chunks INTEGER NOT NULL,
    chars INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (collection, doc_id)
);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    ord INTEGER NOT NULL,
    text TEXT NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    vec BLOB NOT NULL,
    seq INTEGER NOT NULL,
    line INTEGER,
    gap TEXT
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (collection, doc_id);
CREATE INDEX IF NOT EXISTS chunks_seq ON chunks (collection, seq);
CREATE TABLE IF NOT EXISTS tombstones (
    chunk_id INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_seq ON tombstones (collection, seq);
"""


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the file size limit, or the quota) ran out: SQLite's
    "database or disk is full", an OSError ENOSPC / EDQUOT / EFBIG, or tantivy's and FAISS's
    wording of them."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("disk is full", "no space left", "file too large", "quota exceeded",
                                   "os error 28", "os error 27", "os error 122"))


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


class Store:
    """Thread-safe access to the SQLite store of record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.read_only = False
        try:
            if path.exists() and path.stat().st_size == 0 and not _nonempty(path.with_name(path.name + "-wal")):
                # SQLite would take an empty file for a new database and start an empty index
                raise sqlite3.DatabaseError("the file is empty (0 bytes)")
            if not os.access(path.parent, os.W_OK):
                if not path.exists():
                    raise DataDirError(f"the data dir {path.parent} is not writable and holds no index database "
                                       f"({path.name}): nothing to serve; check the path and its permissions")
                self._db = self._open_read_only(path)
            else:
                self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            if not self.read_only:
                self._schema()
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(
                f"the index database {path} is unreadable ({exc}). Restore it from a backup or move it "
                "away and re-ingest; nothing was changed"
            ) from None
        self._lock = threading.RLock()

    def _open_read_only(self, path: Path) -> sqlite3.Connection:
        """The database in a folder this process may not write (a read-only mount): read-only,
        and without the WAL index file if that cannot be created there (then changes another
        process makes meanwhile are not seen)."""
        log.warning("%s is not writable: opening the index database read-only", path.parent)
        self.read_only = True
        uri = path.resolve().as_uri()
        for mode in ("?mode=ro", "?mode=ro&immutable=1"):
            db = sqlite3.connect(uri + mode, uri=True, check_same_thread=False, isolation_level=None, timeout=30)
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return db
            except sqlite3.OperationalError:
                db.close()
                if mode.endswith("immutable=1"):
                    raise
        raise AssertionError("unreachable")

    def _schema(self) -> None:
        try:
            self._db.executescript(_SCHEMA)
            cols = {r[1] for r in self._db.execute("PRAGMA table_info(chunks)")}
            for col, kind in (("line", "INTEGER"), ("gap", "TEXT")):  # databases made before lines were kept
                if col not in cols:
                    self._db.execute(f"ALTER TABLE chunks ADD COLUMN {col} {kind}")
            if "analyzer" not in {r[1] for r in self._db.execute("PRAGMA table_info(collections)")}:
                self._db.execute("ALTER TABLE collections ADD COLUMN analyzer TEXT")  # NULL: the legacy analyzer
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('seq', '0')")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---------------------------------------------------------------- transactions
    @contextmanager
    def write(self) -> Iterator[tuple[sqlite3.Connection, int]]:
        """A write transaction with its own new sequence number; commits or rolls back whole."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    seq = int(self._db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0]) + 1
                    self._db.execute("UPDATE meta SET value=? WHERE key='seq'", (str(seq),))
                    yield self._db, seq
                    self._db.execute("COMMIT")  # a COMMIT that fails (disk full) leaves the transaction open
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if disk_full(exc):
                    raise DataDirError(
                        f"no space left on the disk holding the data dir {self.path.parent} ({exc}): the write "
                        "was rolled back, none of it stored; free some space and retry"
                    ) from None
                raise

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def seq(self) -> int:
        return int(self._q("SELECT value FROM meta WHERE key='seq'")[0][0])

    # ---------------------------------------------------------------- collections
    def collection(self, name: str) -> CollectionInfo | None:
        rows = self._q("SELECT name, embedding_model, dim, created_at, 0, 0, analyzer FROM collections WHERE name=?",
                       (name,))
        return CollectionInfo(*rows[0]) if rows else None

    def require_collection(self, name: str) -> CollectionInfo:
        info = self.collection(name)
        if info is None:
            raise unknown_collection(name, [c.name for c in self.collections()])
        return info

    def collections(self) -> list[CollectionInfo]:
        rows = self._q(
            """SELECT c.name, c.embedding_model, c.dim, c.created_at,
                      (SELECT COUNT(*) FROM documents d WHERE d.collection=c.name),
                      (SELECT COUNT(*) FROM chunks k WHERE k.collection=c.name),
                      c.analyzer
               FROM collections c ORDER BY c.name"""
        )
        return [CollectionInfo(*r) for r in rows]

    def create_collection(self, name: str, model: str, dim: int, analyzer: str | None = None) -> CollectionInfo:
        with self.write() as (db, _seq):
            db.execute(
                "INSERT OR IGNORE INTO collections (name, embedding_model, dim, created_at, analyzer) VALUES (?,?,?,?,?)",
                (name, model, dim, time.time(), analyzer),
            )
        return self.require_collection(name)

    def set_analyzer(self, name: str, analyzer: str) -> None:
        with self.write() as (db, _seq):
            db.execute("UPDATE collections SET analyzer=? WHERE name=?", (analyzer, name))

    def drop_collection(self, name: str) -> int:
        """Delete a collection and everything in it; returns the number of documents removed."""
        self.require_collection(name)
        with self.write() as (db, _seq):
            n = db.execute("SELECT COUNT(*) FROM documents WHERE collection=?", (name,)).fetchone()[0]
            db.execute("DELETE FROM chunks WHERE collection=?", (name,))
            db.execute("DELETE FROM tombstones WHERE collection=?", (name,))
            db.execute("DELETE FROM documents WHERE collection=?", (name,))
            db.execute("DELETE FROM collections WHERE name=?", (name,))
        return int(n)

    # ---------------------------------------------------------------- documents
    def doc_hashes(self, collection: str, doc_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(doc_ids), 500):
            part = list(doc_ids[i : i + 500])
            rows = self._q(
                f"SELECT doc_id, content_hash FROM documents WHERE collection=? AND doc_id IN ({','.join('?' * len(part))})",
                [collection, *part],
            )
            out.update(dict(rows))
        return out

    @staticmethod
    def _tombstone(db: sqlite3.Connection, collection: str, where: str, params: Sequence[Any], seq: int) -> int:
        db.execute(
            f"INSERT OR REPLACE INTO tombstones SELECT chunk_id, collection, ? FROM chunks WHERE collection=? AND {where}",
            [seq, collection, *params],
        )
        return db.execute(f"DELETE FROM chunks WHERE collection=? AND {where}", [collection, *params]).rowcount

    def upsert_documents(
        self,
        collection: str,
        docs: Sequence[tuple[str, str, dict[str, Any], str | None, int, Sequence[NewChunk]]],
    ) -> int:
        """Insert or replace documents ``(doc_id, content_hash, metadata, source, chars, chunks)``
        in one transaction. Returns the sequence number of the write."""
        now = time.time()
        with self.write() as (db, seq):
            for doc_id, h, meta, source, chars, chunks in docs:
                self._tombstone(db, collection, "doc_id=?", (doc_id,), seq)
                db.execute(
                    """INSERT INTO documents (collection, doc_id, content_hash, metadata, source, n_chunks,
                                              chars, created_at, updated_at, seq)
                       VALUES (?,?,?,?,?,?,?,?,?,?)
                       ON CONFLICT (collection, doc_id) DO UPDATE SET content_hash=excluded.content_hash,
                         metadata=excluded.metadata, source=excluded.source, n_chunks=excluded.n_chunks,
                         chars=excluded.chars, updated_at=excluded.updated_at, seq=excluded.seq""",
                    (collection, doc_id, h, json.dumps(meta, ensure_ascii=False), source, len(chunks), chars, now, now, seq),
                )
                db.executemany(
                    "INSERT INTO chunks (collection, doc_id, ord, text, start, end, tokens, vec, seq, line, gap) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (collection, doc_id, i, c.text, c.start, c.end, c.tokens,
                         np.asarray(c.vec, dtype=np.float32).tobytes(), seq, c.line, c.gap)
                        for i, c in enumerate(chunks)
                    ],
                )
        return seq

    def delete_documents(self, collection: str, where: str, params: Sequence[Any]) -> list[str]:
        """Delete the documents matching a SQL condition on ``documents``; returns their ids."""
        with self.write() as (db, seq):
            ids = [r[0] for r in db.execute(
                f"SELECT doc_id FROM documents WHERE collection=? AND ({where})", [collection, *params]
            ).fetchall()]
            for i in range(0, len(ids), 500):
                part = ids[i : i + 500]
                marks = ",".join("?" * len(part))
                self._tombstone(db, collection, f"doc_id IN ({marks})", part, seq)
                db.execute(f"DELETE FROM documents WHERE collection=? AND doc_id IN ({marks})", [collection, *part])
        return ids

    def documents(self, collection: str, limit: int = 100, offset: int = 0) -> list[DocumentSummary]:
        rows = self._q(
            """SELECT doc_id, metadata, source, n_chunks, chars, content_hash, updated_at FROM documents
               WHERE collection=? ORDER BY doc_id LIMIT ? OFFSET ?""",
            (collection, limit, offset),
        )
        return [DocumentSummary(r[0], json.loads(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def sources(self, collection: str) -> dict[str, str]:
        rows = self._q("SELECT doc_id, source FROM documents WHERE collection=? AND source IS NOT NULL", (collection,))
        return {r[0]: r[1] for r in rows}

    def export_documents(self, collection: str, batch: int = 500) -> Iterator[ExportedDocument]:
        """Every document with its chunks and vectors, by id, read in batches."""
        last = ""
        while True:
            docs = self._q(
                """SELECT doc_id, content_hash, metadata, source, chars FROM documents
                   WHERE collection=? AND doc_id>? ORDER BY doc_id LIMIT ?""",
                (collection, last, batch),
            )
            if not docs:
                return
            ids = [d[0] for d in docs]
            chunks: dict[str, list[NewChunk]] = {i: [] for i in ids}
            for i in range(0, len(ids), 500):
                part = ids[i : i + 500]
                for doc_id, text, start, end, tokens, vec, line, gap in self._q(
                    f"""SELECT doc_id, text, start, end, tokens, vec, line, gap FROM chunks WHERE collection=? AND
                        doc_id IN ({','.join('?' * len(part))}) ORDER BY doc_id, ord""",
                    [collection, *part],
                ):
                    chunks[doc_id].append(NewChunk(text, start, end, tokens, np.frombuffer(vec, dtype=np.float32),
                                                   line, gap))
            for doc_id, h, meta, source, chars in docs:
                yield ExportedDocument(doc_id, h, json.loads(meta), source, chars, chunks[doc_id])
            last = ids[-1]

    def document(self, collection: str, doc_id: str) -> StoredDocument:
        rows = self._q(
            "SELECT metadata, source, n_chunks, content_hash FROM documents WHERE collection=? AND doc_id=?",
            (collection, doc_id),
        )
        if not rows:
            raise NotFound(f"no document {doc_id!r} in collection {collection!r}")
        chunks = self._q(
            "SELECT chunk_id, ord, text, start, end, line, gap FROM chunks WHERE collection=? AND doc_id=? ORDER BY ord",
            (collection, doc_id),
        )
        return StoredDocument(doc_id, json.loads(rows[0][0]), rows[0][1], rows[0][3], [StoredChunk(*c) for c in chunks])

    # ---------------------------------------------------------------- chunks
    def chunks_by_id(self, collection: str, ids: Iterable[int]) -> dict[int, ChunkRow]:
        ids = list(ids)
        out: dict[int, ChunkRow] = {}
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            rows = self._q(
                f"""SELECT k.chunk_id, k.doc_id, k.ord, k.text, k.start, k.end, d.metadata, k.line, k.gap
                    FROM chunks k JOIN documents d ON d.collection=k.collection AND d.doc_id=k.doc_id
                    WHERE +k.collection=? AND k.chunk_id IN ({','.join('?' * len(part))})""",
                [collection, *part],
            )
            for r in rows:
                out[r[0]] = ChunkRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8])
        return out

    def vectors_by_id(self, collection: str, ids: Iterable[int]) -> dict[int, np.ndarray]:
        """The stored vectors of the chunks that still exist among ``ids``."""
        ids = list(ids)
        out: dict[int, np.ndarray] = {}
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            rows = self._q(
                f"SELECT chunk_id, vec FROM chunks WHERE +collection=? AND chunk_id IN ({','.join('?' * len(part))})",
                [collection, *part],
            )
            for cid, vec in rows:
                out[int(cid)] = np.frombuffer(vec, dtype=np.float32)
        return out

    def chunk_ids_matching(self, collection: str, where: str, params: Sequence[Any]) -> np.ndarray:
        rows = self._q(
            f"""SELECT k.chunk_id FROM chunks k JOIN documents d ON d.collection=k.collection AND d.doc_id=k.doc_id
                WHERE k.collection=? AND ({where})""",
            [collection, *params],
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def iter_chunks_since(
        self, collection: str, after_seq: int, batch: int = 5000, with_vec: bool = True, with_text: bool = True
    ) -> Iterator[list[tuple[int, str, bytes]]]:
        """Live chunks written after ``after_seq``, in batches of (chunk_id, text, vec)."""
        last = -1
        cols = f"chunk_id, {'text' if with_text else 'NULL'}, {'vec' if with_vec else 'NULL'}"
        while True:
            rows = self._q(
                f"SELECT {cols} FROM chunks WHERE collection=? AND seq>? AND chunk_id>? ORDER BY chunk_id LIMIT ?",
                (collection, after_seq, last, batch),
            )
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def tombstones_since(self, collection: str, after_seq: int) -> np.ndarray:
        rows = self._q("SELECT chunk_id FROM tombstones WHERE collection=? AND seq>?", (collection, after_seq))
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def count_chunks(self, collection: str) -> int:
        return int(self._q("SELECT COUNT(*) FROM chunks WHERE collection=?", (collection,))[0][0])

    def max_chunk_seq(self, collection: str) -> int:
        r = self._q(
            "SELECT MAX(s) FROM (SELECT MAX(seq) s FROM chunks WHERE collection=? UNION ALL "
            "SELECT MAX(seq) FROM tombstones WHERE collection=?)",
            (collection, collection),
        )
        return int(r[0][0] or 0)
