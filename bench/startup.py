"""``rerank-mcp bench --sections startup``: cold start, first call and steady state of ``serve``.

Each round starts ``rerank-mcp serve`` (stdio) as a new process on an empty data directory and
times, from the moment the process is spawned:

- ``initialize``: until the answer to ``initialize`` arrives (interpreter start, imports,
  settings, the index opened, the MCP session ready);
- the first ``ingest`` (a few short documents) sent right after ``initialize``: the call that
  pays for loading the embedding model, unless the background warm-up has already done so;
- the first ``search`` (hybrid) after that, and steady-state ingest and search calls.

Rounds are measured for the torch backend and the configured default, in alternation, so a
change in the machine's load weighs on both. The ONNX export a backend needs is made once,
before the rounds, into a shared folder (it is a one-time cost per model, reported apart).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rerank_mcp.tools.metrics import median

GOALS = {"initialize": 1000.0, "first call": 2000.0}


class _Client:
    """A bare JSON-RPC client on a server's stdio (no SDK: its own cost would be counted)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.n = 0

    def call(self, method: str, params: dict | None = None) -> dict:
        self.n += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self.n, "method": method}
        if params is not None:
            msg["params"] = params
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the server closed its stdout")
            reply = json.loads(line)
            if reply.get("id") == self.n:
                if "error" in reply or (reply.get("result") or {}).get("isError"):
                    raise RuntimeError(f"{method} failed: {str(reply)[:400]}")
                return reply

    def notify(self, method: str) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": method}) + "\n")
        self.proc.stdin.flush()

    def tool(self, name: str, arguments: dict) -> dict:
        return self.call("tools/call", {"name": name, "arguments": arguments})


def _cpu_ms(pid: int) -> float:
    """CPU time (user + system, all threads) the process has used so far, in ms; NaN where unknown.

    On a shared machine wall times stretch with other people's load; CPU time much less so."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _loadavg() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "unknown"


def _docs(prefix: str, n: int = 8) -> list[dict]:
    return [{"id": f"{prefix}-{i}", "text": f"Document {i} of {prefix}: retrieval with dense vectors and BM25, "
             f"fused and reranked; item {i * 7} mentions proteins, cells and clinical trials."} for i in range(n)]


def one_round(exe: str, data_dir: Path, onnx_dir: Path, env_extra: dict[str, str], first: str,
              steady_calls: int = 10) -> dict[str, float]:
    """Times (ms from spawning the process) for one fresh server; ``first`` is ``ingest`` or ``search``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RERANK_MCP_DATA_DIR": str(data_dir), "RERANK_MCP_LOG_LEVEL": "WARNING",
           "RERANK_MCP_ONNX_CACHE_DIR": str(onnx_dir), **env_extra}
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen([exe, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)
    c = _Client(proc)
    ms = lambda: (time.perf_counter() - t0) * 1000  # noqa: E731
    try:
        c.call("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                              "clientInfo": {"name": "bench-startup", "version": "0"}})
        out["initialize"] = ms()
        out["initialize cpu"] = _cpu_ms(proc.pid)
        c.notify("notifications/initialized")
        search = {"query": "clinical trials of proteins", "collection": "s", "k": 5, "mode": "hybrid"}
        t = time.perf_counter()
        if first == "search":
            c.tool("search", search)
        else:
            c.tool("ingest", {"collection": "s", "documents": _docs("first")})
        out["first call"] = (time.perf_counter() - t) * 1000
        out["first call, from spawn"] = ms()
        out["first call cpu"] = _cpu_ms(proc.pid)
        ing, srch = [], []
        for i in range(steady_calls):
            t = time.perf_counter()
            c.tool("ingest", {"collection": "s", "documents": _docs(f"steady{i}")})
            ing.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            c.tool("search", search)
            srch.append((time.perf_counter() - t) * 1000)
        if steady_calls:
            out["steady ingest"] = median(ing)
            out["steady search"] = median(srch)
        return out
    finally:
        assert proc.stdin
        proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def bench_startup(settings: Any, work: Path, log: Callable[[str], None], rounds: int = 3) -> Any:
    from rerank_mcp.bench.benchmark import Section
    from rerank_mcp.index.embedding import load_embedder

    exe = str(Path(sys.executable).with_name("rerank-mcp"))
    default = settings.embedding_backend
    backends = ["torch"] if default == "torch" else [default, "torch"]
    onnx_dir = work / "startup-onnx"
    notes = []
    for b in backends:
        if b != "torch":
            t = time.perf_counter()
            load_embedder(settings.embedding_model, b, cache_dir=onnx_dir)
            notes.append(f"one-time ONNX export for {b} (the first use of the model with an empty ONNX cache "
                         f"folder; the rounds share the export): {time.perf_counter() - t:.1f} s, before the rounds")
    sec = Section("Start-up: cold start, first call and steady state of `rerank-mcp serve` (stdio)")
    per: dict[tuple[str, str], list[dict[str, float]]] = {}
    load_before = _loadavg()
    for r in range(rounds):
        for b in (backends if r % 2 == 0 else backends[::-1]):
            for first in ("ingest", "search"):
                d = Path(tempfile.mkdtemp(prefix=f"startup-{b}-", dir=work))
                if first == "search":  # a collection to search: built by an earlier server
                    one_round(exe, d, onnx_dir, {"RERANK_MCP_EMBEDDING_BACKEND": b}, "ingest", steady_calls=0)
                res = one_round(exe, d, onnx_dir, {"RERANK_MCP_EMBEDDING_BACKEND": b}, first)
                per.setdefault((b, first), []).append(res)
                log(f"   {b}, first {first}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in res.items()))
    for (b, first), runs in per.items():
        med = {k: median(r[k] for r in runs) for k in runs[0]}
        sec.rows.append({
            "backend": b + (" (default)" if b == default else ""), "first call": first,
            "initialize ms": round(med["initialize"]),
            "initialize, CPU ms": round(med["initialize cpu"]),
            "first call ms": round(med["first call"]),
            "first answered, ms from spawn": round(med["first call, from spawn"]),
            "first answered, CPU ms": round(med["first call cpu"]),
            "steady ingest ms": round(med["steady ingest"], 1), "steady search ms": round(med["steady search"], 1),
            "goals met": "yes" if med["initialize"] <= GOALS["initialize"] and med["first call"] <= GOALS["first call"] else "no",
        })
    sec.notes += notes
    sec.notes.append(
        f"Medians of {rounds} rounds, each a new process on an empty data directory (a search round: on one "
        "that an earlier server filled). 'initialize' and 'first answered' count from spawning the process; "
        "'first call' counts from sending it, right after initialize. Steady state: medians of 10 ingests of "
        "8 short documents and 10 hybrid searches. CPU: user + system time of the server process (all its "
        "threads) up to that answer, which a busy machine stretches less than wall time. Goals: initialize "
        "<= 1 s, first ingest or search <= 2 s (wall).")
    sec.notes.append(f"Load average (1, 5, 15 min) of the machine before the rounds: {load_before}; after: {_loadavg()}.")
    return sec


def bench_fresh_install(settings: Any, work: Path, log: Callable[[str], None], rounds: int = 1) -> Any:
    """The first calls of a fresh install: ``serve`` on an empty ONNX cache folder, as after
    installing (no ``rerank-mcp models pull`` beforehand), so the first call that embeds waits for
    the model's one-time export, which the server starts in the background at its start."""
    from rerank_mcp.bench.benchmark import Section

    exe = str(Path(sys.executable).with_name("rerank-mcp"))
    b = settings.embedding_backend
    shared = work / "startup-onnx"  # filled by bench_startup: builds the data directory a first search reads
    sec = Section("Fresh install: the first calls with an empty ONNX cache (the export made while they wait)")
    load_before = _loadavg()
    per: dict[str, list[dict[str, float]]] = {}
    for _ in range(rounds):
        for first in ("ingest", "search"):
            d = Path(tempfile.mkdtemp(prefix=f"fresh-{b}-", dir=work))
            empty = Path(tempfile.mkdtemp(prefix="fresh-onnx-", dir=work))
            env = {"RERANK_MCP_EMBEDDING_BACKEND": b}
            if first == "search":  # a collection to search, built by an earlier server with the model ready
                one_round(exe, d, shared, env, "ingest", steady_calls=0)
            res = one_round(exe, d, empty, env, first, steady_calls=3)
            per.setdefault(first, []).append(res)
            log(f"   fresh {b}, first {first}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in res.items()))
    for first, runs in per.items():
        med = {k: median(r[k] for r in runs) for k in runs[0]}
        sec.rows.append({
            "backend": b, "first call": first, "initialize ms": round(med["initialize"]),
            "first call ms": round(med["first call"]), "first answered, ms from spawn": round(med["first call, from spawn"]),
            "first answered, CPU ms": round(med["first call cpu"]),
            "then ingest ms": round(med["steady ingest"], 1), "then search ms": round(med["steady search"], 1),
        })
    sec.notes.append(
        f"{'Medians of ' + str(rounds) + ' rounds' if rounds > 1 else 'One round'}, each a new `rerank-mcp serve` on an "
        "empty ONNX cache folder (RERANK_MCP_ONNX_CACHE_DIR) and an empty data directory (a search round: one that an "
        "earlier server filled). The server starts the export in a background process when it starts; the first call "
        "that embeds waits for it, with progress notifications every 0.5 s. 'first answered' counts from spawning the "
        "process. CPU: the server process only (the export runs in its own process). `rerank-mcp models pull` (or "
        "`scripts/serve`'s set-up) makes the export ahead of time; then the first calls are those of the table above.")
    sec.notes.append(f"Load average (1, 5, 15 min) of the machine before the rounds: {load_before}; after: {_loadavg()}.")
    return sec
