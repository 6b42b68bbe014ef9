"""kill -9 the writer at random points during a large ingest; nothing acknowledged is lost.

After each kill: a fresh engine opens the same data dir (repairing derived indexes from the
store of record), and we check that every document the journal says was committed is stored
with exactly the chunks a clean ingest produces, that every stored document is whole, and
that no search in any mode returns a chunk the store does not hold.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rerank_mcp.index.chunking import chunk_text
from rerank_mcp.index.engine import EmbeddedIndex, IndexConfig
from rerank_mcp.tools.search import search
from tests.reliability.hash_embedder import HashEmbedder
from tests.reliability.stats import record

pytestmark = pytest.mark.slow  # processes killed mid-ingest

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("RERANK_MCP_CRASH_KILLS", "5" if os.environ.get("CI") else "20"))
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma "
         "tau upsilon phi chi psi omega vector index search rerank store chunk crash recover").split()


def _docs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        paras = ["  ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) + "."
                           for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        docs.append({"id": f"doc-{i}", "text": "\n\n".join(paras), "metadata": {"i": i}})
    return docs


def _check(data_dir: Path, docs: dict[str, dict], committed: set[str]) -> int:
    emb = HashEmbedder()
    engine = EmbeddedIndex(IndexConfig(data_dir=data_dir, embedder_factory=lambda: emb))
    try:
        if engine.store.collection("crash") is None:
            assert not committed, "committed documents but the collection is gone"
            return 0
        col = engine.collection("crash")
        stored = {d.id: d for d in engine.store.documents("crash", limit=10**6)}
        missing = committed - set(stored)
        assert not missing, f"acknowledged documents lost: {sorted(missing)[:5]}"
        for doc_id, meta in stored.items():
            full = engine.store.document("crash", doc_id)
            want = [c.text for c in chunk_text(docs[doc_id]["text"], 32, 8, emb.count_tokens)]
            assert [c.text for c in full.chunks] == want, f"{doc_id} is not whole"
            assert meta.chunks == len(want)
        live = set(int(i) for i in engine.store.chunk_ids_matching("crash", "1", []))
        assert col.dense.size == len(live), "dense index disagrees with the store"
        assert col.sparse.size == len(live), "BM25 index disagrees with the store"
        for q in ("alpha vector", "crash recover omega", "sigma tau"):
            for mode in ("dense", "bm25", "hybrid"):
                res = search(engine, None, q, "crash", k=50, mode=mode)
                assert {h.chunk_id for h in res.hits} <= live
                assert all(h.doc_id in stored for h in res.hits)
        return len(stored)
    finally:
        engine.close()


@pytest.mark.timeout(900)
def test_kill_dash_nine_during_ingest_loses_nothing(tmp_path):
    data_dir = tmp_path / "data"
    rng = random.Random(1234)
    all_docs = _docs(90 * KILLS + 120, seed=7)
    by_id = {d["id"]: d for d in all_docs}
    committed: set[str] = set()
    survived = 0
    for cycle in range(KILLS):
        docs_file = tmp_path / f"docs-{cycle}.jsonl"
        # each cycle ingests 120 documents: 90 new ones and 30 from the previous (killed) cycle
        start = cycle * 90
        docs_file.write_text("\n".join(json.dumps(d) for d in all_docs[start : start + 120]))
        journal = tmp_path / f"journal-{cycle}.txt"
        journal.write_text("")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.crash_worker", str(data_dir),
                                 str(docs_file), str(journal)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # kill right after a random number of committed batches (the worker commits ~10 per
        # cycle), plus a little random delay, so kills land mid-ingest
        target = rng.randint(1, 5)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if len([ln for ln in journal.read_text().splitlines() if ln != "DONE"]) >= target:
                break
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.02))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            survived += 1
        proc.wait(timeout=30)
        lines = journal.read_text().splitlines()
        for line in lines:
            if line != "DONE":
                committed.update(json.loads(line))
        _check(data_dir, by_id, committed)
    assert survived >= max(1, KILLS - 2), f"only {survived} of {KILLS} runs were killed mid-ingest"
    record("crash", {"cycles": KILLS, "killed_mid_ingest": survived, "acknowledged_documents": len(committed),
                     "acknowledged_documents_lost": 0, "partial_documents": 0, "phantom_chunks_in_search": 0})


def test_truncated_and_missing_index_files_are_rebuilt(tmp_path):
    from rerank_mcp.tools.ingest import ingest

    data_dir = tmp_path / "data"
    emb = HashEmbedder()
    docs = _docs(60, seed=3)
    engine = EmbeddedIndex(IndexConfig(data_dir=data_dir, embedder_factory=lambda: emb))
    ingest(engine, "crash", docs, chunk_size=32, chunk_overlap=8)
    want = {m: [h.chunk_id for h in search(engine, None, "alpha beta", "crash", k=20, mode=m).hits]
            for m in ("dense", "bm25", "hybrid")}
    engine.close()
    folder = data_dir / "collections" / "crash"
    damage = [
        lambda: (folder / "dense.faiss").write_bytes((folder / "dense.faiss").read_bytes()[:100]),
        lambda: (folder / "dense.faiss").unlink(),
        lambda: (folder / "dense.json").unlink(),
        lambda: [p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]) for p in (folder / "bm25").iterdir()
                 if p.is_file() and p.stat().st_size > 0],
        lambda: __import__("shutil").rmtree(folder / "bm25"),
        lambda: (folder / "bm25.json").write_text("{not json"),
    ]
    for i, hurt in enumerate(damage):
        hurt()
        engine = EmbeddedIndex(IndexConfig(data_dir=data_dir, embedder_factory=lambda: emb))
        notes = engine.open_all()
        assert notes, f"damage #{i} went unnoticed"
        got = {m: [h.chunk_id for h in search(engine, None, "alpha beta", "crash", k=20, mode=m).hits]
               for m in ("dense", "bm25", "hybrid")}
        assert got == want, f"after damage #{i}"
        engine.close()
    record("corruption", {"damage_cases_repaired": len(damage), "results_identical_after_repair": True})


def test_corrupt_sqlite_is_a_clear_error(tmp_path):
    from rerank_mcp.errors import StoreCorrupt

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "rerank-mcp.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreCorrupt, match="unreadable"):
        EmbeddedIndex(IndexConfig(data_dir=data_dir, embedder_factory=HashEmbedder))
