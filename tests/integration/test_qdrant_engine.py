"""The Qdrant engine through the index contract, on qdrant-client's local mode (a folder per test)
with a small deterministic embedder; plus error handling against a closed port."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_client")

from rerank_mcp.errors import DependencyMissing, InvalidInput, ModelMismatch, NotFound, UpstreamError
from rerank_mcp.index.contract import DocumentWrite, IndexConfig, NewChunk
from rerank_mcp.index.engines import open_index
from rerank_mcp.index.filters import parse_filter
from rerank_mcp.index.qdrant import QdrantConfig, QdrantIndex
from tests.fixtures.fakes import BowEmbedder

COL = "docs"


EMB = BowEmbedder()

CORPUS = {
    "apples": ("Apples grow on trees in orchards.|Cider is pressed from apples in autumn.", {"lang": "en", "year": 2020, "kind": "fruit"}),
    "rivers": ("Rivers carry water to the sea.|A delta forms where a river meets the ocean.", {"lang": "en", "year": 2022, "kind": "geo"}),
    "berge": ("Berge sind hoch und die Alpen liegen in Europa.", {"lang": "de", "year": 2021, "kind": "geo"}),
    "volcano": ("A volcano erupts molten rock.|Lava cools into basalt.|Ash clouds disturb flights.", {"lang": "en", "year": 2023}),
    "bread": ("Bread is baked from flour, water and yeast.", {"lang": "en", "year": 2019, "kind": "food", "nested": {"k": "v"}}),
}


def write(doc_id: str, text: str, meta: dict | None = None, emb: BowEmbedder = EMB) -> DocumentWrite:
    parts = text.split("|")
    vecs = emb.encode(parts)
    chunks, pos = [], 0
    for p, v in zip(parts, vecs):
        chunks.append(NewChunk(p, pos, pos + len(p), len(p.split()), v))
        pos += len(p) + 1
    return DocumentWrite(doc_id, hashlib.sha256(text.encode()).hexdigest(), dict(meta or {}), f"{doc_id}.txt",
                         len(text), chunks)


def corpus_writes() -> list[DocumentWrite]:
    return [write(d, t, m) for d, (t, m) in CORPUS.items()]


def make(tmp_path: Path, emb: BowEmbedder = EMB, cls=QdrantIndex, **kw) -> QdrantIndex:
    cfg = IndexConfig(data_dir=tmp_path / "data", engine=QdrantConfig(path=str(tmp_path / "qdrant"), **kw),
                      embedder_factory=lambda: emb)
    return cls(cfg)


@pytest.fixture
def ix(tmp_path):
    index = make(tmp_path)
    index.open_collection(COL, create=True)
    index.upsert(COL, corpus_writes())
    yield index
    index.close()


def docs_of(ix, ranked) -> list[str]:
    rows = ix.fetch_chunks(COL, [cid for cid, _ in ranked])
    return [rows[cid].doc_id for cid, _ in ranked]


def q(text: str) -> np.ndarray:
    return EMB.encode([text])[0]


def ranking(ranked, key=lambda cid: cid) -> list:
    """A ranking with ties (scores equal to 4 decimals) put in a canonical order."""
    return sorted((-round(score, 4), key(cid)) for cid, score in ranked)


# ---------------------------------------------------------------- basics
def test_open_index_picks_the_qdrant_engine(tmp_path):
    index = open_index(IndexConfig(data_dir=tmp_path / "d", engine=QdrantConfig(path=":memory:"), embedder_factory=lambda: EMB),
                       "qdrant")
    try:
        assert isinstance(index, QdrantIndex) and index.backend == "qdrant"
        info = index.open_collection("a.b-c_1", create=True)
        assert (info.name, info.embedding_model, info.dim) == ("a.b-c_1", EMB.name, EMB.dim)
    finally:
        index.close()


def test_collections_and_counts(ix):
    (info,) = ix.collections()
    assert (info.name, info.embedding_model, info.dim) == (COL, EMB.name, EMB.dim)
    assert info.documents == 5 and info.chunks == 9 == ix.count_chunks(COL)
    assert ix.collection_info(COL).embedding_model == EMB.name
    assert ix.collection_info("nope") is None
    with pytest.raises(NotFound, match="existing collections: docs"):
        ix.require_collection("nope")
    with pytest.raises(InvalidInput, match="invalid collection name"):
        ix.collection_info("../etc")


def test_qdrant_collection_names_are_prefixed(ix):
    names = [c.name for c in ix.q.client.get_collections().collections]
    assert all(n.startswith("rerank_mcp__") or n == "rerank_mcp_registry" for n in names)
    assert any(n.startswith(f"rerank_mcp__{COL}__") for n in names)


def test_create_collection_passes_cluster_settings(tmp_path, monkeypatch):
    index = make(tmp_path, shard_number=3, replication_factor=2, write_consistency_factor=2)
    seen = {}
    real = index.q.call

    def spy(what, method, *a, **kw):
        if method == "create_collection" and a and a[0].startswith("rerank_mcp__"):
            seen.update(kw)
        return real(what, method, *a, **kw)

    monkeypatch.setattr(index.q, "call", spy)
    index.create_collection("c")
    assert (seen["shard_number"], seen["replication_factor"], seen["write_consistency_factor"]) == (3, 2, 2)
    index.close()


def test_dense_and_bm25_search(ix):
    dense = ix.dense_search(COL, q("volcano lava"), 3)
    assert docs_of(ix, dense)[0] == "volcano"
    assert all(a[1] >= b[1] for a, b in zip(dense, dense[1:]))
    bm25 = ix.bm25_search(COL, "rivers ocean", 5)
    assert set(docs_of(ix, bm25)) == {"rivers"} and len(bm25) == 2
    assert ix.bm25_search(COL, "the and of", 5) == []  # stopwords only
    assert ix.bm25_search(COL, "apples", 0) == []


def test_search_arms_is_one_batched_request(ix, monkeypatch):
    calls = []
    real = ix.q.call
    monkeypatch.setattr(ix.q, "call", lambda what, method, *a, **kw: (calls.append(method), real(what, method, *a, **kw))[1])
    arms = ix.search_arms(COL, "bread flour", q("bread flour"), 3)
    assert calls.count("query_batch_points") == 1
    assert docs_of(ix, arms["bm25"]) == ["bread"]
    assert docs_of(ix, arms["dense"])[0] == "bread"
    assert ix.search_arms(COL, "flour", None, 3, arms=("bm25",)).keys() == {"bm25"}


def test_fused_search(ix):
    rrf = ix.fused_search(COL, "bread flour", q("bread flour yeast"), 3)
    assert docs_of(ix, rrf)[0] == "bread"
    assert rrf[0][1] == pytest.approx(2 / 61)  # first in both arms, RRF k=60
    dbsf = ix.fused_search(COL, "bread flour", q("bread flour yeast"), 3, fusion="dbsf")
    assert docs_of(ix, dbsf)[0] == "bread"
    filtered = ix.fused_search(COL, "water", q("water"), 10, parse_filter({"kind": "geo"}))
    assert set(docs_of(ix, filtered)) <= {"rivers", "berge"} and filtered
    with pytest.raises(InvalidInput, match="fusion"):
        ix.fused_search(COL, "x", q("x"), 3, fusion="borda")


def test_filters_on_search(ix):
    en = ix.dense_search(COL, q("water"), 20, parse_filter({"lang": "en"}))
    assert {"berge"}.isdisjoint(docs_of(ix, en)) and len(en) == 8
    geo = ix.bm25_search(COL, "water", 10, parse_filter({"kind": "geo", "year": {"$gte": 2022}}))
    assert set(docs_of(ix, geo)) == {"rivers"}
    missing = ix.dense_search(COL, q("x"), 20, parse_filter({"kind": {"$ne": "geo"}}))
    assert set(docs_of(ix, missing)) == {"apples", "volcano", "bread"}
    nested = ix.dense_search(COL, q("x"), 20, parse_filter({"nested.k": "v"}))
    assert set(docs_of(ix, nested)) == {"bread"}


# ---------------------------------------------------------------- documents
def test_documents_and_document(ix):
    docs = ix.documents(COL)
    assert [d.id for d in docs] == sorted(CORPUS)
    apples = docs[0]
    assert apples.metadata == CORPUS["apples"][1] and apples.chunks == 2 and apples.source == "apples.txt"
    assert [d.id for d in ix.documents(COL, limit=2, offset=1)] == sorted(CORPUS)[1:3]
    one = ix.document(COL, "volcano")
    assert [c.ord for c in one.chunks] == [0, 1, 2]
    assert one.chunks[1].text == "Lava cools into basalt."
    with pytest.raises(NotFound, match="no document 'zzz'"):
        ix.document(COL, "zzz")


def test_doc_hashes(ix):
    hashes = ix.doc_hashes(COL, ["apples", "bread", "nope"])
    assert hashes == {"apples": write("apples", CORPUS["apples"][0]).content_hash,
                      "bread": write("bread", CORPUS["bread"][0]).content_hash}


def test_replace_removes_old_chunks(ix):
    old_ids = [c.chunk_id for c in ix.document(COL, "apples").chunks]
    ix.upsert(COL, [write("apples", "Pears are sweeter than quinces.", {"lang": "en", "year": 2024})])
    assert ix.fetch_chunks(COL, old_ids) == {}
    doc = ix.document(COL, "apples")
    assert [c.text for c in doc.chunks] == ["Pears are sweeter than quinces."]
    assert doc.metadata == {"lang": "en", "year": 2024}
    assert ix.count_chunks(COL) == 8
    assert ix.bm25_search(COL, "cider orchards", 5) == []
    assert docs_of(ix, ix.bm25_search(COL, "quinces", 5)) == ["apples"]
    assert ix.doc_hashes(COL, ["apples"])["apples"] == write("apples", "Pears are sweeter than quinces.").content_hash
    # ... and its chunks carry the new metadata for filtering
    assert docs_of(ix, ix.bm25_search(COL, "pears", 5, parse_filter({"year": 2024}))) == ["apples"]


def test_delete_by_ids_filter_and_both(ix):
    assert ix.delete(COL, ids=["bread", "nope"]) == ["bread"]
    assert ix.bm25_search(COL, "flour", 5) == []
    assert ix.delete(COL, filter=parse_filter({"lang": "de"})) == ["berge"]
    assert ix.delete(COL, ids=["apples", "rivers"], filter=parse_filter({"year": {"$gt": 2020}})) == ["rivers"]
    assert [d.id for d in ix.documents(COL)] == ["apples", "volcano"]
    assert ix.count_chunks(COL) == 5
    assert ix.delete(COL, ids=[]) == []
    with pytest.raises(InvalidInput):
        ix.delete(COL)


def test_drop(ix):
    assert ix.drop(COL) == 5
    assert ix.collections() == []
    assert [c.name for c in ix.q.client.get_collections().collections] == ["rerank_mcp_registry"]
    with pytest.raises(NotFound):
        ix.dense_search(COL, q("x"), 3)
    with pytest.raises(NotFound):
        ix.drop(COL)


def test_reopen_from_the_same_path(tmp_path):
    a = make(tmp_path)
    a.open_collection(COL, create=True)
    a.upsert(COL, corpus_writes())
    before = ranking(a.bm25_search(COL, "water", 5)), ranking(a.dense_search(COL, q("water"), 9))
    a.close()
    b = make(tmp_path)
    try:
        assert b.open_collection(COL).embedding_model == EMB.name
        assert (ranking(b.bm25_search(COL, "water", 5)), ranking(b.dense_search(COL, q("water"), 9))) == before
        assert b.collections()[0].documents == 5
        # the BM25 average length carries on from the stored totals
        assert b._meta(b._entry(COL))["chunks"] == 9
    finally:
        b.close()


def test_model_mismatch(tmp_path):
    a = make(tmp_path)
    a.open_collection(COL, create=True)
    a.close()
    b = make(tmp_path, emb=BowEmbedder("test/other-model", 16))
    try:
        with pytest.raises(ModelMismatch, match=r"built with embedding model 'test/bow-32' \(dimension 32\).*reindex docs"):
            b.open_collection(COL)
    finally:
        b.close()


def test_iter_vectors(ix):
    batches = list(ix.iter_vectors(COL))
    ids = np.concatenate([b[0] for b in batches])
    vecs = np.concatenate([b[1] for b in batches])
    assert len(ids) == 9 and vecs.shape == (9, EMB.dim)
    rows = ix.fetch_chunks(COL, ids.tolist())
    assert np.allclose(vecs, EMB.encode([rows[int(i)].text for i in ids]), atol=1e-6)


def test_export_round_trip(ix, tmp_path):
    exported = list(ix.export_documents(COL))
    assert [d.doc_id for d in exported] == sorted(CORPUS)
    other = make(tmp_path / "other")
    try:
        other.open_collection(COL, create=True)
        other.upsert(COL, [DocumentWrite(d.doc_id, d.content_hash, d.metadata, d.source, d.chars, d.chunks) for d in exported])
        again = list(other.export_documents(COL))
        assert [(d.doc_id, d.content_hash, d.metadata, d.source, d.chars) for d in again] == \
               [(d.doc_id, d.content_hash, d.metadata, d.source, d.chars) for d in exported]
        for x, y in zip(exported, again):
            assert [(c.text, c.start, c.end, c.tokens) for c in x.chunks] == [(c.text, c.start, c.end, c.tokens) for c in y.chunks]
            assert np.allclose(np.stack([c.vec for c in x.chunks]), np.stack([c.vec for c in y.chunks]), atol=1e-6)
        orig = write("volcano", *CORPUS["volcano"])
        assert np.allclose(exported[-1].chunks[0].vec, orig.chunks[0].vec, atol=1e-6)
        for index in (ix, other):  # chunk ids differ (new generations); documents and scores do not
            index.doc_of = lambda cid, index=index: index.fetch_chunks(COL, [cid])[cid].doc_id
        assert ranking(other.bm25_search(COL, "water", 5), other.doc_of) == ranking(ix.bm25_search(COL, "water", 5), ix.doc_of)
        assert ranking(other.dense_search(COL, q("water"), 9), other.doc_of) == \
            ranking(ix.dense_search(COL, q("water"), 9), ix.doc_of)
    finally:
        other.close()


def test_reindex_switches_model_and_keeps_chunk_ids(ix):
    ids = sorted(cid for cid, _ in ix.dense_search(COL, q("x"), 100))
    bigger = BowEmbedder("test/bow-48", 48)
    done = []
    n = ix.set_vectors(COL, bigger.name, bigger.dim, bigger.encode, lambda a, b, _what: done.append((a, b)))
    assert n == 9 and done[-1] == (9, 9)
    info = ix.collection_info(COL)
    assert (info.embedding_model, info.dim) == ("test/bow-48", 48)
    hits = ix.dense_search(COL, bigger.encode(["volcano lava"])[0], 100)
    assert sorted(cid for cid, _ in hits) == ids
    assert docs_of(ix, hits)[0] == "volcano"
    assert docs_of(ix, ix.bm25_search(COL, "flour", 3)) == ["bread"]
    assert len([c for c in ix.q.client.get_collections().collections if c.name.startswith("rerank_mcp__")]) == 1
    with pytest.raises(ModelMismatch):
        ix.open_collection(COL)


# ---------------------------------------------------------------- failure part-way
class FailingCommit(QdrantIndex):
    """Dies after writing the new chunks, before the document records flip to them."""

    def _commit(self, *a, **kw):
        raise UpstreamError("simulated failure before the flip")


class FailingMidChunks(QdrantIndex):
    """Dies after writing the first of the new chunks."""

    def _write_chunks(self, e, points):
        self._c(e, "write chunks", "upsert", points[:1], wait=True)
        raise UpstreamError("simulated failure half-way through the chunks")


@pytest.mark.slow  # a larger corpus, or retries with backoff
@pytest.mark.parametrize("cls", [FailingCommit, FailingMidChunks])
def test_failure_part_way_leaves_the_previous_version(tmp_path, cls):
    good = make(tmp_path)
    good.open_collection(COL, create=True)
    good.upsert(COL, corpus_writes())
    before = {d: good.document(COL, d) for d in CORPUS}
    good.close()

    bad = make(tmp_path, cls=cls)
    new = "Volcano volcano volcano: lava lava magma magma eruption.|Volcano ash volcano."
    with pytest.raises(UpstreamError, match="simulated"):
        bad.upsert(COL, [write("volcano", new, {"lang": "xx"}), write("fresh", "volcano magma", {"lang": "xx"})])
    # the new chunks exist in Qdrant (their points were written) but nothing shows them
    assert bad.count_chunks(COL) > 9
    hits = bad.bm25_search(COL, "volcano magma eruption", 3)
    assert docs_of(bad, hits) == ["volcano"] and len(hits) == 1
    assert bad.document(COL, "volcano") == before["volcano"]
    assert bad.doc_hashes(COL, ["volcano", "fresh"]) == {"volcano": before["volcano"].content_hash}
    dense = bad.dense_search(COL, q("volcano volcano lava magma"), 9)
    assert len(dense) == 9 and set(docs_of(bad, dense)) == set(CORPUS)  # stale hits dropped, k still filled
    assert bad.dense_search(COL, q("x"), 20, parse_filter({"lang": "xx"})) == []
    assert bad.fused_search(COL, "magma", q("magma"), 20, parse_filter({"lang": "xx"})) == []
    assert [d.id for d in bad.documents(COL)] == sorted(CORPUS)
    assert [d.doc_id for d in bad.export_documents(COL)] == sorted(CORPUS)
    # a repair pass (normally at start-up, for writes older than an hour) removes the leftovers
    notes = bad.repair(COL, older_than_s=0)
    assert len(notes) == 2 and bad.count_chunks(COL) == 9
    assert bad.repair(COL, older_than_s=0) == []
    bad.close()

    again = make(tmp_path)
    again.upsert(COL, [write("volcano", new, {"lang": "xx"})])
    hits = again.bm25_search(COL, "magma", 3)
    assert hits and set(docs_of(again, hits)) == {"volcano"}
    assert again.count_chunks(COL) == 9 - 3 + 2
    again.close()


def test_open_all_reports_repairs(tmp_path):
    bad = make(tmp_path, cls=FailingCommit)
    bad.open_collection(COL, create=True)
    with pytest.raises(UpstreamError):
        bad.upsert(COL, [write("a", "alpha beta")])
    assert bad.open_all() == []  # the marker is fresh: maybe a writer still at work
    bad.close()


# ---------------------------------------------------------------- threads
def test_concurrent_writes_and_searches(tmp_path):
    index = make(tmp_path)
    index.open_collection(COL, create=True)
    errors = []

    def writer(w):
        try:
            for i in range(5):
                index.upsert(COL, [write(f"w{w}-{i}", f"writer {w} document {i} about rivers|more text {i}")])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader():
        try:
            for _ in range(10):
                for cid, _ in index.search_arms(COL, "rivers", q("rivers"), 5)["bm25"]:
                    assert cid > 0
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert index.collections()[0].documents == 15 and index.count_chunks(COL) == 30
    index.close()


# ---------------------------------------------------------------- errors
def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_unreachable_server_names_the_url_not_the_key(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    key = "sekrit-api-key-123"
    index = QdrantIndex(IndexConfig(data_dir=tmp_path / "d", engine=QdrantConfig(url=url, api_key=key, retries=1, timeout_s=2),
                                    embedder_factory=lambda: EMB))
    try:
        assert key not in repr(index.config) and key not in repr(index.engine_config)
        with pytest.raises(UpstreamError) as ei:
            index.collections()
        msg = str(ei.value)
        assert url in msg and key not in msg and "2 attempt" in msg
        with pytest.raises(UpstreamError) as ei:
            index.open_collection(COL, create=True)
        assert url in str(ei.value) and key not in str(ei.value)
    finally:
        index.close()


class _FakeQdrant:
    """An HTTP server on 127.0.0.1 answering every request with one status (and echoing the
    request's headers in the body, as a careless proxy might)."""

    def __init__(self, status: int) -> None:
        import http.server

        outer = self
        self.hits = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                outer.hits += 1
                n = int(self.headers.get("content-length") or 0)
                if n:
                    self.rfile.read(n)
                body = json.dumps({"status": {"error": f"simulated; headers were {dict(self.headers)}"}}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.slow  # a larger corpus, or retries with backoff
@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
@pytest.mark.parametrize("status,retried,needle", [(503, True, "gave up after 3 attempt"), (401, False, "check the Qdrant API key"),
                                                   (400, False, "HTTP 400")])
def test_server_errors(tmp_path, status, retried, needle):
    fake = _FakeQdrant(status)
    key = "sekrit-api-key-456"
    index = QdrantIndex(IndexConfig(data_dir=tmp_path / "d", engine=QdrantConfig(url=fake.url, api_key=key, retries=2),
                                    embedder_factory=lambda: EMB))
    try:
        with pytest.raises(UpstreamError) as ei:
            index.collections()
        msg = str(ei.value)
        assert needle in msg and fake.url in msg and key not in msg
        assert fake.hits == (3 if retried else 1)
    finally:
        index.close()
        fake.close()


def test_missing_qdrant_client(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    with pytest.raises(DependencyMissing, match=r"pip install 'rerank-mcp\[qdrant\]'"):
        QdrantIndex(IndexConfig(data_dir=tmp_path / "d", engine=QdrantConfig(path=":memory:")))


def test_wrong_vector_dimension(ix):
    with pytest.raises(InvalidInput, match="dimension 5"):
        ix.dense_search(COL, np.ones(5, np.float32), 3)
    bad = DocumentWrite("x", "h", {}, None, 9, [NewChunk("some text", 0, 9, 2, np.ones(7, np.float32))])
    with pytest.raises(InvalidInput, match="dimension 7"):
        ix.upsert(COL, [bad])
    assert ix.doc_hashes(COL, ["x"]) == {}


@pytest.mark.slow  # a larger corpus, or retries with backoff
def test_bm25_length_normalisation_follows_the_collection_average(tmp_path):
    """Short documents first, long ones later (a corpus sorted by length): the early chunks'
    sparse vectors are rewritten as the average moves, so BM25 scores end up those of the same
    corpus written in one go (within the 1% tolerance on the average)."""
    rng = np.random.default_rng(7)
    words = [f"w{i}" for i in range(60)]

    def text(n: int) -> str:
        return " ".join(rng.choice(words, size=n))

    short = [write(f"s{i}", text(5)) for i in range(30)]
    long = [write(f"l{i}", text(40)) for i in range(30)]
    one = make(tmp_path / "one")
    steps = make(tmp_path / "steps")
    try:
        for ix_ in (one, steps):
            ix_.open_collection(COL, create=True)
        one.upsert(COL, short + long)
        for i in range(0, 60, 10):  # ten at a time: the average grows from 5 to 22.5 words
            steps.upsert(COL, (short + long)[i : i + 10])
        assert steps.index_sizes(COL)["chunks"] == one.index_sizes(COL)["chunks"] == 60
        for query in ("w1 w2", "w7", "w10 w11 w12 w3"):
            a = dict(one.bm25_search(COL, query, 60))
            b = dict(steps.bm25_search(COL, query, 60))
            # chunk ids differ (generations); compare by document
            da = {one.fetch_chunks(COL, [c])[c].doc_id: s for c, s in a.items()}
            db = {steps.fetch_chunks(COL, [c])[c].doc_id: s for c, s in b.items()}
            assert set(da) == set(db)
            for d in da:
                assert db[d] == pytest.approx(da[d], rel=0.02), (query, d)
        # and the early short chunks were rewritten: without it they would be off by far more
        stale = [p for p in steps.q.client.scroll(steps._entry(COL).physical, limit=1000, with_payload=True)[0]
                 if (p.payload or {}).get("kind") == "chunk"]
        avgdls = {round(p.payload["bm25_avgdl"], 3) for p in stale}
        assert max(avgdls) / min(avgdls) < 1.03, avgdls
    finally:
        one.close()
        steps.close()
