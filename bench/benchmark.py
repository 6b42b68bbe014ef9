"""Benchmarks measured in-process: embedding, ingest, search at scale, BM25, rerankers.

Every figure is printed beside its baseline measured in the same run (machines are shared and
noisy; ratios from one run are what can be compared). The sections that drive a server
process (MCP round trips, the rerank HTTP API, start-up) are in ``bench_command.py``,
``http_api.py`` and ``startup.py``.
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rerank_mcp.index.chunking import chunk_text
from rerank_mcp.index.contract import DocumentWrite, Index, IndexConfig, NewChunk
from rerank_mcp.index.embedding import Embedder, load_embedder
from rerank_mcp.index.engines import open_index
from rerank_mcp.index.model_names import DEFAULT_EMBEDDING_BACKEND
from rerank_mcp.tools.metrics import median, percentile


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class Section:
    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class TimedEmbedder:
    """Wraps an embedder, accumulates the time spent inside ``encode`` and keeps the texts."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.texts: list[str] = []
        self.name, self.dim = inner.name, inner.dim
        self.cache_key = getattr(inner, "cache_key", inner.name)
        self.max_seq_length = inner.max_seq_length

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        t = time.perf_counter()
        try:
            return self.inner.encode(texts)
        finally:
            self.seconds += time.perf_counter() - t


# ---------------------------------------------------------------------------- embedding


BACKEND_LABELS = {"torch": "torch fp32", "onnx": "onnx: all int8",
                  "onnx-mixed": "onnx-mixed: int8, the six FFN output projections fp32",
                  "onnx-mixed-l0": "onnx-mixed-l0: int8, the first layer's FFN output projection fp32",
                  "onnx-smooth-l0": "onnx-smooth-l0: onnx-mixed-l0 with the Q/K/V and FFN inputs smoothed (SmoothQuant)",
                  "onnx-smooth-l01": "onnx-smooth-l01: onnx-smooth-l0 with layer 1's FFN output projection fp32 too"}


def bench_embedding(docs: list[tuple[str, str]], n_chunks: int, cache_dir: Path, log: Callable[[str], None]) -> Section:
    sec = Section("Embedding: torch fp32 vs ONNX Runtime int8 variants (all-MiniLM-L6-v2, 128-token chunks)")
    torch_e = Embedder("all-MiniLM-L6-v2")
    chunks = [c.text for _, t in docs for c in chunk_text(t, 128, 0, torch_e.count_tokens)][:n_chunks]
    backends = [(BACKEND_LABELS["torch"] + " (baseline)", torch_e)]
    for b in ("onnx", "onnx-mixed", "onnx-mixed-l0", "onnx-smooth-l0", "onnx-smooth-l01"):
        label = BACKEND_LABELS[b] + (" (the default)" if b == DEFAULT_EMBEDDING_BACKEND else "")
        backends.append((label, load_embedder("all-MiniLM-L6-v2", b, cache_dir=cache_dir)))
    for _, e in backends:
        e.encode(chunks[:32])
    log(f"embedding {len(chunks)} chunks with each backend")
    out = {}
    for label, e in backends:
        t = time.perf_counter()
        out[label] = (e.encode(chunks), time.perf_counter() - t)
    ref, t_torch = out[backends[0][0]]
    for label, (v, secs) in out.items():
        cos = (ref * v).sum(axis=1)
        sec.rows.append({"backend": label, "chunks/s": round(len(chunks) / secs, 1), "speed-up": round(t_torch / secs, 2),
                         "cosine mean": round(float(cos.mean()), 4), "cosine 1st percentile": round(percentile(cos, 1), 4),
                         "cosine min": round(float(cos.min()), 4), "chunks >= 0.99": f"{100 * float((cos >= 0.99).mean()):.1f}%"})
    toks = torch_e.count_tokens(chunks)
    sec.notes.append(f"{len(chunks)} SciFact chunks, mean {np.mean(toks):.0f} tokens. Cosine is between each chunk's "
                     "vector and the fp32 (torch) vector of the same chunk; the backends are judged by retrieval "
                     "quality instead (docs/performance.md), the cosine target is retired.")
    return sec


# ---------------------------------------------------------------------------- ingest
def bench_ingest(docs: list[tuple[str, str]], backends: Sequence[str], log: Callable[[str], None]) -> Section:
    from rerank_mcp.tools.ingest import ingest

    sec = Section("Ingest end to end (SciFact documents, 128-token chunks, fresh index, no embedding cache)")
    for backend in backends:
        texts: list[str] = []
        with tempfile.TemporaryDirectory() as d:
            inner = load_embedder("all-MiniLM-L6-v2", backend, cache_dir=Path(tempfile.gettempdir()) / "rerank-mcp-onnx")
            timed = TimedEmbedder(inner)
            engine = open_index(IndexConfig(data_dir=Path(d), embedder_factory=lambda timed=timed: timed))
            cache, engine.embedding.cache = engine.embedding.cache, None  # measure embedding, not cache hits
            log(f"ingesting {len(docs)} documents with the {backend} backend")
            t = time.perf_counter()
            res = ingest(engine, "bench", [{"id": i, "text": x} for i, x in docs], chunk_size=128, chunk_overlap=0)
            wall = time.perf_counter() - t
            engine.embedding.cache = cache
            engine.close()
            texts = timed.texts
            log(f"embedding the same {len(texts)} chunks with the model alone")
            t = time.perf_counter()
            inner.encode(texts)
            alone = time.perf_counter() - t
        outside = wall - timed.seconds
        sec.rows.append({"backend": backend + (" (default)" if backend == DEFAULT_EMBEDDING_BACKEND else ""),
                         "documents": len(docs), "chunks": res.chunks_written,
                         "chunks/s": round(res.chunks_written / wall, 1),
                         "wall s": round(wall, 1), "embedding s": round(timed.seconds, 1),
                         "outside embedding": f"{100 * outside / wall:.1f}%",
                         "model alone s": round(alone, 1), "wall / model alone": round(wall / alone, 2)})
    sec.notes.append("'outside embedding' is chunking + SQLite + FAISS + tantivy; goal: < 10% of wall time. "
                     "'model alone' is the same embedder encoding the same chunk texts in one call right after "
                     "(every core it is given, no chunking or storage); goals with the default backend: "
                     "wall / model alone <= 1.2 and >= 100 chunks/s.")
    return sec


# ---------------------------------------------------------------------------- synthetic collections at scale
@dataclass
class Pool:
    texts: list[str]
    vecs: np.ndarray
    queries: list[str]
    qvecs: np.ndarray


def build_pool(docs: list[tuple[str, str]], queries: list[str], embedder: Any, engine_cache: Any | None) -> Pool:
    from rerank_mcp.index.embedding import encode_cached

    texts = [c.text for _, t in docs for c in chunk_text(t, 128, 0, embedder.count_tokens)]
    vecs = encode_cached(embedder, texts, engine_cache)
    qvecs = encode_cached(embedder, queries, engine_cache)
    return Pool(texts, vecs, queries, qvecs)


def synth(pool: Pool, n: int, seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """``n`` chunks: the real pool first, then mixtures of two real chunks (text: a real chunk's
    sentences with a second chunk's words; vector: the normalised mix plus a little noise)."""
    rng = np.random.default_rng(seed)
    p = len(pool.texts)
    for i in range(n):
        if i < p:
            yield pool.texts[i], pool.vecs[i]
            continue
        a, b = rng.integers(0, p, size=2)
        w = rng.uniform(0.55, 0.9)
        v = w * pool.vecs[a] + (1 - w) * pool.vecs[b] + rng.normal(0, 0.02, pool.vecs.shape[1]).astype(np.float32)
        v /= np.linalg.norm(v)
        words = pool.texts[b].split()
        k = max(1, int(len(words) * (1 - w)))
        start = int(rng.integers(0, max(1, len(words) - k)))
        yield pool.texts[a] + " " + " ".join(words[start : start + k]), v.astype(np.float32)


def fill_collection(engine: Index, name: str, items: Iterator[tuple[str, np.ndarray]], n: int, dim: int,
                    model: str, log: Callable[[str], None], per_doc: int = 4) -> None:
    """Write ``n`` chunks through the index contract, vectors precomputed."""
    engine.create_collection(name, model, dim)
    batch: list = []
    written = 0
    doc = 0
    for text, vec in items:
        batch.append((text, vec))
        if len(batch) == per_doc * 500:
            written += _write(engine, name, batch, per_doc, doc)
            doc += len(batch) // per_doc + 1
            batch = []
            if written % 100_000 < per_doc * 500:
                log(f"  stored {written}/{n} chunks")
    if batch:
        written += _write(engine, name, batch, per_doc, doc)


def _write(engine: Index, name: str, batch: list, per_doc: int, doc0: int) -> int:
    rows = []
    for d in range(0, len(batch), per_doc):
        part = batch[d : d + per_doc]
        chunks = [NewChunk(t, 0, len(t), len(t.split()), v) for t, v in part]
        rows.append(DocumentWrite(f"s{doc0 + d // per_doc}", f"h{doc0 + d}", {"i": doc0 + d // per_doc % 10}, None,
                                  sum(len(t) for t, _ in part), chunks))
    engine.upsert(name, rows)
    return len(batch)


def bench_search_at_size(engine: Index, name: str, pool: Pool, n: int, log: Callable[[str], None],
                         n_queries: int = 200, query_embedder: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Search latency per mode (query embedding excluded), recall of the ANN index, BM25 vs
    rank-bm25, adding one document. With ``query_embedder``, also hybrid search with the query
    embedded first (the whole of a search call's retrieval work)."""
    from rerank_mcp.index.fusion import fuse
    from rerank_mcp.tools.search import DEFAULT_FUSION

    engine.open_collection(name)
    kind = engine.dense_index_kind(name) or engine.backend
    info = engine.require_collection(name)
    qs = list(zip(pool.queries, pool.qvecs))[:n_queries]
    rows = []
    lat: dict[str, list[float]] = {"dense": [], "bm25": [], "hybrid": [], "hybrid + query embedding": []}
    exact = None
    if kind != "flat":
        import faiss

        exact = faiss.IndexFlatIP(info.dim)
        ids_list = []
        for ids, vecs in engine.iter_vectors(name):
            ids_list.append(ids)
            exact.add(vecs)
        exact_ids = np.concatenate(ids_list)
    recalls = []
    def fuse_and_fetch(d: Any, s: Any) -> None:  # the rest of a hybrid search: fusion, the top 10 chunks
        fused = fuse({"dense": d, "bm25": s}, DEFAULT_FUSION)
        engine.fetch_chunks(name, [c for c, _ in fused[:10]])

    for rep in range(2):  # first pass warms caches
        for q, qv in qs:
            t = time.perf_counter()
            d = engine.dense_search(name, qv, 100)
            t1 = time.perf_counter()
            s = engine.bm25_search(name, q, 100)
            t2 = time.perf_counter()
            fuse_and_fetch(d, s)
            t3 = time.perf_counter()
            if rep:
                lat["dense"].append((t1 - t) * 1000)
                lat["bm25"].append((t2 - t1) * 1000)
                lat["hybrid"].append((t3 - t) * 1000)
                if exact is not None:
                    _, ei = exact.search(qv.reshape(1, -1), 100)
                    truth = set(exact_ids[ei[0]].tolist())
                    recalls.append(len(truth & {c for c, _ in d}) / len(truth))
            if query_embedder is not None:
                t = time.perf_counter()
                v = query_embedder.encode([q])[0]
                fuse_and_fetch(engine.dense_search(name, v, 100), engine.bm25_search(name, q, 100))
                if rep:
                    lat["hybrid + query embedding"].append((time.perf_counter() - t) * 1000)
    for mode in [m for m in lat if lat[m]]:
        rows.append({"chunks": n, "mode": mode, "index": kind if mode != "bm25" else
                     ("tantivy" if engine.backend == "embedded" else f"{engine.backend} sparse"),
                     "p50 ms": round(percentile(lat[mode], 50), 2), "p95 ms": round(percentile(lat[mode], 95), 2)})
    extra: dict[str, Any] = {"chunks": n, "engine": engine.backend, "dense index": kind}
    if recalls:
        extra["ANN recall@100 vs exact"] = round(float(np.mean(recalls)), 4)
    # add one document: store transaction + both derived indexes (embedding excluded)
    adds = []
    for i in range(5):
        text, vec = pool.texts[i], pool.vecs[i]
        t = time.perf_counter()
        engine.upsert(name, [DocumentWrite(f"new-{i}", f"hn{i}", {}, None, len(text),
                                           [NewChunk(text, 0, len(text), 100, vec)])])
        adds.append((time.perf_counter() - t) * 1000)
    extra["add one document ms (p50)"] = round(median(adds), 1)
    return rows, extra


def bench_rank_bm25(pool_texts: list[str], queries: list[str], n: int, sparse_search: Callable[[str], Any]) -> dict[str, Any]:
    """rank-bm25 over the same corpus vs the tantivy index, per query."""
    from rank_bm25 import BM25Okapi

    from rerank_mcp.index.tokenize import tokenize

    corpus = [tokenize(t) for t in pool_texts[:n]]
    t = time.perf_counter()
    bm = BM25Okapi(corpus)
    build = time.perf_counter() - t
    times_rb, times_tv = [], []
    for q in queries[:5]:
        qt = tokenize(q)
        t = time.perf_counter()
        scores = bm.get_scores(qt)
        np.argpartition(-scores, 100)[:100]
        times_rb.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        sparse_search(q)
        times_tv.append((time.perf_counter() - t) * 1000)
    rb, tv = median(times_rb), median(times_tv)
    return {"chunks": n, "rank-bm25 ms/query": round(rb, 1), "tantivy ms/query": round(tv, 2),
            "speed-up": round(rb / tv, 1), "rank-bm25 build s": round(build, 1)}


# ---------------------------------------------------------------------------- rerankers
def bench_rerankers(registry: Any, queries: list[str], passages: list[str], families: Sequence[tuple[str, dict]],
                    log: Callable[[str], None], reps: int = 11) -> Section:
    sec = Section("Rerank latency (passages of <= 128 tokens), p50 over repetitions")
    for name, options in families:
        try:
            r = registry.get(name, options)
            r.rerank(queries[0], passages[:5])
        except Exception as exc:
            sec.rows.append({"reranker": name, "options": json.dumps(options), "20": "-", "50": "-", "100": "-",
                             "note": f"not run here: {str(exc)[:120]}"})
            continue
        row: dict[str, Any] = {"reranker": name, "options": json.dumps(options)}
        for n in (20, 50, 100):
            times = []
            for i in range(reps):
                t = time.perf_counter()
                r.rerank(queries[i % len(queries)], passages[i * 7 % 50 : i * 7 % 50 + n])
                times.append((time.perf_counter() - t) * 1000)
            row[str(n)] = f"{median(times):.1f} ms"
        row["note"] = ""
        sec.rows.append(row)
        log(f"  {name}: {row['20']} / {row['50']} / {row['100']}")
    return sec
