"""The SQLite store of record: sequence numbers, tombstones, upsert, delete by filter."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_mcp.errors import InvalidInput, NotFound, StoreCorrupt
from rerank_mcp.index.contract import NewChunk, check_collection_name
from rerank_mcp.index.filters import compile_filter
from rerank_mcp.index.store import Store

DIM = 4


def chunks(*texts: str) -> list[NewChunk]:
    out, pos = [], 0
    for i, t in enumerate(texts):
        v = np.zeros(DIM, np.float32)
        v[i % DIM] = 1.0
        out.append(NewChunk(t, pos, pos + len(t), len(t.split()), v))
        pos += len(t) + 1
    return out


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.sqlite")
    s.create_collection("c", "test/model", DIM)
    yield s
    s.close()


def live(store, coll="c"):
    return [r for b in store.iter_chunks_since(coll, -1) for r in b]


def test_sequence_numbers_increase(store):
    s0 = store.seq()
    s1 = store.upsert_documents("c", [("d1", "h1", {}, None, 5, chunks("a b"))])
    s2 = store.upsert_documents("c", [("d2", "h2", {}, None, 5, chunks("c d"))])
    s3 = store.delete_documents("c", "doc_id=?", ["d1"]) and store.seq()
    assert s0 < s1 < s2 < s3 == store.seq()


def test_failed_write_rolls_back_and_keeps_seq(store):
    s0 = store.seq()
    with pytest.raises(RuntimeError):
        with store.write() as (db, seq):
            db.execute("DELETE FROM collections")
            raise RuntimeError("boom")
    assert store.seq() == s0
    assert store.collection("c") is not None


def test_upsert_replaces_chunks_and_leaves_tombstones(store):
    store.upsert_documents("c", [("d1", "h1", {"v": 1}, None, 9, chunks("one", "two", "three"))])
    old_ids = [r[0] for r in live(store)]
    after = store.seq()
    seq = store.upsert_documents("c", [("d1", "h2", {"v": 2}, "src", 9, chunks("uno", "dos"))])
    rows = live(store)
    assert [r[1] for r in rows] == ["uno", "dos"]
    new_ids = [r[0] for r in rows]
    assert not set(new_ids) & set(old_ids), "chunk ids are never reused"
    assert min(new_ids) > max(old_ids)
    assert sorted(store.tombstones_since("c", after).tolist()) == sorted(old_ids)
    assert store.tombstones_since("c", seq).tolist() == []
    # only the new chunks are "since" the previous seq
    assert [r[0] for b in store.iter_chunks_since("c", after) for r in b] == new_ids
    doc = store.document("c", "d1")
    assert doc.metadata == {"v": 2} and doc.content_hash == "h2" and doc.source == "src"
    assert [c.text for c in doc.chunks] == ["uno", "dos"]
    assert store.max_chunk_seq("c") == seq
    # vectors round-trip
    vec = np.frombuffer(rows[1][2], np.float32)
    assert vec.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_delete_by_filter(store):
    store.upsert_documents(
        "c",
        [
            ("d1", "h", {"lang": "en", "year": 2020}, None, 3, chunks("a")),
            ("d2", "h", {"lang": "de", "year": 2021}, None, 3, chunks("b", "c")),
            ("d3", "h", {"lang": "en", "year": 2022}, None, 3, chunks("d")),
        ],
    )
    before = store.seq()
    gone_chunks = [r[0] for r in live(store) if r[1] in ("b", "c")]
    sql, params = compile_filter({"lang": "de"}, "metadata")
    assert store.delete_documents("c", sql, params) == ["d2"]
    assert sorted(store.tombstones_since("c", before).tolist()) == sorted(gone_chunks)
    assert [d.id for d in store.documents("c")] == ["d1", "d3"]
    assert store.count_chunks("c") == 2
    with pytest.raises(NotFound):
        store.document("c", "d2")
    # filter by a JSON metadata value through the join used by search
    sql, params = compile_filter({"year": {"$gte": 2022}}, "d.metadata")
    ids = store.chunk_ids_matching("c", sql, params)
    assert [store.chunks_by_id("c", ids.tolist())[int(i)].doc_id for i in ids] == ["d3"]
    # nothing matches: no ids, no error
    assert store.delete_documents("c", *compile_filter({"lang": "fr"}, "metadata")) == []


def test_collections_are_isolated(store):
    store.create_collection("other", "test/model", DIM)
    store.upsert_documents("c", [("d", "h", {}, None, 1, chunks("x"))])
    store.upsert_documents("other", [("d", "h", {}, None, 1, chunks("y"))])
    assert [r[1] for r in live(store, "other")] == ["y"]
    store.delete_documents("other", "doc_id=?", ["d"])
    assert [r[1] for r in live(store, "c")] == ["x"]
    assert store.drop_collection("other") == 0
    assert [c.name for c in store.collections()] == ["c"]


def test_unknown_collection(store):
    with pytest.raises(NotFound, match="unknown collection 'nope'.*existing collections: c"):
        store.require_collection("nope")


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x" * 65, "a') OR 1=1 --", None])
def test_bad_collection_names(name):
    with pytest.raises(InvalidInput, match="invalid collection name"):
        check_collection_name(name)


def test_reopen_keeps_everything(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    s.create_collection("c", "m", DIM)
    s.upsert_documents("c", [("d", "h", {"k": 1}, None, 1, chunks("x", "y"))])
    seq = s.seq()
    s.close()
    s = Store(tmp_path / "s.sqlite")
    assert s.seq() == seq and s.count_chunks("c") == 2 and s.collection("c").dim == DIM
    s.close()


def test_corrupt_database_file(tmp_path):
    p = tmp_path / "s.sqlite"
    p.write_bytes(b"this is not a database" * 200)
    with pytest.raises(StoreCorrupt, match=r"unreadable.*re-ingest"):
        Store(p)


def test_zero_length_database_file_is_corrupt_not_empty(tmp_path):
    p = tmp_path / "s.sqlite"
    p.write_bytes(b"")
    with pytest.raises(StoreCorrupt, match=r"s\.sqlite is unreadable \(the file is empty \(0 bytes\)\)"):
        Store(p)
    assert p.read_bytes() == b""  # left as found: nothing was changed
    # a fresh path is still a new, empty store
    s = Store(tmp_path / "new.sqlite")
    assert s.collections() == [] and s.seq() == 0
    s.close()
