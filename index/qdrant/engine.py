"""The Qdrant engine: the index contract on a Qdrant server or cluster, or qdrant-client's local mode.

Layout. A registry collection (``rerank_mcp_registry``) holds one point per rerank-mcp
collection: its name, embedding model, dimension, creation time and the Qdrant collection that
stores it (``rerank_mcp__<name>__<token>``; the prefix keeps a shared cluster's other
collections out of our listings, the token lets a re-embed build a new one beside the old and
switch in one write). A stored collection has a named dense vector ``dense`` (cosine) and a
sparse vector ``bm25`` with ``Modifier.IDF``, and holds four kinds of points (payload ``kind``):

- ``chunk``: text, ord, start/end, token count, ``doc_id``, ``gen`` and a copy of the
  document's metadata under ``metadata`` (so filter field ``lang`` is payload key
  ``metadata.lang``), with both vectors;
- ``doc``: the document record (content hash, metadata, source, chars, chunk count, current
  ``gen``, times), no vectors;
- ``pending``: a marker that a write of a document is in flight, no vectors;
- ``meta`` (point 0): running totals (chunks, BM25 tokens) that give BM25's average length.

BM25. Each chunk's sparse vector holds, per analyzed term (the collection's analyzer, :mod:`rerank_mcp.index.analyzers`,
the embedded engine's analyzer), its saturated term frequency
``tf*(k1+1) / (tf + k1*(1-b+b*dl/avgdl))`` with k1=1.2, b=0.75, under a stable 32-bit hash of the
term; the query vector has each distinct query term once with weight 1, and Qdrant's IDF
modifier multiplies in ``ln(1 + (N-df+0.5)/(df+0.5))`` (Lucene's IDF) at query time. Lengths are
quantised to one byte as tantivy and Lucene store them. That is the BM25 the embedded tantivy
index computes, with one difference: tantivy uses the average length at query time, a sparse
vector the average of its write. Each chunk records the average it was written with, and when
the collection's average moves by more than 1% the chunks off by more than 1% are rewritten
(:meth:`QdrantIndex._renormalise_bm25`), so every chunk stays within about 2% of the current
average.

Writes without transactions. Every write of a document gets a new random generation: a
``pending`` marker is written, then the new chunks (payload ``gen`` = new), then in one batch
the document record flips to the new generation, the document's chunks of any other
generation are deleted and the marker is removed. Searches and fetches drop chunks whose
generation is not their document's current one, so a failure part-way leaves the previous
version searchable and never a mix; :meth:`QdrantIndex.open_all` cleans up after writes that
died (markers older than :data:`STALE_WRITE_S`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rerank_mcp.errors import InvalidInput, NotFound, RerankMCPError, UpstreamError
from rerank_mcp.index.analyzers import Analyzer, get_analyzer
from rerank_mcp.index.bm25 import bm25_document_vector, bm25_query_vector, renormalised, term_id
from rerank_mcp.index.contract import (
    BM25Stats,
    ChunkRow,
    CollectionInfo,
    DocumentSummary,
    DocumentWrite,
    ExportedDocument,
    Index,
    IndexConfig,
    NewChunk,
    Progress,
    Ranked,
    StoredChunk,
    StoredDocument,
    check_collection_name,
)
from rerank_mcp.index.filters import Filter
from rerank_mcp.index.fusion import RRF_K
from rerank_mcp.index.qdrant.client import Connection, client_installed, missing_client, models
from rerank_mcp.index.qdrant.config import QdrantConfig
from rerank_mcp.index.qdrant.filters import compile_filter

log = logging.getLogger(__name__)

DENSE, SPARSE = "dense", "bm25"
PREFIX = "rerank_mcp__"
REGISTRY = "rerank_mcp_registry"
META_ID = 0
STALE_WRITE_S = 3600.0  # a write marker older than this belongs to a writer that died
WRITE_BATCH = 256  # points per upsert request
PAGE = 1000  # ids per retrieve / scroll request
MAX_LIMIT = 10_000  # how deep a search oversamples at most to make up for chunks of stale generations
AVGDL_TOLERANCE = 0.01  # BM25: chunks' average-length normalisation kept within 1% of the collection's


# ------------------------------------------------------------------------------------ ids
def point_id(*parts: Any) -> int:
    """A stable unsigned 63-bit point id (never 0, which is the meta point) from ``parts``."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")).digest()
    return (int.from_bytes(h[:8], "big") & (2**63 - 1)) or 1


def chunk_point_id(collection: str, doc_id: str, gen: int, ord: int) -> int:
    return point_id("chunk", collection, doc_id, gen, ord)


def _doc_pid(doc_id: str) -> int:
    return point_id("doc", doc_id)


def _marker_pid(doc_id: str) -> int:
    return point_id("pending", doc_id)


def _registry_pid(name: str) -> int:
    return point_id("collection", name)


def _new_gen() -> int:
    return secrets.randbits(52) + 1


@dataclass(frozen=True)
class _Entry:
    """A registry record: a rerank-mcp collection and the Qdrant collection that stores it."""

    name: str
    physical: str
    model: str
    dim: int
    created_at: float
    analyzer: str | None = None  # None: registered before analyzers were recorded (the legacy analyzer)

    @property
    def info(self) -> CollectionInfo:
        return CollectionInfo(self.name, self.model, self.dim, self.created_at, analyzer=self.analyzer)

    @property
    def analyze(self) -> Analyzer:
        return get_analyzer(self.analyzer)

    def registry_payload(self) -> dict[str, Any]:
        return {"name": self.name, "physical": self.physical, "embedding_model": self.model, "dim": int(self.dim),
                "created_at": self.created_at, **({"analyzer": self.analyzer} if self.analyzer else {})}


# ------------------------------------------------------------------------------------ engine
class QdrantIndex(Index):
    """The index contract on Qdrant. All methods are thread-safe."""

    backend = "qdrant"
    Config = QdrantConfig
    server_fusions = ("rrf", "dbsf")
    engine_config: QdrantConfig

    def __init__(self, config: IndexConfig) -> None:
        super().__init__(config)
        # qdrant-client is imported and connected on first use (or by open_in_background): its
        # import alone takes longer than the embedded engine's whole start
        if not client_installed():
            raise missing_client()
        self._m: Any = None
        self._conn: Connection | None = None
        self._conn_lock = threading.Lock()
        self._opened = threading.Event()
        self._opened.set()
        self._opener: threading.Thread | None = None
        self._entries: dict[str, _Entry] = {}
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        self._registry_ok = False

    # ------------------------------------------------------------------ plumbing
    @property
    def m(self) -> Any:
        """``qdrant_client.models``, imported on first use."""
        if self._m is None:
            self._m = models()
        return self._m

    @property
    def q(self) -> Connection:
        """The connection, made on first use; while :meth:`open_in_background` runs, other
        threads wait for it (no call works on collections before their repair)."""
        if not self._opened.is_set() and threading.current_thread() is not self._opener:
            self._opened.wait()
        if self._conn is None:
            with self._conn_lock:
                if self._conn is None:
                    self._conn = Connection(self.engine_config, self.config.data_dir)
        return self._conn

    def open_in_background(self, report: Callable[[list[str]], None]) -> None:
        """Connect and :meth:`open_all` in a thread of its own, handing the repair notes to
        ``report``: a server answers ``initialize`` without waiting for qdrant-client's import and
        the connection, and its calls wait until the collections are repaired. A failure is
        logged; the next call connects again and reports it."""
        self._opened.clear()

        def run() -> None:
            try:
                report(self.open_all())
            except Exception as exc:
                log.warning("opening the qdrant engine: %s", exc)
            finally:
                self._opened.set()

        self._opener = threading.Thread(target=run, name="qdrant-open", daemon=True)
        self._opener.start()

    def _lock(self, name: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(name, threading.RLock())

    def _kind(self, kind: str):
        return self.m.FieldCondition(key="kind", match=self.m.MatchValue(value=kind))

    def _registry_exists(self) -> bool:
        if not self._registry_ok:
            self._registry_ok = bool(self.q.call("check the registry", "collection_exists", REGISTRY))
        return self._registry_ok

    def _ensure_registry(self) -> None:
        if self._registry_exists():
            return
        try:
            self.q.call("create the registry", "create_collection", REGISTRY, vectors_config={})
        except UpstreamError:
            if not self.q.call("check the registry", "collection_exists", REGISTRY):  # lost a race: fine
                raise
        self._registry_ok = True

    def _read_entry(self, name: str) -> _Entry | None:
        check_collection_name(name)
        if not self._registry_exists():
            return None
        recs = self.q.call(f"read collection {name!r}", "retrieve", REGISTRY, [_registry_pid(name)], with_payload=True)
        if not recs or (recs[0].payload or {}).get("name") != name:
            with self._guard:
                self._entries.pop(name, None)
            return None
        p = recs[0].payload
        entry = _Entry(name, p["physical"], p["embedding_model"], int(p["dim"]), float(p["created_at"]),
                       p.get("analyzer"))
        with self._guard:
            self._entries[name] = entry
        return entry

    def _entry(self, name: str, fresh: bool = False) -> _Entry:
        """The collection's registry record (cached unless ``fresh``); NotFound if absent."""
        if not fresh:
            with self._guard:
                e = self._entries.get(name)
            if e is not None:
                return e
        e = self._read_entry(name)
        if e is None:
            self.require_collection(name)  # raises NotFound naming the known collections
            raise NotFound(f"unknown collection {name!r}")  # pragma: no cover - a race with drop
        return e

    def _c(self, entry: _Entry, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on the collection's Qdrant collection. If it is gone (dropped or
        re-embedded by another process), look the collection up again and retry once."""
        try:
            return self.q.call(what, method, entry.physical, *args, **kwargs)
        except NotFound:
            again = self._read_entry(entry.name)
            if again is None:
                raise NotFound(f"collection {entry.name!r} no longer exists (dropped meanwhile?)") from None
            if again.physical == entry.physical:
                raise NotFound(
                    f"collection {entry.name!r} is registered but its Qdrant collection {entry.physical!r} "
                    f"is missing: drop it (`rerank-mcp delete {entry.name} --all`) and ingest again"
                ) from None
            return self.q.call(what, method, again.physical, *args, **kwargs)

    def _scroll_all(self, entry: _Entry, what: str, flt, with_payload: Any = True,
                    with_vectors: Any = False) -> Iterator[Any]:
        offset = None
        while True:
            recs, offset = self._c(entry, what, "scroll", scroll_filter=flt, limit=PAGE, offset=offset,
                                   with_payload=with_payload, with_vectors=with_vectors)
            yield from recs
            if offset is None:
                return

    def _records(self, entry: _Entry, doc_ids: Sequence[str], payload: Any = True) -> dict[str, dict[str, Any]]:
        """Document records by doc id (those that exist)."""
        out: dict[str, dict[str, Any]] = {}
        ids = list(dict.fromkeys(doc_ids))
        if payload is not True:
            payload = list(dict.fromkeys([*payload, "doc_id", "kind"]))
        for i in range(0, len(ids), PAGE):
            part = ids[i : i + PAGE]
            want = set(part)
            for r in self._c(entry, "read documents", "retrieve", [_doc_pid(d) for d in part], with_payload=payload):
                p = r.payload or {}
                if p.get("kind") == "doc" and p.get("doc_id") in want:
                    out[p["doc_id"]] = p
        return out

    def _current_gens(self, entry: _Entry, doc_ids: Sequence[str]) -> dict[str, int]:
        return {d: p.get("gen") for d, p in self._records(entry, doc_ids, ["gen"]).items()}

    def _meta(self, entry: _Entry) -> dict[str, Any]:
        recs = self._c(entry, "read collection totals", "retrieve", [META_ID], with_payload=True)
        return dict(recs[0].payload or {}) if recs else {}

    def _create_physical(self, physical: str, dim: int) -> None:
        m, cfg = self.m, self.engine_config
        extra = {k: v for k, v in (("shard_number", cfg.shard_number), ("replication_factor", cfg.replication_factor),
                                   ("write_consistency_factor", cfg.write_consistency_factor)) if v is not None}
        self.q.call(
            f"create Qdrant collection {physical!r}", "create_collection", physical,
            vectors_config={DENSE: m.VectorParams(size=int(dim), distance=m.Distance.COSINE)},
            sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
            **extra,
        )
        if not self.q.local:  # local mode has no payload indexes (and warns about them)
            for field_name, schema in (("kind", m.PayloadSchemaType.KEYWORD), ("doc_id", m.PayloadSchemaType.KEYWORD),
                                       ("gen", m.PayloadSchemaType.INTEGER)):
                self.q.call(f"index payload field {field_name!r}", "create_payload_index", physical,
                            field_name=field_name, field_schema=schema, wait=True)

    def _delete_physical(self, physical: str) -> None:
        try:
            self.q.call(f"delete Qdrant collection {physical!r}", "delete_collection", physical)
        except NotFound:
            pass

    @staticmethod
    def _point(pid: int, payload: dict[str, Any], vector: dict[str, Any] | None = None):
        from qdrant_client import models as m

        return m.PointStruct(id=pid, vector=vector or {}, payload=payload)

    def _check_vector(self, entry: _Entry, vec: Any) -> list[float]:
        v = np.asarray(vec, dtype=np.float32).reshape(-1)
        if v.shape[0] != entry.dim:
            raise InvalidInput(
                f"vector of dimension {v.shape[0]} for collection {entry.name!r} of dimension {entry.dim}"
            )
        return v.tolist()

    # ------------------------------------------------------------------ collections
    def collection_info(self, name: str) -> CollectionInfo | None:
        e = self._read_entry(name)
        return e.info if e is not None else None

    def collections(self) -> list[CollectionInfo]:
        if not self._registry_exists():
            return []
        out = []
        offset = None
        entries: list[_Entry] = []
        while True:
            recs, offset = self.q.call("list collections", "scroll", REGISTRY, limit=PAGE, offset=offset,
                                       with_payload=True)
            for r in recs:
                p = r.payload or {}
                if "name" in p and "physical" in p:
                    entries.append(_Entry(p["name"], p["physical"], p["embedding_model"], int(p["dim"]),
                                          float(p["created_at"]), p.get("analyzer")))
            if offset is None:
                break
        for e in sorted(entries, key=lambda e: e.name):
            try:
                docs = self._c(e, "count documents", "count", count_filter=self.m.Filter(must=[self._kind("doc")]),
                               exact=True).count
                chunks = self._c(e, "count chunks", "count", count_filter=self.m.Filter(must=[self._kind("chunk")]),
                                 exact=True).count
            except NotFound:
                docs = chunks = 0
            out.append(CollectionInfo(e.name, e.model, e.dim, e.created_at, int(docs), int(chunks), e.analyzer))
        return out

    def create_collection(self, name: str, model: str | None = None, dim: int | None = None,
                          analyzer: str | None = None) -> CollectionInfo:
        check_collection_name(name)
        analyzer = self.default_analyzer(analyzer)
        with self._lock(name):
            existing = self._read_entry(name)
            if existing is not None:
                return existing.info
            if model is None or dim is None:
                emb = self.embedding.embedder
                model, dim = model or self.embedding.identity, dim or emb.dim
            self._ensure_registry()
            now = time.time()
            physical = f"{PREFIX}{name}__{secrets.token_hex(6)}"
            self._create_physical(physical, int(dim))
            try:
                self.q.call("write collection totals", "upsert", physical, [self._point(
                    META_ID, {"kind": "meta", "collection": name, "chunks": 0, "tokens": 0, "created_at": now,
                              "touched_at": now})], wait=True)
                e = _Entry(name, physical, model, int(dim), now, analyzer)
                self.q.call(f"register collection {name!r}", "upsert", REGISTRY, [self._point(
                    _registry_pid(name), e.registry_payload())], wait=True)
            except BaseException:
                self._delete_physical(physical)
                raise
            with self._guard:
                self._entries[name] = e
            return e.info

    def drop(self, name: str) -> int:
        with self._lock(name):
            e = self._entry(name, fresh=True)
            try:
                n = int(self._c(e, "count documents", "count",
                                count_filter=self.m.Filter(must=[self._kind("doc")]), exact=True).count)
            except NotFound:
                n = 0
            # storage first, then the name: a failure in between leaves a name that `drop` clears
            self._delete_physical(e.physical)
            self.q.call(f"unregister collection {name!r}", "delete", REGISTRY,
                        points_selector=self.m.PointIdsList(points=[_registry_pid(name)]), wait=True)
            with self._guard:
                self._entries.pop(name, None)
            return n

    def dense_index_kind(self, name: str) -> str | None:
        return "qdrant-local (exact)" if self.q.local else "qdrant (hnsw)"

    # ------------------------------------------------------------------ documents
    def doc_hashes(self, collection: str, doc_ids: Sequence[str]) -> dict[str, str]:
        e = self._entry(collection)
        return {d: p.get("content_hash") for d, p in self._records(e, doc_ids, ["content_hash"]).items()}

    def _write_marks(self, e: _Entry, doc_ids: Sequence[str], gens: Mapping[str, int | None]) -> None:
        now = time.time()
        pts = [self._point(_marker_pid(d), {"kind": "pending", "doc_id": d, "gen": gens.get(d), "at": now})
               for d in doc_ids]
        for i in range(0, len(pts), WRITE_BATCH):
            self._c(e, "mark documents being written", "upsert", pts[i : i + WRITE_BATCH], wait=True)

    def _write_chunks(self, e: _Entry, points: list[Any]) -> None:
        for i in range(0, len(points), WRITE_BATCH):
            self._c(e, "write chunks", "upsert", points[i : i + WRITE_BATCH], wait=True)

    def _meta_point(self, e: _Entry, meta: Mapping[str, Any], chunks: int, tokens: int):
        """The meta point with new totals (written whole: an update never depends on it existing)."""
        return self._point(META_ID, {"created_at": e.created_at, **meta, "kind": "meta", "collection": e.name,
                                     "chunks": int(chunks), "tokens": int(tokens), "touched_at": time.time()})

    def _renormalise_bm25(self, e: _Entry, n_chunks: int, n_tokens: int) -> int:
        """Keep every chunk's BM25 length normalisation within :data:`AVGDL_TOLERANCE` of the
        collection's average chunk length, as tantivy's (computed at query time) is.

        A sparse vector is written with the average length of its time; a collection whose later
        chunks are longer or shorter (a corpus sorted by length, say) would otherwise score its
        early chunks with a stale average. When the average has moved by more than the tolerance
        since the last pass, the chunks written with an average off by more than the tolerance
        get their sparse vectors rewritten (term frequencies are recovered exactly from the stored
        values). Returns how many were rewritten."""
        if not n_chunks or not n_tokens:
            return 0
        m = self.m
        avgdl = n_tokens / n_chunks
        meta = self._meta(e)
        last = float(meta.get("norm_avgdl") or 0.0)
        if last and abs(avgdl - last) <= AVGDL_TOLERANCE * last:
            return 0
        lo, hi = avgdl * (1 - AVGDL_TOLERANCE), avgdl * (1 + AVGDL_TOLERANCE)
        stale = m.Filter(must=[self._kind("chunk")], should=[
            m.FieldCondition(key="bm25_avgdl", range=m.Range(lt=lo)),
            m.FieldCondition(key="bm25_avgdl", range=m.Range(gt=hi)),
        ])
        updates, ids = [], []
        n = 0

        def flush() -> None:
            if not updates:
                return
            self._c(e, "renormalise BM25 vectors", "batch_update_points", update_operations=[
                m.UpdateVectorsOperation(update_vectors=m.UpdateVectors(points=list(updates))),
                m.SetPayloadOperation(set_payload=m.SetPayload(payload={"bm25_avgdl": avgdl}, points=list(ids))),
            ], wait=True)
            updates.clear()
            ids.clear()

        for r in self._scroll_all(e, "find chunks to renormalise", stale, ["bm25_dl", "bm25_avgdl"], [SPARSE]):
            p = r.payload or {}
            sv = (r.vector or {}).get(SPARSE) if isinstance(r.vector, dict) else None
            if sv is None or "bm25_dl" not in p:
                continue
            values = renormalised(sv.values, int(p["bm25_dl"]), float(p["bm25_avgdl"]), avgdl)
            updates.append(m.PointVectors(id=r.id, vector={SPARSE: m.SparseVector(indices=list(sv.indices),
                                                                                   values=values)}))
            ids.append(r.id)
            n += 1
            if len(updates) >= WRITE_BATCH:
                flush()
        flush()
        self._c(e, "write collection totals", "set_payload", payload={"norm_avgdl": avgdl}, points=[META_ID],
                wait=True)
        if n:
            log.info("%s: BM25 length normalisation of %d chunks brought to the average %.2f", e.name, n, avgdl)
        return n

    def _commit(self, e: _Entry, records: list[Any], doc_ids: list[str], keep_gens: list[int]) -> None:
        """Flip the records to their new generation, drop the other generations' chunks, unmark."""
        m = self.m
        stale = m.Filter(
            must=[self._kind("chunk"), m.FieldCondition(key="doc_id", match=m.MatchAny(any=doc_ids))],
            must_not=[m.FieldCondition(key="gen", match=m.MatchAny(any=keep_gens))] if keep_gens else None,
        )
        ops = [
            m.UpsertOperation(upsert=m.PointsList(points=records)),
            m.DeleteOperation(delete=m.FilterSelector(filter=stale)),
            m.DeleteOperation(delete=m.PointIdsList(points=[_marker_pid(d) for d in doc_ids])),
        ]
        self._c(e, "commit documents", "batch_update_points", update_operations=ops, wait=True)

    def upsert(self, collection: str, docs: Sequence[DocumentWrite]) -> None:
        if not docs:
            return
        with self._lock(collection):
            e = self._entry(collection, fresh=True)
            batch = list({d.doc_id: d for d in docs}.values())  # the last write of an id wins
            for d in batch:
                if not isinstance(d.doc_id, str) or not d.doc_id:
                    raise InvalidInput(f"document id must be a non-empty string, got {d.doc_id!r}")
            vecs = {d.doc_id: [self._check_vector(e, c.vec) for c in d.chunks] for d in batch}
            analyze = e.analyze.tokenize
            tokens = {d.doc_id: [analyze(c.text) for c in d.chunks] for d in batch}
            ids = [d.doc_id for d in batch]
            old = self._records(e, ids, ["n_chunks", "bm25_tokens", "created_at", "gen"])
            meta = self._meta(e)
            n_chunks = int(meta.get("chunks", 0)) + sum(len(d.chunks) for d in batch) \
                - sum(int(p.get("n_chunks", 0)) for p in old.values())
            n_tokens = int(meta.get("tokens", 0)) + sum(len(t) for ts in tokens.values() for t in ts) \
                - sum(int(p.get("bm25_tokens", 0)) for p in old.values())
            n_chunks, n_tokens = max(n_chunks, 0), max(n_tokens, 0)
            avgdl = n_tokens / n_chunks if n_chunks and n_tokens else 1.0
            gens = {d: _new_gen() for d in ids}
            now = time.time()
            points, records = [], []
            for d in batch:
                g = gens[d.doc_id]
                for o, (c, v, toks) in enumerate(zip(d.chunks, vecs[d.doc_id], tokens[d.doc_id])):
                    vector: dict[str, Any] = {DENSE: v}
                    idx, val = bm25_document_vector(toks, avgdl)
                    if idx:  # an empty sparse vector would count in IDF's N in local mode and not on a server
                        vector[SPARSE] = self.m.SparseVector(indices=idx, values=val)
                    points.append(self._point(chunk_point_id(collection, d.doc_id, g, o), {
                        "kind": "chunk", "doc_id": d.doc_id, "gen": g, "ord": o, "text": c.text,
                        "start": int(c.start), "end": int(c.end), "tokens": int(c.tokens),
                        "metadata": d.metadata or {}, "line": c.line, "gap": c.gap,
                        "bm25_dl": len(toks), "bm25_avgdl": avgdl,
                    }, vector))
                prev = old.get(d.doc_id, {})
                records.append(self._point(_doc_pid(d.doc_id), {
                    "kind": "doc", "doc_id": d.doc_id, "content_hash": d.content_hash, "metadata": d.metadata or {},
                    "source": d.source, "chars": int(d.chars), "n_chunks": len(d.chunks),
                    "bm25_tokens": sum(len(t) for t in tokens[d.doc_id]), "gen": g,
                    "created_at": prev.get("created_at", now), "updated_at": now,
                }))
            for i in range(0, len(ids), WRITE_BATCH):
                part = ids[i : i + WRITE_BATCH]
                self._write_marks(e, part, gens)
            self._write_chunks(e, points)
            meta_point = self._meta_point(e, meta, n_chunks, n_tokens)
            for i in range(0, len(ids), WRITE_BATCH):
                part = ids[i : i + WRITE_BATCH]
                recs = records[i : i + WRITE_BATCH] + ([meta_point] if i == 0 else [])
                self._commit(e, recs, part, [gens[d] for d in part])
            self._renormalise_bm25(e, n_chunks, n_tokens)

    def delete(self, collection: str, ids: Sequence[str] | None = None, filter: Filter | None = None) -> list[str]:
        if ids is None and filter is None:
            raise InvalidInput("delete needs document ids, a filter, or both")
        m = self.m
        with self._lock(collection):
            e = self._entry(collection, fresh=True)
            flt = compile_filter(filter)
            found: dict[str, dict[str, Any]] = {}
            if ids is not None:
                wanted = list(dict.fromkeys(ids))
                for i in range(0, len(wanted), PAGE):
                    part = wanted[i : i + PAGE]
                    cond = m.Filter(must=[self._kind("doc"), m.FieldCondition(key="doc_id", match=m.MatchAny(any=part)),
                                          *([flt] if flt is not None else [])])
                    for r in self._scroll_all(e, "find documents", cond, ["doc_id", "n_chunks", "bm25_tokens"]):
                        found[r.payload["doc_id"]] = r.payload
            else:
                cond = m.Filter(must=[self._kind("doc"), flt])
                for r in self._scroll_all(e, "find documents", cond, ["doc_id", "n_chunks", "bm25_tokens"]):
                    found[r.payload["doc_id"]] = r.payload
            if not found:
                return []
            meta = self._meta(e)
            n_chunks, n_tokens = int(meta.get("chunks", 0)), int(meta.get("tokens", 0))
            doomed = sorted(found)
            for i in range(0, len(doomed), WRITE_BATCH):
                part = doomed[i : i + WRITE_BATCH]
                self._write_marks(e, part, {})
                n_chunks = max(n_chunks - sum(int(found[d].get("n_chunks", 0)) for d in part), 0)
                n_tokens = max(n_tokens - sum(int(found[d].get("bm25_tokens", 0)) for d in part), 0)
                ops = [
                    m.DeleteOperation(delete=m.PointIdsList(points=[_doc_pid(d) for d in part])),
                    m.UpsertOperation(upsert=m.PointsList(points=[self._meta_point(e, meta, n_chunks, n_tokens)])),
                    m.DeleteOperation(delete=m.FilterSelector(filter=m.Filter(must=[
                        self._kind("chunk"), m.FieldCondition(key="doc_id", match=m.MatchAny(any=part))]))),
                    m.DeleteOperation(delete=m.PointIdsList(points=[_marker_pid(d) for d in part])),
                ]
                self._c(e, "delete documents", "batch_update_points", update_operations=ops, wait=True)
            self._renormalise_bm25(e, n_chunks, n_tokens)
            return doomed

    def _doc_ids(self, e: _Entry) -> list[str]:
        flt = self.m.Filter(must=[self._kind("doc")])
        return sorted(r.payload["doc_id"] for r in self._scroll_all(e, "list documents", flt, ["doc_id"]))

    def documents(self, collection: str, limit: int = 100, offset: int = 0) -> list[DocumentSummary]:
        e = self._entry(collection)
        page = self._doc_ids(e)[max(offset, 0) : max(offset, 0) + max(limit, 0)]
        recs = self._records(e, page)
        return [
            DocumentSummary(d, recs[d].get("metadata") or {}, recs[d].get("source"), int(recs[d].get("n_chunks", 0)),
                            int(recs[d].get("chars", 0)), recs[d].get("content_hash"), recs[d].get("updated_at"))
            for d in page if d in recs
        ]

    def sources(self, collection: str) -> dict[str, str]:
        e = self._entry(collection)
        flt = self.m.Filter(must=[self._kind("doc")])
        return {r.payload["doc_id"]: r.payload["source"] for r in self._scroll_all(e, "list sources", flt, ["doc_id", "source"])
                if (r.payload or {}).get("source")}

    def _chunks_of(self, e: _Entry, recs: Mapping[str, Mapping[str, Any]], with_vectors: Any = False) -> dict[str, list[Any]]:
        """The current-generation chunk points of the documents ``recs``, by doc id, in order."""
        m = self.m
        out: dict[str, list[Any]] = {d: [] for d in recs}
        ids = list(recs)
        for i in range(0, len(ids), PAGE):
            part = ids[i : i + PAGE]
            flt = m.Filter(must=[self._kind("chunk"), m.FieldCondition(key="doc_id", match=m.MatchAny(any=part))])
            for r in self._scroll_all(e, "read chunks", flt, True, with_vectors):
                p = r.payload or {}
                d = p.get("doc_id")
                if d in recs and p.get("gen") == recs[d].get("gen"):
                    out[d].append(r)
        for pts in out.values():
            pts.sort(key=lambda r: r.payload["ord"])
        return out

    def document(self, collection: str, doc_id: str) -> StoredDocument:
        e = self._entry(collection)
        recs = self._records(e, [doc_id])
        if doc_id not in recs:
            raise NotFound(f"no document {doc_id!r} in collection {collection!r}")
        rec = recs[doc_id]
        chunks = self._chunks_of(e, recs)[doc_id]
        return StoredDocument(
            doc_id, rec.get("metadata") or {}, rec.get("source"), rec.get("content_hash"),
            [StoredChunk(int(r.id), r.payload["ord"], r.payload["text"], r.payload["start"], r.payload["end"],
                         r.payload.get("line"), r.payload.get("gap")) for r in chunks],
        )

    def count_chunks(self, collection: str) -> int:
        e = self._entry(collection)
        return int(self._c(e, "count chunks", "count", count_filter=self.m.Filter(must=[self._kind("chunk")]),
                           exact=True).count)

    # ------------------------------------------------------------------ retrieval
    def _run(self, e: _Entry, requests: Mapping[str, Callable[[int], Any]], k: int) -> dict[str, Ranked]:
        """Run query requests (one per arm) in one batched call, keep each hit whose document is
        at the hit's generation, and ask again deeper for arms that lost too many to reach ``k``."""
        out: dict[str, Ranked] = {}
        pending = dict(requests)
        limit = k + max(8, k // 4)
        while pending:
            names = list(pending)
            res = self._c(e, "search", "query_batch_points", requests=[pending[n](limit) for n in names])
            hits = {n: r.points for n, r in zip(names, res)}
            gens = self._current_gens(e, list({(p.payload or {}).get("doc_id") for pts in hits.values() for p in pts}
                                              - {None}))
            for n in names:
                pts = hits[n]
                good = [(int(p.id), float(p.score)) for p in pts
                        if (p.payload or {}).get("doc_id") in gens and gens[p.payload["doc_id"]] == p.payload.get("gen")]
                if len(good) >= k or len(pts) < limit or limit >= MAX_LIMIT:
                    out[n] = good[:k]
                    del pending[n]
                elif len(good) < len(pts):
                    log.debug("%s: %d of %d hits were stale; searching deeper", e.name, len(pts) - len(good), len(pts))
            limit = min(limit * 4, MAX_LIMIT)
        return out

    def _arm_requests(self, e: _Entry, query: str, vector: np.ndarray | None, filter: Filter | None,
                      arms: Sequence[str]) -> dict[str, Callable[[int], Any]]:
        m = self.m
        flt = compile_filter(filter)
        reqs: dict[str, Callable[[int], Any]] = {}
        if "dense" in arms:
            if vector is None:
                raise InvalidInput("the dense arm needs a query vector")
            v = self._check_vector(e, vector)
            reqs["dense"] = lambda n: m.QueryRequest(query=v, using=DENSE, filter=flt, limit=n,
                                                     with_payload=["doc_id", "gen"])
        if "bm25" in arms:
            idx, val = bm25_query_vector(query, e.analyze)
            if idx:
                sv = m.SparseVector(indices=idx, values=val)
                reqs["bm25"] = lambda n: m.QueryRequest(query=sv, using=SPARSE, filter=flt, limit=n,
                                                        with_payload=["doc_id", "gen"])
        return reqs

    def search_arms(
        self, collection: str, query: str, vector: np.ndarray | None, k: int, filter: Filter | None = None,
        arms: Sequence[str] = ("dense", "bm25"),
    ) -> dict[str, Ranked]:
        """The requested arms in one ``query_batch_points`` request."""
        unknown = set(arms) - {"dense", "bm25"}
        if unknown:
            raise InvalidInput(f"unknown search arm(s) {sorted(unknown)}; use 'dense' and/or 'bm25'")
        e = self._entry(collection)
        out: dict[str, Ranked] = {a: [] for a in arms}
        if k <= 0:
            return out
        reqs = self._arm_requests(e, query, vector, filter, arms)
        if reqs:
            out.update(self._run(e, reqs, k))
        return out

    def bm25_stats(self, collection: str, terms: Sequence[str]) -> BM25Stats:
        """N: the chunk points (what Qdrant's IDF modifier counts); avgdl: the meta point's running
        totals; df: the chunk points whose sparse vector holds the term, one request for all terms."""
        m = self.m
        e = self._entry(collection)
        meta = self._meta(e)
        n_chunks, n_tokens = int(meta.get("chunks", 0)), int(meta.get("tokens", 0))
        distinct = list(dict.fromkeys(terms))
        df = {t: 0 for t in distinct}
        if distinct and n_chunks > 0:
            flt = m.Filter(must=[self._kind("chunk")])
            reqs = [m.QueryRequest(query=m.SparseVector(indices=[term_id(t)], values=[1.0]), using=SPARSE,
                                   filter=flt, limit=n_chunks + 64, with_payload=False)
                    for t in distinct]
            res = self._c(e, "count term documents", "query_batch_points", requests=reqs)
            df = {t: sum(1 for p in r.points if p.score > 0) for t, r in zip(distinct, res)}
        return BM25Stats(n_chunks, n_tokens / n_chunks if n_chunks else 0.0, df)

    def fused_search(
        self, collection: str, query: str, vector: np.ndarray, k: int, filter: Filter | None = None,
        fusion: str = "rrf", prefetch_limit: int | None = None, rrf_k: int | None = RRF_K,
        weights: Mapping[str, float] | None = None,
    ) -> Ranked:
        """Hybrid search fused by Qdrant itself: both arms as prefetches, then ``fusion``:

        - ``rrf``: reciprocal rank fusion ``sum 1/(rrf_k + rank)``, ranks from 1, as
          :func:`rerank_mcp.index.fusion.rrf` computes it (default 60; None for Qdrant's own
          default, k=2 over ranks from 0), with optional per-arm ``weights``
          (``{"dense": w, "bm25": w}``, applied by Qdrant's weighted RRF; both need Qdrant >= 1.16);
        - ``dbsf``: distribution-based score fusion (each arm's scores normalised by mean ± 3σ).

        Each arm contributes its top ``prefetch_limit`` (default ``max(4k, 50)``)."""
        m = self.m
        if fusion not in ("rrf", "dbsf"):
            raise InvalidInput(f"unknown fusion {fusion!r}; use 'rrf' or 'dbsf'")
        e = self._entry(collection)
        if k <= 0:
            return []
        flt = compile_filter(filter)
        depth = int(prefetch_limit or max(4 * k, 50))
        prefetch = [m.Prefetch(query=self._check_vector(e, vector), using=DENSE, filter=flt, limit=depth)]
        names = ["dense"]
        idx, val = bm25_query_vector(query, e.analyze)
        if idx:
            prefetch.append(m.Prefetch(query=m.SparseVector(indices=idx, values=val), using=SPARSE, filter=flt,
                                       limit=depth))
            names.append("bm25")
        if fusion == "dbsf":
            fq = m.FusionQuery(fusion=m.Fusion.DBSF)
        elif rrf_k is None and weights is None:
            fq = m.FusionQuery(fusion=m.Fusion.RRF)
        else:
            w = [float((weights or {}).get(n, 1.0)) for n in names] if weights else None
            # Qdrant ranks from 0, the project's RRF from 1: k+1 there is k here
            fq = m.RrfQuery(rrf=m.Rrf(k=int(rrf_k) + 1 if rrf_k is not None else 2, weights=w))

        def req(n: int):
            return m.QueryRequest(prefetch=prefetch, query=fq, limit=n, with_payload=["doc_id", "gen"])

        return self._run(e, {"fused": req}, k)["fused"]

    def fetch_chunks(self, collection: str, ids: Sequence[int]) -> dict[int, ChunkRow]:
        e = self._entry(collection)
        wanted = list(dict.fromkeys(int(i) for i in ids if 0 < int(i) < 2**63))
        hits = []
        for i in range(0, len(wanted), PAGE):
            hits += [r for r in self._c(e, "read chunks", "retrieve", wanted[i : i + PAGE], with_payload=True)
                     if (r.payload or {}).get("kind") == "chunk"]
        gens = self._current_gens(e, list({r.payload["doc_id"] for r in hits}))
        out: dict[int, ChunkRow] = {}
        for r in hits:
            p = r.payload
            if gens.get(p["doc_id"]) == p.get("gen"):
                out[int(r.id)] = ChunkRow(int(r.id), p["doc_id"], int(p["ord"]), p["text"], int(p["start"]),
                                          int(p["end"]), p.get("metadata") or {}, p.get("line"),
                                          p.get("gap"))
        return out

    def chunk_vectors(self, collection: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
        e = self._entry(collection)
        wanted = list(dict.fromkeys(int(i) for i in ids if 0 < int(i) < 2**63))
        recs = []
        for i in range(0, len(wanted), PAGE):
            recs += [r for r in self._c(e, "read vectors", "retrieve", wanted[i : i + PAGE],
                                        with_payload=["doc_id", "gen", "kind"], with_vectors=[DENSE])
                     if (r.payload or {}).get("kind") == "chunk"]
        gens = self._current_gens(e, list({r.payload["doc_id"] for r in recs}))
        return {int(r.id): np.asarray(r.vector[DENSE], dtype=np.float32) for r in recs
                if gens.get(r.payload["doc_id"]) == r.payload.get("gen")}

    def iter_vectors(self, collection: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every current chunk's (ids, dense vectors), in batches."""
        e = self._entry(collection)
        flt = self.m.Filter(must=[self._kind("chunk")])
        offset = None
        while True:
            recs, offset = self._c(e, "read vectors", "scroll", scroll_filter=flt, limit=PAGE, offset=offset,
                                   with_payload=["doc_id", "gen"], with_vectors=[DENSE])
            gens = self._current_gens(e, list({r.payload["doc_id"] for r in recs}))
            live = [r for r in recs if gens.get(r.payload["doc_id"]) == r.payload.get("gen")]
            if live:
                yield (np.fromiter((int(r.id) for r in live), dtype=np.int64, count=len(live)),
                       np.asarray([r.vector[DENSE] for r in live], dtype=np.float32))
            if offset is None:
                return

    # ------------------------------------------------------------------ whole collections
    def export_documents(self, collection: str) -> Iterator[ExportedDocument]:
        e = self._entry(collection)
        ids = self._doc_ids(e)
        for i in range(0, len(ids), WRITE_BATCH):
            part = ids[i : i + WRITE_BATCH]
            recs = self._records(e, part)
            chunks = self._chunks_of(e, recs, [DENSE])
            for d in part:
                if d not in recs:
                    continue
                rec = recs[d]
                yield ExportedDocument(
                    d, rec.get("content_hash"), rec.get("metadata") or {}, rec.get("source"), int(rec.get("chars", 0)),
                    [NewChunk(r.payload["text"], int(r.payload["start"]), int(r.payload["end"]),
                              int(r.payload.get("tokens", 0)), np.asarray(r.vector[DENSE], dtype=np.float32),
                              r.payload.get("line"), r.payload.get("gap"))
                     for r in chunks[d]],
                )

    def set_analyzer(self, collection: str, analyzer: str, progress: Progress | None = None) -> int:
        """Rewrite every chunk's BM25 sparse vector (and the lengths behind it) with ``analyzer``,
        then record it in the registry. Interrupted, the registry still names the old analyzer and
        running it again redoes the whole pass."""
        m = self.m
        new = get_analyzer(analyzer)
        with self._lock(collection):
            e = self._entry(collection, fresh=True)
            chunks: list[tuple[Any, str, list[str]]] = []
            for r in self._scroll_all(e, "read chunks to re-analyze", m.Filter(must=[self._kind("chunk")]),
                                      ["doc_id", "text"]):
                p = r.payload or {}
                chunks.append((r.id, str(p.get("doc_id")), new.tokenize(str(p.get("text", "")))))
            n_chunks = len(chunks)
            n_tokens = sum(len(t) for _, _, t in chunks)
            avgdl = n_tokens / n_chunks if n_chunks and n_tokens else 1.0
            per_doc: Counter[str] = Counter()
            for i in range(0, n_chunks, WRITE_BATCH):
                ops: list[Any] = []
                for pid, doc_id, toks in chunks[i : i + WRITE_BATCH]:
                    per_doc[doc_id] += len(toks)
                    idx, val = bm25_document_vector(toks, avgdl)
                    if idx:
                        ops.append(m.UpdateVectorsOperation(update_vectors=m.UpdateVectors(points=[m.PointVectors(
                            id=pid, vector={SPARSE: m.SparseVector(indices=idx, values=val)})])))
                    else:
                        ops.append(m.DeleteVectorsOperation(delete_vectors=m.DeleteVectors(
                            points=[pid], vector=[SPARSE])))
                    ops.append(m.SetPayloadOperation(set_payload=m.SetPayload(
                        payload={"bm25_dl": len(toks), "bm25_avgdl": avgdl}, points=[pid])))
                self._c(e, "write re-analyzed BM25 vectors", "batch_update_points", update_operations=ops, wait=True)
                if progress:
                    progress(min(i + WRITE_BATCH, n_chunks), n_chunks,
                             f"re-analyzed {min(i + WRITE_BATCH, n_chunks)} of {n_chunks} chunks")
            docs = list(per_doc.items())
            for i in range(0, len(docs), WRITE_BATCH):
                self._c(e, "write document lengths", "batch_update_points", update_operations=[
                    m.SetPayloadOperation(set_payload=m.SetPayload(payload={"bm25_tokens": n}, points=[_doc_pid(d)]))
                    for d, n in docs[i : i + WRITE_BATCH]], wait=True)
            self._c(e, "write collection totals", "set_payload", payload={"tokens": n_tokens, "norm_avgdl": avgdl},
                    points=[META_ID], wait=True)
            switched = _Entry(e.name, e.physical, e.model, e.dim, e.created_at, new.name)
            self.q.call(f"record the analyzer of {collection!r}", "upsert", REGISTRY, [self._point(
                _registry_pid(collection), switched.registry_payload())], wait=True)
            with self._guard:
                self._entries[collection] = switched
            return n_chunks

    def set_vectors(self, collection: str, model: str, dim: int, vectors: Callable[[list[str]], np.ndarray],
                    progress: Progress | None = None) -> int:
        """Re-embed into a new Qdrant collection beside the old one, then switch the registry to
        it in one write and delete the old one. Writes made by another process meanwhile to the
        old collection are lost; within this process they wait."""
        with self._lock(collection):
            e = self._entry(collection, fresh=True)
            total = self.count_chunks(collection)
            meta = self._meta(e)
            physical = f"{PREFIX}{collection}__{secrets.token_hex(6)}"
            self._create_physical(physical, int(dim))
            done = 0
            try:
                now = time.time()
                self.q.call("write collection totals", "upsert", physical, [self._point(META_ID, {
                    "kind": "meta", "collection": collection, "chunks": int(meta.get("chunks", 0)),
                    "tokens": int(meta.get("tokens", 0)), "created_at": meta.get("created_at", e.created_at),
                    "touched_at": now})], wait=True)
                ids = self._doc_ids(e)
                for i in range(0, len(ids), WRITE_BATCH):
                    recs = self._records(e, ids[i : i + WRITE_BATCH])
                    chunks = [r for pts in self._chunks_of(e, recs, [SPARSE]).values() for r in pts]
                    new = np.asarray(vectors([r.payload["text"] for r in chunks]), dtype=np.float32) if chunks \
                        else np.zeros((0, dim), np.float32)
                    if new.shape != (len(chunks), int(dim)):
                        raise InvalidInput(f"re-embedding gave vectors of shape {new.shape}, expected "
                                           f"({len(chunks)}, {dim})")
                    points = []
                    for r, v in zip(chunks, new):
                        vec: dict[str, Any] = {DENSE: v.tolist()}
                        if r.vector and SPARSE in r.vector:
                            vec[SPARSE] = r.vector[SPARSE]
                        points.append(self._point(int(r.id), r.payload, vec))
                    points += [self._point(_doc_pid(d), p) for d, p in recs.items()]
                    for j in range(0, len(points), WRITE_BATCH):
                        self.q.call("write re-embedded chunks", "upsert", physical, points[j : j + WRITE_BATCH],
                                    wait=True)
                    self.q.call("mark progress", "set_payload", physical, payload={"touched_at": time.time()},
                                points=[META_ID], wait=True)
                    done += len(chunks)
                    if progress:
                        progress(done, max(total, done), f"re-embedded {done} of {max(total, done)} chunks")
                switched = _Entry(collection, physical, model, int(dim), e.created_at, e.analyzer)
                self.q.call(f"switch collection {collection!r}", "upsert", REGISTRY, [self._point(
                    _registry_pid(collection), switched.registry_payload())], wait=True)
            except BaseException:
                self._delete_physical(physical)
                raise
            with self._guard:
                self._entries[collection] = switched
            try:
                self._delete_physical(e.physical)
            except RerankMCPError as exc:
                log.warning("re-embedded %r, but the old Qdrant collection %r stays: %s", collection, e.physical, exc)
            return done

    # ------------------------------------------------------------------ lifecycle
    def repair(self, collection: str, older_than_s: float = STALE_WRITE_S) -> list[str]:
        """Finish or undo writes of ``collection`` that died part-way (their markers are older than
        ``older_than_s``): each such document keeps only its current generation's chunks."""
        m = self.m
        notes = []
        with self._lock(collection):
            e = self._entry(collection, fresh=True)
            cutoff = time.time() - older_than_s
            flt = m.Filter(must=[self._kind("pending"), m.FieldCondition(key="at", range=m.Range(lte=cutoff))])
            marks = [r.payload["doc_id"] for r in self._scroll_all(e, "find interrupted writes", flt, ["doc_id"])]
            for i in range(0, len(marks), WRITE_BATCH):
                part = marks[i : i + WRITE_BATCH]
                gens = self._current_gens(e, part)
                ops = []
                for d in part:
                    cond = m.Filter(must=[self._kind("chunk"), m.FieldCondition(key="doc_id", match=m.MatchValue(value=d))],
                                    must_not=[m.FieldCondition(key="gen", match=m.MatchValue(value=gens[d]))]
                                    if gens.get(d) is not None else None)
                    ops.append(m.DeleteOperation(delete=m.FilterSelector(filter=cond)))
                ops.append(m.DeleteOperation(delete=m.PointIdsList(points=[_marker_pid(d) for d in part])))
                self._c(e, "clean up interrupted writes", "batch_update_points", update_operations=ops, wait=True)
                notes += [f"{collection}: cleaned up an interrupted write of document {d!r}" for d in part]
        return notes

    def open_all(self) -> list[str]:
        """Clean up interrupted writes in every collection, and Qdrant collections of ours that
        no name points to (a failed drop or re-embed) once they have been idle for an hour."""
        notes: list[str] = []
        names = [c.name for c in self.collections()]
        for name in names:
            try:
                notes += self.repair(name)
            except NotFound:
                continue
        try:
            listed = [c.name for c in self.q.call("list Qdrant collections", "get_collections").collections]
            used = {self._entry(n).physical for n in names}
            for physical in listed:
                if not physical.startswith(PREFIX) or physical in used:
                    continue
                recs = self.q.call("read collection totals", "retrieve", physical, [META_ID], with_payload=True)
                touched = float((recs[0].payload or {}).get("touched_at", 0)) if recs else None
                if touched is not None and touched < time.time() - STALE_WRITE_S:
                    self._delete_physical(physical)
                    notes.append(f"deleted orphaned Qdrant collection {physical!r}")
        except (NotFound, UpstreamError) as exc:
            log.warning("looking for orphaned Qdrant collections: %s", exc)
        return notes

    def close(self) -> None:
        self._opened.wait(30)
        if self._conn is not None:
            self._conn.close()
        super().close()
