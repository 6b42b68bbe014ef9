"""``flashrank``: FlashRank's ONNX cross-encoders (TinyBERT-L-2 by default).

FlashRank downloads a model zip from Hugging Face when ``cache_dir/<model_name>/`` is
missing; FlashRank itself is never asked to download unless ``allow_download`` is set: a model
that is not in the cache is a clear :class:`DependencyMissing` raised *before* FlashRank is
asked for it. The server fetches models with its model store instead (``rerank-mcp models
pull``, or in the background on first use: :mod:`tools.models_store`), which checks the archive
and installs it in one step.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from rerank_mcp.errors import DependencyMissing, InvalidInput
from rerank_mcp.tools.cancel import check

# KNOWN_MODELS: FlashRank model name -> model file (mirrors flashrank.Config.model_file_map, checked
# against it at load time), so names are validated without importing flashrank / onnxruntime
from rerank_mcp.tools.models_store import FLASHRANK_BASE_URL, ModelRef
from rerank_mcp.tools.models_store import FLASHRANK_MODELS as KNOWN_MODELS
from rerank_mcp.tools.rerank.base import FamilyConfig, Reranker, RerankOptions, Scored
from rerank_mcp.tools.rerank.cross_encoder import length_sorted_batches
from rerank_mcp.tools.rerank.defaults import FLASHRANK_MODEL

LISTWISE = {"rank_zephyr_7b_v1_full"}
MODEL_URL = FLASHRANK_BASE_URL + "/{}.zip"


def default_cache_dir() -> str:
    from rerank_mcp.index.model_names import cache_dir

    return str(cache_dir("flashrank"))


def _cache_dir(config: FlashRankConfig) -> str:
    return str(config.cache_dir) if config.cache_dir else default_cache_dir()


def _model_map() -> dict[str, str]:
    try:
        from flashrank.Config import model_file_map
    except Exception:
        return dict(KNOWN_MODELS)
    return {**KNOWN_MODELS, **model_file_map}


def _missing_reason(model: str, cache_dir: str) -> str | None:
    file = _model_map().get(model)
    if file is None:
        return f"unknown FlashRank model {model!r}; known: {', '.join(sorted(_model_map()))}"
    path = Path(cache_dir) / model / file
    if path.is_file():
        return None
    return (
        f"FlashRank model {model!r} is not in the cache ({path} missing) and is not downloaded offline: "
        f"run `rerank-mcp models pull {model}`, or fetch {MODEL_URL.format(model)} and unzip it into {cache_dir}, "
        f"set the FlashRank cache dir setting to a folder that holds it, or pass options.allow_download=true "
        f"where Hugging Face is reachable"
    )


class FlashRankConfig(FamilyConfig):
    """The operator's FlashRank settings: RERANK_MCP_FLASHRANK_MODEL and _CACHE_DIR (the server's
    default cache folder: ``<data dir>/flashrank``, server/state.py)."""

    settings_prefix = "flashrank_"

    model: str = FLASHRANK_MODEL
    cache_dir: Path | None = None


class FlashRankOptions(RerankOptions):
    model: str | None = Field(None, description=f"FlashRank model: {', '.join(KNOWN_MODELS)}; default: the "
                              f"flashrank_model setting ({FLASHRANK_MODEL})")
    max_length: int = Field(512, ge=8, description="tokens per (query, passage) pair")
    batch_size: int = Field(16, gt=0, description="pairs per ONNX run")
    cache_dir: str | None = Field(None, description="folder holding <model>/ (default: the server's)")
    allow_download: bool = Field(False, description="let FlashRank fetch a missing model itself")


class FlashRankReranker(Reranker):
    """Options: see :class:`FlashRankOptions`; the operator's settings: :class:`FlashRankConfig`."""

    family = "flashrank"
    Options = FlashRankOptions
    Config = FlashRankConfig
    options: FlashRankOptions
    config: FlashRankConfig
    path_options = ("model", "cache_dir")
    score_meaning = "the model's relevance probability in [0, 1] (listwise models: 1/rank); returned as is"

    def __init__(self, options: FlashRankOptions | None = None, *, context: Any = None,
                 registry: Any = None) -> None:
        super().__init__(options, context=context, registry=registry)
        if self.model not in _model_map():
            raise InvalidInput(f"unknown FlashRank model {self.model!r}; known: {', '.join(sorted(_model_map()))}")
        self.cache_dir = self.options.cache_dir or _cache_dir(self.config)
        self._ranker: Any = None
        self._lock = threading.Lock()

    @classmethod
    def availability(cls, context: Any) -> str | None:
        config = cls.family_config(context)
        return _missing_reason(config.model, _cache_dir(config))

    @classmethod
    def default_model(cls, context: Any) -> str | None:
        return cls.family_config(context).model

    @classmethod
    def default_model_ref(cls, context: Any) -> Any:
        model = cls.default_model(context)
        return ModelRef(model, "flashrank") if model in KNOWN_MODELS else None

    @classmethod
    def known_models(cls) -> tuple[str, ...]:
        return tuple(_model_map())

    def required_model(self) -> Any:
        """The model, when it lives where the server's model store puts FlashRank models."""
        store = getattr(self.context, "models", None)
        if store is None or self.model not in KNOWN_MODELS:
            return None
        if Path(self.cache_dir).expanduser().resolve() != Path(store.flashrank_dir).resolve():
            return None
        return ModelRef(self.model, "flashrank")

    def _load(self) -> Any:
        with self._lock:
            if self._ranker is not None:
                return self._ranker
            reason = _missing_reason(self.model, self.cache_dir)
            if reason and not self.options.allow_download:
                raise DependencyMissing(reason)
            os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
            try:
                from flashrank import Ranker
            except ImportError as exc:
                raise DependencyMissing(f"the flashrank reranker needs flashrank and onnxruntime: pip install flashrank ({exc})") from None
            try:
                self._ranker = Ranker(
                    model_name=self.model, cache_dir=self.cache_dir, max_length=self.options.max_length, log_level="WARNING"
                )
            except ImportError as exc:  # the listwise GGUF model needs llama-cpp-python
                raise DependencyMissing(f"FlashRank model {self.model!r} needs llama-cpp-python: pip install 'flashrank[listwise]' ({exc})") from None
            except Exception as exc:
                raise DependencyMissing(f"FlashRank model {self.model!r} could not be loaded from {self.cache_dir}: {type(exc).__name__}: {exc}") from None
            if self.model not in LISTWISE:
                # FlashRank's session, reopened with this project's CPU settings (threads on the
                # cores we may use, no busy-waiting between runs; see index.onnx_embed.ort_session)
                from rerank_mcp.index.onnx_embed import ort_session

                self._ranker.session = ort_session(Path(self.cache_dir) / self.model / _model_map()[self.model], spin=False)
            return self._ranker

    def _score(self, query: str, texts: Sequence[str]) -> Scored:
        ranker = self._load()
        if self.model in LISTWISE:
            from flashrank import RerankRequest

            out = ranker.rerank(RerankRequest(query=query, passages=[{"id": i, "text": t} for i, t in enumerate(texts)]))
            scores = [0.0] * len(texts)
            for rank, p in enumerate(out, start=1):
                scores[p["id"]] = 1.0 / rank
            return Scored(scores, notes=["listwise FlashRank model: scores are 1/rank"])

        scores, truncated = self._score_pairs(ranker, [(query, t) for t in texts])
        return self._scored(scores, truncated)

    def _score_many(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[Scored]:
        """The (query, passage) pairs of all requests share one run of length-sorted batches."""
        if self.model in LISTWISE or len(requests) < 2:
            return super()._score_many(requests)
        ranker = self._load()
        scores, truncated = self._score_pairs(ranker, [(q, t) for q, texts in requests for t in texts])
        out, start = [], 0
        for _, texts in requests:
            end = start + len(texts)
            out.append(self._scored(scores[start:end], truncated[start:end]))
            start = end
        return out

    def _scored(self, scores: list[float], truncated: list[bool]) -> Scored:
        notes = []
        if any(truncated):
            tok = self._ranker.tokenizer
            limit = tok.truncation["max_length"] if tok.truncation else self.options.max_length
            notes.append(f"{sum(truncated)} passage(s) truncated to {limit} tokens (query + passage)")
        return Scored(scores, truncated=truncated, notes=notes)

    def _score_pairs(self, ranker: Any, pairs: list[tuple[str, str]]) -> tuple[list[float], list[bool]]:
        # FlashRank's own ``rerank`` tokenises and runs one padded batch per call; here the pairs
        # are tokenised once with FlashRank's tokenizer and run through its ONNX session in
        # length-sorted batches (each pads only to its own longest pair), with FlashRank's
        # score function (sigmoid of a single logit, else softmax of the positive class).
        import numpy as np

        tok = ranker.tokenizer
        session = ranker.session
        enc = tok.encode_batch([[q, t] for q, t in pairs])
        truncated = [bool(e.overflowing) for e in enc]
        lengths = [sum(e.attention_mask) for e in enc]
        inputs = {i.name for i in session.get_inputs()}
        scores = [0.0] * len(pairs)
        for chunk in length_sorted_batches(lengths, self.options.batch_size):
            check()  # a cancelled call stops here, between model batches
            width = max(lengths[i] for i in chunk)
            feed = {
                "input_ids": np.array([enc[i].ids[:width] for i in chunk], dtype=np.int64),
                "attention_mask": np.array([enc[i].attention_mask[:width] for i in chunk], dtype=np.int64),
            }
            if "token_type_ids" in inputs:
                feed["token_type_ids"] = np.array([enc[i].type_ids[:width] for i in chunk], dtype=np.int64)
            logits = session.run(None, feed)[0]
            if logits.shape[1] == 1:
                out = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            else:
                e = np.exp(logits - logits.max(axis=1, keepdims=True))
                out = e[:, 1] / e.sum(axis=1)
            for i, v in zip(chunk, out):
                scores[i] = float(v)
        return scores, truncated
