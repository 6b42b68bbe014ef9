"""A client's reranker options never send the operator's API keys, or requests, to a URL the
client chose, and never make the server read a folder outside the model folders.

Two local listeners on 127.0.0.1 stand in for the network: the operator's configured endpoint
(a Cohere-compatible and an OpenAI-compatible server) and a "collector" a hostile client names
in ``options.base_url``; both record every request's headers. Every way a client can pass
options is tried: the ``rerank`` tool, ``search``'s rerank step, ``compare_rerankers``, cascade
stages (through the in-memory MCP client and over MCP on HTTP) and the HTTP rerank API of
``serve --http`` (a real subprocess).
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from tests.conftest import shared_embedder
from tests.fixtures.env import offline_env
from tests.fixtures.servers import FakeCohere, FakeOpenAI, serve_http
from tests.reliability.stats import record

pytestmark = pytest.mark.anyio

CO_KEY = "co-operator-key-9f8e7d6c5b4a"
LLM_KEY = "llm-operator-key-1a2b3c4d5e6f"
TOKEN = "http-token-for-the-test-4242"
PASSAGES = [f"passage {i} about retrieval rel={r}" for i, r in enumerate([3, 9, 1, 7, 5])]




def _keys_seen(*servers) -> list[str]:
    """Every Authorization header any of ``servers`` received."""
    out = []
    for s in servers:
        for r in s.requests:
            h = {k.lower(): v for k, v in r["headers"].items()}
            out.append(h.get("authorization", ""))
    return out


def _hostile_calls(co_url: str, llm_url: str, operator_co: str) -> list[tuple[str, dict]]:
    """(tool, arguments) a hostile client may send; each names a collector URL somewhere."""
    host_port = operator_co.split("//", 1)[1]
    tricks = [
        co_url,
        co_url + "/",
        f"http://{host_port}@{co_url.split('//', 1)[1]}",  # user info: the real host is the collector's
        co_url.replace("127.0.0.1", "localhost"),
    ]
    calls: list[tuple[str, dict]] = []
    for url in tricks:
        calls.append(("rerank", {"query": "retrieval", "passages": PASSAGES, "reranker": "cohere",
                                 "options": {"base_url": url, "max_retries": 0}}))
    calls += [
        ("rerank", {"query": "retrieval", "passages": PASSAGES, "reranker": "rankllm",
                    "options": {"base_url": llm_url, "max_retries": 0}}),
        # the client's own key with its own URL: still a request the operator did not allow
        ("rerank", {"query": "retrieval", "passages": PASSAGES, "reranker": "rankllm",
                    "options": {"base_url": llm_url, "api_key": "client-key", "max_retries": 0}}),
        ("search", {"query": "retrieval", "collection": "c", "k": 3,
                    "rerank": {"reranker": "cohere", "options": {"base_url": co_url, "max_retries": 0}, "candidates": 5}}),
        ("search", {"query": "retrieval", "collection": "c", "k": 3,
                    "rerank": {"reranker": "rankllm", "options": {"base_url": llm_url}, "candidates": 5}}),
        ("compare_rerankers", {"query": "retrieval", "passages": PASSAGES, "rerankers": [
            "bm25", {"reranker": "cohere", "options": {"base_url": co_url, "max_retries": 0}},
            {"reranker": "rankllm", "options": {"base_url": llm_url, "max_retries": 0}}]}),
        ("rerank", {"query": "retrieval", "passages": PASSAGES, "reranker": "cascade", "options": {"stages": [
            {"reranker": "bm25", "top_k": 4},
            {"reranker": "cohere", "options": {"base_url": co_url, "max_retries": 0}}]}}),
        ("search", {"query": "retrieval", "collection": "c", "k": 3, "rerank": {"reranker": "cascade", "options": {
            "stages": [{"reranker": "bm25", "top_k": 4}, {"reranker": "rankllm", "options": {"base_url": llm_url}}]}}}),
        ("compare_rerankers", {"query": "retrieval", "passages": PASSAGES, "rerankers": [
            {"reranker": "cascade", "options": {"stages": [
                {"reranker": "bm25", "top_k": 4}, {"reranker": "cohere", "options": {"base_url": co_url}}]}}]}),
    ]
    return calls


def _refusal(tool: str, result) -> str:
    """The refusal text of a hostile call: the tool's error, or compare's per-reranker errors."""
    if result.is_error:
        return result.content[0].text
    assert tool == "compare_rerankers", (tool, result.structured_content)
    errors = [o["error"] for o in result.structured_content["rerankers"] if o["reranker"] != "bm25"]
    assert errors and all(errors), result.structured_content
    return " ".join(errors)


def _settings(settings, co, llm, **extra):
    return type(settings)(**{**settings.model_dump(), "cohere_api_key": CO_KEY, "cohere_base_url": co.base_url,
                             "llm_base_url": llm.base_url, "llm_api_key": LLM_KEY, "llm_model": "m", **extra})


@pytest.mark.slow  # HTTP servers and remote-reranker peers
async def test_no_configured_key_reaches_a_client_chosen_url(settings):
    with FakeCohere(CO_KEY) as co, FakeOpenAI(LLM_KEY) as llm, FakeCohere("x") as evil_co, FakeOpenAI() as evil_llm:
        async with Client(build_server(_settings(settings, co, llm), embedder_factory=shared_embedder(_settings(settings, co, llm)))) as c:
            r = await c.call_tool("ingest", {"collection": "c", "documents": [
                {"id": f"d{i}", "text": p} for i, p in enumerate(PASSAGES)]})
            assert not r.is_error, r.content
            hostile = _hostile_calls(evil_co.base_url, evil_llm.base_url, co.base_url)
            for tool, args in hostile:
                r = await c.call_tool(tool, args)
                text = _refusal(tool, r)
                assert "RERANK_MCP_ALLOWED_ENDPOINTS" in text and "not an allowed endpoint" in text, (tool, args, text)
                assert CO_KEY not in text and LLM_KEY not in text
            assert evil_co.requests == [] and evil_llm.requests == []
            assert co.requests == [] and llm.requests == []  # refused before any request

            # the configured endpoints still get their keys: named or not, spelled with a trailing slash
            for options in ({}, {"base_url": co.base_url + "/"}, {"base_url": co.base_url.upper().replace("HTTP", "http")}):
                r = await c.call_tool("rerank", {"query": "retrieval", "passages": PASSAGES, "reranker": "cohere",
                                                 "options": options})
                assert not r.is_error, (options, r.content)
                assert [p["index"] for p in r.structured_content["passages"]] == [1, 3, 4, 0, 2]
            r = await c.call_tool("rerank", {"query": "retrieval", "passages": PASSAGES, "reranker": "rankllm",
                                             "options": {"window_size": 5, "stride": 2}})
            assert not r.is_error, r.content
            r = await c.call_tool("search", {"query": "retrieval", "collection": "c", "k": 3, "rerank": {
                "reranker": "cascade", "options": {"stages": [{"reranker": "bm25", "top_k": 4}, {"reranker": "cohere"}]}}})
            assert not r.is_error, r.content
    assert set(_keys_seen(co)) == {f"Bearer {CO_KEY}"} and len(co.requests) == 4
    assert set(_keys_seen(llm)) == {f"Bearer {LLM_KEY}"}
    assert evil_co.requests == [] and evil_llm.requests == []
    record("client_urls", {"hostile_calls": len(hostile),
                           "requests_to_client_urls": len(evil_co.requests) + len(evil_llm.requests),
                           "configured_endpoint_requests": len(co.requests) + len(llm.requests),
                           "configured_requests_with_key": _keys_seen(co, llm).count(f"Bearer {CO_KEY}")
                           + _keys_seen(co, llm).count(f"Bearer {LLM_KEY}")})


@pytest.mark.slow  # HTTP servers and remote-reranker peers
async def test_an_endpoint_the_operator_lists_is_allowed(settings):
    with FakeCohere(CO_KEY) as co, FakeOpenAI(LLM_KEY) as llm, FakeCohere(CO_KEY) as other:
        s = _settings(settings, co, llm, allowed_endpoints=[other.base_url])
        async with Client(build_server(s, embedder_factory=shared_embedder(s))) as c:
            r = await c.call_tool("rerank", {"query": "retrieval", "passages": PASSAGES, "reranker": "cohere",
                                             "options": {"base_url": other.base_url}})
            assert not r.is_error, r.content
            # the same host on another port, or another scheme, is not the listed endpoint
            for url in ("http://127.0.0.1:1", other.base_url.replace("http://", "https://")):
                r = await c.call_tool("rerank", {"query": "q", "passages": PASSAGES, "reranker": "cohere",
                                                 "options": {"base_url": url, "max_retries": 0}})
                assert r.is_error and "RERANK_MCP_ALLOWED_ENDPOINTS" in r.content[0].text, url
    assert len(other.requests) == 1 and _keys_seen(other) == [f"Bearer {CO_KEY}"]


def test_allowed_endpoints_setting_is_validated(tmp_path):
    from pydantic import ValidationError

    from rerank_mcp.server.settings import Settings

    for bad in ("ftp://example.com", "http://user@example.com", "not a url"):
        with pytest.raises(ValidationError, match="allowed_endpoints"):
            Settings(data_dir=tmp_path, allowed_endpoints=[bad])


async def test_client_model_paths_stay_inside_the_model_folders(settings, tmp_path):
    """``options.model: "/etc"`` and friends are refused at once, naming the setting; nothing is read."""
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        outside = tmp_path / "somewhere"
        outside.mkdir()
        for name, options in [
            ("embedding", {"model": "/etc"}),
            ("embedding", {"model": "../../../../etc"}),
            ("embedding", {"model": "~"}),
            ("cross-encoder", {"model": str(outside)}),
            ("cross-encoder", {"backend": "onnx", "onnx_cache_dir": str(outside)}),
            ("flashrank", {"cache_dir": "/etc"}),
            ("cascade", {"stages": [{"reranker": "bm25", "top_k": 2}, {"reranker": "embedding", "options": {"model": "/etc"}}]}),
        ]:
            r = await c.call_tool("rerank", {"query": "q", "passages": ["a", "b", "c"], "reranker": name, "options": options})
            assert r.is_error, (name, options)
            text = r.content[0].text
            assert "outside the model folders" in text and "RERANK_MCP_ALLOWED_MODEL_DIRS" in text, (name, options, text)
        # a model id is not a path: it is looked up (and here reported missing), not refused as a path
        r = await c.call_tool("rerank", {"query": "q", "passages": ["a", "b"], "reranker": "embedding",
                                         "options": {"model": "org/not-downloaded"}})
        assert "outside the model folders" not in r.content[0].text


@pytest.mark.slow
async def test_a_listed_model_folder_is_allowed(settings, tmp_path):
    from tests.fixtures.models import build_cross_encoder

    mine = tmp_path / "my-models"
    ce = build_cross_encoder(mine / "ce")
    s = type(settings)(**{**settings.model_dump(), "allowed_model_dirs": [mine]})
    async with Client(build_server(s, embedder_factory=shared_embedder(s))) as c:
        r = await c.call_tool("rerank", {"query": "q", "passages": ["a", "b"], "reranker": "cross-encoder",
                                         "options": {"model": str(ce)}})
        assert not r.is_error, r.content
        assert r.structured_content["model"] == str(ce)


@pytest.mark.slow  # HTTP servers and remote-reranker peers
def test_http_api_and_mcp_over_http_send_no_key_to_a_client_url(tmp_path):
    """``serve --http``: the rerank API takes no URL from a request (its models are the operator's),
    and MCP tools over HTTP refuse a client's base_url; the operator's cascade alias still reaches
    the configured endpoint with its key."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    with FakeCohere(CO_KEY) as co, FakeCohere("x") as evil:
        alias = {"co-cascade": {"reranker": "cascade", "options": {"stages": [
            {"reranker": "bm25", "top_k": 4}, {"reranker": "cohere", "options": {"max_retries": 0}}]}}}
        env = offline_env(RERANK_MCP_DATA_DIR=str(tmp_path / "data"), RERANK_MCP_HTTP_TOKEN=TOKEN,
                          RERANK_MCP_COHERE_API_KEY=CO_KEY, RERANK_MCP_COHERE_BASE_URL=co.base_url,
                          RERANK_MCP_HTTP_MODELS=json.dumps(alias), RERANK_MCP_LOG_LEVEL="WARNING")
        with serve_http(env, tmp_path / "server.log") as port:
            api = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {TOKEN}"}
            for body in (
                {"model": "cohere", "query": "q", "documents": PASSAGES, "base_url": evil.base_url},
                {"model": "rankllm", "query": "q", "documents": PASSAGES},
                {"model": f"cohere:{evil.base_url}", "query": "q", "documents": PASSAGES},
                {"model": "cascade", "query": "q", "documents": PASSAGES,
                 "options": {"stages": [{"reranker": "cohere", "options": {"base_url": evil.base_url}}]}},
                {"model": "co-cascade", "query": "retrieval", "documents": PASSAGES, "base_url": evil.base_url},
            ):
                r = httpx.post(f"{api}/v2/rerank", json=body, headers=auth, timeout=60)
                if body["model"] == "cascade":  # the default stages' models are not here (offline): refused
                    assert r.status_code == 503 and "nothing was ranked" in r.text, (body, r.text)
                else:
                    assert r.status_code < 500, (body, r.text)
                assert CO_KEY not in r.text
            r = httpx.post(f"{api}/v2/rerank", json={"model": "co-cascade", "query": "retrieval", "documents": PASSAGES},
                           headers=auth, timeout=60)
            assert r.status_code == 200, r.text

            async def over_mcp() -> str:
                http = httpx2.AsyncClient(headers=auth, timeout=httpx2.Timeout(60.0))
                async with http, Client(streamable_http_client(f"{api}/mcp", http_client=http)) as c:
                    res = await c.call_tool("rerank", {"query": "q", "passages": PASSAGES, "reranker": "cohere",
                                                       "options": {"base_url": evil.base_url, "max_retries": 0}})
                    assert res.is_error
                    return res.content[0].text

            text = anyio.run(over_mcp)
            assert "RERANK_MCP_ALLOWED_ENDPOINTS" in text
    assert evil.requests == []
    assert co.requests and set(_keys_seen(co)) == {f"Bearer {CO_KEY}"}
    assert CO_KEY not in Path(tmp_path / "server.log").read_text()
