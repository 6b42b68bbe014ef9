"""Through an MCP client: ``list_rerankers`` publishes each family's status and options schema,
bad options are error results naming the valid ones, the default reranker is ``auto`` (which
says what it picked), and ``search`` notes a configuration the evaluations show ranking below
its first stage."""

from __future__ import annotations

import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from rerank_mcp.tools.rerank.registry import FAMILIES
from tests.conftest import shared_embedder

pytestmark = pytest.mark.anyio

PASSAGES = ["cats purr softly", "dogs bark at night", "a cat sleeps on the mat", "kiwi fruit"]


@pytest.fixture
def offline_settings(settings):
    # a cross-encoder / flashrank model that is not on this machine, and no downloads
    return type(settings)(**{**settings.model_dump(), "download_models": False,
                             "cross_encoder_model": "cross-encoder/not-on-this-machine-v0"})


async def test_list_rerankers_publishes_status_and_option_schemas(offline_settings):
    async with Client(build_server(offline_settings, embedder_factory=shared_embedder(offline_settings))) as c:
        res = await c.call_tool("list_rerankers", {"detail": "full"})
        assert not res.is_error
        infos = {x["name"]: x for x in res.structured_content["result"]}
        assert set(infos) == set(FAMILIES)
        for name, info in infos.items():
            schema = info["options_schema"]
            assert schema["type"] == "object" and "blend" in schema["properties"], name
        assert set(infos["bm25"]["options_schema"]["properties"]) >= {"variant", "k1", "b", "idf", "corpus"}
        backend = infos["cross-encoder"]["options_schema"]["properties"]["backend"]
        # torch | onnx, or unset: torch where sentence-transformers is installed, else onnx
        assert [b.get("enum") for b in backend["anyOf"]] == [["torch", "onnx"], None]
        ce = infos["cross-encoder"]
        assert ce["status"] == "missing" and not ce["available"]
        assert ce["download"]["command"] == "rerank-mcp models pull cross-encoder/not-on-this-machine-v0"
        assert infos["bm25"]["status"] == "ready" and infos["auto"]["status"] == "ready"
        assert infos["auto"]["note"].startswith("picks ")
        assert infos["cohere"]["status"] == "unavailable"


async def test_bad_options_are_errors_naming_the_valid_ones(offline_settings):
    async with Client(build_server(offline_settings, embedder_factory=shared_embedder(offline_settings))) as c:
        r = await c.call_tool("rerank", {"query": "cats", "passages": PASSAGES, "reranker": "bm25",
                                         "options": {"k3": 1}})
        assert r.is_error
        text = r.content[0].text
        assert "unknown option 'k3'" in text and "Valid options:" in text and "k1 (" in text
        r = await c.call_tool("rerank", {"query": "cats", "passages": PASSAGES, "reranker": "bm25",
                                         "options": {"k1": "high"}})
        assert r.is_error and "bm25 option k1 must be a valid number" in r.content[0].text


async def test_default_is_auto_and_a_missing_model_falls_back(offline_settings):
    async with Client(build_server(offline_settings, embedder_factory=shared_embedder(offline_settings))) as c:
        r = await c.call_tool("rerank", {"query": "cats", "passages": PASSAGES})
        assert not r.is_error, r.content
        res = r.structured_content
        assert res["reranker"] == "auto" and res["used"] in ("flashrank", "embedding", "bm25")
        assert res["notes"][0].startswith(f"auto picked {res['used']}")
        r = await c.call_tool("rerank", {"query": "cats", "passages": PASSAGES, "reranker": "cross-encoder"})
        assert not r.is_error, r.content
        res = r.structured_content
        assert res["used"] and "rerank-mcp models pull cross-encoder/not-on-this-machine-v0" in res["fallback"]
        assert res["download"]["state"] == "missing"


async def test_search_notes_a_rerank_known_to_rank_below_its_first_stage(offline_settings):
    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(PASSAGES)]
    async with Client(build_server(offline_settings, embedder_factory=shared_embedder(offline_settings))) as c:
        assert not (await c.call_tool("ingest", {"collection": "n", "documents": docs})).is_error
        r = await c.call_tool("search", {"query": "cats", "collection": "n", "k": 3,
                                         "rerank": {"reranker": "bm25", "candidates": 4}})
        assert not r.is_error
        notes = r.structured_content["notes"]
        assert any("bm25 reranker over hybrid candidates" in n for n in notes), notes
        r = await c.call_tool("search", {"query": "cats", "collection": "n", "k": 3, "mode": "bm25",
                                         "rerank": {"reranker": "bm25", "candidates": 4}})
        assert not any("lower nDCG@10" in n for n in r.structured_content.get("notes", []))
        r = await c.call_tool("search", {"query": "cats", "collection": "n", "k": 3,
                                         "rerank": {"reranker": "embedding", "options": {"blend": 0.5},
                                                    "candidates": 4}})
        assert any("blended 0.5" in n and "lower nDCG@10 than hybrid" in n for n in r.structured_content["notes"])
        # a rerank step without a reranker is auto: the result names its pick
        r = await c.call_tool("search", {"query": "cats", "collection": "n", "k": 3, "mode": "bm25",
                                         "rerank": {"candidates": 4}})
        assert not r.is_error, r.content
        sc = r.structured_content
        assert sc["reranker"] == "auto" and sc["rerank_used"] in ("flashrank", "none")
        if sc["rerank_used"] == "none":  # no trained model here: the first stage's order is kept
            assert any(n.startswith("auto kept the input order") for n in sc["notes"])
        else:
            assert any(n.startswith(f"auto picked {sc['rerank_used']}") for n in sc["notes"])
