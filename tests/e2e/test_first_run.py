"""No silent first run: with a fresh data dir and an empty ONNX cache, the default embedding
model's one-time ONNX export starts when the server starts, in a process that outlives a short
session; a call that waits for it streams progress notifications saying so; a server (and its
export) killed in the middle leaves nothing half-written that is ever loaded, and the next start
does the work again. These run the real export of the packaged default model (torch + ONNX
Runtime), tens of seconds each on 2 cores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.fixtures.env import model_caches

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(900)]

EXE = str(Path(sys.executable).with_name("rerank-mcp"))
DOCS = [{"id": "d1", "text": "Mitochondria produce ATP, the energy currency of the cell."},
        {"id": "d2", "text": "The Treaty of Westphalia ended the Thirty Years' War in 1648."}]



def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **model_caches(),
        "RERANK_MCP_DATA_DIR": str(tmp_path / "data"), "RERANK_MCP_ONNX_CACHE_DIR": str(tmp_path / "onnx"),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1",
        "HOME": os.environ.get("HOME", "/tmp"), "PATH": os.environ.get("PATH", ""),
    }


def _exports(cache: Path) -> list[Path]:
    return sorted(cache.glob("encoder-*.onnx")) if cache.exists() else []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of a child that has exited counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _short_session(env: dict[str, str]) -> None:
    """What an Inspector `tools/list` does: initialize, list the tools, close."""
    p = subprocess.Popen([EXE, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=env, text=True)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    p.stdin.write(json.dumps(init) + "\n")
    p.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}) + "\n")
    p.stdin.flush()
    for _ in range(2):
        assert p.stdout.readline()
    p.stdin.close()
    assert p.wait(30) == 0


def test_export_outlives_a_short_session(tmp_path):
    env = _env(tmp_path)
    cache = tmp_path / "onnx"
    t0 = time.monotonic()
    _short_session(env)
    assert time.monotonic() - t0 < 25  # the session did not wait for the export
    assert _exports(cache) == []  # not made yet: it goes on after the server has gone
    _wait(lambda: "ready:" in (cache / "prepare.log").read_text(), 600, "the export to finish after the session ended")
    assert len(_exports(cache)) == 1
    assert [p for p in cache.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")] == []


async def test_killed_preparation_restarts_and_first_ingest_streams_progress(tmp_path):
    env = _env(tmp_path)
    cache = tmp_path / "onnx"
    server = subprocess.Popen([EXE, "serve"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    try:
        # the export starts with the server, before any call: its lock names the exporting process
        _wait(lambda: any(cache.glob(".encoder-*.lock")) and any(p.read_text().strip() for p in
                                                                 cache.glob(".encoder-*.lock")), 120, "the export")
        lock = next(cache.glob(".encoder-*.lock"))
        exporter = int(lock.read_text())
        assert exporter != server.pid and _pid_alive(exporter)
        time.sleep(3)  # well into the export
        server.send_signal(signal.SIGKILL)
        os.kill(exporter, signal.SIGKILL)
    finally:
        server.kill()
        server.wait(30)
    _wait(lambda: not _pid_alive(exporter), 30, "the exporter to die")
    assert _exports(cache) == []  # nothing half-written under the final name

    notes: list[tuple[float, str]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        notes.append((time.monotonic(), message or ""))

    params = StdioServerParameters(command=EXE, args=["serve"], env=env)
    async with Client(params) as c:
        sent = time.monotonic()
        r = await c.call_tool("ingest", {"collection": "kb", "documents": DOCS}, progress_callback=progress)
        done = time.monotonic()
        assert not r.is_error, r.content
        assert r.structured_content["added"] == 2
        r = await c.call_tool("search", {"query": "what makes ATP", "collection": "kb", "mode": "dense", "k": 1})
        assert r.structured_content["hits"][0]["doc_id"] == "d1"
    waits = [(t, m) for t, m in notes if "waiting for the embedding model" in m]
    assert waits, notes
    assert any("ONNX" in m for _, m in waits)
    times = [sent, *(t for t, _ in waits)]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) <= 2.0, gaps
    assert done - waits[-1][0] <= 2.0 + 15  # notes went on until the model was there (its load takes a moment)
    assert len(_exports(cache)) == 1
    assert [p for p in cache.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")] == []
    # both exports ran in the background process (whose log this is), the second to the end: the
    # ingest sent right after initialize waited for it rather than exporting in the server
    log = (cache / "prepare.log").read_text()
    assert log.count("exporting") == 2 and log.count("ready:") == 1, log


def test_models_pull_prepares_the_default_model_ahead(tmp_path):
    env = _env(tmp_path)
    cache = tmp_path / "onnx"
    p = subprocess.run([EXE, "models", "pull", "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["state"] == "ready" and info["backend"] == "onnx-smooth-l0"
    assert [str(x) for x in _exports(cache)] == [info["location"]] and info["size_bytes"] > 1_000_000
    assert "exporting to ONNX" in p.stderr
    # a server started afterwards has nothing to prepare: no export process, the first ingest is quick
    _short_session(env)
    assert not (cache / "prepare.log").exists()
    p = subprocess.run([EXE, "models", "pull"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "ready" in p.stdout and "exporting" not in p.stderr
