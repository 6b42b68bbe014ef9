"""The ``cross-encoder`` reranker on a fixture model with cross-encoder/ms-marco-MiniLM-L-6-v2's
exact architecture (encoder from the packaged all-MiniLM-L6-v2, fresh head; see
tests/fixtures/models.py). Scores are meaningless, so the tests compare with the model scored
directly through transformers, never with "relevance"."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rerank_mcp.errors import DependencyMissing, InvalidInput
from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry

QUERY = "how do cats communicate with humans"
TEXTS = [
    "Cats meow mostly to communicate with people, rarely with other cats.",
    "The stock market fell sharply on Tuesday.",
    "Purring can signal contentment but also stress or pain in cats.",
    "A recipe for bread needs flour, water, salt and yeast.",
    "Dogs bark.",
    "Tail position and ear movement are part of feline body language toward owners.",
]
FILLER = " ".join(["the river flows past green hills and quiet villages"] * 12)


@pytest.fixture(scope="module")
def direct(ce_model):
    """Score pairs straight through transformers: the reference the reranker must match."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ce_model)
    model = AutoModelForSequenceClassification.from_pretrained(ce_model).eval()

    def score(query, texts, max_length=512):
        with torch.inference_mode():
            b = tok([query] * len(texts), list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            return model(**b).logits[:, 0].tolist()

    score.tok = tok
    return score


@pytest.fixture
def registry(ce_model):
    return RerankerRegistry(RerankContext(configs={"cross-encoder": {"model": ce_model}}))


def test_order_and_scores_match_the_model(registry, direct):
    res = registry.get("cross-encoder").rerank(QUERY, TEXTS)
    ref = direct(QUERY, TEXTS)
    assert [p.index for p in res.passages] == sorted(range(len(TEXTS)), key=lambda i: -ref[i])
    for p in res.passages:
        assert p.score == pytest.approx(ref[p.index], abs=1e-4)
    assert len(set(round(s, 4) for s in ref)) > 3  # the fixture's scores do differ
    assert res.truncated == []


def test_normalize_is_sigmoid_of_logits(registry, direct):
    res = registry.get("cross-encoder", {"normalize": True}).rerank(QUERY, TEXTS)
    ref = direct(QUERY, TEXTS)
    for p in res.passages:
        assert 0.0 <= p.score <= 1.0
        assert p.score == pytest.approx(1 / (1 + math.exp(-ref[p.index])), abs=1e-5)


@pytest.mark.slow  # many runs of the fixture cross-encoder
def test_batch_size_does_not_change_scores(registry):
    texts = TEXTS + [FILLER[: 40 * k] for k in range(1, 9)]
    a = registry.get("cross-encoder", {"batch_size": 1}).rerank(QUERY, texts)
    b = registry.get("cross-encoder", {"batch_size": 64}).rerank(QUERY, texts)
    sa = {p.index: p.score for p in a.passages}
    sb = {p.index: p.score for p in b.passages}
    assert np.allclose([sa[i] for i in range(len(texts))], [sb[i] for i in range(len(texts))], atol=1e-4)


def test_truncation_is_reported_exactly(registry, direct):
    texts = ["short passage", FILLER, "another short one", FILLER[:150]]
    res = registry.get("cross-encoder", {"max_length": 32}).rerank(QUERY, texts)
    tok = direct.tok
    lengths = [len(tok(QUERY, t)["input_ids"]) for t in texts]
    assert res.truncated == [i for i, n in enumerate(lengths) if n > 32]
    assert 1 in res.truncated and 0 not in res.truncated
    assert any("truncated to 32 tokens" in n for n in res.notes)
    ref = direct(QUERY, texts, max_length=32)
    for p in res.passages:
        assert p.score == pytest.approx(ref[p.index], abs=1e-4)
        assert p.truncated == (p.index in res.truncated)


@pytest.mark.slow  # many runs of the fixture cross-encoder
def test_windowing_scores_long_passages_by_their_best_window(registry, direct):
    tok = direct.tok
    long_text = FILLER + " cats meow to talk to their humans " + FILLER
    texts = ["cats meow", long_text]
    max_len, stride = 48, 12
    res = registry.get("cross-encoder", {"max_length": max_len, "window": True, "window_stride": stride}).rerank(QUERY, texts)
    assert res.truncated == []
    assert any("best window" in n for n in res.notes)
    # Reference: the passage's token windows, decoded, scored directly; the best one wins.
    q_len = len(tok(QUERY, add_special_tokens=False)["input_ids"])
    budget = max_len - q_len - 3
    ids = tok(long_text, add_special_tokens=False)["input_ids"]
    windows = []
    start = 0
    while True:
        windows.append(tok.decode(ids[start : start + budget]))
        if start + budget >= len(ids):
            break
        start += stride
    ref = direct(QUERY, windows, max_length=max_len)
    got = {p.index: p.score for p in res.passages}
    assert got[1] == pytest.approx(max(ref), abs=1e-3)
    plain = registry.get("cross-encoder", {"max_length": max_len}).rerank(QUERY, texts)
    assert {p.index: p.score for p in plain.passages}[0] == pytest.approx(got[0], abs=1e-5)
    assert plain.truncated == [1]


def test_model_loads_once_per_configuration(ce_model, monkeypatch):
    import sentence_transformers

    loads = []
    real = sentence_transformers.CrossEncoder

    class Counting(real):
        def __init__(self, *a, **k):
            loads.append(a[0] if a else k.get("model_name_or_path"))
            super().__init__(*a, **k)

    monkeypatch.setattr(sentence_transformers, "CrossEncoder", Counting)
    reg = RerankerRegistry(RerankContext(configs={"cross-encoder": {"model": ce_model}}))
    first = reg.get("cross-encoder")
    first.rerank(QUERY, TEXTS)
    second = reg.get("cross-encoder")
    second.rerank(QUERY, TEXTS[:2])
    assert second is first
    assert loads == [ce_model]


def test_missing_model_offline_says_how_to_get_it():
    reg = RerankerRegistry(RerankContext())
    info = {i.name: i for i in reg.describe()}["cross-encoder"]
    rr = reg.get("cross-encoder", {"model": "cross-encoder/not-in-this-cache-v9"})
    with pytest.raises(DependencyMissing, match=r"huggingface-cli download cross-encoder/not-in-this-cache-v9.*local folder"):
        rr.rerank(QUERY, TEXTS)
    if not info.available:  # the default model is not downloaded on this machine
        assert "huggingface-cli download cross-encoder/ms-marco-MiniLM-L-6-v2" in info.reason


def test_bad_options(registry):
    with pytest.raises(InvalidInput, match="device"):
        registry.get("cross-encoder", {"device": "tpu"})
    with pytest.raises(InvalidInput, match="batch_size"):
        registry.get("cross-encoder", {"batch_size": 0})
    with pytest.raises(InvalidInput, match="windw"):
        registry.get("cross-encoder", {"windw": True})
