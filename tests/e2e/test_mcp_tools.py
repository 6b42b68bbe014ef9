"""Every tool through a real in-memory MCP client session (mcp.Client(server)).

Agents only ever see the protocol, so these tests check what they see: tool listings with
schemas and annotations, structured results, isError with a clear message, progress
notifications and resources. The index underneath is real (SQLite, FAISS, tantivy, MiniLM; and Qdrant's local mode).
"""

from __future__ import annotations

import json

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from rerank_mcp.server.app import build_server
from tests.conftest import ENGINES, shared_embedder

pytestmark = pytest.mark.anyio


@pytest.fixture(params=ENGINES)
def settings(request, settings):
    """Every tool test here runs on each engine behind the index contract (Qdrant in local mode)."""
    if request.param == "qdrant":
        return settings.model_copy(update={"backend": "qdrant", "qdrant_path": str(settings.data_dir / "qdrant")})
    return settings

DOCS = [
    {"id": "fox", "text": "The quick brown fox jumps over the lazy dog.", "metadata": {"topic": "animals", "year": 2019}},
    {"id": "vitd", "text": "Vitamin D deficiency is associated with bone fractures in older adults.",
     "metadata": {"topic": "health", "year": 2021}},
    {"id": "faiss", "text": "FAISS performs efficient similarity search over dense vectors.",
     "metadata": {"topic": "software", "year": 2023}},
    {"id": "bm25", "text": "Okapi BM25 ranks documents by term frequency and inverse document frequency.",
     "metadata": {"topic": "software", "year": 2020}},
]


async def _ingest(c, docs=DOCS, collection="kb"):
    r = await c.call_tool("ingest", {"collection": collection, "documents": docs})
    assert not r.is_error, r.content
    return r.structured_content


async def test_tools_are_listed_with_schemas_and_annotations(settings):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == {"ingest", "search", "rerank", "compare_rerankers", "list_collections", "list_rerankers",
                          "delete", "evaluate"}
    for t in tools.values():
        assert t.output_schema is not None, t.name
        assert t.description and len(t.description) > 40
        assert t.annotations is not None
    assert tools["search"].annotations.read_only_hint is True
    assert tools["delete"].annotations.destructive_hint is True
    assert tools["ingest"].annotations.read_only_hint is False
    assert "roots" not in json.dumps(tools["ingest"].input_schema)  # resolved server-side


async def test_read_only_mode_removes_write_tools(settings):
    ro = settings.model_copy(update={"read_only": True})
    async with Client(build_server(ro, embedder_factory=shared_embedder(ro))) as c:
        names = {t.name for t in (await c.list_tools()).tools}
    assert "ingest" not in names and "delete" not in names and "search" in names


async def test_ingest_search_rerank_delete_roundtrip(settings):
    progress = []

    async def on_progress(p, total, message):
        progress.append((p, total, message))

    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "kb", "documents": DOCS}, progress_callback=on_progress)
        assert not r.is_error, r.content
        res = r.structured_content
        assert res["added"] == 4 and res["failed"] == 0
        assert {d["status"] for d in res["documents"]} == {"added"}
        assert progress, "ingest reported no progress"

        again = await _ingest(c)
        assert again["unchanged"] == 4 and again["chunks_written"] == 0

        for mode in ("dense", "bm25", "hybrid"):
            r = await c.call_tool("search", {"query": "vitamin D and bones", "collection": "kb", "k": 2, "mode": mode,
                                             "detail": "full"})
            assert not r.is_error, r.content
            hits = r.structured_content["hits"]
            assert hits[0]["doc_id"] == "vitd", (mode, hits)
            prov = hits[0]["provenance"]
            if mode in ("dense", "hybrid"):
                assert prov["dense_rank"] == 1
            if mode in ("bm25", "hybrid"):
                assert prov["bm25_rank"] == 1
            if mode == "hybrid":
                assert prov["fused_score"] is not None and prov["fused_rank"] == 1

        r = await c.call_tool("search", {"query": "ranking documents", "collection": "kb", "k": 3,
                                         "filter": {"topic": "software", "year": {"$gte": 2021}}})
        assert [h["doc_id"] for h in r.structured_content["hits"]] == ["faiss"]

        r = await c.call_tool("search", {"query": "vector similarity", "collection": "kb", "k": 2,
                                         "rerank": {"reranker": "bm25", "candidates": 4}, "detail": "full"})
        assert not r.is_error, r.content
        sc = r.structured_content
        assert sc["reranker"] == "bm25"
        assert sc["hits"][0]["provenance"]["rerank_rank"] == 1

        r = await c.call_tool("rerank", {"query": "bone health vitamin",
                                         "passages": [d["text"] for d in DOCS], "reranker": "bm25"})
        assert not r.is_error, r.content
        ranked = r.structured_content["passages"]
        assert ranked[0]["index"] == 1 and len(ranked) == 4

        r = await c.call_tool("rerank", {"query": "dense vectors", "reranker": "embedding", "top_n": 1,
                                         "passages": [{"id": d["id"], "text": d["text"]} for d in DOCS]})
        assert not r.is_error, r.content
        assert [p["id"] for p in r.structured_content["passages"]] == ["faiss"]

        r = await c.call_tool("evaluate", {"collection": "kb", "pipelines": ["bm25", "dense", "hybrid-rrf+bm25"],
                                           "judgments": [{"query": "vitamin D bones", "relevant": ["vitd"]},
                                                         {"query": "similarity search library", "relevant": ["faiss"]}]})
        assert not r.is_error, r.content
        ev = {p["pipeline"]: p for p in r.structured_content["pipelines"]}
        assert ev["bm25"]["queries"] == 2 and 0.0 <= ev["dense"]["ndcg_at_10"] <= 1.0
        assert "hybrid-rrf+bm25" in ev and len(r.structured_content["per_query"]) == 2
        r = await c.call_tool("evaluate", {"collection": "kb", "judgments": [{"query": "x", "relevant": ["nope"]}]})
        assert r.is_error and "not in collection" in r.content[0].text

        r = await c.call_tool("list_collections", {})
        cols = r.structured_content["collections"]
        assert cols[0]["name"] == "kb" and cols[0]["documents"] == 4

        r = await c.call_tool("list_rerankers", {})
        names = {x["name"]: x for x in r.structured_content["result"]}
        assert names["bm25"]["available"] is True
        assert set(names) >= {"bm25", "cross-encoder", "flashrank", "cohere", "rankllm", "embedding", "cascade"}

        r = await c.call_tool("delete", {"collection": "kb", "ids": ["vitd"]})
        assert r.structured_content["deleted_documents"] == ["vitd"]
        r = await c.call_tool("search", {"query": "vitamin D and bones", "collection": "kb", "k": 4})
        assert "vitd" not in [h["doc_id"] for h in r.structured_content["hits"]]

        r = await c.call_tool("delete", {"collection": "kb", "filter": {"topic": "software"}})
        assert sorted(r.structured_content["deleted_documents"]) == ["bm25", "faiss"]

        rr = await c.read_resource("collections://kb")
        body = json.loads(rr.contents[0].text)
        assert [d["id"] for d in body["documents"]] == ["fox"]
        rr = await c.read_resource("documents://kb/fox")
        assert json.loads(rr.contents[0].text)["chunks"][0]["text"].startswith("The quick brown fox")
        rr = await c.read_resource("collections://list")
        assert json.loads(rr.contents[0].text)["collections"][0]["documents"] == 1
        # what does not exist is the SDK's not-found answer (invalid params, SEP-2164), naming it
        for uri, name in (("documents://kb/vitd", "vitd"), ("collections://nope", "nope"),
                          ("documents://nope/fox", "nope")):
            with pytest.raises(MCPError) as err:
                await c.read_resource(uri)
            assert err.value.error.code == INVALID_PARAMS and name in err.value.error.message, (uri, err.value.error)

        r = await c.call_tool("delete", {"collection": "kb", "drop_collection": True})
        assert r.structured_content["collection_dropped"] is True
        r = await c.call_tool("list_collections", {})
        assert r.structured_content["collections"] == []


async def test_file_ingest_within_roots(settings, tmp_path):
    root = settings.allowed_roots[0]
    (root / "notes.md").write_text("# Notes\n\nTantivy is a full-text search engine library written in Rust.\n")
    (root / "page.html").write_text("<html><head><title>T</title><script>x()</script></head>"
                                    "<body><p>HNSW graphs give fast approximate neighbours.</p></body></html>")
    (root / "skip.bin").write_bytes(b"\x00\x01\x02")
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "files", "paths": [str(root)]})
        assert not r.is_error, r.content
        ids = sorted(d["id"] for d in r.structured_content["documents"])
        assert ids == sorted([str(root / "notes.md"), str(root / "page.html")])
        r = await c.call_tool("search", {"query": "Rust search engine", "collection": "files", "k": 1})
        hit = r.structured_content["hits"][0]
        assert hit["doc_id"].endswith("notes.md") and "type" not in hit.get("metadata", {})  # .md says it
        r = await c.call_tool("search", {"query": "Rust search engine", "collection": "files", "k": 1,
                                         "detail": "full"})
        assert r.structured_content["hits"][0]["metadata"]["type"] == "markdown"


async def test_folder_ingest_skips_empty_files_and_names_a_missing_relative_path(settings):
    root = settings.allowed_roots[0]
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_bytes(b"")
    (root / "pkg" / "math_utils.py").write_text("def add(a,b):\n    return a+b\n")
    (root / "pkg" / "logo.png").write_bytes(b"\x89PNG\x00")
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "code", "paths": [str(root / "pkg")]})
        assert not r.is_error, r.content
        res = r.structured_content
        assert (res["added"], res["skipped"], res["failed"]) == (1, 1, 0)
        skipped = next(d for d in res["documents"] if d["status"] == "skipped")
        assert skipped["id"] == str(root / "pkg" / "__init__.py") and "holds no text" in skipped["reason"]
        assert res["notes"] == ["skipped 1 file of unsupported types: logo.png; to read one as text, name it in "
                                "paths or give a glob that matches it"]
        r = await c.call_tool("ingest", {"collection": "code", "paths": ["relative.txt"]})
        assert r.is_error
        assert r.content[0].text.endswith(f"no such file or folder: relative.txt (taken as {root.resolve() / 'relative.txt'})")


BAD_CALLS = [
    ("search", {"query": "", "collection": "kb"}, "query is empty"),
    ("search", {"query": "x", "collection": "kb", "k": 0}, "k must be a positive integer"),
    ("search", {"query": "x", "collection": "kb", "k": 10**9}, "over the limit"),
    ("search", {"query": "x", "collection": "nope"}, "unknown collection 'nope'"),
    ("search", {"query": "x", "collection": "kb", "rerank": {"reranker": "nosuch"}}, "unknown reranker 'nosuch'"),
    ("search", {"query": "x", "collection": "kb", "filter": {"a": {"$regex": "."}}}, "unknown operator '$regex'"),
    ("search", {"query": "x", "collection": "kb", "filter": {"a') OR 1=1 --": 1}}, "field name"),
    ("search", {"query": "x", "collection": "kb", "mode": "fuzzy"}, "mode"),
    ("rerank", {"query": "x", "passages": ["a"], "reranker": "nosuch"}, "unknown reranker 'nosuch'"),
    ("rerank", {"query": " ", "passages": ["a"], "reranker": "bm25"}, "query is empty"),
    ("ingest", {"collection": "kb", "paths": ["/etc/passwd"]}, "outside the allowed roots"),
    ("ingest", {"collection": "kb", "documents": [{"text": "  "}]}, "text is empty"),
    ("ingest", {"collection": "kb"}, "nothing to ingest"),
    ("ingest", {"collection": "bad name!", "documents": [{"text": "a"}]}, "invalid collection name"),
    ("delete", {"collection": "kb"}, "nothing to delete"),
]


@pytest.mark.parametrize("tool,args,expect", BAD_CALLS, ids=[f"{t}-{e[:20]}" for t, _, e in BAD_CALLS])
async def test_bad_input_is_a_clear_error_and_stores_nothing(settings, tool, args, expect):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        await _ingest(c)
        before = (await c.call_tool("list_collections", {})).structured_content
        r = await c.call_tool(tool, args)
        assert r.is_error
        text = r.content[0].text
        assert expect in text, text
        assert "Traceback" not in text
        after = (await c.call_tool("list_collections", {})).structured_content
        assert after == before


async def test_binary_file_is_refused_and_nothing_stored(settings):
    root = settings.allowed_roots[0]
    (root / "blob.txt").write_bytes(b"abc\x00\xff\xfe" * 100)
    (root / "ok.txt").write_text("fine text")
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "bin", "paths": [str(root / "ok.txt"), str(root / "blob.txt")]})
        assert r.is_error and "binary" in r.content[0].text
        cols = (await c.call_tool("list_collections", {})).structured_content["collections"]
        assert all(col["documents"] == 0 for col in cols)
        r = await c.call_tool("ingest", {"collection": "bin", "skip_invalid": True,
                                         "paths": [str(root / "ok.txt"), str(root / "blob.txt")]})
        assert not r.is_error
        out = {d["id"].rsplit("/", 1)[-1]: d for d in r.structured_content["documents"]}
        assert out["ok.txt"]["status"] == "added"
        assert out["blob.txt"]["status"] == "failed" and "binary" in out["blob.txt"]["reason"]


async def test_wrong_argument_types_are_rejected(settings):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("search", {"query": ["not", "a", "string"], "collection": "kb"})
        assert r.is_error and "query" in r.content[0].text
        r = await c.call_tool("search", {"query": "x", "k": "ten"})
        assert r.is_error and "k" in r.content[0].text


async def test_no_roots_when_started_in_the_filesystem_root(tmp_path, monkeypatch):
    """Desktop clients often start servers with cwd '/': that must not open the whole disk."""
    from rerank_mcp.server.settings import Settings

    monkeypatch.chdir("/")
    s = Settings(data_dir=tmp_path / "data", log_level="WARNING")
    assert s.roots() == []
    async with Client(build_server(s, embedder_factory=shared_embedder(s))) as c:
        r = await c.call_tool("ingest", {"paths": ["/etc/hostname"]})
        assert r.is_error and "RERANK_MCP_ALLOWED_ROOTS" in r.content[0].text


async def test_search_feedback_through_mcp(settings):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        await _ingest(c)
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert tools["search"].input_schema["properties"]["feedback"]["type"] == "boolean"
        for mode in ("hybrid", "dense"):
            r = await c.call_tool("search", {"query": "vitamin D and bones", "collection": "kb", "k": 2, "mode": mode,
                                             "feedback": True, "detail": "full"})
            assert not r.is_error, r.content
            sc = r.structured_content
            assert sc["hits"][0]["doc_id"] == "vitd" and "feedback_ms" in sc["timings_ms"], (mode, sc)
        r = await c.call_tool("search", {"query": "vitamin", "collection": "kb", "mode": "bm25", "feedback": True})
        assert r.is_error and "feedback moves the dense query vector" in r.content[0].text
