"""The corpus BM25 index: tantivy (Lucene-style segments, BM25 k1=1.2 b=0.75, block-max WAND).

Derived from the store of record like the dense index. Text is analysed by the collection's
analyzer (:mod:`index.analyzers`, the same one the ``bm25`` reranker and the query side use) and
indexed as whitespace-separated terms; the sidecar records which analyzer built the index, and
an index built with another one is rebuilt. Adding documents writes a new small segment and merges happen
in the background, so one new document costs a commit, never a rebuild. A JSON sidecar
records the last applied sequence number; replay of newer changes is idempotent (delete by
chunk id, then add). See docs/adr/0002-bm25-corpus-index.md for why tantivy.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import numpy as np

from rerank_mcp.errors import DataDirError
from rerank_mcp.index.analyzers import Analyzer, get_analyzer
from rerank_mcp.index.persist import atomic_write_json, read_json
from rerank_mcp.index.store import Store, disk_full

log = logging.getLogger(__name__)

WRITER_HEAP = 50_000_000


def _schema():
    import tantivy

    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("chunk_id", stored=False, indexed=True, fast=True)
    sb.add_text_field("text", stored=False, tokenizer_name="whitespace", index_option="freq")
    return sb.build()


class SparseIndex:
    def __init__(self, folder: Path, store: Store, collection: str, analyzer: Analyzer | None = None) -> None:
        self.analyzer = analyzer or get_analyzer(None)
        self.folder = folder
        self.dir = folder / "bm25"
        self.meta_path = folder / "bm25.json"
        self.store = store
        self.collection = collection
        self._lock = threading.RLock()
        self.applied_seq = 0
        self.index = None
        self.writer = None
        self.schema = None
        self.repaired: str | None = None
        self.owner = True  # False in a second process on the same data dir: read-only
        self.private = False  # True: an index in memory, caught up from the store by this process alone
        self.broken = False  # a write failed (tantivy then kills its writer): reopen before the next one

    def open(self) -> None:
        import tantivy

        self.schema = _schema()
        if not self.owner:
            self._open_follower()
            return
        meta = read_json(self.meta_path)
        with self._lock:
            ok = False
            # without its meta.json tantivy would silently open a new, empty index here
            if meta is not None and (self.dir / "meta.json").exists():
                try:
                    self.index = tantivy.Index(self.schema, path=str(self.dir), reuse=True)
                    self.writer = self.index.writer(WRITER_HEAP, 1)
                    self.index.reload()
                    _ = self.index.searcher().num_docs  # touch the segments
                    self.applied_seq = int(meta.get("applied_seq", 0))
                    ok = self.applied_seq <= self.store.seq()
                    if not ok:
                        self.repaired = "index is ahead of the store"
                    elif meta.get("analyzer", "legacy") != self.analyzer.name:
                        ok = False
                        self.repaired = f"index built with analyzer {meta.get('analyzer', 'legacy')!r}, " \
                            f"the collection's is {self.analyzer.name!r}"
                except BaseException as exc:  # tantivy panics surface as pyo3 PanicException
                    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                        raise
                    log.warning("BM25 index for %r unreadable (%s): rebuilding from the store", self.collection, exc)
                    self.repaired = f"unreadable index ({exc})"
                    self.writer = None
            elif meta is not None or self.dir.exists():
                self.repaired = "index folder or its sidecar missing"
            if ok:
                self.catch_up()
                live = self.store.count_chunks(self.collection)
                if self.size != live:  # segments lost or stale: the store decides
                    log.warning("BM25 index for %r holds %d chunks, the store %d: rebuilding",
                                self.collection, self.size, live)
                    self.repaired = f"index held {self.size} chunks, the store {live}"
                    self.rebuild()
            else:
                self.rebuild()

    def _open_follower(self) -> None:
        """Another process owns this index: read what it has committed, change nothing."""
        import tantivy

        with self._lock:
            try:
                self.index = tantivy.Index(self.schema, path=str(self.dir), reuse=True) \
                    if (self.dir / "meta.json").exists() else None
                if self.index is not None:
                    self.index.reload()
            except BaseException as exc:
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                if "ReadOnlyFilesystem" in str(exc) or "PermissionDenied" in str(exc):
                    # a read-only data dir: no owner will ever write here; index in memory instead
                    log.warning("BM25 index for %r cannot be opened in place (%s): building it in memory from the "
                                "store", self.collection, exc)
                    self.private = True
                    self.rebuild()
                    return
                log.warning("BM25 index for %r unreadable while another process owns it: %s", self.collection, exc)
                self.index = None

    def rebuild(self) -> None:
        import tantivy

        with self._lock:
            self.writer = None
            self.index = None
            if self.private:
                self.index = tantivy.Index(self.schema)  # in memory
                self.writer = self.index.writer(WRITER_HEAP, 1)
                self.applied_seq = 0
                self.catch_up(force_from=-1)
                return
            if self.dir.exists():
                shutil.rmtree(self.dir)
            self.dir.mkdir(parents=True)
            self.meta_path.unlink(missing_ok=True)
            self.index = tantivy.Index(self.schema, path=str(self.dir), reuse=False)
            self.writer = self.index.writer(WRITER_HEAP, 1)
            self.applied_seq = 0
            self.catch_up(force_from=-1)

    def catch_up(self, force_from: int | None = None) -> int:
        with self._lock:
            if not self.owner and not self.private:  # the owning process applies changes; pick up its commits
                if self.index is None:
                    self._open_follower()  # the owner may have written the index since
                else:
                    self.index.reload()
                return 0
            if self.broken:
                self._recover()
            try:
                return self._apply(force_from)
            except BaseException as exc:
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                # tantivy kills its writer on a failed write (a full disk): reopen it on the next call
                self.broken = True
                self.writer = None
                if disk_full(exc):
                    raise DataDirError(
                        f"the BM25 index of {self.collection!r} cannot be updated: no space left on the disk "
                        f"holding {self.folder} ({exc}); what was stored is kept and indexed once there is space"
                    ) from None
                raise

    def _recover(self) -> None:
        """Reopen the index and a writer after a failed write: the last commit on disk, with
        ``applied_seq`` (set only after a commit) telling what to replay; rebuilt from the store
        if that fails for any reason but a full disk."""
        import tantivy

        self.writer = None
        self.index = None
        try:
            if self.private:
                raise RuntimeError("an index in memory is rebuilt")
            self.index = tantivy.Index(self.schema, path=str(self.dir), reuse=True)
            self.writer = self.index.writer(WRITER_HEAP, 1)
            self.index.reload()
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if disk_full(exc):
                raise DataDirError(f"the BM25 index of {self.collection!r} cannot be reopened: no space left on "
                                   f"the disk holding {self.folder} ({exc})") from None
            log.warning("BM25 index for %r could not be reopened after a failed write (%s): rebuilding",
                        self.collection, exc)
            self.broken = False
            self.rebuild()
            return
        log.info("BM25 index for %r reopened after a failed write", self.collection)
        self.broken = False

    def _apply(self, force_from: int | None) -> int:
        import tantivy

        with self._lock:
            seq = self.store.seq()
            start = self.applied_seq if force_from is None else force_from
            if seq <= start and force_from is None:
                return 0
            changed = 0
            dead = self.store.tombstones_since(self.collection, start) if start >= 0 else []
            for cid in dead:
                self.writer.delete_documents_by_term("chunk_id", int(cid))
            changed += len(dead)
            for rows in self.store.iter_chunks_since(self.collection, start, with_vec=False):
                for cid, text, _ in rows:
                    if start >= 0:
                        self.writer.delete_documents_by_term("chunk_id", int(cid))
                    self.writer.add_document(tantivy.Document(chunk_id=int(cid), text=" ".join(self.analyzer.tokenize(text))))
                changed += len(rows)
            self.writer.commit()
            self.index.reload()
            self.applied_seq = seq
            if not self.private:
                atomic_write_json(self.meta_path, {"applied_seq": seq, "analyzer": self.analyzer.name})
            return changed

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        import tantivy

        terms = list(dict.fromkeys(self.analyzer.tokenize_query(query)))
        if not terms or k <= 0:
            return []
        if self.index is None:
            from rerank_mcp.errors import RerankMCPError

            raise RerankMCPError(
                f"the BM25 index of {self.collection!r} is held by another rerank-mcp process and is not "
                "readable yet; retry in a moment, or use mode 'dense'"
            )
        q = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "text", t)) for t in terms]
        )
        if allowed is not None:
            if len(allowed) == 0:
                return []
            ids = tantivy.Query.const_score_query(
                tantivy.Query.term_set_query(self.schema, "chunk_id", [int(i) for i in allowed]), 0.0
            )
            q = tantivy.Query.boolean_query([(tantivy.Occur.Must, q), (tantivy.Occur.Must, ids)])
        searcher = self.index.searcher()
        res = searcher.search(q, k, count=False)
        if not res.hits:
            return []
        cids = searcher.fast_field_values("chunk_id", [addr for _, addr in res.hits])
        return [(int(c), float(s)) for (s, _), c in zip(res.hits, cids) if c is not None]

    def stats(self, terms: list[str]) -> tuple[int, float, dict[str, int]]:
        """``(N, avgdl, {term: df})`` as tantivy's BM25 weight computes them (N and the lengths
        count documents deleted but not yet merged away, as its scores do)."""
        import json

        import tantivy

        if self.index is None:
            return 0, 0.0, {t: 0 for t in terms}
        searcher = self.index.searcher()
        df = {t: int(searcher.doc_freq("text", t)) for t in dict.fromkeys(terms)}
        n, avgdl = int(searcher.num_docs), 0.0
        present = next((t for t, d in df.items() if d > 0), None)
        if present is not None:
            # tantivy does not expose N and avgdl directly: its score explanation of one hit does
            q = tantivy.Query.term_query(self.schema, "text", present)
            hits = searcher.search(q, 1, count=False).hits
            if hits:
                found: dict[str, float] = {}

                def walk(node: dict) -> None:
                    desc = str(node.get("description", ""))
                    if desc.startswith("N,"):
                        found["N"] = float(node["value"])
                    elif desc.startswith("avgdl"):
                        found["avgdl"] = float(node["value"])
                    for d in node.get("details") or []:
                        walk(d)

                walk(json.loads(q.explain(searcher, hits[0][1]).to_json()))
                n = int(found.get("N", n))
                avgdl = float(found.get("avgdl", 0.0))
        return n, avgdl, df

    @property
    def size(self) -> int:
        return 0 if self.index is None else int(self.index.searcher().num_docs)

    def close(self) -> None:
        with self._lock:
            if self.writer is not None:
                try:
                    self.writer.wait_merging_threads()
                except Exception:
                    pass
            self.writer = None
            self.index = None
