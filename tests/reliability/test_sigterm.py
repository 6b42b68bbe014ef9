"""SIGTERM, SIGINT or end of input while the stdio server ingests: a clean stop, every time.

Each cycle starts the real ``rerank-mcp serve`` (stdio; the asyncio transport, every fourth
cycle the SDK's), makes 0-2 ingest calls that complete (acknowledged), then stops the server
during the next one, after one or two of its three write batches committed plus a random
delay, so the stop lands mid-ingest: with SIGTERM, SIGINT or by closing stdin, in turn. Then: the process exited within 10 s with status 0;
a fresh engine opens the data dir with no repair (the index was closed cleanly, nothing to
rebuild); every acknowledged document is there, every stored document is whole, the call in
flight kept whole write batches only; the derived indexes and search agree with the store.

Like tests/reliability/test_crash.py (which does the same with SIGKILL), the embedder is the
hash embedder, so that a cycle costs a start and a few batches, not a model load.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from rerank_mcp.index.engine import EmbeddedIndex, IndexConfig
from rerank_mcp.tools.ingest import WRITE_BATCH
from tests.fixtures.env import offline_env
from tests.fixtures.stdio_process import StdioServer
from tests.reliability.consistency import check_collection
from tests.reliability.hash_embedder import HashEmbedder
from tests.reliability.stats import record
from tests.reliability.test_crash import _docs

pytestmark = pytest.mark.slow  # a server subprocess signalled mid-ingest

ROOT = Path(__file__).resolve().parents[2]
CYCLES = int(os.environ.get("RERANK_MCP_SIGTERM_CYCLES", "5"))
CALL_DOCS = 3 * WRITE_BATCH  # three write batches per ingest call
CHUNK, OVERLAP = 32, 8
STOPS = ("SIGTERM", "SIGINT", "EOF")


def _serve(tmp_path: Path, data_dir: Path, cycle: int, transport: str) -> StdioServer:
    env = offline_env(PYTHONPATH=str(ROOT), RERANK_MCP_DATA_DIR=str(data_dir), RERANK_MCP_LOG_LEVEL="INFO",
                      RERANK_MCP_STDIO_TRANSPORT=transport)
    log = open(tmp_path / f"server-{cycle}.log", "wb")
    srv = StdioServer([sys.executable, "-m", "tests.fixtures.hash_cli", "serve"], env, stderr=log)
    log.close()  # the child holds its own copy
    return srv


def test_stop_during_ingest_closes_the_index_cleanly(tmp_path):
    data_dir = tmp_path / "data"
    rng = random.Random(4321)
    all_docs = iter(_docs(CYCLES * 3 * CALL_DOCS, seed=11))
    texts: dict[str, str] = {}
    acked: set[str] = set()
    exits: list[float] = []
    repairs: list[str] = []
    stopped_mid_ingest = 0
    for cycle in range(CYCLES):
        how = STOPS[cycle % len(STOPS)]
        transport = "sdk" if cycle % 4 == 3 else "asyncio"
        srv = _serve(tmp_path, data_dir, cycle, transport)
        assert srv.initialize()["result"]["serverInfo"]["name"] == "rerank-mcp"
        calls_before = rng.randint(0, 2)  # acknowledged calls, then the one that is stopped
        stop_after = rng.randint(1, 2)  # of its 3 batches
        rid = 10
        in_flight: list[str] = []
        for n_call in range(calls_before + 1):
            committed_batches = 0
            rid += 1
            call = [next(all_docs) for _ in range(CALL_DOCS)]
            texts.update((d["id"], d["text"]) for d in call)
            srv.send({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {
                "name": "ingest", "_meta": {"progressToken": rid},
                "arguments": {"collection": "sig", "documents": call, "chunk_size": CHUNK, "chunk_overlap": OVERLAP}}})
            while True:
                msg = srv.next()
                assert msg is not None, f"cycle {cycle}: the server died"
                if msg.get("method") == "notifications/progress" and msg["params"].get("message", "").startswith("stored"):
                    committed_batches += 1
                    if n_call == calls_before and committed_batches == stop_after:
                        in_flight = [d["id"] for d in call]
                        break
                elif msg.get("id") == rid:
                    assert not msg["result"].get("isError"), msg
                    acked.update(d["id"] for d in call)
                    break
        time.sleep(rng.uniform(0.0, 0.03))
        t = time.monotonic()
        if how == "EOF":
            srv.proc.stdin.close()
        else:
            srv.proc.send_signal(getattr(signal, how))
        rc = srv.proc.wait(timeout=60)
        exits.append(time.monotonic() - t)
        while (msg := srv.next()) is not None:  # a reply that went out before the stop still counts
            if msg.get("id") == rid and not msg.get("result", {}).get("isError", True):
                acked.update(in_flight)
        log = (tmp_path / f"server-{cycle}.log").read_text(errors="replace")
        assert rc == 0, f"cycle {cycle} ({how}, {transport}): exit status {rc}\n{log[-2000:]}"
        assert exits[-1] < 10, f"cycle {cycle} ({how}, {transport}): exited after {exits[-1]:.1f} s"
        assert "Traceback" not in log, log[-3000:]

        engine = EmbeddedIndex(IndexConfig(data_dir=data_dir, embedder_factory=HashEmbedder))
        try:
            notes = engine.open_all()
            repairs += notes
            check_collection(engine, "sig", texts, CHUNK, OVERLAP)
            stored = set(engine.doc_hashes("sig", list(texts)))
        finally:
            engine.close()
        lost = acked - stored
        assert not lost, f"cycle {cycle}: acknowledged documents lost: {sorted(lost)[:5]}"
        kept = sum(d in stored for d in in_flight)
        assert kept % WRITE_BATCH == 0 or kept == len(in_flight), f"cycle {cycle}: {kept} documents of the call kept"
        stopped_mid_ingest += kept < len(in_flight)
        assert not notes, f"cycle {cycle} ({how}, {transport}): repaired on open: {notes}"
    assert stopped_mid_ingest >= CYCLES // 2, f"only {stopped_mid_ingest} of {CYCLES} stops landed mid-ingest"
    record("sigterm", {"cycles": CYCLES, "stops": {s: sum(STOPS[c % len(STOPS)] == s for c in range(CYCLES))
                                                   for s in STOPS},
                       "sdk_transport_cycles": sum(c % 4 == 3 for c in range(CYCLES)),
                       "stopped_mid_ingest": stopped_mid_ingest, "acknowledged_documents": len(acked),
                       "acknowledged_documents_lost": 0, "partial_documents": 0,
                       "max_exit_s": round(max(exits), 2), "median_exit_s": round(sorted(exits)[len(exits) // 2], 2),
                       "repairs_on_open": len(repairs)})
