"""The HTTP server's request guards, over real HTTP to `rerank-mcp serve --http` as a subprocess:
the Host / Origin check against DNS rebinding matches the port as digits."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.fixtures.env import offline_env
from tests.fixtures.servers import serve_http

pytestmark = pytest.mark.slow  # an HTTP server subprocess

TOKEN = "guard-token-0123456789"


def _raw(port: int, path: str, headers: dict[str, str], body: dict) -> int:
    """One HTTP/1.1 POST written byte for byte (no client library rewrites the Host header)."""
    data = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", "Content-Type: application/json", "Accept: application/json, text/event-stream",
            f"Content-Length: {len(data)}", "Connection: close", f"Authorization: Bearer {TOKEN}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        reply = b""
        while b"\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ", 2)[1])


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
RERANK = {"query": "q", "documents": ["a", "b"], "model": "bm25"}


def test_host_and_origin_ports_must_be_digits(tmp_path: Path):
    env = offline_env(RERANK_MCP_DATA_DIR=str(tmp_path / "data"), RERANK_MCP_HTTP_TOKEN=TOKEN)
    with serve_http(env, tmp_path / "server.log") as port:
        for path, body in (("/mcp", INIT), ("/v2/rerank", RERANK)):
            assert _raw(port, path, {"Host": f"127.0.0.1:{port}"}, body) == 200, path
            for host in (f"127.0.0.1:{port}@evil.example", f"localhost:{port}.evil.example", "127.0.0.1:x",
                         f"[::1]:{port}/evil", "127.0.0.1:", f"127.0.0.1:{port} evil"):
                assert _raw(port, path, {"Host": host}, body) == 421, (path, host)
            assert _raw(port, path, {"Host": f"127.0.0.1:{port}", "Origin": f"http://localhost:{port}"}, body) == 200
            for origin in (f"http://127.0.0.1:{port}@evil.example", f"http://localhost:{port}.evil.example"):
                assert _raw(port, path, {"Host": f"127.0.0.1:{port}", "Origin": origin}, body) == 403, (path, origin)
