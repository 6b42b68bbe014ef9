"""Soak: 8 HTTP clients of mixed work while the server is sent SIGTERM and restarted, over and over.

The real ``rerank-mcp serve --http`` (real MiniLM embedder) serves 8 MCP clients doing ingest
(single documents and 80-document bulks), search in every mode, BM25 rerank, evaluate and
delete, as fast as they can. Every ``RERANK_MCP_RESTART_EVERY_S`` the server gets SIGTERM;
the clients see their calls answered "cancelled: the server is shutting down" or cut, and
reconnect once it is back. After each stop a fresh engine opens the data dir and reports what
it had to repair.

Measured: server memory (RSS) over each lifetime, search and ingest latency per time window,
operations and errors (an error outside a restart window is unexpected), acknowledged writes
that went missing, exit time after SIGTERM, repairs on open. Duration:
``RERANK_MCP_RESTART_SOAK_S`` (20 s by default here: three restarts; ``scripts/reliability-report
--soak-minutes N`` runs it for N minutes, default 30).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import psutil
import pytest

from rerank_mcp.index.engine import EmbeddedIndex, IndexConfig
from rerank_mcp.tools.metrics import percentile
from tests.fixtures.env import offline_env
from tests.fixtures.servers import free_port
from tests.reliability.consistency import check_collection
from tests.reliability.stats import record
from tests.reliability.test_http import TOKEN, _client

pytestmark = pytest.mark.slow  # a soak: repeated server restarts

EXE = str(Path(sys.executable).with_name("rerank-mcp"))
DURATION = float(os.environ.get("RERANK_MCP_RESTART_SOAK_S", "20"))
EVERY = float(os.environ.get("RERANK_MCP_RESTART_EVERY_S", "0")) or (60.0 if DURATION >= 300 else DURATION / 3)
CLIENTS = 8
CHUNK, OVERLAP = 200, 40  # the server's defaults
SHUTTING_DOWN = "the server is shutting down"
WORDS = ("alpha beta gamma delta epsilon vector index search rerank store chunk restart signal soak memory "
         "latency drift batch query passage document").split()


@dataclass
class Life:
    """One server process."""

    start: float
    proc: subprocess.Popen
    ready: float = 0.0
    stopped: float = 0.0
    exit_s: float = 0.0
    rc: int | None = None
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since ready, bytes)
    repairs: list[str] = field(default_factory=list)


@dataclass
class Soak:
    t0: float
    url: str
    lives: list[Life] = field(default_factory=list)
    restarts: list[list[float]] = field(default_factory=list)  # [from, to]: a SIGTERM until 2 s after the restart
    up: bool = False
    stopping: bool = False
    ops: list[tuple[float, str, float]] = field(default_factory=list)  # (end time, op, seconds) of successes
    interrupted: int = 0  # calls cut or refused by a restart
    unexpected: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)  # doc id -> client
    maybe_added: set[str] = field(default_factory=set)  # ingests cut by a restart: stored or not
    deleted: set[str] = field(default_factory=set)
    maybe_deleted: set[str] = field(default_factory=set)

    def restarting(self, t: float) -> bool:
        """Whether ``t`` falls in a restart window (or the server is down, or the soak ending)."""
        return not self.up or self.stopping or any(a - 0.5 <= t <= b for a, b in self.restarts)


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 60)))


async def _start(soak: Soak, data_dir: Path, port: int, log_dir: Path, n: int) -> Life:
    env = offline_env(RERANK_MCP_DATA_DIR=str(data_dir), RERANK_MCP_HTTP_TOKEN=TOKEN, RERANK_MCP_LOG_LEVEL="INFO")
    with open(log_dir / f"server-{n}.log", "wb") as log:
        proc = subprocess.Popen([EXE, "serve", "--http", "--port", str(port)], env=env, stdout=log, stderr=log)
    life = Life(start=time.monotonic(), proc=proc)
    with anyio.fail_after(120):
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert proc.poll() is None, (log_dir / f"server-{n}.log").read_text()[-3000:]
                await anyio.sleep(0.1)
    life.ready = time.monotonic()
    soak.lives.append(life)
    if not soak.restarts:
        soak.restarts.append([soak.t0, life.ready])
    soak.restarts[-1][1] = life.ready + 2.0
    soak.up = True
    return life


async def _stop(soak: Soak, life: Life, data_dir: Path) -> None:
    soak.up = False
    life.stopped = time.monotonic()
    soak.restarts.append([life.stopped, float("inf")])
    life.proc.send_signal(signal.SIGTERM)
    with anyio.fail_after(60):
        while life.proc.poll() is None:
            await anyio.sleep(0.02)
    life.exit_s = time.monotonic() - life.stopped
    life.rc = life.proc.returncode

    def repairs() -> list[str]:
        engine = EmbeddedIndex(IndexConfig(data_dir=data_dir))
        try:
            return engine.open_all()
        finally:
            engine.close()

    life.repairs = await anyio.to_thread.run_sync(repairs)


async def _sample_memory(soak: Soak) -> None:
    while not soak.stopping or soak.up:
        if soak.up and soak.lives:
            life = soak.lives[-1]
            try:
                rss = psutil.Process(life.proc.pid).memory_info().rss
            except psutil.Error:
                rss = 0
            if rss and life.proc.poll() is None:  # a process that has exited reads as 0
                life.rss.append((time.monotonic() - life.ready, rss))
        await anyio.sleep(2.0)


async def _client_loop(soak: Soak, w: int) -> None:
    rng = random.Random(w)
    n = 0
    mine: list[str] = []  # my acknowledged, not deleted documents
    while not soak.stopping:
        if not soak.up:
            await anyio.sleep(0.2)
            continue
        began = time.monotonic()
        try:
            http, client = _client(soak.url)
            async with http, client as c:
                while not soak.stopping:
                    op = rng.choices(["ingest", "bulk", "search", "rerank", "evaluate", "delete"],
                                     [30, 4 if w == 0 else 0, 36, 15, 5, 10])[0]
                    ids: list[str] = []
                    t = time.monotonic()
                    try:
                        if op in ("ingest", "bulk"):
                            for _ in range(1 if op == "ingest" else 80):
                                ids.append(f"w{w}-{n}")
                                soak.texts[ids[-1]] = _text(rng)
                                n += 1
                            r = await c.call_tool("ingest", {"collection": "soak", "documents": [
                                {"id": i, "text": soak.texts[i]} for i in ids]})
                        elif op == "search":
                            r = await c.call_tool("search", {"query": " ".join(rng.sample(WORDS, 2)), "k": 5,
                                                             "collection": "soak",
                                                             "mode": rng.choice(["bm25", "dense", "hybrid"])})
                            if r.is_error and "unknown collection" in r.content[0].text:
                                continue  # nobody has ingested yet
                        elif op == "rerank":
                            r = await c.call_tool("rerank", {"query": rng.choice(WORDS), "reranker": "bm25",
                                                             "passages": [_text(rng)[:200] for _ in range(50)]})
                        elif op == "evaluate":
                            if len(mine) < 5:
                                continue
                            r = await c.call_tool("evaluate", {"collection": "soak", "pipelines": ["bm25", "dense"],
                                                               "judgments": [{"query": soak.texts[d][:60],
                                                                              "relevant": [d]}
                                                                             for d in rng.sample(mine, 5)]})
                        else:
                            if not mine:
                                continue
                            ids = [mine.pop(rng.randrange(len(mine)))]
                            r = await c.call_tool("delete", {"collection": "soak", "ids": ids})
                    except BaseException:  # cut off (also by a cancellation from the session's task group)
                        if op in ("ingest", "bulk"):
                            soak.maybe_added.update(ids)
                        elif op == "delete":
                            soak.maybe_deleted.update(ids)
                        raise
                    if r.is_error:
                        text = r.content[0].text
                        if SHUTTING_DOWN in text and soak.restarting(time.monotonic()):
                            soak.interrupted += 1
                            if op in ("ingest", "bulk"):
                                soak.maybe_added.update(ids)
                            elif op == "delete":
                                soak.maybe_deleted.update(ids)
                            continue
                        soak.unexpected.append(f"{op}: {text[:300]}")
                        continue
                    soak.ops.append((time.monotonic(), op, time.monotonic() - t))
                    if op in ("ingest", "bulk"):
                        for i in ids:
                            soak.acked[i] = w
                        mine.extend(ids)
                    elif op == "delete":
                        soak.deleted.update(ids)
        except Exception as exc:  # the server went away under the session (or refused it)
            if soak.restarting(time.monotonic()) or soak.restarting(began):
                soak.interrupted += 1
            else:
                soak.unexpected.append(f"session: {type(exc).__name__}: {str(exc)[:300]}")
        await anyio.sleep(0.3)


def _growth_mb(life: Life) -> float | None:
    """RSS growth over a lifetime, from the first sample a third of the way in (the model is
    loaded and the caches warm by then) to the last."""
    span = life.stopped - life.ready
    steady = [b for t, b in life.rss if t >= span / 3]
    return (steady[-1] - steady[0]) / 2**20 if len(steady) >= 2 else None


def _windows(soak: Soak, op: str, width: float) -> list[dict]:
    out = []
    start, end = soak.t0, max((t for t, _, _ in soak.ops), default=soak.t0)
    while start < end:
        lat = [s * 1000 for t, o, s in soak.ops if o == op and start <= t < start + width]
        if lat:
            out.append({"from_s": round(start - soak.t0), "n": len(lat), "p50_ms": round(percentile(lat, 50, empty=0.0), 1),
                        "p95_ms": round(percentile(lat, 95, empty=0.0), 1)})
        start += width
    return out


@pytest.mark.timeout(DURATION + 900)
def test_restart_soak_over_http(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    soak = Soak(t0=time.monotonic(), url=f"http://127.0.0.1:{port}/mcp")

    async def supervise() -> None:
        end = soak.t0 + DURATION
        while True:
            life = await _start(soak, data_dir, port, tmp_path, len(soak.lives))
            await anyio.sleep(max(0.0, min(life.ready + EVERY, end) - time.monotonic()))
            last = time.monotonic() >= end - 0.5
            soak.stopping = last
            await _stop(soak, life, data_dir)
            if last:
                return

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(supervise)
            tg.start_soon(_sample_memory, soak)
            for w in range(CLIENTS):
                tg.start_soon(_client_loop, soak, w)

    anyio.run(main)
    elapsed = time.monotonic() - soak.t0

    engine = EmbeddedIndex(IndexConfig(data_dir=data_dir))
    try:
        assert engine.open_all() == []
        check_collection(engine, "soak", soak.texts, CHUNK, OVERLAP)
        present = set(engine.doc_hashes("soak", list(soak.texts)))
    finally:
        engine.close()
    must = set(soak.acked) - soak.deleted - soak.maybe_deleted
    missing = must - present
    phantom = present - set(soak.acked) - soak.maybe_added
    resurrected = present & soak.deleted

    lives = soak.lives
    exits = [life.exit_s for life in lives]
    repairs = [r for life in lives for r in life.repairs]
    growth = [g for g in map(_growth_mb, lives) if g is not None]
    rss_end = [life.rss[-1][1] / 2**20 for life in lives if life.rss]
    width = max(60.0, DURATION / 10)
    search_w, ingest_w = _windows(soak, "search", width), _windows(soak, "ingest", width)
    counts = {op: sum(o == op for _, o, _ in soak.ops) for op in ("ingest", "bulk", "search", "rerank", "evaluate",
                                                                  "delete")}
    figures = {
        "seconds": round(elapsed), "clients": CLIENTS, "restart_every_s": EVERY, "server_lifetimes": len(lives),
        "sigterms": len(lives), "operations": len(soak.ops), "operations_by_kind": counts,
        "interrupted_by_restart": soak.interrupted, "unexpected_errors": len(soak.unexpected),
        "acknowledged_documents": len(soak.acked), "acknowledged_deletes": len(soak.deleted),
        "acknowledged_missing": len(missing), "unacknowledged_present": len(present & soak.maybe_added),
        "deleted_present": len(resurrected),
        "max_exit_s": round(max(exits), 2), "median_exit_s": round(statistics.median(exits), 2),
        "exit_statuses": sorted({life.rc for life in lives}),
        "repairs_on_open": len(repairs),
        "rss_mb_end_of_lifetime": [round(x) for x in rss_end],
        "rss_mb_max": round(max((b for life in lives for _, b in life.rss), default=0) / 2**20),
        "rss_growth_mb_per_lifetime": [round(g, 1) for g in growth],
        "lifetime_s": round(statistics.median([life.stopped - life.ready for life in lives]), 1),
        "search_latency_windows": search_w, "ingest_latency_windows": ingest_w, "window_s": width,
        "documents_at_end": len(present),
    }
    record("restart_soak", figures)
    assert not soak.unexpected, soak.unexpected[:5]
    assert not missing, f"acknowledged documents missing: {sorted(missing)[:5]}"
    assert not phantom, f"documents nobody ingested: {sorted(phantom)[:5]}"
    assert not resurrected, f"deleted documents back: {sorted(resurrected)[:5]}"
    assert not repairs, repairs
    assert max(exits) < 10, exits
    assert len(lives) >= 2 and len(soak.ops) > 50, figures
