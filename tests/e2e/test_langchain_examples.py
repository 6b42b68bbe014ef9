"""The examples/ LangChain pipelines against a live `rerank-mcp serve --http`: CohereRerank in a
ContextualCompressionRetriever with its client pointed at /v2/rerank, and the MCP tools loaded
with langchain-mcp-adapters (over streamable HTTP, with the bearer token).

The LangChain packages (langchain-cohere, langchain-classic, langchain-mcp-adapters: about 220 MB
with their dependencies) are not in the test extra: the examples run with this interpreter when
it has them, or with the one named by RERANK_MCP_LANGCHAIN_PYTHON (a virtualenv with only those
packages: the examples are clients and do not import rerank_mcp); otherwise the tests are skipped
with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fixtures.env import model_caches, offline_env
from tests.fixtures.servers import models_answer, serve_http

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "langchain-example-token"


def _python(modules: list[str]) -> str:
    py = os.environ.get("RERANK_MCP_LANGCHAIN_PYTHON") or sys.executable
    probe = subprocess.run([py, "-c", "import " + ", ".join(modules)], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"needs {', '.join(m.replace('_', '-') for m in modules)} (pip install them, or set "
                    "RERANK_MCP_LANGCHAIN_PYTHON to an interpreter that has them)")
    return py



@contextmanager
def _server(tmp: Path):
    env = offline_env(RERANK_MCP_DATA_DIR=str(tmp / "data"), RERANK_MCP_HTTP_TOKEN=TOKEN, RERANK_MCP_ANALYZER="english",
                      RERANK_MCP_HTTP_MODELS=json.dumps({"rerank-v3.5": {"reranker": "bm25"}}))
    with serve_http(env, tmp / "server.log", ready=models_answer(TOKEN), cwd=tmp) as port:
        yield f"http://127.0.0.1:{port}"


def _run(py: str, script: str, url: str, *args: str) -> str:
    env = {**model_caches(), "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "RERANK_MCP_URL": url,
           "RERANK_MCP_HTTP_TOKEN": TOKEN}
    p = subprocess.run([py, str(ROOT / "examples" / script), *args], env=env, capture_output=True, text=True,
                       timeout=300, cwd=ROOT / "examples")
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_cohere_rerank_retriever_against_v2_rerank(tmp_path):
    py = _python(["langchain_cohere", "langchain_classic"])
    with _server(tmp_path) as url:
        out = _run(py, "langchain_cohere_rerank.py", url)
    lines = out.strip().splitlines()
    assert len(lines) == 3  # top_n
    assert "cross-encoder reads the query" in lines[0]  # bm25 (the rerank-v3.5 alias here) ranks it first
    scores = [float(ln.split()[0]) for ln in lines]
    assert scores == sorted(scores, reverse=True)


def test_mcp_tools_through_langchain_mcp_adapters(tmp_path):
    py = _python(["langchain_mcp_adapters"])
    with _server(tmp_path) as url:
        out = _run(py, "langchain_mcp_tools.py", url)
        again = _run(py, "langchain_mcp_tools.py", url)  # the same documents: unchanged the second time
    assert "ingest" in out and "search" in out and "rerank" in out
    assert "ingest: {'added': 3, 'updated': 0, 'unchanged': 0}" in out
    assert "ingest: {'added': 0, 'updated': 0, 'unchanged': 3}" in again
    assert out.splitlines()[2].startswith("search: rrf ")
    assert "rerank: [1, " in out
