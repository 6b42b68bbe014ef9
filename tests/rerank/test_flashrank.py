"""The ``flashrank`` reranker through FlashRank's real ``Ranker`` and onnxruntime, on a fixture
model with ms-marco-TinyBERT-L-2-v2's architecture exported to ONNX in FlashRank's cache layout
(tests/fixtures/models.py). Scores are compared with the same weights run through torch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rerank_mcp.errors import DependencyMissing, InvalidInput
from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry

QUERY = "effects of caffeine on sleep"
TEXTS = [
    "Caffeine taken late in the day shortens total sleep time.",
    "The Eiffel tower is in Paris.",
    "Adenosine receptors are blocked by caffeine, which delays sleepiness.",
    "Bananas are rich in potassium.",
    "Coffee",
    "Sleep deprivation impairs memory consolidation in students.",
]
LONG = " ".join(["randomized trials measured outcomes across many participants"] * 40)


@pytest.fixture(scope="module")
def direct(flashrank_cache):
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    mdir = os.path.join(flashrank_cache, "ms-marco-TinyBERT-L-2-v2")
    tok = AutoTokenizer.from_pretrained(mdir)
    model = BertForSequenceClassification.from_pretrained(os.path.join(mdir, "torch")).eval()

    def score(query, texts, max_length=512):
        with torch.inference_mode():
            b = tok([query] * len(texts), list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            return torch.sigmoid(model(**b).logits[:, 0]).tolist()

    score.tok = tok
    return score


@pytest.fixture
def registry(flashrank_cache):
    return RerankerRegistry(RerankContext(configs={"flashrank": {"cache_dir": flashrank_cache}}))


def test_order_and_scores_match_the_model(registry, direct):
    res = registry.get("flashrank").rerank(QUERY, TEXTS)
    ref = direct(QUERY, TEXTS)
    assert res.model == "ms-marco-TinyBERT-L-2-v2"
    assert [p.index for p in res.passages] == sorted(range(len(TEXTS)), key=lambda i: -ref[i])
    for p in res.passages:
        assert p.score == pytest.approx(ref[p.index], abs=1e-4)
    assert len(set(round(s, 4) for s in ref)) > 3


def test_batch_size_does_not_change_scores(registry):
    texts = TEXTS + [LONG[: 30 * k] for k in range(1, 12)]
    a = registry.get("flashrank", {"batch_size": 3}).rerank(QUERY, texts)
    b = registry.get("flashrank", {"batch_size": 64}).rerank(QUERY, texts)
    sa = sorted((p.index, p.score) for p in a.passages)
    sb = sorted((p.index, p.score) for p in b.passages)
    assert np.allclose([s for _, s in sa], [s for _, s in sb], atol=1e-5)


def test_truncation_is_reported(registry, direct):
    texts = ["short", LONG, LONG[:100]]
    res = registry.get("flashrank", {"max_length": 40}).rerank(QUERY, texts)
    tok = direct.tok
    lengths = [len(tok(QUERY, t)["input_ids"]) for t in texts]
    assert res.truncated == [i for i, n in enumerate(lengths) if n > 40] and 1 in res.truncated
    ref = direct(QUERY, texts, max_length=40)
    for p in res.passages:
        assert p.score == pytest.approx(ref[p.index], abs=1e-4)
    default = registry.get("flashrank").rerank(QUERY, texts)
    assert default.truncated == [i for i, n in enumerate(lengths) if n > 512]


def test_model_loads_once(registry, monkeypatch):
    import flashrank

    loads = []
    real = flashrank.Ranker

    class Counting(real):
        def __init__(self, *a, **k):
            loads.append(k.get("model_name"))
            super().__init__(*a, **k)

    monkeypatch.setattr(flashrank, "Ranker", Counting)
    a = registry.get("flashrank")
    a.rerank(QUERY, TEXTS)
    b = registry.get("flashrank")
    b.rerank(QUERY, TEXTS[:3])
    assert a is b and loads == ["ms-marco-TinyBERT-L-2-v2"]


def test_model_missing_from_cache_fails_before_any_download(tmp_path, monkeypatch):
    import flashrank

    def no_download(*a, **k):  # FlashRank must not even be asked
        raise AssertionError("flashrank.Ranker was constructed for a model that is not cached")

    monkeypatch.setattr(flashrank, "Ranker", no_download)
    reg = RerankerRegistry(RerankContext(configs={"flashrank": {"cache_dir": str(tmp_path)}}))
    info = {i.name: i for i in reg.describe()}["flashrank"]
    assert not info.available and "ms-marco-TinyBERT-L-2-v2" in info.reason
    rr = reg.get("flashrank", {"model": "ms-marco-MiniLM-L-12-v2"})
    with pytest.raises(DependencyMissing, match=r"ms-marco-MiniLM-L-12-v2.*not in the cache.*unzip it into"):
        rr.rerank(QUERY, TEXTS)
    assert list(tmp_path.iterdir()) == []  # nothing downloaded, nothing created


def test_unknown_model_and_options(registry):
    with pytest.raises(InvalidInput, match="unknown FlashRank model 'tiny-bogus'.*ms-marco-TinyBERT-L-2-v2"):
        registry.get("flashrank", {"model": "tiny-bogus"})
    with pytest.raises(InvalidInput, match="max_len"):
        registry.get("flashrank", {"max_len": 128})


def test_available_when_cached(registry):
    info = {i.name: i for i in registry.describe()}["flashrank"]
    assert info.available and info.reason is None and info.default_model == "ms-marco-TinyBERT-L-2-v2"


def test_scores_equal_flashranks_own_rerank(registry):
    """The reranker tokenises once and runs FlashRank's session in length-sorted batches
    instead of calling ``Ranker.rerank``; the scores must be the ones FlashRank computes."""
    from flashrank import RerankRequest

    texts = TEXTS + [LONG[: 37 * k] for k in range(1, 9)]
    rr = registry.get("flashrank", {"batch_size": 4})
    ours = {p.index: p.score for p in rr.rerank(QUERY, texts).passages}
    theirs = rr._load().rerank(RerankRequest(query=QUERY, passages=[{"id": i, "text": t} for i, t in enumerate(texts)]))
    assert len(theirs) == len(texts)
    for p in theirs:
        assert ours[p["id"]] == pytest.approx(float(p["score"]), abs=1e-5)


@pytest.mark.slow  # builds the int8 FlashRank fixture model
def test_int8_build_is_the_published_size_and_ranks_like_fp32(tmp_path, flashrank_cache, direct):
    """The benchmark's FlashRank model is int8 like the published ~4 MB file; its ranking must
    follow the fp32 weights' (quantisation noise only)."""
    from scipy.stats import spearmanr

    from tests.fixtures.models import FLASHRANK_FILE, build_flashrank

    mdir = build_flashrank(tmp_path, int8=True)
    int8_mb = (mdir / FLASHRANK_FILE).stat().st_size / 1e6
    fp32_mb = (Path(flashrank_cache) / "ms-marco-TinyBERT-L-2-v2" / FLASHRANK_FILE).stat().st_size / 1e6
    assert 3.0 < int8_mb < 6.0 and fp32_mb > 15.0, (int8_mb, fp32_mb)
    texts = TEXTS + [LONG[: 41 * k] for k in range(1, 12)]
    res = RerankerRegistry(RerankContext(configs={"flashrank": {"cache_dir": str(tmp_path)}})).get("flashrank").rerank(QUERY, texts)
    got = [p.score for p in sorted(res.passages, key=lambda p: p.index)]
    ref = direct(QUERY, texts)
    rho = spearmanr(got, ref).statistic
    diff = max(abs(a - b) for a, b in zip(got, ref))
    # random weights put the scores close together, so small quantisation errors swap near-ties
    assert rho > 0.8 and diff < 0.05, (rho, diff)
    assert build_flashrank(tmp_path, int8=True) == mdir  # cached: no rebuild
