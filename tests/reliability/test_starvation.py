"""Shared resources under a flood, against `rerank-mcp serve` as a real subprocess.

- stdio: a client that stops reading its replies makes the server stop reading requests once
  a bounded number of replies wait to be written (backpressure): the client's writes block, the
  server's memory stays flat, and every request sent is answered once the client reads again.
  (Before: the server read and ran all of them, holding each reply: 94,512 unread pings took it
  from 87 MB to 1.08 GB.)
- HTTP: one client flooding the server with slow tool calls (reranks by a Cohere endpoint the
  operator configured, here a local fake that takes 3 s per request, so that the flood costs
  no CPU) neither delays another client's list_collections (light calls run apart) nor its
  search (each client, an MCP session, gets at most RERANK_MCP_MAX_CALLS_PER_CLIENT of the
  RERANK_MCP_MAX_CONCURRENT_CALLS heavy slots).
  (Before: all tool work shared anyio's 40 threads; the other client waited for the flood.)
"""

from __future__ import annotations

import json
import threading
import time

import anyio
import httpx2
import psutil
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.test_stdio_transport import EXE
from tests.fixtures.env import offline_env
from tests.fixtures.servers import FakeCohere, serve_http
from tests.fixtures.stdio_process import INIT, INITIALIZED

pytestmark = pytest.mark.slow

PINGS = 20_000


def test_stdio_client_that_stops_reading_gets_backpressure(tmp_path):
    import subprocess

    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([EXE, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                            env=offline_env(RERANK_MCP_DATA_DIR=str(tmp_path / "data"), RERANK_MCP_LOG_LEVEL="WARNING"))
    writer = None
    try:
        proc.stdin.write((json.dumps(INIT) + "\n").encode())
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == 1
        proc.stdin.write((json.dumps(INITIALIZED) + "\n").encode())
        # one ingest first: the embedding model is loaded before memory is measured
        proc.stdin.write((json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "ingest", "arguments": {"collection": "kb", "documents": [{"text": "hello"}]}}}) + "\n").encode())
        proc.stdin.flush()
        while json.loads(proc.stdout.readline()).get("id") != 2:  # notifications come first
            pass
        rss0 = psutil.Process(proc.pid).memory_info().rss
        sent = [0]

        def flood() -> None:  # stops once the server stops reading: the pipe fills and write blocks
            try:
                for i in range(PINGS):
                    proc.stdin.write(b'{"jsonrpc": "2.0", "id": %d, "method": "ping"}\n' % (1000 + i))
                    sent[0] = i + 1
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

        writer = threading.Thread(target=flood, daemon=True)
        writer.start()
        writer.join(15)  # we read nothing meanwhile
        stalled_at = sent[0]
        rss1 = psutil.Process(proc.pid).memory_info().rss
        assert writer.is_alive() and stalled_at < PINGS // 2, f"the server read {stalled_at} unanswerable pings"
        assert rss1 - rss0 < 60 << 20, f"RSS grew by {(rss1 - rss0) >> 20} MB"

        # the client reads again: everything it sent is answered, in full
        seen = 0
        deadline = time.monotonic() + 120
        while seen < PINGS and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, (tmp_path / "server.log").read_text()[-2000:]
            msg = json.loads(line)
            assert msg.get("result") == {}, msg
            seen += 1
        writer.join(30)
        assert not writer.is_alive() and seen == PINGS
        print(f"stdio: writes stalled after {stalled_at} pings; RSS +{(rss1 - rss0) >> 20} MB while stalled")
    finally:
        if writer is not None and writer.is_alive():
            proc.kill()  # unblocks the writer: closing stdin under its blocked write would hang
            writer.join(10)
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        log.close()
    stderr = (tmp_path / "server.log").read_text()
    assert rc == 0 and "Traceback" not in stderr, stderr[-2000:]


KEY = "co-flood-key"
FLOOD = 90
SLOW_S = 3.0


def test_http_flood_of_heavy_calls_does_not_starve_another_client(tmp_path):
    with FakeCohere(KEY) as cohere:
        cohere.script = [("slow", SLOW_S)] * (FLOOD * 4)
        env = offline_env(RERANK_MCP_DATA_DIR=str(tmp_path / "data"), RERANK_MCP_COHERE_API_KEY=KEY,
                          RERANK_MCP_COHERE_BASE_URL=cohere.base_url, RERANK_MCP_LOG_LEVEL="WARNING",
                          RERANK_MCP_MAX_CONCURRENT_CALLS="8", RERANK_MCP_MAX_CALLS_PER_CLIENT="4")
        with serve_http(env, tmp_path / "server.log") as port:
            url = f"http://127.0.0.1:{port}/mcp"
            timings = anyio.run(_flood_and_probe, url)
    light, search = timings
    print(f"http: during a flood of {FLOOD} slow calls: list_collections worst {max(light):.2f} s, "
          f"another client's search {search:.2f} s")
    assert max(light) < 1.0, light
    assert search < SLOW_S, search


async def _flood_and_probe(url: str) -> tuple[list[float], float]:
    def client():
        http = httpx2.AsyncClient(timeout=httpx2.Timeout(300.0))
        # the initialize handshake gives each client an MCP session, which the server tells apart
        return http, Client(streamable_http_client(url, http_client=http), mode="legacy")

    http_a, flooder = client()
    http_b, other = client()
    async with http_a, flooder as a, http_b, other as b:
        r = await b.call_tool("ingest", {"collection": "kb", "documents": [{"id": "x", "text": "hello world"}]})
        assert not r.is_error, r.content
        light: list[float] = []
        search = -1.0
        async with anyio.create_task_group() as tg:
            for i in range(FLOOD):
                tg.start_soon(a.call_tool, "rerank", {"query": "q", "passages": [f"p{i} rel=1", "other"],
                                                      "reranker": "cohere"})
            await anyio.sleep(1.0)  # the flood is running
            t = time.perf_counter()
            r = await b.call_tool("search", {"query": "hello", "collection": "kb", "mode": "bm25"})
            search = time.perf_counter() - t
            assert not r.is_error, r.content
            for _ in range(5):
                t = time.perf_counter()
                r = await b.call_tool("list_collections", {})
                light.append(time.perf_counter() - t)
                assert not r.is_error, r.content
            tg.cancel_scope.cancel()  # no need to wait for the flood
    return light, search
