"""Start-up against a damaged or read-only data dir: `rerank-mcp serve` as a real subprocess
over stdio (and HTTP), on real SQLite / tantivy / FAISS files.

- A read-only data dir (a read-only bind mount: needs root and mount rights, else skipped) with
  ``serve --read-only`` starts and answers bm25 and hybrid searches; the embedding cache, which
  cannot be opened for writing, is left out with a warning naming it.
- A corrupt ``embedding-cache.sqlite`` (derived data) is moved aside with a warning naming it,
  and a new one is started.
- A zero-length ``rerank-mcp.sqlite`` is refused as unreadable (StoreCorrupt), not opened as an
  empty index; this and any other start-up failure is one line on stderr and exit status 1.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_stdio_transport import EXE
from tests.fixtures.env import offline_env
from tests.fixtures.servers import free_port
from tests.fixtures.stdio_process import StdioServer

pytestmark = pytest.mark.slow  # server subprocesses


def _env(data: Path) -> dict[str, str]:
    return offline_env(RERANK_MCP_DATA_DIR=str(data), RERANK_MCP_LOG_LEVEL="WARNING")


def _ingest(data: Path) -> None:
    r = subprocess.run([EXE, "ingest", "--collection", "kb", "--text", "the quick brown fox jumps",
                        "--text", "lorem ipsum dolor sit amet"], env=_env(data), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]


def _search(srv: StdioServer, rid: int, mode: str) -> list[str]:
    srv.send({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {
        "name": "search", "arguments": {"query": "quick fox", "collection": "kb", "mode": mode, "k": 1}}})
    result = srv.until(rid)[-1]["result"]
    assert not result.get("isError"), result
    return [h["text"] for h in result["structuredContent"]["hits"]]


def _stop(srv: StdioServer) -> str:
    srv.proc.stdin.close()
    rc = srv.proc.wait(timeout=60)
    stderr = srv.proc.stderr.read().decode(errors="replace")
    assert rc == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return stderr


@pytest.fixture
def read_only_mount(tmp_path):
    """``(source, mount)``: ``mount`` shows ``source`` read-only."""
    src, ro = tmp_path / "data", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    if subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True).returncode != 0:
        pytest.skip("a read-only data dir needs a bind mount (root with CAP_SYS_ADMIN)")
    try:
        r = subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only: {r.stderr.decode().strip()}")
        yield src, ro
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_read_only_data_dir_serves_read_only(read_only_mount):
    src, ro = read_only_mount
    _ingest(src)
    with pytest.raises(OSError):
        (ro / "probe").write_text("x")  # the mount is really read-only, even for root
    srv = StdioServer([EXE, "serve", "--read-only"], _env(ro))
    try:
        srv.initialize()
        assert _search(srv, 10, "bm25") == ["the quick brown fox jumps"]
        assert _search(srv, 11, "hybrid") == ["the quick brown fox jumps"]
        assert _search(srv, 12, "dense")
        srv.send({"jsonrpc": "2.0", "id": 13, "method": "tools/list"})
        names = {t["name"] for t in srv.until(13)[-1]["result"]["tools"]}
        assert "ingest" not in names and "search" in names
    finally:
        stderr = _stop(srv)
    assert "embedding-cache.sqlite" in stderr and "running without it" in stderr, stderr
    assert sorted(p.name for p in src.iterdir()) == sorted(p.name for p in ro.iterdir())


def test_corrupt_embedding_cache_is_moved_aside_and_rebuilt(tmp_path):
    data = tmp_path / "data"
    _ingest(data)
    cache = data / "embedding-cache.sqlite"
    garbage = os.urandom(8192)
    cache.write_bytes(garbage)
    srv = StdioServer([EXE, "serve"], _env(data))
    try:
        srv.initialize()
        assert _search(srv, 10, "hybrid") == ["the quick brown fox jumps"]
        srv.send({"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {"name": "ingest", "arguments": {
            "collection": "kb", "documents": [{"id": "n", "text": "a new quick document"}]}}})
        assert not srv.until(11)[-1]["result"].get("isError")
    finally:
        stderr = _stop(srv)
    assert str(cache) in stderr and "moved to embedding-cache.sqlite.corrupt-" in stderr, stderr
    aside = [p for p in data.iterdir() if p.name.startswith("embedding-cache.sqlite.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage  # kept for inspection, untouched
    import sqlite3

    with sqlite3.connect(cache) as db:  # a working cache again, holding the new document's vector
        assert db.execute("SELECT count(*) FROM vecs").fetchone()[0] >= 1


@pytest.mark.parametrize("damage", ["zero-length", "garbage"])
@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_unopenable_store_is_one_clear_line(tmp_path, damage, transport):
    data = tmp_path / "data"
    data.mkdir()
    db = data / "rerank-mcp.sqlite"
    db.write_bytes(b"" if damage == "zero-length" else b"not a database at all " * 300)
    before = db.read_bytes()
    cmd = [EXE, "serve"] + (["--http", "--port", str(free_port())] if transport == "http" else [])
    r = subprocess.run(cmd, env=_env(data), input=b"", capture_output=True, timeout=120)
    stderr = r.stderr.decode(errors="replace")
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert r.returncode == 1, stderr
    assert len(lines) == 1, stderr
    assert "rerank-mcp.sqlite is unreadable" in lines[0], lines
    if damage == "zero-length":
        assert "empty (0 bytes)" in lines[0]
    assert r.stdout == b""
    assert db.read_bytes() == before  # nothing changed, no empty index made
