"""`rerank-mcp serve` as a real stdio subprocess, driven by an MCP client session.

Covers what Claude Desktop and IDE integrations do: start the command, list tools, call
every tool, and the restart guarantee: ingest, stop the server, start it again, and the
same search returns the same hits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.fixtures.env import model_caches

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # slow: stdio server subprocesses

EXE = str(Path(sys.executable).with_name("rerank-mcp"))


def _params(data_dir: Path, root: Path) -> StdioServerParameters:
    env = {
        **model_caches(),
        "RERANK_MCP_DATA_DIR": str(data_dir),
        "RERANK_MCP_ALLOWED_ROOTS": json.dumps([str(root)]),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ORT_DISABLE_TELEMETRY": "1",
        "HOME": os.environ.get("HOME", "/tmp"),
        "PATH": os.environ.get("PATH", ""),
    }
    return StdioServerParameters(command=EXE, args=["serve"], env=env)


DOCS = [
    {"id": f"d{i}", "text": t}
    for i, t in enumerate(
        [
            "Mitochondria are the powerhouse of the cell and produce ATP.",
            "The Treaty of Westphalia ended the Thirty Years' War in 1648.",
            "Gradient descent minimises a loss function by following its negative gradient.",
            "Photosynthesis converts light energy into chemical energy in chloroplasts.",
            "TCP provides reliable, ordered delivery of a stream of bytes.",
        ]
    )
]


async def test_stdio_all_tools_and_restart(tmp_path):
    data, root = tmp_path / "data", tmp_path / "files"
    root.mkdir()
    (root / "a.txt").write_text("Reciprocal rank fusion combines ranked lists by summing 1/(k+rank).")
    params = _params(data, root)
    queries = ["which organelle produces ATP", "optimising neural networks", "reliable network protocol"]
    async with Client(params) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert {"ingest", "search", "rerank", "list_collections", "list_rerankers", "delete"} <= names
        r = await c.call_tool("ingest", {"collection": "s", "documents": DOCS})
        assert not r.is_error and r.structured_content["added"] == 5
        r = await c.call_tool("ingest", {"collection": "s", "paths": [str(root / "a.txt")]})
        assert not r.is_error and r.structured_content["added"] == 1
        before = {}
        for q in queries:
            r = await c.call_tool("search", {"query": q, "collection": "s", "k": 3})
            assert not r.is_error
            before[q] = [(h["chunk_id"], h["doc_id"]) for h in r.structured_content["hits"]]
        assert before[queries[0]][0][1] == "d0"
        r = await c.call_tool("rerank", {"query": "war", "passages": [d["text"] for d in DOCS], "reranker": "bm25"})
        assert r.structured_content["passages"][0]["index"] == 1
        r = await c.call_tool("list_rerankers", {})
        assert not r.is_error
        r = await c.call_tool("list_collections", {})
        assert r.structured_content["collections"][0]["documents"] == 6
    # the server process has exited; start a fresh one on the same data
    async with Client(params) as c:
        for q in queries:
            r = await c.call_tool("search", {"query": q, "collection": "s", "k": 3})
            assert [(h["chunk_id"], h["doc_id"]) for h in r.structured_content["hits"]] == before[q]
        r = await c.call_tool("delete", {"collection": "s", "ids": ["d0"]})
        assert r.structured_content["deleted_documents"] == ["d0"]
    async with Client(params) as c:
        r = await c.call_tool("search", {"query": queries[0], "collection": "s", "k": 6})
        assert "d0" not in [h["doc_id"] for h in r.structured_content["hits"]]


def test_stdout_carries_only_protocol(tmp_path):
    """Everything the server writes to stdout must be JSON-RPC: logs go to stderr."""
    root = tmp_path / "files"
    root.mkdir()
    env = {**os.environ, "RERANK_MCP_DATA_DIR": str(tmp_path / "d"), "RERANK_MCP_LOG_LEVEL": "DEBUG",
           "HF_HUB_OFFLINE": "1"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    proc = subprocess.run([EXE, "serve"], input=json.dumps(init) + "\n", capture_output=True, text=True,
                          env=env, timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines, proc.stderr[-2000:]
    for ln in lines:
        msg = json.loads(ln)
        assert msg["jsonrpc"] == "2.0"
    assert json.loads(lines[0])["result"]["serverInfo"]["name"] == "rerank-mcp"


@pytest.mark.skipif(shutil.which("npx") is None, reason="needs Node.js (npx) for the MCP Inspector CLI")
def test_mcp_inspector_cli_lists_tools_and_calls_search(tmp_path):
    """The MCP Inspector CLI (the README's commands) talks to the server over stdio."""
    data = tmp_path / "data"
    env = {**os.environ, "RERANK_MCP_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}
    subprocess.run([EXE, "ingest", "--text", "Inspector test document about rerankers.", "--id", "t1",
                    "-c", "default"], env=env, check=True, capture_output=True, timeout=300)
    base = ["npx", "-y", "@modelcontextprotocol/inspector@0.15.0", "--cli",
            "-e", f"RERANK_MCP_DATA_DIR={data}", "-e", "HF_HUB_OFFLINE=1", EXE, "serve"]
    try:
        out = subprocess.run(base + ["--method", "tools/list"], env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip("the npm registry did not answer in time")
    if out.returncode != 0 and ("ENOTFOUND" in out.stderr or "EAI_AGAIN" in out.stderr):
        pytest.skip("npm registry unreachable")
    assert out.returncode == 0, out.stderr[-2000:]
    names = {t["name"] for t in json.loads(out.stdout)["tools"]}
    assert {"ingest", "search", "rerank"} <= names
    # bm25 mode: the Inspector gives up after 10 s, and on a loaded CI machine the first hybrid search
    # (which loads the embedding model) can take longer than that
    out = subprocess.run(base + ["--method", "tools/call", "--tool-name", "search", "--tool-arg", "query=rerankers",
                                 "--tool-arg", "k=1", "--tool-arg", "mode=bm25"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    assert res.get("isError") in (None, False), res
    assert res["structuredContent"]["hits"][0]["doc_id"] == "t1"
