"""A full disk under a running server: `rerank-mcp serve` over stdio as a real subprocess, its
data dir on a small tmpfs (a real file system that really fills up: needs root with mount
rights, else the test is skipped), filled with a ballast file to a few free sizes in turn.

Every ingest either succeeds with its documents stored, or fails with a clear error naming the
full disk and the data dir and stores nothing: afterwards the stored documents are exactly the
acknowledged ones. Once the ballast is removed the same server process (no restart) ingests
again and finds every acknowledged document by BM25 and dense search. (Before: tantivy's
"An index writer was killed" or FAISS's ENOSPC answered `internal error` with the documents
committed anyway, and every later call failed until a restart.)
"""

from __future__ import annotations

import json
import os
import random
import subprocess

import pytest

from tests.e2e.test_stdio_transport import EXE
from tests.fixtures.env import offline_env
from tests.fixtures.stdio_process import StdioServer

DISK_BYTES = 8 << 20
FREE_STEPS = [400_000, 200_000, 120_000, 80_000, 60_000, 40_000, 20_000, 8_000, 0]


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"a full disk needs a small tmpfs (root with mount rights): {r.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _call(srv, rid, name, arguments):
    srv.send({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
    return srv.until(rid, timeout=120)[-1]["result"]


def _stored(srv, rid) -> set[str]:
    srv.send({"jsonrpc": "2.0", "id": rid, "method": "resources/read", "params": {"uri": "collections://kb"}})
    reply = srv.until(rid)[-1]
    assert "result" in reply, reply
    return {d["id"] for d in json.loads(reply["result"]["contents"][0]["text"])["documents"]}


def _found(srv, rid, word, mode, k=3) -> list[str]:
    result = _call(srv, rid, "search", {"query": word, "collection": "kb", "mode": mode, "k": k})
    assert not result.get("isError"), result
    return [h["doc_id"] for h in result["structuredContent"]["hits"]]


def _fill(disk, free: int) -> None:
    ballast = disk / "ballast"
    ballast.unlink(missing_ok=True)
    st = os.statvfs(disk)
    size = max(0, st.f_bavail * st.f_frsize - free)
    with open(ballast, "wb") as fh:
        try:
            fh.write(b"\0" * size)
        except OSError:
            pass  # as full as it gets


@pytest.mark.slow
def test_full_disk_stores_exactly_what_it_acknowledges_and_recovers_without_restart(small_disk):
    data = small_disk / "data"
    srv = StdioServer([EXE, "serve"], offline_env(RERANK_MCP_DATA_DIR=str(data), RERANK_MCP_LOG_LEVEL="WARNING"))
    rng = random.Random(7)
    acked: dict[str, str] = {}  # doc id -> its marker word
    refused: dict[str, str] = {}
    rid = 100
    try:
        srv.initialize()
        r = _call(srv, 10, "ingest", {"collection": "kb", "documents": [{"id": "seed", "text": "seed marker0"}]})
        assert not r.get("isError"), r
        acked["seed"] = "marker0"
        n = 0
        for free in FREE_STEPS:
            _fill(small_disk, free)
            for _ in range(2):
                n += 1
                doc_id, marker = f"d{n}", f"marker{n}"
                words = [f"w{rng.randrange(10**6)}" for _ in range(rng.randrange(100, 1500))]
                rid += 1
                r = _call(srv, rid, "ingest", {"collection": "kb", "documents": [
                    {"id": doc_id, "text": f"{marker} " + " ".join(words)}]})
                if r.get("isError"):
                    text = r["content"][0]["text"]
                    assert "internal error" not in text, text
                    assert "no space left" in text and str(data) in text, text
                    refused[doc_id] = marker
                else:
                    assert r["structuredContent"]["added"] == 1, r
                    acked[doc_id] = marker
                rid += 1
                assert _stored(srv, rid) == set(acked), (free, doc_id)
        assert refused, "the disk never filled up"

        # space returns: the same process ingests and finds everything it acknowledged
        (small_disk / "ballast").unlink()
        r = _call(srv, 500, "ingest", {"collection": "kb", "documents": [{"id": "after", "text": "markerafter"}]})
        assert not r.get("isError"), r
        acked["after"] = "markerafter"
        rid = 600
        for doc_id, marker in acked.items():
            rid += 1
            assert _found(srv, rid, marker, "bm25")[:1] == [doc_id], doc_id
        # every stored chunk is in the dense index: the whole collection comes back
        assert set(_found(srv, 700, "anything", "dense", k=1000)) == set(acked)
        for doc_id, marker in refused.items():
            rid += 1
            assert _found(srv, rid, marker, "bm25") == [], doc_id
        assert _stored(srv, 900) == set(acked)
    finally:
        srv.proc.stdin.close()
        rc = srv.proc.wait(timeout=60)
    stderr = srv.proc.stderr.read().decode(errors="replace")
    assert rc == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    late = stderr.count("stored, but the index update failed")
    print(f"acknowledged {len(acked)}, refused {len(refused)}, stored with the index update deferred {late}")


def test_disk_filling_during_one_ingest_call_reports_exactly_what_was_stored(small_disk):
    """One call of several write batches: the batches that fit are stored and reported as added,
    the batch the disk has no room for is rolled back, and it and the rest are reported as
    failed ("not stored: no space left ..."). In process, with the real engine on the tmpfs and
    a hashed bag-of-words embedder (the test is about storage, not the model)."""
    from rerank_mcp.index.engine import EmbeddedIndex, IndexConfig
    from rerank_mcp.tools.ingest import WRITE_BATCH, ingest
    from tests.reliability.hash_embedder import HashEmbedder

    data = small_disk / "data"
    eng = EmbeddedIndex(IndexConfig(data_dir=data, embedder_factory=HashEmbedder))
    try:
        ingest(eng, "kb", [{"id": "seed", "text": "seed"}])
        _fill(small_disk, 600_000)
        rng = random.Random(3)
        docs = [{"id": f"d{i:04d}", "text": " ".join(f"w{rng.randrange(10**6)}" for _ in range(400))}
                for i in range(WRITE_BATCH * 12)]
        res = ingest(eng, "kb", docs)
        added = {o.id for o in res.documents if o.status == "added"}
        failed = [o for o in res.documents if o.status == "failed"]
        assert added and failed, (len(added), len(failed))
        assert len(added) % WRITE_BATCH == 0  # whole batches
        assert res.failed == len(failed) == len(docs) - len(added)
        assert all(o.reason.startswith("not stored: no space left") and str(data) in o.reason for o in failed)
        stored = {d.id for d in eng.documents("kb", limit=10_000)}
        assert stored == added | {"seed"}
    finally:
        eng.close()
