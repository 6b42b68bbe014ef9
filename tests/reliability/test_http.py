"""The streamable HTTP transport, served by `rerank-mcp serve --http` as a real subprocess.

Bearer-token authentication, Host/Origin validation against DNS rebinding, read-only mode,
secrets kept out of logs, and 8 concurrent clients doing mixed work with nothing lost.
"""

from __future__ import annotations

import json
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.fixtures.env import offline_env
from tests.fixtures.servers import serve_http
from tests.reliability.stats import record

pytestmark = pytest.mark.slow  # HTTP server subprocesses under concurrent load

TOKEN = "s3cret-token-value-1234"
COHERE_KEY = "co-key-should-never-appear"


@contextmanager
def http_server(tmp_path: Path, **env_extra: str):
    env = offline_env(RERANK_MCP_DATA_DIR=str(tmp_path / "data"), RERANK_MCP_HTTP_TOKEN=TOKEN,
                      RERANK_MCP_COHERE_API_KEY=COHERE_KEY, RERANK_MCP_LOG_LEVEL="DEBUG", **env_extra)
    with serve_http(env, tmp_path / "server.log") as port:
        yield f"http://127.0.0.1:{port}/mcp"


def _client(url: str, token: str | None = TOKEN, **headers: str):
    h = dict(headers)
    if token:
        h["Authorization"] = f"Bearer {token}"
    http = httpx2.AsyncClient(headers=h, timeout=httpx2.Timeout(120.0))
    return http, Client(streamable_http_client(url, http_client=http))


def _raw_post(url: str, headers: dict[str, str]) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    r = httpx2.post(url, json=body, headers={"Accept": "application/json, text/event-stream", **headers}, timeout=30)
    return r.status_code


def test_auth_host_origin_and_secrets(tmp_path):
    with http_server(tmp_path) as url:
        port = url.split(":")[2].split("/")[0]
        assert _raw_post(url, {}) == 401
        assert _raw_post(url, {"Authorization": "Bearer wrong"}) == 401
        assert _raw_post(url, {"Authorization": f"Bearer {TOKEN}x"}) == 401
        ok = {"Authorization": f"Bearer {TOKEN}"}
        assert _raw_post(url, ok) == 200
        # DNS rebinding: a foreign Host or Origin is refused even with the token
        assert _raw_post(url, {**ok, "Host": f"evil.example:{port}"}) == 421
        assert _raw_post(url, {**ok, "Origin": "http://evil.example"}) == 403
        assert _raw_post(url, {**ok, "Origin": f"http://localhost:{port}"}) == 200

        async def use() -> None:
            http, client = _client(url)
            async with http, client as c:
                r = await c.call_tool("ingest", {"collection": "h", "documents": [{"id": "a", "text": "hello world"}]})
                assert not r.is_error, r.content
                r = await c.call_tool("rerank", {"query": "q", "passages": ["a", "b"], "reranker": "cohere",
                                                 "options": {"base_url": "http://127.0.0.1:9", "timeout": 2,
                                                             "max_retries": 0}})
                assert r.is_error
                assert COHERE_KEY not in r.content[0].text

        anyio.run(use)
    logs = (tmp_path / "server.log").read_text()
    assert TOKEN not in logs and COHERE_KEY not in logs


def test_read_only_mode_over_http(tmp_path):
    with http_server(tmp_path, RERANK_MCP_READ_ONLY="true") as url:
        async def use() -> set[str]:
            http, client = _client(url)
            async with http, client as c:
                names = {t.name for t in (await c.list_tools()).tools}
                r = await c.call_tool("ingest", {"documents": [{"text": "x"}]})
                assert r.is_error
                return names

        names = anyio.run(use)
    assert "ingest" not in names and "delete" not in names and "search" in names


def test_eight_concurrent_clients_mixed_work(tmp_path):
    """8 clients over streamable HTTP: ingest, search, rerank, delete, for a bounded time."""
    duration = float(os.environ.get("RERANK_MCP_SOAK_S", "8"))
    stats = {"ops": 0, "errors": [], "acked": {}, "deleted": set()}
    with http_server(tmp_path) as url:
        async def worker(w: int) -> None:
            rng = random.Random(w)
            http, client = _client(url)
            async with http, client as c:
                end = time.monotonic() + duration
                n = 0
                while time.monotonic() < end:
                    op = rng.choice(["ingest", "ingest", "search", "search", "rerank", "delete"])
                    if op == "ingest":
                        doc_id = f"w{w}-{n}"
                        n += 1
                        r = await c.call_tool("ingest", {"collection": "soak", "documents": [
                            {"id": doc_id, "text": f"worker {w} note {n}: " + " ".join(
                                rng.choice(["alpha", "beta", "gamma", "delta", "vector", "rerank"]) for _ in range(30))}]})
                        if not r.is_error:
                            stats["acked"][doc_id] = w
                    elif op == "search":
                        r = await c.call_tool("search", {"query": "alpha vector", "collection": "soak", "k": 5,
                                                         "mode": rng.choice(["bm25", "dense", "hybrid"])})
                        if r.is_error and "unknown collection" in r.content[0].text:
                            r = None  # nobody has ingested yet
                    elif op == "rerank":
                        r = await c.call_tool("rerank", {"query": "alpha", "reranker": "bm25",
                                                         "passages": [f"alpha {i}" for i in range(50)]})
                    else:
                        mine = [d for d, ww in stats["acked"].items() if ww == w and d not in stats["deleted"]]
                        if not mine:
                            continue
                        victim = rng.choice(mine)
                        r = await c.call_tool("delete", {"collection": "soak", "ids": [victim]})
                        if not r.is_error:
                            stats["deleted"].add(victim)
                    stats["ops"] += 1
                    if r is not None and r.is_error:
                        stats["errors"].append((op, r.content[0].text))

        async def responsiveness() -> float:
            """While a big rerank runs, a cheap tool still answers quickly."""
            http, client = _client(url)
            http2, client2 = _client(url)
            async with http, client as c, http2, client2 as c2:
                await c2.call_tool("list_collections", {})
                passages = [" ".join(["gamma delta"] * 100) + f" {i}" for i in range(300)]
                worst = 0.0
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda: c.call_tool("rerank", {"query": "gamma", "passages": passages,
                                                                "reranker": "embedding", "return_text": False}))
                    await anyio.sleep(0.5)
                    for _ in range(5):
                        t = time.perf_counter()
                        await c2.call_tool("list_collections", {})
                        worst = max(worst, time.perf_counter() - t)
                        await anyio.sleep(0.1)
                return worst

        async def main() -> float:
            async with anyio.create_task_group() as tg:
                for w in range(8):
                    tg.start_soon(worker, w)
            return await responsiveness()

        worst = anyio.run(main)

        async def verify() -> set[str]:
            http, client = _client(url)
            async with http, client as c:
                rr = await c.read_resource("collections://soak")
                body = json.loads(rr.contents[0].text)
                info = (await c.call_tool("list_collections", {})).structured_content["collections"]
                assert info[0]["documents"] == len(stats["acked"]) - len(stats["deleted"])
                return {d["id"] for d in body["documents"]} if info[0]["documents"] <= 100 else set()

        present = anyio.run(verify)
    assert not stats["errors"], stats["errors"][:5]
    assert stats["ops"] > 50
    if present:
        assert present == set(stats["acked"]) - stats["deleted"]
    assert worst < 0.5, f"a cheap call took {worst:.3f} s during a large rerank"
    record("concurrency", {"clients": 8, "seconds": duration, "operations": stats["ops"],
                           "unexpected_errors": len(stats["errors"]), "acknowledged_ingests": len(stats["acked"]),
                           "acknowledged_deletes": len(stats["deleted"]), "acknowledged_writes_missing": 0,
                           "worst_cheap_call_during_large_rerank_ms": round(worst * 1000, 1)})
