"""compare_rerankers through a real in-memory MCP client, and `rerank-mcp compare` as a CLI.

bm25 and embedding (the packaged all-MiniLM-L6-v2, offline) are real; flashrank runs the
seeded fixture model (its scores are meaningless, its plumbing is real).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from rerank_mcp.tools.compare import kendall_tau, ndcg_at_k, overlap_at_k, parse_spec
from tests.conftest import shared_embedder

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXE = str(Path(sys.executable).with_name("rerank-mcp"))
QUERY = "vitamin d deficiency and bone fractures"
PASSAGES = [
    {"id": "fox", "text": "The quick brown fox jumps over the lazy dog."},
    {"id": "vitd", "text": "Vitamin D deficiency is associated with bone fractures in older adults."},
    {"id": "faiss", "text": "FAISS performs efficient similarity search over dense vectors."},
    {"id": "bone", "text": "Low bone density raises the risk of fractures."},
    {"id": "sun", "text": "Sunlight lets the skin make vitamin D."},
]


@pytest.fixture(scope="module")
def flashrank_cache(tmp_path_factory) -> str:
    from tests.fixtures.models import build_flashrank

    cache = tmp_path_factory.mktemp("compare-models") / "flashrank"
    build_flashrank(cache)
    return str(cache)


# ----------------------------------------------------------------------------- metrics


def test_metrics():
    from scipy.stats import kendalltau

    x = [3.0, 1.0, 2.0, 2.0, 5.0, 0.0]
    y = [2.5, 0.5, 0.5, 3.0, 4.0, 1.0]
    assert kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic)
    assert kendall_tau(x, x) == pytest.approx(1.0)
    assert kendall_tau(x, [-v for v in x]) == pytest.approx(-1.0)
    assert kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    assert overlap_at_k([1, 2, 3, 4], [3, 1, 5, 6], 2) == 0.5
    # nDCG@3 with linear gains: ideal 2, 1; ranked 1 (rel 1) then 0 (rel 2)
    assert ndcg_at_k([1, 0, 2], {0: 2.0, 1: 1.0}, 3) == pytest.approx((1 + 2 / 1.5849625) / (2 + 1 / 1.5849625))
    assert ndcg_at_k([0, 1], {0: 0.0}, 2) is None
    assert parse_spec("embedding(blend=0.5)").options == {"blend": 0.5}
    assert parse_spec('cross-encoder={"backend": "onnx"}').options == {"backend": "onnx"}
    assert parse_spec({"reranker": "bm25", "label": "lexical"}).label == "lexical"


# ----------------------------------------------------------------------------- MCP



@pytest.mark.anyio
async def test_compare_through_mcp(settings, flashrank_cache):
    s = settings.model_copy(update={"flashrank_cache_dir": Path(flashrank_cache)})
    async with Client(build_server(s, embedder_factory=shared_embedder(s))) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        t = tools["compare_rerankers"]
        assert t.annotations.read_only_hint is True and t.annotations.destructive_hint is False
        assert t.output_schema is not None
        r = await c.call_tool("compare_rerankers", {
            "query": QUERY, "passages": PASSAGES,
            "rerankers": ["bm25", "embedding", {"reranker": "flashrank", "label": "fr"}, "embedding(blend=0.5)"],
            "judgments": {"vitd": 2, "bone": 1, "4": 1}, "k": 3,
        })
        assert not r.is_error, r.content
        out = r.structured_content
    labels = [o["label"] for o in out["rerankers"]]
    assert labels == ["bm25", "embedding", "fr", "embedding(blend=0.5)"]
    assert out["k"] == 3 and out["judged"] == 3
    for o in out["rerankers"]:
        assert o.get("error") is None, o
        assert sorted(o["order"]) == list(range(len(PASSAGES)))
        assert o["scores"] == sorted(o["scores"], reverse=True)
        assert o["latency_ms"] >= 0 and o["load_ms"] >= 0
        assert 0.0 <= o["ndcg_at_k"] <= 1.0
    bm25, emb = out["rerankers"][0], out["rerankers"][1]
    assert bm25["order"][0] == 1 and emb["order"][0] == 1  # the vitamin D passage
    assert bm25["ndcg_at_k"] > out["input_ndcg_at_k"]
    # every pair of rerankers, and each against the input order
    pairs = {(a["a"], a["b"]) for a in out["agreement"]}
    assert len(pairs) == 6 + 4 and all((lab, "input") in pairs for lab in labels)
    for a in out["agreement"]:
        assert 0.0 <= a["overlap_at_k"] <= 1.0
        assert a["kendall_tau"] is None or -1.0 <= a["kendall_tau"] <= 1.0
    # side by side: each passage's rank and score under every reranker
    rows = out["passages"]
    assert [p["index"] for p in rows] == list(range(len(PASSAGES)))
    assert rows[1]["id"] == "vitd" and rows[1]["ranks"]["bm25"] == 1 and rows[1]["relevance"] == 2
    assert set(rows[0]["scores"]) == set(labels)


@pytest.mark.anyio
async def test_compare_errors_through_mcp(settings):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("compare_rerankers", {"query": QUERY, "passages": ["a", "b"], "rerankers": ["nope"]})
        assert r.is_error and "unknown reranker" in r.content[0].text
        r = await c.call_tool("compare_rerankers", {"query": QUERY, "passages": ["a", "b"], "rerankers": ["bm25"],
                                                    "judgments": {"7": 1}})
        assert r.is_error and "index 7" in r.content[0].text
        r = await c.call_tool("compare_rerankers", {"query": QUERY, "passages": ["a", "b"], "rerankers": ["bm25"],
                                                    "k": 0})
        assert r.is_error
        # a reranker that cannot run here is reported, the others still compared
        r = await c.call_tool("compare_rerankers", {"query": QUERY, "passages": ["vitamin d", "fox"],
                                                    "rerankers": ["bm25", "flashrank"]})
        assert not r.is_error, r.content
        runs = r.structured_content["rerankers"]
        assert runs[0].get("error") is None and runs[1]["error"]
        assert {(a["a"], a["b"]) for a in r.structured_content["agreement"]} == {("bm25", "input")}


# ----------------------------------------------------------------------------- CLI


def _cli(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "RERANK_MCP_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1",
           "ORT_DISABLE_TELEMETRY": "1", "RERANK_MCP_LOG_LEVEL": "WARNING", "COLUMNS": "200"}
    return subprocess.run([EXE, *args], input=stdin, capture_output=True, text=True, env=env, timeout=300,
                          cwd=str(tmp_path))


@pytest.mark.slow  # a CLI subprocess
def test_compare_cli(tmp_path):
    texts = [p["text"] for p in PASSAGES]
    r = _cli(tmp_path, "--json", "compare", QUERY, *texts, "-r", "bm25", "-r", "embedding", "--judgments",
             json.dumps([0, 2, 0, 1, 1]), "-k", "3")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [o["label"] for o in out["rerankers"]] == ["bm25", "embedding"]
    assert all(o["order"][0] == 1 for o in out["rerankers"])
    assert out["judged"] == 5 and out["rerankers"][0]["ndcg_at_k"] is not None
    # passages on stdin, and the table
    r = _cli(tmp_path, "compare", QUERY, "-", "-r", "bm25", "-r", 'bm25={"variant": "plus"}', stdin="\n".join(texts))
    assert r.returncode == 0, r.stderr
    assert "agreement" in r.stdout and "Kendall tau" in r.stdout and "bm25(variant=plus)" in r.stdout
    # an unknown reranker is an error, not a traceback
    r = _cli(tmp_path, "compare", QUERY, "a", "b", "-r", "nope")
    assert r.returncode == 1 and "unknown reranker" in r.stderr and "Traceback" not in r.stderr
