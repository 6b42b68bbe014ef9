"""First use of a reranker whose model is not here, and the ``auto`` default.

A local Hugging Face-compatible hub serves the cross-encoder fixture (ms-marco-MiniLM-L-6-v2's
architecture, random head) under its real name, and a local host serves FlashRank's archive.
A call that needs a missing model is answered at once by the best reranker present, saying
which ran, why and how far the background download is; once the download is complete the next
call uses the model. With downloads off: the same stand-in, and the pull command in the note.
"""

from __future__ import annotations

import hashlib
import re
import time

import numpy as np
import pytest

from rerank_mcp.tools.models_store import ModelStore, model_ref
from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry
from tests.fixtures.hub import FakeFileHost, FakeHub, zip_folder

pytestmark = pytest.mark.slow  # background downloads from a local hub, waited for

CE = "cross-encoder/ms-marco-MiniLM-L-6-v2"
FR = "ms-marco-TinyBERT-L-2-v2"
QUERY = "how do rerankers order passages"
TEXTS = [f"passage {i}: rerankers order passages by relevance to the query, case {i}" for i in range(6)]


class HashEmbedder:
    """A bi-encoder stand-in: hashed bag of words, normalised (the embedding family's collaborator)."""

    name = "hash-embedder"

    def encode(self, texts):
        out = np.zeros((len(texts), 64), np.float32)
        for r, t in enumerate(texts):
            for w in t.lower().split():
                out[r, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)



@pytest.fixture
def hub(online, ce_model):
    with FakeHub() as h:
        h.add_repo(CE, folder=ce_model)
        yield h


@pytest.fixture
def host(online, flashrank_cache):
    with FakeFileHost() as h:
        h.files[f"/{FR}.zip"] = zip_folder(f"{flashrank_cache}/{FR}", FR)
        yield h


def registry(tmp_path, hub, host=None, downloads=True):
    store = ModelStore(tmp_path / "flashrank", host.base_url if host else "http://127.0.0.1:9",
                       hf_cache_dir=tmp_path / "hf", hf_endpoint=hub.base_url, downloads=downloads)
    ctx = RerankContext(configs={"cross-encoder": {"model": CE}, "flashrank": {"model": FR, "cache_dir": store.flashrank_dir}},
                        models=store, fallback_when_missing=True, embedder=lambda model: HashEmbedder())
    return RerankerRegistry(ctx), store


def infos(reg):
    return {i.name: i for i in reg.describe()}


def test_first_use_downloads_in_the_background_then_switches(tmp_path, hub, ce_model):
    reg, store = registry(tmp_path, hub)
    hub.delay_s = 0.004  # slow enough to see the download in progress
    ref = model_ref(CE)

    first = reg.get("cross-encoder").rerank(QUERY, TEXTS)
    assert first.reranker == "cross-encoder" and first.used == "embedding"
    assert f"cross-encoder model '{CE}' is not on this machine yet: downloading in the background" in first.fallback
    assert "ranked by embedding instead" in first.fallback
    assert first.download.state == "downloading" and first.download.model == CE
    assert first.download.command == f"rerank-mcp models pull {CE}"
    assert sorted(p.index for p in first.passages) == list(range(len(TEXTS)))

    during = infos(reg)["cross-encoder"]
    assert during.status == "downloading" and during.download.state == "downloading"
    assert "answered by embedding" in during.note
    time.sleep(0.3)
    later = infos(reg)["cross-encoder"].download
    assert later is None or later.done_bytes >= during.download.done_bytes

    assert store.wait(ref, 300)
    second = reg.get("cross-encoder").rerank(QUERY, TEXTS)
    assert second.used is None and second.fallback is None and second.download is None
    assert infos(reg)["cross-encoder"].status == "ready"
    # the downloaded model is the hub's: the same scores as loading the fixture folder itself
    direct = RerankerRegistry(RerankContext(configs={"cross-encoder": {"model": ce_model}})).get("cross-encoder")
    want = {p.index: p.score for p in direct.rerank(QUERY, TEXTS).passages}
    assert {p.index: p.score for p in second.passages} == pytest.approx(want, rel=1e-5)


def test_downloads_off_same_stand_in_with_the_pull_command(tmp_path, hub):
    reg, store = registry(tmp_path, hub, downloads=False)
    res = reg.get("cross-encoder").rerank(QUERY, TEXTS)
    assert res.used == "embedding"
    # the reason names the setting that switched downloads off
    assert (f"downloads are off here (RERANK_MCP_DOWNLOAD_MODELS is false): fetch it with "
            f"`rerank-mcp models pull {CE}`") in res.fallback
    assert res.download.state == "missing"
    info = infos(reg)["cross-encoder"]
    assert info.status == "missing" and info.download.command == f"rerank-mcp models pull {CE}"
    assert not hub.requests and not store.present(model_ref(CE))


def test_failed_background_download_is_reported(tmp_path, online):
    with FakeHub() as empty:  # the model is not on this hub
        reg, store = registry(tmp_path, empty)
        res = reg.get("cross-encoder").rerank(QUERY, TEXTS)
        assert res.used == "embedding"
        store.wait(model_ref(CE), 60)
        res = reg.get("cross-encoder").rerank(QUERY, TEXTS)
        assert "the download failed" in res.fallback and "no model" in res.fallback
        # ... and when it is tried again (a minute after it failed)
        assert re.search(r"it is tried again in (59|60) s \(on the next call after that\), or fetch it with "
                         rf"`rerank-mcp models pull {CE}`", res.fallback), res.fallback
        info = infos(reg)["cross-encoder"]
        assert info.status == "missing" and info.download.state == "failed" and "no model" in info.download.error
        # auto says the download failed, not that the model is downloading
        res = reg.get("auto").rerank(QUERY, TEXTS)
        assert res.notes[0].startswith(f"auto picked embedding: cross-encoder's model {CE} is not here: the download "
                                       "failed (no model"), res.notes[0]
        assert "downloading" not in res.notes[0]


def test_a_download_that_has_received_nothing_says_it_just_started():
    """Not '0.0 MB so far' (as if bytes were arriving) while the first attempt may be failing."""
    from rerank_mcp.tools.rerank.auto import _pct
    from rerank_mcp.tools.rerank.base import ModelDownload, download_text

    d = ModelDownload(model=CE, state="downloading", command=f"rerank-mcp models pull {CE}")
    assert download_text(d) == "downloading in the background (started just now, nothing received yet)"
    assert _pct(d) == "started just now, nothing received yet"
    d = ModelDownload(model=CE, state="downloading", done_bytes=2_000_000, command="x")
    assert _pct(d) == "2.0 MB so far"


def test_auto_picks_the_best_present_and_moves_up_when_a_download_completes(tmp_path, hub, host):
    reg, store = registry(tmp_path, hub, host)
    hub.delay_s = 0.002
    res = reg.get("auto").rerank(QUERY, TEXTS)
    assert res.reranker == "auto" and res.used == "embedding"
    assert res.notes[0].startswith("auto picked embedding: cross-encoder's model")
    assert res.download is not None and res.download.model == CE  # auto fetches its first choice
    assert res.blend is None and not any("RRF" in n for n in res.notes)  # unordered: embedding alone
    res = reg.get("auto").rerank(QUERY, TEXTS, ordered=True)  # a ranking: offline, its order is kept
    assert res.used == "none" and [p.index for p in res.passages] == list(range(len(TEXTS)))
    assert res.notes[0].startswith("auto kept the input order (a ranking): cross-encoder's model")
    assert "embedding and bm25 measured below it (docs/eval/auto/report.md)" in res.notes[0]
    assert infos(reg)["auto"].note.startswith("picks embedding now")

    store.pull(model_ref(FR))  # flashrank arrives first
    assert reg.get("auto").rerank(QUERY, TEXTS).used == "flashrank"

    assert store.wait(model_ref(CE), 300)
    res = reg.get("auto").rerank(QUERY, TEXTS)
    assert res.used == "cross-encoder" and res.download is None
    assert res.notes[0] == "auto picked cross-encoder: the first choice"
    assert infos(reg)["auto"].note == "picks cross-encoder now"


def test_auto_without_any_model_store_still_answers():
    reg = RerankerRegistry(RerankContext(configs={"cross-encoder": {"model": "cross-encoder/not-here-v0"},
                                                  "flashrank": {"model": FR, "cache_dir": "/nonexistent/fr"}},
                                         embedder=lambda model: HashEmbedder()))
    res = reg.get("auto").rerank(QUERY, TEXTS)
    assert res.used == "embedding" and "not here" in res.notes[0]


def test_the_default_reranker_is_auto_and_offline_turns_downloads_off(tmp_path, monkeypatch):
    from rerank_mcp.server.settings import Settings
    from rerank_mcp.server.state import model_store

    s = Settings(data_dir=tmp_path)
    assert s.reranker_default == "auto" and s.download_models
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert model_store(s).downloads is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert model_store(s).downloads is True
    assert model_store(Settings(data_dir=tmp_path, download_models=False)).downloads is False
