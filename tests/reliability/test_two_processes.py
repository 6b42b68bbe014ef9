"""A second process on the same data dir (the CLI while the server runs) must not damage the
first one's index files, and both must see each other's writes through the store of record.

flock locks belong to open file descriptions, so two engines in one process contend exactly
like two processes do.
"""

from __future__ import annotations

from rerank_mcp.index.engine import EmbeddedIndex, IndexConfig
from rerank_mcp.tools.ingest import ingest
from rerank_mcp.tools.search import search
from tests.reliability.hash_embedder import HashEmbedder


def _ids(engine, q, mode):
    return sorted(h.doc_id for h in search(engine, None, q, "c", k=10, mode=mode).hits)


def test_second_engine_is_a_reader_of_index_files_and_a_full_writer_of_the_store(tmp_path):
    owner = EmbeddedIndex(IndexConfig(data_dir=tmp_path, embedder_factory=HashEmbedder))
    ingest(owner, "c", [{"id": "x", "text": "alpha beta gamma"}])
    folder = tmp_path / "collections" / "c"
    before = {p.name: p.stat().st_mtime_ns for p in (folder / "bm25").iterdir()}

    second = EmbeddedIndex(IndexConfig(data_dir=tmp_path, embedder_factory=HashEmbedder))
    assert owner.owner and not second.owner
    assert second.open_all() == []  # nothing "repaired": the owner's files are not touched
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "bm25").iterdir()} == before
    assert _ids(second, "alpha", "bm25") == ["x"]

    ingest(second, "c", [{"id": "y", "text": "alpha delta"}])
    assert _ids(second, "alpha", "dense") == ["x", "y"]  # its own in-memory dense index
    assert _ids(owner, "alpha", "bm25") == ["x", "y"]  # the owner replays the store
    assert _ids(second, "alpha", "bm25") == ["x", "y"]  # and the reader sees the owner's commit
    second.close()
    owner.close()

    again = EmbeddedIndex(IndexConfig(data_dir=tmp_path, embedder_factory=HashEmbedder))
    assert again.owner and again.open_all() == []
    assert _ids(again, "alpha", "hybrid") == ["x", "y"]
    again.close()
