"""The stdio transport (server/stdio.py): asyncio pipes instead of the SDK's worker threads.

Real `rerank-mcp serve` subprocesses over real pipes, with the default transport and with
``RERANK_MCP_STDIO_TRANSPORT=sdk``: same replies, lines longer than a pipe buffer, multi-byte
characters split across reads, invalid UTF-8; stdin from a regular file falls back to the SDK
transport; stray writes to fd 1 during a session never reach the protocol stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # stdio server subprocesses

EXE = str(Path(sys.executable).with_name("rerank-mcp"))
ROOT = Path(__file__).resolve().parents[2]

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
# passages of ~50 KB with 2- and 3-byte characters: one request of ~400 KB, longer than a pipe
# buffer and than one read, so lines and characters are split across reads
BIG = [" ".join(f"Straße {i} déjà vu — naïve café ✓ {'mitochondria' if k == 5 else 'organelle'}" for i in range(900))
       for k in range(8)]


def _env(tmp_path: Path, transport: str) -> dict:
    return {**os.environ, "RERANK_MCP_DATA_DIR": str(tmp_path / f"d-{transport}"), "RERANK_MCP_LOG_LEVEL": "WARNING",
            "RERANK_MCP_STDIO_TRANSPORT": transport, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _session(tmp_path: Path, transport: str) -> dict[int, dict]:
    """Drive one server over pipes; return its replies by id."""
    proc = subprocess.Popen([EXE, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(tmp_path, transport))
    replies: dict[int, dict] = {}

    def send(obj) -> None:
        data = obj if isinstance(obj, bytes) else (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
        proc.stdin.write(data)
        proc.stdin.flush()

    def wait_for(n: int) -> dict:
        while n not in replies:
            line = proc.stdout.readline()
            assert line, proc.stderr.read().decode(errors="replace")[-2000:]
            msg = json.loads(line)  # every line on stdout is one JSON-RPC message
            assert msg["jsonrpc"] == "2.0"
            if "id" in msg:
                replies[msg["id"]] = msg
        return replies[n]

    try:
        send(INIT)
        wait_for(1)
        send(INITIALIZED)
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "ingest", "arguments": {
            "collection": "t", "documents": [{"id": "a", "text": "Mitochondria: naïve café organelles."},
                                             {"id": "b", "text": "TCP delivers an ordered byte stream."}]}}})
        wait_for(2)
        send({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "rerank", "arguments": {
            "query": "mitochondria", "passages": BIG, "reranker": "bm25", "return_text": True}}})
        wait_for(5)
        send(b"\xff\xfe not utf-8 and not json\n")  # answered with a parse error (id null); the session goes on
        send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "search", "arguments": {
            "collection": "t", "query": "naïve café mitochondria", "mode": "bm25", "k": 3}}})
        send({"jsonrpc": "2.0", "id": 4, "method": "ping"})
        wait_for(3)
        wait_for(4)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    return replies


@pytest.mark.parametrize("transport", ["asyncio", "sdk"])
def test_transport_round_trips(tmp_path, transport):
    r = _session(tmp_path, transport)
    assert r[1]["result"]["serverInfo"]["name"] == "rerank-mcp"
    ingest = r[2]["result"]
    assert not ingest.get("isError"), ingest
    assert ingest["structuredContent"]["added"] == 2
    hits = r[3]["result"]["structuredContent"]["hits"]
    assert hits and hits[0]["doc_id"] == "a" and "naïve café" in hits[0]["text"]
    assert r[4]["result"] == {}
    ranked = r[5]["result"]["structuredContent"]["passages"]
    assert ranked[0]["index"] == 5 and ranked[0]["text"] == BIG[5]  # 400 KB in, characters intact


def test_both_transports_answer_the_same(tmp_path):
    a = _session(tmp_path, "asyncio")
    b = _session(tmp_path, "sdk")
    assert a.keys() == b.keys()
    assert a[2]["result"]["structuredContent"]["added"] == b[2]["result"]["structuredContent"]["added"]
    hits = lambda r: [(h["doc_id"], h["chunk_id"], h["text"]) for h in r[3]["result"]["structuredContent"]["hits"]]  # noqa: E731
    assert hits(a) == hits(b)


def test_stdin_from_a_regular_file_uses_the_sdk_transport(tmp_path):
    """asyncio cannot watch a regular file; the server falls back and still answers."""
    requests = tmp_path / "requests.jsonl"
    # only initialize: the SDK answers it inline, while requests still in flight at end of input
    # are cancelled when the session closes
    requests.write_text(json.dumps(INIT) + "\n")
    with open(requests, "rb") as stdin:
        proc = subprocess.Popen([EXE, "serve"], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**_env(tmp_path, "asyncio"), "RERANK_MCP_LOG_LEVEL": "DEBUG"})
        out, err = proc.communicate(timeout=120)
    replies = {m["id"]: m for m in map(json.loads, out.decode().splitlines()) if "id" in m}
    assert replies[1]["result"]["serverInfo"]["name"] == "rerank-mcp", err.decode()[-2000:]
    assert b"not pipes" in err


def test_stray_stdout_writes_do_not_reach_the_stream():
    """While the transport holds the pipes, fd 1 points at stderr: a print (or a child process)
    cannot corrupt the protocol stream. Afterwards fd 1 is the original stdout again."""
    code = r'''
import asyncio, os, sys
sys.path.insert(0, sys.argv[1])
from rerank_mcp.server.stdio import stdio_streams

async def main():
    async with stdio_streams() as streams:
        assert streams is not None
        lines, writer = streams
        print("stray print", flush=True)
        os.write(1, b"stray fd write\n")
        async for line in lines:
            await writer.write("echo:" + line)
            await writer.flush()
    os.write(1, b"after\n")

asyncio.run(main())
'''
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT)], input=b"one\ntwo\xc3\xa9\nthree", capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode() == "echo:one\necho:twoé\necho:threeafter\n"
    assert "stray print" in proc.stderr.decode() and "stray fd write" in proc.stderr.decode()


def test_stdin_from_dev_null_exits_cleanly(tmp_path):
    """epoll refuses /dev/null: the server must notice, fall back, read end of input and exit."""
    with open(os.devnull, "rb") as stdin:
        proc = subprocess.run([EXE, "serve"], stdin=stdin, capture_output=True, env=_env(tmp_path, "asyncio"),
                              timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout == b"" and b"Traceback" not in proc.stderr
