"""Reranking passages whose order is not a ranking, offline, with the default reranker.

A fresh data dir and no cross-encoder or FlashRank model on the machine: ``auto`` falls back
to the ``embedding`` reranker (the packaged all-MiniLM-L6-v2). Passages an agent collected
arrive in no meaningful order, so no reranker may blend with it: over four passages, a 50/50
RRF blend with the input order let the first passage (about BM25) win over the one about
bread. Checked through an in-memory MCP client session, and through the HTTP API served by
``rerank-mcp serve --http`` as a subprocess: Cohere's ``/v2/rerank`` with the official
``cohere`` SDK and TEI's ``/rerank``.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from pathlib import Path

import cohere
import httpx
import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from tests.conftest import shared_embedder
from tests.fixtures.env import offline_env
from tests.fixtures.servers import models_answer, serve_http

QUERY = "sourdough bread dough"
PASSAGES = [
    "Okapi BM25 ranks documents by how often the query terms occur in them, weighted by how rare the terms are.",
    "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough for many hours.",
    "FAISS searches dense vectors by inner product or L2 distance.",
    "The TCP handshake opens a connection with SYN, SYN-ACK and ACK packets.",
]
BREAD = 1
TOKEN = "unordered-token-1234"


@pytest.mark.anyio
async def test_default_rerank_over_mcp_puts_the_bread_passage_first(settings):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("rerank", {"query": QUERY, "passages": PASSAGES})
        assert not r.is_error, r.content
        res = r.structured_content
        assert res["reranker"] == "auto" and res["used"] == "embedding"
        assert [p["index"] for p in res["passages"]][0] == BREAD
        assert res["ordered"] is False and res.get("blend") is None
        assert res["notes"][0].startswith("auto picked embedding:")  # no blend named

        # the caller says the passages are ranked: offline, auto keeps that order (docs/eval/auto)
        r = await c.call_tool("rerank", {"query": QUERY, "passages": PASSAGES, "ordered": True})
        res = r.structured_content
        assert res["ordered"] is True and res["used"] == "none" and res.get("blend") is None
        assert [p["index"] for p in res["passages"]] == [0, 1, 2, 3]
        assert res["notes"][0].startswith("auto kept the input order")
        # an explicit blend with a ranked input is applied
        r = await c.call_tool("rerank", {"query": QUERY, "passages": PASSAGES, "ordered": True,
                                         "reranker": "embedding", "options": {"blend": 0.5}})
        assert r.structured_content["blend"] == 0.5


@pytest.mark.anyio
async def test_min_score_on_rerank_and_search_uses_the_rankers_own_scale(settings):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        full = (await c.call_tool("rerank", {"query": QUERY, "passages": PASSAGES})).structured_content
        cos = {p["index"]: p["score"] for p in full["passages"]}
        r = await c.call_tool("rerank", {"query": QUERY, "passages": PASSAGES, "min_score": 0.3})
        res = r.structured_content
        assert [p["index"] for p in res["passages"]] == [i for i in cos if cos[i] >= 0.3] and len(res["passages"]) < 4
        assert any(n.startswith("min_score 0.3 dropped") for n in res["notes"])
        r = await c.call_tool("rerank", {"query": QUERY, "passages": PASSAGES, "min_score": "x"})
        assert r.is_error

        # inside search the order is a ranking (blended scores), but min_score reads the cosine
        docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(PASSAGES)]
        assert not (await c.call_tool("ingest", {"collection": "bread", "documents": docs})).is_error
        r = await c.call_tool("search", {"query": QUERY, "collection": "bread", "k": 4,
                                         "rerank": {"reranker": "embedding", "options": {"blend": 0.5},
                                                    "min_score": 0.3}})
        assert not r.is_error, r.content
        hits = r.structured_content["hits"]
        assert {h["doc_id"] for h in hits} == {f"d{i}" for i in cos if cos[i] >= 0.3}
        assert all(h["score"] < 0.02 for h in hits)  # the fused values rank; the cosine filters

        infos = {x["name"]: x for x in (await c.call_tool("list_rerankers", {"detail": "full"})
                                        ).structured_content["result"]}
        assert "cosine" in infos["embedding"]["score"] and "s / (s + 5)" in infos["bm25"]["score"]



@contextmanager
def _server(tmp: Path):
    env = offline_env(RERANK_MCP_DATA_DIR=str(tmp / "data"), RERANK_MCP_HTTP_TOKEN=TOKEN,
                      RERANK_MCP_FLASHRANK_CACHE_DIR=str(tmp / "no-flashrank"),
                      RERANK_MCP_HTTP_MODELS=json.dumps({"emb-blend": {"reranker": "embedding", "options": {"blend": 0.5}}}))
    with serve_http(env, tmp / "server.log", ready=models_answer(TOKEN), cwd=tmp) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unordered-api")
    with _server(tmp) as base:
        yield base


@pytest.mark.slow
def test_default_rerank_over_cohere_v2_puts_the_bread_passage_first(api):
    co = cohere.ClientV2(api_key=TOKEN, base_url=api)
    r = co.rerank(model=None, query=QUERY, documents=PASSAGES)  # type: ignore[arg-type]
    assert r.results[0].index == BREAD


@pytest.mark.slow
def test_default_rerank_over_tei_puts_the_bread_passage_first(api):
    r = httpx.post(f"{api}/rerank", json={"query": QUERY, "texts": PASSAGES},
                   headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()[0]["index"] == BREAD
    # ranked input, said so: offline, auto keeps its order
    r = httpx.post(f"{api}/rerank", json={"query": QUERY, "texts": PASSAGES, "ordered": True},
                   headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()[0]["index"] == 0


# ----------------------------------------------------------------------------- scores and what ran


def _cosines() -> list[float]:
    from rerank_mcp.tools.rerank.registry import RerankerRegistry

    res = RerankerRegistry().get("embedding").rerank(QUERY, PASSAGES)
    return [s for _, s in sorted((p.index, p.score) for p in res.passages)]


@pytest.mark.slow
def test_http_scores_are_the_rankers_own_mapped_to_unit_and_say_what_ran(api):
    h = {"Authorization": f"Bearer {TOKEN}"}
    # TEI raw_scores: the cosine itself (the server's embedding backend may round differently from torch's)
    raw = httpx.post(f"{api}/rerank", json={"query": QUERY, "texts": PASSAGES, "raw_scores": True}, headers=h,
                     timeout=120).json()
    cos = {x["index"]: x["score"] for x in raw}
    assert cos == pytest.approx(dict(enumerate(_cosines())), abs=0.05)
    co = cohere.ClientV2(api_key=TOKEN, base_url=api)
    r = co.rerank(model="auto", query=QUERY, documents=PASSAGES)
    for x in r.results:  # (cosine + 1) / 2: not RRF values near 0.016
        assert 0.0 <= x.relevance_score <= 1.0
        assert x.relevance_score == pytest.approx((cos[x.index] + 1) / 2, abs=1e-6)
    assert r.meta.warnings and r.meta.warnings[0].startswith("ranked by embedding, not auto: auto picked embedding")

    for path, body in (("/v2/rerank", {"query": QUERY, "documents": PASSAGES}),
                       ("/v1/rerank", {"query": QUERY, "documents": PASSAGES}),
                       ("/rerank", {"query": QUERY, "texts": PASSAGES})):
        resp = httpx.post(f"{api}{path}", json=body, headers=h, timeout=120)
        assert resp.status_code == 200 and resp.headers["x-rerank-used"] == "embedding", (path, resp.headers)
        assert "x-rerank-blend" not in resp.headers
    resp = httpx.post(f"{api}/rerank", json={"query": QUERY, "texts": PASSAGES, "ordered": True}, headers=h, timeout=120)
    assert resp.headers["x-rerank-used"] == "none" and [x["index"] for x in resp.json()] == [0, 1, 2, 3]
    resp = httpx.post(f"{api}/v2/rerank", json={"query": QUERY, "documents": PASSAGES, "ordered": True}, headers=h,
                      timeout=120)
    assert resp.json()["meta"]["warnings"][0].startswith("not reranked: auto kept the input order (a ranking)")
    resp = httpx.post(f"{api}/rerank", json={"model": "emb-blend", "query": QUERY, "texts": PASSAGES, "ordered": True},
                      headers=h, timeout=120)
    assert resp.status_code == 200 and resp.headers["x-rerank-blend"] == "0.5"
    got = {x["index"]: x["score"] for x in resp.json()}
    assert got == pytest.approx({i: (c + 1) / 2 for i, c in cos.items()}, abs=1e-6)  # the cosine mapped, not RRF

    # min_score on the cosine's scale drops the rest
    kept = httpx.post(f"{api}/rerank", json={"query": QUERY, "texts": PASSAGES, "min_score": 0.3}, headers=h,
                      timeout=120).json()
    assert [x["index"] for x in kept] == [i for i in sorted(range(4), key=lambda i: -cos[i]) if cos[i] >= 0.3]
    assert kept and len(kept) < len(PASSAGES)
    bad = httpx.post(f"{api}/rerank", json={"query": QUERY, "texts": PASSAGES, "min_score": "high"}, headers=h,
                     timeout=120)
    assert bad.status_code == 422 and "min_score" in bad.json()["error"]


@pytest.mark.slow
def test_http_503_for_a_missing_model_says_nothing_was_ranked(api):
    r = httpx.post(f"{api}/v2/rerank", json={"model": "cross-encoder", "query": QUERY, "documents": PASSAGES},
                   headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    assert r.status_code == 503
    msg = r.json()["message"]
    assert "nothing was ranked" in msg and "models pull" in msg
    assert "instead" not in msg  # it used to say "ranked by embedding instead"


@pytest.mark.anyio
async def test_search_note_says_blended_when_a_stand_in_blends(settings):
    """The cross-encoder's model is missing: the embedding reranker stands in, blended with the
    first stage's order inside search (position-aware); the note used to call it "(alone)"."""
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(PASSAGES)]
        assert not (await c.call_tool("ingest", {"collection": "kb", "documents": docs})).is_error
        r = await c.call_tool("search", {"query": QUERY, "collection": "kb", "mode": "hybrid",
                                         "rerank": {"reranker": "cross-encoder"}})
        res = r.structured_content
        assert res["rerank_used"] == "embedding" and "not on this machine" in res["rerank_fallback"]
        note = next(n for n in res["notes"] if "embedding reranker" in n)
        assert "(blended with the incoming order by position)" in note and "(alone)" not in note
        assert res["hits"] and "blend" not in res.get("rerank_fallback", "")
        r = await c.call_tool("search", {"query": QUERY, "collection": "kb", "mode": "hybrid",
                                         "rerank": {"reranker": "embedding"}})
        note = next(n for n in r.structured_content["notes"] if "embedding reranker" in n)
        assert "(alone)" in note


@pytest.mark.anyio
async def test_list_rerankers_calls_cascade_available_when_it_runs_with_stand_ins(settings):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        infos = {x["name"]: x for x in (await c.call_tool("list_rerankers", {})).structured_content["result"]}
        cas = infos["cascade"]
        assert infos["cross-encoder"]["status"] == "missing" and infos["flashrank"]["status"] == "missing"
        assert cas["available"] is True and cas["status"] == "ready", cas
        assert "stage flashrank is answered by embedding" in cas["note"]
        assert "stage cross-encoder is answered by embedding" in cas["note"]
        r = await c.call_tool("rerank", {"query": QUERY, "passages": PASSAGES, "reranker": "cascade"})
        assert not r.is_error, r.content
        res = r.structured_content
        assert res["passages"][0]["index"] == BREAD
        # what ranked is named: the stand-in, in `used` and in each stage's note (not flashrank, which never ran)
        assert res["used"] == "embedding", res
        assert any(n.startswith("stage 1: embedding, standing in for flashrank") for n in res["notes"]), res["notes"]
        assert not any(n.startswith("stage 1: flashrank") for n in res["notes"])
        docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(PASSAGES)]
        assert not (await c.call_tool("ingest", {"collection": "kb", "documents": docs})).is_error
        r = await c.call_tool("search", {"query": QUERY, "collection": "kb", "rerank": {"reranker": "cascade"}})
        assert not r.is_error, r.content
        assert r.structured_content["rerank_used"] == "embedding", r.structured_content


def test_cli_rerank_prints_which_reranker_ranked(tmp_path, capsys):
    from rerank_mcp.server.cli import run

    base = ["--data-dir", str(tmp_path / "data")]
    assert run([*base, "rerank", QUERY, *PASSAGES]) == 0
    out = capsys.readouterr().out
    assert "reranked by embedding, picked by auto" in out and "blended" not in out
    assert run([*base, "rerank", "--ordered", QUERY, *PASSAGES]) == 0
    assert "reranked by none: auto kept the input order (a ranking)" in capsys.readouterr().out
    assert run([*base, "rerank", "--ordered", "-r", "embedding", "--options", '{"blend": 0.5}', QUERY, *PASSAGES]) == 0
    assert "reranked by embedding, blended with the input order" in capsys.readouterr().out
    assert run([*base, "rerank", "-r", "cross-encoder", QUERY, *PASSAGES]) == 0
    out = capsys.readouterr().out
    assert "reranked by embedding, standing in for cross-encoder" in out and "fallback:" in out
    assert run([*base, "rerank", "-r", "cascade", QUERY, *PASSAGES]) == 0
    out = capsys.readouterr().out
    assert "reranked by embedding, standing in for cascade" in out and "stage 1: embedding, standing in" in out
    assert run([*base, "rerank", "--min-score", "0.3", QUERY, *PASSAGES]) == 0
    assert "min_score 0.3 dropped" in capsys.readouterr().out


@pytest.mark.anyio
async def test_default_search_rerank_offline_keeps_the_first_stage_order(settings):
    """Inside search the candidates are a ranking; with no cross-encoder or FlashRank model, auto
    keeps their order (every offline reranker measured below a hybrid first stage)."""
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(PASSAGES)]
        assert not (await c.call_tool("ingest", {"collection": "kb", "documents": docs})).is_error
        plain = (await c.call_tool("search", {"query": QUERY, "collection": "kb", "k": 4})).structured_content
        r = await c.call_tool("search", {"query": QUERY, "collection": "kb", "k": 4, "rerank": {"reranker": "auto"}})
        res = r.structured_content
        assert res["rerank_used"] == "none"
        assert [h["chunk_id"] for h in res["hits"]] == [h["chunk_id"] for h in plain["hits"]]
        assert any(n.startswith("auto kept the input order") for n in res["notes"])


# ----------------------------------------------------------------------------- models that cannot be had

E5 = "intfloat/multilingual-e5-small"
CE_DEFAULT = "cross-encoder/ms-marco-MiniLM-L-6-v2"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound, then closed: nothing listens there (the hub unreachable)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unreachable_hub(monkeypatch, tmp_path: Path) -> str:
    """Downloads allowed, the hub at an address where nothing listens, an empty model cache."""
    from huggingface_hub import constants

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return endpoint


@pytest.mark.slow
@pytest.mark.anyio
async def test_auto_ranks_with_bm25_when_the_embedding_model_cannot_be_fetched(tmp_path, monkeypatch):
    """The configured embedding model is missing and the hub unreachable: auto (and the stand-in
    for a missing cross-encoder) rank with BM25 and say why, where the call used to fail with
    "downloading 'intfloat/multilingual-e5-small' from the Hugging Face hub failed: ConnectError"."""
    from rerank_mcp.server.settings import Settings

    _unreachable_hub(monkeypatch, tmp_path)
    s = Settings(data_dir=tmp_path / "data", embedding_model=E5, flashrank_cache_dir=tmp_path / "no-flashrank",
                 log_level="WARNING")
    async with Client(build_server(s)) as c:
        r = await c.call_tool("rerank", {"query": "pasta", "passages": ["pasta water", "weather"]})
        assert not r.is_error, r.content
        res = r.structured_content
        assert res["used"] == "bm25" and [p["index"] for p in res["passages"]] == [0, 1]
        note = res["notes"][0]
        assert note.startswith(f"auto picked bm25: embedding could not load its model (downloading '{E5}'"), note
        assert "ConnectError" in note
        r = await c.call_tool("rerank", {"query": "pasta", "passages": ["pasta water", "weather"],
                                         "reranker": "cross-encoder"})
        assert not r.is_error, r.content
        res = r.structured_content
        assert res["used"] == "bm25" and "embedding could not load its model" in res["fallback"]
        # the failed download is not tried again on every call for a minute, and the note says when it is
        assert re.search(r"ConnectError.*; it is tried again in (59|60) s, or fetch it with "
                         rf"`rerank-mcp models pull {E5}`", res["fallback"]), res["fallback"]
        assert "so bm25 ranked instead" in res["fallback"]


def test_cli_auto_ranks_with_bm25_and_names_why_nothing_was_downloaded(tmp_path, monkeypatch, capsys):
    """The CLI downloads nothing: it says so (not 'download_models', a setting that is on), and auto
    ranks with BM25 rather than fail for want of the embedding model."""
    from rerank_mcp.server.cli import run

    _unreachable_hub(monkeypatch, tmp_path)
    monkeypatch.setenv("RERANK_MCP_EMBEDDING_MODEL", E5)
    base = ["--data-dir", str(tmp_path / "data")]
    assert run([*base, "rerank", "pasta", "pasta water", "weather"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the table wraps long notes
    assert "auto picked bm25: embedding could not load its model" in out
    assert ("a one-shot command downloads no model: `rerank-mcp serve` downloads on first use while "
            "RERANK_MCP_DOWNLOAD_MODELS is on, its default") in out
    assert "download_models" not in out
    monkeypatch.setenv("RERANK_MCP_DOWNLOAD_MODELS", "false")
    assert run([*base, "rerank", "-r", "cross-encoder", "pasta", "pasta water", "weather"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "downloads are off here (RERANK_MCP_DOWNLOAD_MODELS is false)" in out and "so bm25 ranked instead" in out


@contextmanager
def _online_server(tmp: Path, endpoint: str, **extra: str):
    env = offline_env(RERANK_MCP_DATA_DIR=str(tmp / "data"), RERANK_MCP_HTTP_TOKEN=TOKEN, HF_HUB_OFFLINE="0",
                      TRANSFORMERS_OFFLINE="0", HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(tmp / "hf"),
                      RERANK_MCP_FLASHRANK_CACHE_DIR=str(tmp / "flashrank"), RERANK_MCP_LOG_LEVEL="INFO", **extra)
    with serve_http(env, tmp / "server.log", ready=models_answer(TOKEN), cwd=tmp) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.mark.slow
def test_http_auto_ranks_with_bm25_and_a_failed_download_says_it_failed(tmp_path):
    """Over HTTP: no model named, the embedding model not to be had -> 200 ranked by bm25 (it was a
    502); the default cross-encoder's download fails at once -> its 503 says it failed, why and when
    it is tried again (it said "downloading in the background (0%)")."""
    h = {"Authorization": f"Bearer {TOKEN}"}
    with _online_server(tmp_path, f"http://127.0.0.1:{_closed_port()}", RERANK_MCP_EMBEDDING_MODEL=E5) as api:
        r = httpx.post(f"{api}/v2/rerank", json={"query": "pasta", "documents": ["pasta water", "weather"]},
                       headers=h, timeout=120)
        assert r.status_code == 200, r.text
        assert r.headers["x-rerank-used"] == "bm25" and [x["index"] for x in r.json()["results"]] == [0, 1]
        warning = r.json()["meta"]["warnings"][0]
        assert warning.startswith("ranked by bm25, not auto: auto picked bm25: embedding could not load its model")
        messages = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = httpx.post(f"{api}/v2/rerank", json={"model": "cross-encoder", "query": "pasta",
                                                     "documents": ["pasta water", "weather"]}, headers=h, timeout=120)
            assert r.status_code == 503, r.text
            messages.append(r.json()["message"])
            if "the download failed" in messages[-1]:
                break
            time.sleep(0.5)
        assert "the download failed" in messages[-1], messages
        assert "ConnectError" in messages[-1] and re.search(r"it is tried again in \d+ s", messages[-1])
        assert f"`rerank-mcp models pull {CE_DEFAULT}`" in messages[-1] and "nothing was ranked" in messages[-1]
        assert not any("(0%)" in m or "0.0 MB so far" in m for m in messages), messages
        # auto's note says the same of its first choice
        r = httpx.post(f"{api}/v2/rerank", json={"query": "pasta", "documents": ["pasta water", "weather"]},
                       headers=h, timeout=120)
        assert f"cross-encoder's model {CE_DEFAULT} is not here: the download failed" in r.json()["meta"]["warnings"][0]
    assert "Traceback" not in (tmp_path / "server.log").read_text()


@pytest.mark.slow
def test_http_downloads_only_the_operators_models(tmp_path):
    """A model a request names that is not here is a 404 naming `rerank-mcp models pull` and starts no
    download (it used to be a 503 "downloading in the background" while the server fetched any
    repository); the operator's configured models still download on first use."""
    from tests.fixtures.hub import FakeFileHost, FakeHub

    h = {"Authorization": f"Bearer {TOKEN}"}
    aliases = {"my-reranker": {"reranker": "cross-encoder", "options": {"model": "owner/operators-reranker"}}}
    with FakeHub() as hub, FakeFileHost() as files, _online_server(
            tmp_path, hub.base_url, RERANK_MCP_FLASHRANK_BASE_URL=files.base_url,
            RERANK_MCP_HTTP_MODELS=json.dumps(aliases)) as api:
        for model, fetch in (("someone/not-a-reranker-7b", "someone/not-a-reranker-7b"),
                             ("cross-encoder:someone/other-7b", "someone/other-7b"),
                             ("embedding:someone/an-embedder", "someone/an-embedder"),
                             ("ms-marco-MiniLM-L-12-v2", "ms-marco-MiniLM-L-12-v2")):
            for path, body in (("/v2/rerank", {"documents": PASSAGES}), ("/rerank", {"texts": PASSAGES})):
                r = httpx.post(f"{api}{path}", json={"model": model, "query": QUERY, **body}, headers=h, timeout=120)
                assert r.status_code == 404, (model, r.status_code, r.text)
                msg = r.json()["message" if path == "/v2/rerank" else "error"]
                assert f"`rerank-mcp models pull {fetch}`" in msg and "downloads no model a request names" in msg, msg
        time.sleep(1.0)
        asked = [p for _, p, _ in hub.requests] + [p for _, p, _ in files.requests]
        assert not any(x in p for p in asked for x in ("not-a-reranker", "other-7b", "an-embedder", "L-12")), asked
        # the operator's alias and default may download on first use
        r = httpx.post(f"{api}/v2/rerank", json={"model": "my-reranker", "query": QUERY, "documents": PASSAGES},
                       headers=h, timeout=120)
        assert r.status_code == 503 and "nothing was ranked" in r.json()["message"], r.text
        deadline = time.monotonic() + 30
        while not any("operators-reranker" in p for _, p, _ in hub.requests) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any("operators-reranker" in p for _, p, _ in hub.requests)


@pytest.mark.slow
def test_http_cascade_with_its_stages_models_missing_is_a_503(api):
    """cascade named over HTTP while its stages' models are missing: a 503 naming both models (it was
    a 200 with x-rerank-used: cascade and 1/rank scores of a stand-in, no warning)."""
    r = httpx.post(f"{api}/v2/rerank", json={"model": "cascade", "query": QUERY, "documents": PASSAGES},
                   headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    assert r.status_code == 503, (r.status_code, r.headers, r.text)
    msg = r.json()["message"]
    assert msg.startswith("model 'cascade' needs models that are not on this machine yet")
    assert "`rerank-mcp models pull ms-marco-TinyBERT-L-2-v2`" in msg and f"`rerank-mcp models pull {CE_DEFAULT}`" in msg
    assert "nothing was ranked" in msg
