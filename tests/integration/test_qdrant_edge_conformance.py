"""What passes in qdrant-client's local mode (a Python re-implementation) also holds in Qdrant's
real engine: qdrant-edge-py embeds it in-process as an ``EdgeShard``.

A small real corpus (SciFact abstracts, about 200 chunks; and Chinese Wikipedia paragraphs from
cmrc2018, analyzed into CJK bigrams) goes into the Qdrant engine in local mode; the points it stored (same ids, dense vectors, BM25 sparse vectors, payloads) are copied
into an EdgeShard, and dense, BM25 (sparse + IDF) and filtered searches must give the same ids
and scores. The sparse arm is also checked against a textbook BM25 (k1=1.2, b=0.75, Lucene IDF)
computed here, and against tantivy (the embedded engine's BM25) scoring the same chunks.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # dataset slices indexed on both engines

pytest.importorskip("qdrant_client")
qe = pytest.importorskip("qdrant_edge")

from qdrant_client import models

from rerank_mcp.bench.beir import read_corpus, read_queries
from rerank_mcp.index.analyzers import get_analyzer
from rerank_mcp.index.bm25 import K1, B, bm25_query_vector, fieldnorm
from rerank_mcp.index.contract import DocumentWrite, IndexConfig, NewChunk
from rerank_mcp.index.filters import parse_filter
from rerank_mcp.index.qdrant import DENSE, SPARSE, QdrantConfig, QdrantIndex, compile_filter
from tests.fixtures.filter_cases import OPERATOR_CASES, ROWS  # the cases both compilers' tests use

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
COL = "scifact"
DIM = 48
N_DOCS = 100
TOL = 1e-4


class RandomEmbedder:
    """Deterministic pseudo-random unit vectors per text: no ties, no model."""

    name, dim, max_seq_length = "test/random-48", DIM, 512

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]

    def encode(self, texts):
        out = []
        for t in texts:
            rng = np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
            v = rng.standard_normal(DIM).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out) if out else np.zeros((0, DIM), np.float32)


def _split(text: str) -> list[str]:
    """Two chunks per abstract, cut at a sentence near the middle."""
    cut = text.find(". ", len(text) // 2)
    if cut < 0:
        cut = text.find("。", len(text) // 2)  # Chinese: no space after the full stop
        return [text] if cut < 0 or cut == len(text) - 1 else [text[: cut + 1], text[cut + 1 :]]
    return [text[: cut + 1], text[cut + 2 :]]


def tokenize(text: str) -> list[str]:
    """The analyzer the collection was created with (English, CJK bigrams)."""
    return get_analyzer("english").tokenize(text)


@pytest.fixture(scope="module", params=["scifact", "cmrc2018"])
def corpus(request):
    path = DATASETS / request.param / "corpus.jsonl"
    if not path.exists():
        pytest.skip(f"{request.param} corpus not found at {path}")
    docs = []
    for i, d in zip(range(N_DOCS), read_corpus(path)):
        meta = {"n": i, "parity": "even" if i % 2 == 0 else "odd", "year": 2000 + i % 7,
                "score": round(i / 10, 1)}
        if i % 3:
            meta["group"] = {"k": f"g{i % 3}"}
        if i % 5 < 2:
            meta["lang"] = "en" if i % 5 else None
        docs.append((d.id, d.title, [d.title, *_split(d.text)], meta))
    queries = [text for _, (_, text) in zip(range(12), read_queries(DATASETS / request.param))]
    queries += [title for _, title, _, _ in docs[:40:5]]
    return docs, queries


@pytest.fixture(scope="module")
def engines(corpus, tmp_path_factory):
    docs, _ = corpus
    emb = RandomEmbedder()
    base = tmp_path_factory.mktemp("conformance")
    ix = QdrantIndex(IndexConfig(data_dir=base / "data", engine=QdrantConfig(path=":memory:"), embedder_factory=lambda: emb))
    ix.open_collection(COL, create=True, analyzer="english")
    assert ix.analyzer(COL).name == "english"
    writes = []
    for doc_id, _, parts, meta in docs:
        vecs = emb.encode(parts)
        writes.append(DocumentWrite(doc_id, doc_id, meta, None, sum(map(len, parts)),
                                    [NewChunk(p, 0, len(p), len(p.split()), v) for p, v in zip(parts, vecs)]))
    ix.upsert(COL, writes)
    n_chunks = ix.count_chunks(COL)
    assert 200 <= n_chunks <= 320

    # copy what the engine stored, point for point, into a real Qdrant shard
    physical = ix._entry(COL).physical
    stored, offset = [], None
    while True:
        recs, offset = ix.q.client.scroll(physical, limit=256, offset=offset, with_payload=True, with_vectors=True)
        stored += recs
        if offset is None:
            break
    cfg = qe.EdgeConfig(vectors={DENSE: qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)},
                        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
                        max_search_threads=1)
    shard = qe.EdgeShard.create(str(base / "edge"), cfg)
    points = []
    for r in stored:
        vec = {}
        for name, v in (r.vector or {}).items():
            vec[name] = qe.SparseVector(indices=list(v.indices), values=list(v.values)) if name == SPARSE else list(v)
        points.append(qe.Point(id=int(r.id), vector=vec, payload=r.payload))
    shard.update(qe.UpdateOperation.upsert_points(points))
    chunks = {int(r.id): r.payload for r in stored if r.payload.get("kind") == "chunk"}
    yield ix, shard, chunks
    shard.close()
    ix.close()


# ---------------------------------------------------------------- model filters -> edge filters
def to_edge(c):
    """A qdrant_client filter or condition as qdrant-edge's."""
    if isinstance(c, models.Filter):
        conv = lambda xs: [to_edge(x) for x in xs] if xs else None
        return qe.Filter(must=conv(c.must), should=conv(c.should), must_not=conv(c.must_not))
    if isinstance(c, models.IsEmptyCondition):
        return qe.IsEmptyCondition(c.is_empty.key)
    if isinstance(c, models.HasIdCondition):
        return qe.HasIdCondition(set(c.has_id))
    if isinstance(c, models.FieldCondition):
        if isinstance(c.match, models.MatchValue):
            if isinstance(c.match.value, bool):
                # qdrant-edge-py 0.9 reads a Python bool as the integer 0/1 here (bool subclasses int)
                pytest.skip("qdrant-edge-py cannot express a boolean match")
            return qe.FieldCondition(key=c.key, match=qe.MatchValue(c.match.value))
        if isinstance(c.match, models.MatchAny):
            return qe.FieldCondition(key=c.key, match=qe.MatchAny(list(c.match.any)))
        if isinstance(c.range, models.DatetimeRange):
            r = c.range
            return qe.FieldCondition(key=c.key, range=qe.RangeDateTime(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))
        if isinstance(c.range, models.Range):
            r = c.range
            return qe.FieldCondition(key=c.key, range=qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))
    raise AssertionError(f"no edge translation for {c!r}")


def edge_filter(flt):
    compiled = compile_filter(parse_filter(flt))
    return None if compiled is None else to_edge(compiled)


def edge_dense(shard, vec, k, flt=None):
    res = shard.query(qe.QueryRequest(limit=k, query=qe.Query.Nearest(np.asarray(vec).tolist(), using=DENSE),
                                      filter=edge_filter(flt), with_payload=False))
    return [(int(p.id), float(p.score)) for p in res]


def edge_bm25(shard, text, k, flt=None):
    idx, val = bm25_query_vector(text, get_analyzer("english"))
    res = shard.query(qe.QueryRequest(limit=k, query=qe.Query.Nearest(qe.SparseVector(indices=idx, values=val), using=SPARSE),
                                      filter=edge_filter(flt), with_payload=False))
    return [(int(p.id), float(p.score)) for p in res]


def assert_same(got, want, k):
    """Same scores rank for rank, and the same ids where the score is not tied with a neighbour
    (nor with the first hit left out at the cut-off)."""
    assert len(got) == len(want)
    for (_, a), (_, b) in zip(got, want):
        assert a == pytest.approx(b, rel=TOL, abs=TOL)
    scores = [s for _, s in want]
    for i, ((g, _), (w, s)) in enumerate(zip(got, want)):
        tied = any(abs(s - t) <= 2 * TOL * max(1, abs(s)) for j, t in enumerate(scores) if j != i)
        if not tied and i < len(want) - 1:
            assert g == w, (i, got, want)
    untied = {w for i, (w, s) in enumerate(want[:-1])
              if not any(abs(s - t) <= 2 * TOL * max(1, abs(s)) for j, t in enumerate(scores) if j != i)}
    assert untied <= {g for g, _ in got}


FILTERS = [
    None,
    {"parity": "even"},
    {"year": {"$gte": 2003, "$lt": 2006}},
    {"score": {"$gt": 2.5}},
    {"group.k": "g1"},
    {"group.k": {"$ne": "g2"}},
    {"lang": None},
    {"lang": {"$exists": True}},
    {"lang": {"$ne": "en"}},
    {"n": {"$in": [1, 2, 3, 10, 11, 50]}},
    {"parity": {"$nin": ["odd"]}},
    {"$or": [{"parity": "odd", "year": 2001}, {"group": {"$exists": False}}]},
    {"$not": {"$or": [{"year": {"$lte": 2002}}, {"group.k": "g2"}]}},
]


# ---------------------------------------------------------------- the checks
def test_dense_search_agrees(engines, corpus):
    ix, shard, _ = engines
    rng = np.random.default_rng(3)
    for _ in range(5):
        v = rng.standard_normal(DIM).astype(np.float32)
        v /= np.linalg.norm(v)
        for flt in FILTERS:
            got = ix.dense_search(COL, v, 10, parse_filter(flt))
            assert_same(got, edge_dense(shard, v, 10, flt), 10)


def test_bm25_search_agrees(engines, corpus):
    ix, shard, _ = engines
    _, queries = corpus
    hits = 0
    for n, text in enumerate(queries):
        for flt in FILTERS if n % 3 == 0 else FILTERS[:1]:
            got = ix.bm25_search(COL, text, 10, parse_filter(flt))
            assert_same(got, edge_bm25(shard, text, 10, flt), 10)
            hits += len(got)
    assert hits > 250


def test_search_arms_batch_agrees(engines, corpus):
    ix, shard, _ = engines
    _, queries = corpus
    v = RandomEmbedder().encode([queries[0]])[0]
    arms = ix.search_arms(COL, queries[0], v, 10, parse_filter({"parity": "odd"}))
    assert_same(arms["dense"], edge_dense(shard, v, 10, {"parity": "odd"}), 10)
    assert_same(arms["bm25"], edge_bm25(shard, queries[0], 10, {"parity": "odd"}), 10)


def _reference_bm25(chunks: dict[int, dict], text: str) -> dict[int, float]:
    """Textbook BM25 (k1=1.2, b=0.75, Lucene IDF; lengths stored in one byte as Lucene and tantivy
    store them) over the chunks' analyzed tokens; N counts the
    chunks with at least one token (Qdrant's corpus: points that have the sparse vector)."""
    toks = {cid: tokenize(p["text"]) for cid, p in chunks.items()}
    toks = {cid: t for cid, t in toks.items() if t}
    n = len(toks)
    avgdl = sum(map(len, toks.values())) / n
    q = list(dict.fromkeys(tokenize(text)))
    df = {t: sum(1 for v in toks.values() if t in v) for t in q}
    out = {}
    for cid, tk in toks.items():
        tf = Counter(tk)
        s = 0.0
        for t in q:
            if tf[t]:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * tf[t] * (K1 + 1) / (tf[t] + K1 * (1 - B + B * fieldnorm(len(tk)) / avgdl))
        if s > 0:
            out[cid] = s
    return out


def test_sparse_bm25_is_textbook_bm25(engines, corpus):
    ix, shard, chunks = engines
    _, queries = corpus
    for text in queries:
        ref = _reference_bm25(chunks, text)
        got = ix.bm25_search(COL, text, 10)
        assert len(got) == min(10, len(ref))
        for cid, score in got:
            assert score == pytest.approx(ref[cid], rel=TOL, abs=TOL)
        assert_same(got, sorted(ref.items(), key=lambda x: -x[1])[:10], 10)
        for cid, score in edge_bm25(shard, text, 10):
            assert score == pytest.approx(ref[cid], rel=TOL, abs=TOL)


def test_sparse_bm25_matches_tantivy(engines, corpus):
    """The embedded engine's BM25 is tantivy over the same analyzer; tantivy stores document
    lengths in one byte, and the sparse vectors quantise lengths the same way, so with the same
    average length (one batch here) the scores are tantivy's."""
    tantivy = pytest.importorskip("tantivy")
    ix, _, chunks = engines
    _, queries = corpus
    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("chunk_id", stored=True, indexed=True, fast=True)
    sb.add_text_field("text", stored=False, tokenizer_name="whitespace", index_option="freq")
    schema = sb.build()
    index = tantivy.Index(schema)
    w = index.writer(15_000_000, 1)
    for cid, p in chunks.items():
        toks = tokenize(p["text"])
        if toks:  # chunks without terms have no sparse vector in Qdrant
            w.add_document(tantivy.Document(chunk_id=cid, text=" ".join(toks)))
    w.commit()
    index.reload()
    searcher = index.searcher()
    worst = 0.0
    overlap = []
    for text in queries:
        terms = list(dict.fromkeys(tokenize(text)))
        query = tantivy.Query.boolean_query([(tantivy.Occur.Should, tantivy.Query.term_query(schema, "text", t)) for t in terms])
        hits = searcher.search(query, 10).hits
        tv = {searcher.doc(addr)["chunk_id"][0]: s for s, addr in hits}
        got = dict(ix.bm25_search(COL, text, 10))
        for cid in set(tv) & set(got):
            worst = max(worst, abs(tv[cid] - got[cid]) / tv[cid])
        overlap.append(len(set(tv) & set(got)) / max(1, len(tv)))
    assert worst < 1e-4, worst
    assert np.mean(overlap) > 0.99


@pytest.mark.parametrize("flt", [f for f in FILTERS if f])
def test_filter_counts_agree(engines, flt):
    ix, shard, _ = engines
    compiled = compile_filter(parse_filter(flt))
    local = ix.q.client.count(ix._entry(COL).physical, count_filter=compiled, exact=True).count
    edge = shard.count(qe.CountRequest(exact=True, filter=to_edge(compiled)))
    assert local == edge > 0




@pytest.fixture(scope="module")
def rows_shard(tmp_path_factory):
    cfg = qe.EdgeConfig(vectors={"v": qe.EdgeVectorParams(size=1, distance=qe.Distance.Dot)})  # points carry none
    shard = qe.EdgeShard.create(str(tmp_path_factory.mktemp("rows") / "edge"), cfg)
    shard.update(qe.UpdateOperation.upsert_points(
        [qe.Point(id=i + 1, vector={}, payload={"metadata": v}) for i, v in enumerate(ROWS.values())]))
    yield shard
    shard.close()


@pytest.mark.parametrize("flt,expect", OPERATOR_CASES)
def test_filter_table_on_the_real_engine(rows_shard, flt, expect):
    """The SQL compiler's expected results, from Qdrant's engine (boolean matches aside)."""
    names = list(ROWS)
    recs, _ = rows_shard.scroll(qe.ScrollRequest(limit=100, filter=edge_filter(flt)))
    assert {names[int(r.id) - 1] for r in recs} == expect
