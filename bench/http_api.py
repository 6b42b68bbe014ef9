"""``rerank-mcp bench --sections http``: the rerank HTTP API under 1 and 8 concurrent clients.

Starts two ``rerank-mcp serve --http`` subprocesses, one with dynamic batching and one without,
sends Cohere v2 requests (``POST /v2/rerank``, one query and ``passages`` documents each) from
1 and from 8 concurrent clients, and reports throughput, client-side p50 / p95 latency and the
mean batch (the ``x-rerank-batch`` header) for bm25, flashrank and the ONNX int8 cross-encoder.
The two servers are measured in alternating rounds (on, off, off, on, ...), so that a change in
the machine's load during the run weighs on both alike; the idle one uses no CPU. The models are untrained, with the published
architectures (bench/shapes.py): their cost is real, their scores are not.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rerank_mcp.tools.metrics import median, percentile

TOKEN = "bench-http-token"
RERANKERS = ("bm25", "flashrank", "ce-onnx")
ROUNDS = 4  # per setting, alternating: on, off, off, on, on, off, off, on


EXE = str(Path(sys.executable).with_name("rerank-mcp"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on ``port`` of 127.0.0.1."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def serve_http(env: Mapping[str, str], log_path: Path, *, ready: Callable[[int], bool] = accepts,
               cwd: Path | None = None, timeout: float = 120) -> Iterator[int]:
    """``rerank-mcp serve --http`` on a free port with ``env``, its stdout and stderr appended to
    ``log_path``; yields the port once ``ready(port)`` holds. Fails with the log's tail if the
    server exits or is not ready within ``timeout`` seconds; terminated (killed after 30 s) at
    the end. Used by this benchmark and by the tests."""
    port = free_port()
    with open(log_path, "a") as log:
        proc = subprocess.Popen([EXE, "serve", "--http", "--port", str(port)], env=dict(env), stdout=log,
                                stderr=log, cwd=None if cwd is None else str(cwd))
        try:
            deadline = time.monotonic() + timeout
            while not ready(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start:\n{Path(log_path).read_text()[-3000:]}")
                time.sleep(0.2)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def models_answer(token: str) -> Callable[[int], bool]:
    """A ``ready`` check for :func:`serve_http`: the API on the port lists its models to ``token``."""

    def ready(port: int) -> bool:
        import httpx

        try:
            r = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {token}"},
                          timeout=5)
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    return ready


@contextmanager
def _server(data_dir: Path, env_extra: dict[str, str], log_path: Path) -> Iterator[str]:
    from rerank_mcp.index.environment import apply

    env = {**os.environ, "RERANK_MCP_DATA_DIR": str(data_dir), "RERANK_MCP_HTTP_TOKEN": TOKEN,
           "RERANK_MCP_LOG_LEVEL": "WARNING"}
    apply(offline=True, environ=env)
    env.update(env_extra)
    with serve_http(env, log_path, ready=models_answer(TOKEN), timeout=180) as port:
        yield f"http://127.0.0.1:{port}"


async def _drive(base: str, model: str, requests: list[tuple[str, list[str]]], clients: int,
                 batches: list[int] | None = None) -> tuple[float, list[float]]:
    """Send ``requests`` from ``clients`` concurrent clients; (wall seconds, per-request ms)."""
    import httpx

    queue = list(enumerate(requests))
    times: list[float] = []
    batches = [] if batches is None else batches

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"},
                                     timeout=httpx.Timeout(300.0)) as http:
            while queue:
                _, (q, docs) = queue.pop(0)
                t = time.perf_counter()
                r = await http.post("/v2/rerank", json={"model": model, "query": q, "documents": docs})
                times.append((time.perf_counter() - t) * 1000.0)
                if r.status_code != 200:
                    raise RuntimeError(f"{model}: HTTP {r.status_code}: {r.text[:300]}")
                if len(r.json()["results"]) != len(docs):
                    raise RuntimeError(f"{model}: wrong number of results")
                batches.append(int(r.headers.get("x-rerank-batch", "0")))

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - t0, times


def bench_http(queries: list[str], docs: list[tuple[str, str]], work: Path, log: Callable[[str], None],
               passages: int = 20, words: int = 100, budget_s: float = 8.0) -> Any:
    """The section's rows: per reranker, batching on / off, 1 and 8 clients."""
    from rerank_mcp.bench import benchmark as B
    from rerank_mcp.bench import shapes

    sec = B.Section(f"Rerank HTTP API: Cohere v2 requests ({passages} passages each), 1 and 8 concurrent clients, "
                    "dynamic batching on and off")
    ce_dir = shapes.build_cross_encoder(work / "shapes" / "ms-marco-MiniLM-L-6-v2")
    fr_dir = work / "shapes" / "flashrank"
    shapes.build_flashrank(fr_dir)
    texts = [" ".join(t.split()[:words]) for _, t in docs if len(t.split()) >= 30]
    reqs = [(q, [texts[(i * 7 + j * 13) % len(texts)] for j in range(passages)]) for i, q in enumerate(queries)]
    aliases = {"ce-onnx": {"reranker": "cross-encoder", "options": {"model": str(ce_dir), "backend": "onnx"}}}
    env = {"RERANK_MCP_FLASHRANK_CACHE_DIR": str(fr_dir), "RERANK_MCP_HTTP_MODELS": json.dumps(aliases)}
    results: dict[tuple[str, bool, int], dict[str, Any]] = {}
    server_log = work / "bench-http-server.log"
    load_before = os.getloadavg()[0]
    # one data dir each (the ONNX export is cached in it), so the servers never share a file
    with _server(work / "http-data-on", {**env, "RERANK_MCP_HTTP_BATCHING": "true"}, server_log) as on_url, \
            _server(work / "http-data-off", {**env, "RERANK_MCP_HTTP_BATCHING": "false"}, server_log) as off_url:
        urls = {True: on_url, False: off_url}
        for model in RERANKERS:
            one: list[float] = []
            for url in urls.values():
                asyncio.run(_drive(url, model, reqs[:4], 2))  # load the model (and export it to ONNX) once
                one += asyncio.run(_drive(url, model, reqs[4:7], 1))[1]
            per = max(median(one), 0.5) / 1000.0
            for clients in (1, 8):
                # about budget_s per setting, in ROUNDS rounds of n requests each
                n = int(min(max(budget_s / ROUNDS / per * (1 if clients == 1 else 1.5), 4), 100))
                n = max(clients, n - n % clients)
                acc = {b: {"wall": 0.0, "times": [], "batches": [], "n": 0} for b in (True, False)}
                for rnd, order in enumerate([(True, False), (False, True)] * (ROUNDS // 2)):
                    for batching in order:
                        batch = [reqs[(7 + rnd * n + i) % len(reqs)] for i in range(n)]
                        wall, times = asyncio.run(_drive(urls[batching], model, batch, clients, acc[batching]["batches"]))
                        acc[batching]["wall"] += wall
                        acc[batching]["times"] += times
                        acc[batching]["n"] += n
                for batching, a in acc.items():
                    r = {"requests": a["n"], "req/s": a["n"] / a["wall"], "p50": median(a["times"]),
                         "p95": percentile(a["times"], 95), "batch": statistics.mean(a["batches"])}
                    results[(model, batching, clients)] = r
                    log(f"   {model:9s} batching {'on ' if batching else 'off'} {clients} client(s): "
                        f"{r['req/s']:7.1f} req/s, p50 {r['p50']:7.1f} ms, p95 {r['p95']:7.1f} ms, "
                        f"mean batch {r['batch']:.1f}")
    load_after = os.getloadavg()[0]
    names = {"bm25": "bm25", "flashrank": "flashrank (TinyBERT-L-2 shape, int8 ONNX)",
             "ce-onnx": "cross-encoder (MiniLM-L-6 shape, backend onnx int8)"}
    for model in RERANKERS:
        for clients in (1, 8):
            on, off = results[(model, True, clients)], results[(model, False, clients)]
            for batching, r in (("on", on), ("off", off)):
                sec.rows.append({
                    "reranker": names[model], "clients": clients, "batching": batching, "requests": r["requests"],
                    "throughput req/s": round(r["req/s"], 1), "p50 ms": round(r["p50"], 1), "p95 ms": round(r["p95"], 1),
                    "mean batch": round(r["batch"], 1),
                    "throughput vs off": f"{r['req/s'] / off['req/s']:.2f}x" if batching == "on" else "",
                })
    sec.notes.append(
        "Server and clients on the same machine (the clients' own CPU use is included); one `rerank-mcp serve "
        "--http` process per batching setting (RERANK_MCP_HTTP_BATCHING), measured in alternating rounds; each "
        "reranker warmed up first. 'mean batch': requests per model call, from the x-rerank-batch header. "
        f"Documents: SciFact abstracts cut to {words} words; queries: SciFact claims. Latency is per request, "
        "seen by the client. 'off' still scores one request at a time per reranker (a model is never called from "
        "two threads at once); 'on' scores the requests gathered while the reranker was busy (or within "
        "RERANK_MCP_HTTP_BATCH_WAIT_MS of an idle one) in one call: flashrank and the cross-encoder put all their "
        "(query, passage) pairs into shared length-sorted model batches. bm25 has no multi-query scoring and is never "
        "gathered: its on and off rows run the same code, so their difference is this run's noise.")
    sec.notes.append(
        f"1-minute load average {load_before:.1f} when the section started and {load_after:.1f} when it ended, on "
        f"{os.cpu_count()} cores: above the core count, other processes were competing for the CPU and every figure is "
        "slower than on an idle machine (the alternating rounds keep the on / off comparison fair).")
    sec.notes.append(
        "flashrank and cross-encoder are untrained models with the published architectures (bench/shapes.py): "
        "their cost is real, their scores are not.")
    return sec
