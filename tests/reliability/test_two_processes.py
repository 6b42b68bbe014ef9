"""A second process on the same data dir (the CLI while the server runs) must not damage the
first one's index files, and both must see each other's writes through the store of record.

flock locks belong to open file descriptions, so two engines in one process contend exactly
like two processes do.
"""

from __future__ import annotations

import pytest

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


# ---------------------------------------------------------------------------------------------
# Real processes: `rerank-mcp serve` over stdio beside the CLI, or beside a second server.


def _proc_env(data):
    from tests.fixtures.env import offline_env

    return offline_env(RERANK_MCP_DATA_DIR=str(data), RERANK_MCP_LOG_LEVEL="WARNING")


def _call(srv, rid, name, arguments):
    srv.send({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
    return srv.until(rid)[-1]["result"]


def _hits(srv, rid, query, mode, collection="kb"):
    """Document ids found, or the error text."""
    result = _call(srv, rid, "search", {"query": query, "collection": collection, "mode": mode, "k": 10})
    if result.get("isError"):
        return result["content"][0]["text"]
    return sorted(h["doc_id"] for h in result["structuredContent"]["hits"])


def _cli(data, *args):
    import subprocess

    from tests.e2e.test_stdio_transport import EXE

    r = subprocess.run([EXE, *args], env=_proc_env(data), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return r.stdout.decode()


def _server(data):
    from tests.e2e.test_stdio_transport import EXE
    from tests.fixtures.stdio_process import StdioServer

    srv = StdioServer([EXE, "serve"], _proc_env(data))
    srv.initialize()
    return srv


def _stop(srv):
    srv.proc.stdin.close()
    rc = srv.proc.wait(timeout=60)
    stderr = srv.proc.stderr.read().decode(errors="replace")
    assert rc == 0 and "Traceback" not in stderr, stderr[-3000:]
    return stderr


def _eventually(probe, want, seconds=20.0):
    import time

    deadline = time.monotonic() + seconds
    got = probe()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.25)
        got = probe()
    return got


@pytest.mark.slow
def test_cli_dropping_a_collection_beside_the_running_server(tmp_path):
    """`rerank-mcp delete kb --all` from a second process while the server (the owner) has kb open:
    the server answers 'unknown collection' afterwards, then works on a kb created again, by
    itself or by the CLI, without a restart. (Before: 'internal error (ValueError)' on every call,
    the CLI having removed the folder under the server's open BM25 writer.)"""
    data = tmp_path / "data"
    srv = _server(data)
    try:
        r = _call(srv, 10, "ingest", {"collection": "kb", "documents": [{"id": "old", "text": "alpha old document"}]})
        assert not r.get("isError"), r
        assert _hits(srv, 11, "alpha", "bm25") == ["old"]

        _cli(data, "delete", "kb", "--all")
        for rid, mode in ((12, "bm25"), (13, "dense"), (14, "hybrid")):
            err = _hits(srv, rid, "alpha", mode)
            assert isinstance(err, str) and "unknown collection 'kb'" in err, err
        r = _call(srv, 15, "ingest", {"collection": "kb", "documents": [{"id": "new", "text": "alpha new document"}]})
        assert not r.get("isError"), r
        for rid, mode in ((16, "bm25"), (17, "dense"), (18, "hybrid")):
            assert _hits(srv, rid, "alpha", mode) == ["new"], mode

        # dropped and created again by the CLI: the server serves the new collection
        _cli(data, "delete", "kb", "--all")
        _cli(data, "ingest", "--collection", "kb", "--id", "cli", "--text", "alpha from the command line")
        for rid, mode in ((19, "bm25"), (20, "dense"), (21, "hybrid")):
            assert _hits(srv, rid, "alpha", mode) == ["cli"], mode
        r = _call(srv, 22, "ingest", {"collection": "kb", "documents": [{"id": "more", "text": "alpha more"}]})
        assert not r.get("isError"), r
        assert _hits(srv, 23, "alpha", "bm25") == ["cli", "more"]
    finally:
        stderr = _stop(srv)
    assert "internal error" not in stderr
    # a fresh start agrees: the files the server kept are those of the new collection
    again = _server(data)
    try:
        assert _hits(again, 30, "alpha", "bm25") == ["cli", "more"]
        assert _hits(again, 31, "alpha", "dense") == ["cli", "more"]
    finally:
        _stop(again)


@pytest.mark.slow
def test_second_servers_writes_become_bm25_searchable(tmp_path):
    """Two servers on one data dir: the second's acknowledged writes are found by BM25 while the
    first (the owner) is idle, and after the first has exited (the second takes over)."""
    data = tmp_path / "data"
    first = _server(data)
    second = _server(data)
    try:
        r = _call(second, 10, "ingest", {"collection": "kb", "documents": [{"id": "s1", "text": "zebra one"}]})
        assert not r.get("isError"), r
        # the first server gets no call: it indexes the second's write on its own
        assert _eventually(lambda: _hits(second, 11, "zebra", "bm25"), ["s1"]) == ["s1"]
        assert _hits(first, 12, "zebra", "bm25") == ["s1"]
        _stop(first)
        first = None
        r = _call(second, 13, "ingest", {"collection": "kb", "documents": [{"id": "s2", "text": "zebra two"}]})
        assert not r.get("isError"), r
        assert _eventually(lambda: _hits(second, 14, "zebra", "bm25"), ["s1", "s2"]) == ["s1", "s2"]
        r = _call(second, 15, "ingest", {"collection": "kb", "documents": [{"id": "s3", "text": "zebra three"}]})
        assert _hits(second, 16, "zebra", "bm25") == ["s1", "s2", "s3"]  # now its own index: at once
    finally:
        if first is not None:
            _stop(first)
        _stop(second)
    third = _server(data)
    try:
        assert _hits(third, 20, "zebra", "bm25") == ["s1", "s2", "s3"]
    finally:
        _stop(third)
