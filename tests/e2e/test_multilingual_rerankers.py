"""Multilingual rerankers in ``rerank``, ``search`` and ``list_rerankers`` through a real MCP
client session, and in the HTTP rerank API of ``rerank-mcp serve --http`` run as a subprocess.

BAAI/bge-reranker-base, BAAI/bge-reranker-v2-m3 (XLM-R cross-encoder fixtures) and FlashRank's
ms-marco-MultiBERT-L-12 (a MultiBERT-shaped fixture) are pulled from the local hub and archive
host (tests/fixtures/hub.py) into a Hugging Face cache and a FlashRank folder, as
``rerank-mcp models pull`` does; the servers then run offline. Fixture weights are random: the
checks are that each model runs where it is named, that the paths give the scores the model
gives in-process, and what ``auto`` picks and says, never ranking quality.
"""

from __future__ import annotations

import json
import math

import httpx
import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from tests.conftest import shared_embedder
from tests.e2e.test_languages import DOCS
from tests.fixtures.env import offline_env
from tests.fixtures.hub import FakeFileHost, FakeHub, zip_folder
from tests.fixtures.multilingual import build_multibert_flashrank, build_xlmr_cross_encoder
from tests.fixtures.servers import models_answer, serve_http

pytestmark = pytest.mark.slow  # fixture multilingual models built and served

BGE = "BAAI/bge-reranker-base"
M3 = "BAAI/bge-reranker-v2-m3"
MB = "ms-marco-MultiBERT-L-12"
TEXTS = [d["text"] for d in DOCS]
QUERY = "大熊猫每天吃什么"
TOKEN = "api-token-multilingual-1234"


@pytest.fixture(scope="module")
def pulled(tmp_path_factory):
    """A Hugging Face cache and a FlashRank folder holding the three models, pulled from the local peers."""
    from huggingface_hub import constants

    from rerank_mcp.tools.models_store import ModelStore, model_ref

    tmp = tmp_path_factory.mktemp("multilingual-rerankers")
    mp = pytest.MonkeyPatch()
    mp.delenv("HF_HUB_OFFLINE", raising=False)
    mp.delenv("TRANSFORMERS_OFFLINE", raising=False)
    mp.setattr(constants, "HF_HUB_OFFLINE", False)
    try:
        with FakeHub() as hub, FakeFileHost() as host:
            hub.add_repo(BGE, folder=build_xlmr_cross_encoder(tmp / "bge"))
            hub.add_repo(M3, folder=build_xlmr_cross_encoder(tmp / "m3", seed=12))
            host.files[f"/{MB}.zip"] = zip_folder(build_multibert_flashrank(tmp / "mb"), MB)
            store = ModelStore(tmp / "flashrank", host.base_url, hf_cache_dir=tmp / "hf", hf_endpoint=hub.base_url)
            for name in (BGE, M3, MB):
                store.pull(model_ref(name))
    finally:
        mp.undo()
    return tmp


@pytest.fixture
def ml_settings(settings, pulled, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(pulled / "hf"))  # where the server's model store looks
    return settings.model_copy(update={"flashrank_cache_dir": pulled / "flashrank"})


def _in_process(pulled, family, model, query=QUERY, texts=TEXTS, **options):
    """What the named model gives in this process, through the same model store."""
    from rerank_mcp.tools.models_store import ModelStore
    from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry

    store = ModelStore(pulled / "flashrank", hf_cache_dir=pulled / "hf", downloads=False)
    reg = RerankerRegistry(RerankContext(configs={"flashrank": {"cache_dir": str(pulled / "flashrank")}}, models=store))
    return {p.index: p.score for p in reg.get(family, {"model": model, **options}).rerank(query, texts).passages}


@pytest.mark.anyio
async def test_rerank_and_search_and_list_rerankers_through_mcp(ml_settings, pulled):
    async with Client(build_server(ml_settings, embedder_factory=shared_embedder(ml_settings))) as c:
        for family, model in (("cross-encoder", BGE), ("cross-encoder", M3), ("flashrank", MB)):
            r = await c.call_tool("rerank", {"query": QUERY, "passages": TEXTS, "reranker": family,
                                             "options": {"model": model}})
            assert not r.is_error, r.content
            out = r.structured_content
            assert out["reranker"] == family and out["model"] == model and out["used"] is None and not out["fallback"]
            got = {p["index"]: p["score"] for p in out["passages"]}
            assert got == pytest.approx(_in_process(pulled, family, model), rel=1e-5, abs=1e-6)

        # auto: the default cross-encoder is not here; for a Chinese query it takes the best
        # multilingual model present and says why
        r = await c.call_tool("rerank", {"query": QUERY, "passages": TEXTS})
        out = r.structured_content
        assert out["reranker"] == "auto" and out["used"] == "cross-encoder"
        assert out["notes"][0].startswith(f"auto picked cross-encoder with model={M3} (multilingual): the query is "
                                          "not English and embedding's model")
        got = {p["index"]: p["score"] for p in out["passages"]}
        assert got == pytest.approx(_in_process(pulled, "cross-encoder", M3), rel=1e-5)
        # an English query over English text keeps auto's usual pick
        r = await c.call_tool("rerank", {"query": "lazy dog", "passages": [TEXTS[-1], "Rerankers order passages."]})
        assert r.structured_content["used"] != "cross-encoder"
        assert "not English" not in r.structured_content["notes"][0]

        r = await c.call_tool("ingest", {"collection": "zh", "documents": DOCS})
        assert not r.is_error, r.content
        r = await c.call_tool("search", {"query": QUERY, "collection": "zh", "mode": "bm25", "k": 3,
                                         "rerank": {"reranker": "cross-encoder", "options": {"model": BGE}},
                                         "detail": "full"})
        assert not r.is_error, r.content
        out = r.structured_content
        assert out["reranker"] == "cross-encoder" and out["rerank_model"] == BGE and out["rerank_used"] is None
        assert out["hits"][0]["doc_id"] == "panda" and out["hits"][0]["provenance"]["rerank_score"] is not None
        r = await c.call_tool("search", {"query": QUERY, "collection": "zh", "mode": "bm25", "k": 3,
                                         "rerank": {"reranker": "auto"}})
        out = r.structured_content
        assert out["rerank_used"] == "cross-encoder" and any(f"model={M3}" in n for n in out["notes"])
        r = await c.call_tool("search", {"query": QUERY, "collection": "zh", "mode": "bm25", "k": 3,
                                         "rerank": {"reranker": "flashrank", "options": {"model": MB}}})
        assert not r.is_error and r.structured_content["rerank_model"] == MB

        r = await c.call_tool("list_rerankers", {})
        assert not r.is_error, r.content
        infos = {i["name"]: i for i in r.structured_content["result"]}
        assert infos["cross-encoder"]["languages"] == "en" and infos["bm25"]["languages"] == "multilingual"
        assert infos["auto"]["languages"] == "multilingual"
        assert f"cross-encoder with {M3} for text that is not English" in infos["auto"]["note"]



def test_http_rerank_api_serves_the_multilingual_models(pulled, tmp_path):
    env = offline_env(RERANK_MCP_DATA_DIR=str(tmp_path / "data"), RERANK_MCP_HTTP_TOKEN=TOKEN,
                      RERANK_MCP_FLASHRANK_CACHE_DIR=str(pulled / "flashrank"), HF_HUB_CACHE=str(pulled / "hf"),
                      RERANK_MCP_HTTP_MODELS=json.dumps({"zh-reranker": {"reranker": "cross-encoder",
                                                                         "options": {"model": M3}}}))
    with serve_http(env, tmp_path / "server.log", ready=models_answer(TOKEN), cwd=tmp_path) as port:
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for model, family, name in ((BGE, "cross-encoder", BGE), ("zh-reranker", "cross-encoder", M3),
                                    (f"cross-encoder:{M3}", "cross-encoder", M3), (MB, "flashrank", MB)):
            r = httpx.post(f"{base}/v2/rerank", json={"model": model, "query": QUERY, "documents": TEXTS},
                           headers=auth, timeout=120)
            assert r.status_code == 200, r.text
            got = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
            want = _in_process(pulled, family, name)
            if family == "cross-encoder":  # the Cohere shape promises [0, 1]: the logits' sigmoid
                want = {i: 1 / (1 + math.exp(-s)) for i, s in want.items()}
            assert got == pytest.approx(want, rel=1e-4, abs=1e-6), model
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log
