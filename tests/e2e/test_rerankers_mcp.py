"""Every reranker family end to end through the MCP tools (in-memory client session).

cross-encoder and flashrank run fixture models with the published architectures (random
heads: the test checks plumbing, not quality); cohere and rankllm talk to local HTTP servers
on 127.0.0.1 that speak Cohere's /v2/rerank and the OpenAI chat API (no real peer can run
here). The server is configured through its settings, as a user would configure it.
"""

from __future__ import annotations

import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from tests.conftest import shared_embedder
from tests.fixtures.models import build_cross_encoder, build_flashrank
from tests.fixtures.servers import FakeCohere, FakeOpenAI

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # slow: fixture models of every reranker family

PASSAGES = [f"passage {i} about retrieval rel={r}" for i, r in enumerate([3, 9, 1, 7, 5])]
DOCS = [{"id": f"d{i}", "text": p} for i, p in enumerate(PASSAGES)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    ce = build_cross_encoder(d / "ce")
    fr = d / "flashrank"
    build_flashrank(fr)
    return str(ce), str(fr)


async def test_every_family_through_rerank_and_search(settings, models):
    ce, fr = models
    with FakeCohere("test-key") as co, FakeOpenAI() as llm:
        s = type(settings)(**{
            **settings.model_dump(), "cross_encoder_model": ce, "flashrank_cache_dir": fr, "cohere_api_key": "test-key",
            "cohere_base_url": co.base_url, "llm_base_url": llm.base_url, "llm_model": "rank-zephyr",
        })
        async with Client(build_server(s, embedder_factory=shared_embedder(s))) as c:
            infos = {x["name"]: x for x in (await c.call_tool("list_rerankers", {})).structured_content["result"]}
            assert all(infos[n]["available"] for n in infos), infos
            r = await c.call_tool("ingest", {"collection": "r", "documents": DOCS})
            assert not r.is_error, r.content

            calls = {
                "bm25": {}, "embedding": {}, "cross-encoder": {}, "cross-encoder#onnx": {"backend": "onnx"},
                "flashrank": {}, "cohere": {}, "rankllm": {"window_size": 5, "stride": 2},
                "cascade": {"stages": [{"reranker": "flashrank", "top_k": 3}, {"reranker": "cross-encoder"}]},
            }
            for key, options in calls.items():
                name = key.split("#")[0]
                r = await c.call_tool("rerank", {"query": "retrieval", "passages": PASSAGES, "reranker": name,
                                                 "options": options})
                assert not r.is_error, (key, r.content)
                res = r.structured_content
                assert res["reranker"] == name
                assert sorted(p["index"] for p in res["passages"]) == list(range(5)), key
                assert [p["rank"] for p in res["passages"]] == [1, 2, 3, 4, 5]
                scores = [p["score"] for p in res["passages"]]
                assert scores == sorted(scores, reverse=True), key
                if name in ("cohere", "rankllm"):  # the peers rank by the hidden rel=N
                    assert [p["index"] for p in res["passages"]] == [1, 3, 4, 0, 2], key

                r = await c.call_tool("search", {"query": "retrieval", "collection": "r", "k": 3,
                                                 "rerank": {"reranker": name, "options": options, "candidates": 5},
                                                 "detail": "full"})
                assert not r.is_error, (key, r.content)
                hits = r.structured_content["hits"]
                assert len(hits) == 3 and all(h["provenance"]["rerank_rank"] == h["rank"] for h in hits)
            assert co.requests and llm.requests
