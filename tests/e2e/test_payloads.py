"""What tool results cost an agent's context, measured over a real in-memory MCP session.

- ``tools/list``: at most 3,000 tokens without output schemas and 6,000 with them, estimated as
  characters / 4 of the compact JSON (the convention of the figures in docs/payloads.md);
- ``list_rerankers``: at most 1,500 such tokens by default; ``detail: "full"`` adds the schemas;
- ``search`` with ``max_tokens``: the whole structured result, serialised as the client gets it
  and counted with the embedding model's word-piece tokenizer, within the budget, and the
  reported ``tokens`` within 5% of that count, at several budgets and shapes;
- a default (compact) search hit is at least 75% hit text by characters on SciFact abstracts,
  names each path once and carries no nulls; provenance and the old fields come with
  ``detail: "full"``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from rerank_mcp.tools.payload import to_json
from tests.conftest import shared_embedder

pytestmark = pytest.mark.anyio
DOCS = Path(__file__).resolve().parents[2] / "docs"


def chars4(value) -> float:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"))) / 4


def count(texts):
    from rerank_mcp.index.embedding import Embedder

    global _EMB
    try:
        emb = _EMB
    except NameError:
        emb = _EMB = Embedder("all-MiniLM-L6-v2")
    return emb.count_tokens(texts)


def nulls(value) -> list:
    if isinstance(value, dict):
        return [k for k, v in value.items() if v is None] + [x for v in value.values() for x in nulls(v)]
    if isinstance(value, list):
        return [x for v in value for x in nulls(v)]
    return []


def text_share(sc: dict) -> float:
    """Of the result's JSON characters, the share that is its hits' texts (as JSON strings)."""
    return sum(len(json.dumps(h["text"], ensure_ascii=False)) - 2 for h in sc["hits"]) / len(to_json(sc))


async def test_tools_list_fits(settings):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        tools = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in (await c.list_tools()).tools]
    without = sum(chars4({k: v for k, v in t.items() if k != "outputSchema"}) for t in tools)
    with_out = sum(chars4(t) for t in tools)
    assert without <= 3000, without
    assert with_out <= 6000, with_out
    assert not [t["name"] for t in tools if _titles(t["inputSchema"]) or _titles(t.get("outputSchema"))]


def _titles(schema) -> bool:
    """Any ``title`` keyword (pydantic's, repeating a field's or model's name) in a schema."""
    if isinstance(schema, dict):
        return isinstance(schema.get("title"), str) or any(_titles(v) for v in schema.values())
    return isinstance(schema, list) and any(_titles(v) for v in schema)


async def test_list_rerankers_fits_and_full_keeps_the_schemas(settings):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("list_rerankers", {})
        full = await c.call_tool("list_rerankers", {"detail": "full"})
    assert not r.is_error and not full.is_error
    infos = r.structured_content["result"]
    assert chars4(r.structured_content) <= 1500, chars4(r.structured_content)
    assert not nulls(infos) and all("options_schema" not in i for i in infos)
    assert {"variant", "k1", "b"} <= set(next(i for i in infos if i["name"] == "bm25")["options"])
    assert json.loads(r.content[0].text) == r.structured_content
    rich = {i["name"]: i for i in full.structured_content["result"]}
    assert set(rich) == {i["name"] for i in infos}
    assert "k1" in rich["bm25"]["options_schema"]["properties"] and rich["bm25"]["score"]


@pytest.fixture
async def docs_kb(settings):
    """The project's own docs, ingested as files: markdown with tables, short sections, long paths."""
    root = Path(settings.allowed_roots[0]) / "docs"
    shutil.copytree(DOCS, root, ignore=shutil.ignore_patterns("*.json", "eval"))
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "kb", "paths": [str(root)]})
        assert not r.is_error, r.content
        yield c


QUERIES = ["how are dense and BM25 results fused", "what does the reranker do with a missing model",
           "latency on two cores"]


@pytest.mark.slow
async def test_max_tokens_bounds_the_whole_structured_result(docs_kb):
    c = docs_kb
    for query in QUERIES:
        for shape in ({}, {"group_by": "document"}, {"expand": 1}, {"detail": "full"}, {"rerank": {"reranker": "bm25"}}):
            for budget in (200, 400, 1000, 3000):
                r = await c.call_tool("search", {"query": query, "collection": "kb", "max_tokens": budget, **shape})
                if r.is_error and budget < 1000:  # too small a budget for this shape: the error says what works
                    least = re.search(r"give at least (\d+)$", r.content[0].text)
                    assert least and int(least.group(1)) > budget, r.content[0].text
                    continue
                assert not r.is_error, (shape, budget, r.content)
                sc = r.structured_content
                n = count([to_json(sc)])[0]
                assert n <= budget, (query, shape, budget, n)
                assert abs(sc["tokens"] - n) <= 0.05 * n, (sc["tokens"], n)
                assert sc["hits"], "a budget always gets at least part of the best hit"
                assert r.content[0].text == to_json(sc)  # the text content is the same JSON
                if budget >= 1000 and not shape.get("detail"):
                    assert n >= 0.7 * budget, (query, shape, budget, n)  # the budget is used, not wasted
    r = await c.call_tool("search", {"query": QUERIES[0], "collection": "kb", "max_tokens": 20})
    assert r.is_error and "max_tokens=20 is too small for this result" in r.content[0].text
    r = await c.call_tool("search", {"query": QUERIES[0], "collection": "kb", "max_tokens": 100})
    assert r.is_error and "max_tokens=100 is too small" in r.content[0].text, r.content
    least = int(r.content[0].text.rsplit("give at least ", 1)[1])  # and that works: the best hit, cut to fit
    r = await c.call_tool("search", {"query": QUERIES[0], "collection": "kb", "max_tokens": least})
    assert not r.is_error and r.structured_content["hits"][0]["truncated"] is True, r.content
    assert count([to_json(r.structured_content)])[0] <= least


@pytest.mark.slow
async def test_compact_hits_name_each_path_once_and_full_keeps_every_field(docs_kb):
    c = docs_kb
    r = await c.call_tool("search", {"query": QUERIES[0], "collection": "kb"})
    full = await c.call_tool("search", {"query": QUERIES[0], "collection": "kb", "detail": "full"})
    sc, fs = r.structured_content, full.structured_content
    assert not nulls(sc) and "timings_ms" not in sc
    for h in sc["hits"]:
        assert "provenance" not in h and "source" not in h and "start" not in h  # lines locate a file's hit
        assert to_json(h).count(h["doc_id"]) == 1  # the path once
        assert h["start_line"] >= 1 and h["end_line"] >= h["start_line"]
        assert "type" not in h.get("metadata", {})  # a .md file's type: its name says it
    assert [h["doc_id"] for h in sc["hits"]] == [h["doc_id"] for h in fs["hits"]]
    assert {h["metadata"]["type"] for h in fs["hits"]} == {"markdown"}  # full keeps it
    for h in fs["hits"]:
        assert h["provenance"]["fused_rank"] is not None and h["source"] == h["doc_id"]
        assert isinstance(h["chunk_id"], int) and h["end"] > h["start"]
    assert "timings_ms" in fs and len(to_json(fs)) > 1.5 * len(to_json(sc))
    r = await c.call_tool("search", {"query": QUERIES[0], "collection": "kb", "max_tokens": 2000, "detail": "full"})
    assert "all-MiniLM-L6-v2" in r.structured_content["tokenizer"]


@pytest.mark.slow
async def test_a_default_hit_is_mostly_hit_text(settings, scifact_full):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        docs = [{"id": d["id"], "text": d["text"]} for d in scifact_full.docs]  # the title begins the text
        r = await c.call_tool("ingest", {"collection": "sf", "documents": docs})
        assert not r.is_error, r.content
        shares = []
        for q in list(scifact_full.queries.values())[:10]:
            r = await c.call_tool("search", {"query": q, "collection": "sf"})
            assert not r.is_error and len(r.structured_content["hits"]) == 10
            shares.append(text_share(r.structured_content))
    assert min(shares) >= 0.75, shares


@pytest.fixture(scope="module")
def scifact_full():
    from tests.conftest import load_scifact

    return load_scifact(n_queries=10, n_docs=120, max_chars=100_000)
