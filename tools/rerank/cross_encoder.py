"""``cross-encoder``: a sentence-transformers CrossEncoder scoring (query, passage) pairs.

The model is an HF name already in the local HF cache or a local folder (default
``context.default_cross_encoder_model``, cross-encoder/ms-marco-MiniLM-L-6-v2;
BAAI/bge-reranker-base and other sequence-classification rerankers work the same way).
Nothing is downloaded unless ``allow_download`` is set.

Truncation is always reported: each (query, passage) pair is tokenized and compared with
the model's max length. With ``window=True`` a long passage is split into overlapping token
windows and scored by its best window instead of being truncated.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any, Sequence

from tools.errors import DependencyMissing, InvalidInput
from tools.rerank.base import Reranker, Scored


def _resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _hf_cached(model: str) -> bool:
    """True when ``model`` is a local folder or an HF repo already in the local HF cache."""
    if os.path.isdir(model):
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model, "config.json")
    except Exception:
        return False
    return isinstance(hit, str)


def _not_available(model: str) -> str:
    return (
        f"cross-encoder model {model!r} is not available offline: download it with "
        f"`huggingface-cli download {model}` (on a machine with Hugging Face access; copy the HF cache over) "
        f"or point the model setting / options.model at a local folder"
    )


class CrossEncoderReranker(Reranker):
    """Options: ``device`` (cpu | cuda | auto), ``batch_size`` (32), ``max_length`` (model's),
    ``normalize`` (sigmoid the logits to [0, 1]; default False: raw logits),
    ``window`` (False) and ``window_stride`` (tokens; default half a window),
    ``allow_download`` (False)."""

    family = "cross-encoder"

    def __init__(
        self,
        model: str | None = None,
        *,
        context: Any,
        registry: Any = None,
        device: str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        normalize: bool = False,
        window: bool = False,
        window_stride: int | None = None,
        allow_download: bool = False,
    ) -> None:
        model = model or context.default_cross_encoder_model
        device = device or getattr(context, "device", None) or "cpu"
        if device not in ("cpu", "cuda", "auto") and not str(device).startswith("cuda:"):
            raise InvalidInput(f"cross-encoder option device must be cpu, cuda or auto, got {device!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise InvalidInput(f"cross-encoder option batch_size must be a positive integer, got {batch_size!r}")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 8):
            raise InvalidInput(f"cross-encoder option max_length must be an integer >= 8, got {max_length!r}")
        if window_stride is not None and (not isinstance(window_stride, int) or window_stride <= 0):
            raise InvalidInput(f"cross-encoder option window_stride must be a positive integer, got {window_stride!r}")
        super().__init__(
            model,
            device=device,
            batch_size=batch_size,
            max_length=max_length,
            normalize=normalize,
            window=window,
            window_stride=window_stride,
        )
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.normalize = bool(normalize)
        self.window = bool(window)
        self.window_stride = window_stride
        self.allow_download = bool(allow_download)
        self._ce: Any = None
        self._multi_label = False
        self._lock = threading.Lock()

    @staticmethod
    def availability(context: Any) -> str | None:
        model = context.default_cross_encoder_model
        return None if _hf_cached(model) else _not_available(model)

    # -- loading -----------------------------------------------------------------------

    def _load(self) -> Any:
        with self._lock:
            if self._ce is not None:
                return self._ce
            if not self.allow_download and not _hf_cached(self.model):
                raise DependencyMissing(_not_available(self.model))
            try:
                from sentence_transformers import CrossEncoder
            except ImportError:  # pragma: no cover - dependency of the project
                raise DependencyMissing("the cross-encoder reranker needs sentence-transformers: pip install sentence-transformers") from None
            try:
                ce = CrossEncoder(
                    self.model,
                    device=_resolve_device(self.device),
                    max_length=self.max_length,
                    local_files_only=not self.allow_download,
                )
            except Exception as exc:
                raise DependencyMissing(f"{_not_available(self.model)} (loading failed: {type(exc).__name__}: {exc})") from None
            self._ce = ce
            return ce

    def _limit(self, ce: Any) -> int:
        limit = self.max_length or ce.max_seq_length or getattr(ce.tokenizer, "model_max_length", 512)
        return int(min(limit, 100_000))

    # -- scoring -----------------------------------------------------------------------

    def _score(self, query: str, texts: Sequence[str]) -> Scored:
        ce = self._load()
        tok = ce.tokenizer
        limit = self._limit(ce)
        specials = tok.num_special_tokens_to_add(pair=True)
        q_len = len(tok(query, add_special_tokens=False)["input_ids"])
        need_offsets = self.window and getattr(tok, "is_fast", False)
        enc = tok(list(texts), add_special_tokens=False, return_offsets_mapping=need_offsets)
        lengths = [q_len + len(ids) + specials for ids in enc["input_ids"]]
        notes: list[str] = []

        # Pairs to score: (passage index, passage text or window of it).
        pairs: list[tuple[int, str]] = []
        truncated = [n > limit for n in lengths]
        budget = limit - q_len - specials
        if self.window and budget >= 8:
            stride = self.window_stride or max(1, budget // 2)
            stride = min(stride, budget)
            windowed = 0
            for i, text in enumerate(texts):
                n_tok = len(enc["input_ids"][i])
                if n_tok <= budget or not need_offsets:
                    pairs.append((i, text))
                    continue
                offsets = enc["offset_mapping"][i]
                windowed += 1
                truncated[i] = False
                start = 0
                while True:
                    end = min(start + budget, n_tok)
                    pairs.append((i, text[offsets[start][0] : offsets[end - 1][1]]))
                    if end >= n_tok:
                        break
                    start += stride
            if windowed:
                notes.append(
                    f"{windowed} passage(s) longer than {budget} passage tokens scored by their best window "
                    f"(stride {stride} tokens) instead of being truncated"
                )
        else:
            if self.window:
                notes.append("query too long to window passages; long passages were truncated")
            pairs = [(i, t) for i, t in enumerate(texts)]
        if self.window and not need_offsets:
            notes.append("windowing needs a fast tokenizer; long passages were truncated")

        raw = self._predict(ce, query, [t for _, t in pairs])
        best = [-math.inf] * len(texts)
        for (i, _), s in zip(pairs, raw):
            if s > best[i]:
                best[i] = s
        if self.normalize:
            if self._multi_label:  # already a log-probability
                best = [math.exp(s) for s in best]
            else:
                best = [1.0 / (1.0 + math.exp(-s)) if s > -700 else 0.0 for s in best]
        if any(truncated):
            notes.append(f"{sum(truncated)} passage(s) truncated to {limit} tokens (query + passage)")
        return Scored(best, truncated=truncated, notes=notes)

    def _predict(self, ce: Any, query: str, texts: list[str]) -> list[float]:
        import torch

        # Sort by length so each batch pads to similar lengths (dynamic padding), then restore order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        scores = ce.predict(
            [(query, texts[i]) for i in order],
            batch_size=self.batch_size,
            show_progress_bar=False,
            activation_fn=torch.nn.Identity(),
            convert_to_numpy=True,
        )
        out = [0.0] * len(texts)
        for pos, i in enumerate(order):
            row = scores[pos]
            # num_labels == 1: a scalar logit; more labels: the last ("relevant") class logit
            # minus the log-sum-exp, i.e. its log-probability.
            if getattr(row, "ndim", 0) == 0:
                val = float(row)
            else:
                self._multi_label = True
                vals = [float(v) for v in row]
                m = max(vals)
                lse = m + math.log(sum(math.exp(v - m) for v in vals))
                val = vals[-1] - lse
            out[i] = val
        return out
