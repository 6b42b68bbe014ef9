"""The ``embedding`` reranker without a server-provided bi-encoder loads its model the way the
index does (one sentence-transformers loader, ``index.embedding.Embedder``): the packaged
all-MiniLM-L6-v2 by default, a named model only from a local folder or the Hugging Face cache."""

from __future__ import annotations

import pytest

from rerank_mcp.errors import DependencyMissing
from rerank_mcp.index.embedding import Embedder
from rerank_mcp.index.model_names import packaged_model_path
from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry


def test_default_model_is_the_packaged_one_through_the_index_loader():
    rr = RerankerRegistry(RerankContext()).get("embedding")
    res = rr.rerank("volcanic eruptions", ["Lava flows from the volcano.", "Bread rises with yeast.",
                                            "word " * 600])
    enc = rr._get_encoder()
    assert isinstance(enc, Embedder) and enc.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert res.passages[0].index == 0
    assert [p.index for p in res.passages if p.truncated] == [2]  # longer than the model's 256 tokens


def test_a_model_missing_here_is_never_downloaded(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: a download would fail otherwise
    from rerank_mcp.tools.rerank.embedding import _load_sentence_transformer

    with pytest.raises(DependencyMissing, match=r"org/not-here.*huggingface-cli download org/not-here"):
        _load_sentence_transformer("org/not-here", "cpu", 8)
    assert packaged_model_path().is_dir()
