"""``cross-encoder``: a sequence-classification reranker scoring (query, passage) pairs.

The model is an HF name already in the local HF cache or a local folder (default: the
``cross_encoder_model`` setting, :class:`CrossEncoderConfig`; ms-marco-MiniLM-L-6-v2,
BAAI/bge-reranker-base and other sequence-classification rerankers work the same way).
Nothing is downloaded unless ``allow_download`` is set.

Two backends run the same model:

- ``torch`` (default): sentence-transformers ``CrossEncoder``, fp32.
- ``onnx``: the model exported once to ONNX and quantised to int8 (dynamic, per channel) by
  :func:`index.onnx_embed.export_int8`, run with ONNX Runtime; about 2x faster on CPU, scores
  within int8 rounding of the torch ones. The exported file is cached (keyed by the model's
  files) under ``onnx_cache_dir`` (default: the user cache dir, ``rerank-mcp/cross-encoder-onnx``).

Everything but the forward pass is shared: truncation is always reported (each (query,
passage) pair is tokenized and compared with the model's max length); with ``window=True`` a
long passage is split into overlapping token windows and scored by its best window instead
of being truncated; pairs are sorted by token length and batched so that each batch pads only
to its own longest pair; ``normalize`` applies the sigmoid (or the softmax probability of the
last class for multi-label models).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rerank_mcp.errors import DependencyMissing, InvalidInput
from rerank_mcp.tools.cancel import check
from rerank_mcp.tools.rerank.base import FamilyConfig, Reranker, RerankOptions, Scored
from rerank_mcp.tools.rerank.defaults import CROSS_ENCODER_MODEL

TORCH_BATCH = 32
ONNX_BATCH = 8


def default_backend() -> str:
    """torch where sentence-transformers (and so torch) is installed, else onnx: the default
    install has ONNX Runtime only (the torch extra adds the rest)."""
    import importlib.util

    return "torch" if importlib.util.find_spec("sentence_transformers") is not None else "onnx"


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
        f"`rerank-mcp models pull {model}` (or `huggingface-cli download {model}`; on a machine without Hugging Face "
        f"access, copy the HF cache over) or point the model setting / options.model at a local folder"
    )


def _ref(model: str) -> Any:
    """The Hugging Face model ``model`` names (None for a local folder or a name that is not one)."""
    if os.path.isdir(model):
        return None
    from rerank_mcp.tools.models_store import model_ref

    try:
        return model_ref(model, "hf")
    except InvalidInput:
        return None


def _present(model: str, context: Any) -> bool:
    """``model`` is a local folder, or complete in the model store (else the HF cache)."""
    store = getattr(context, "models", None)
    ref = _ref(model)
    if store is not None and ref is not None:
        return store.present(ref)
    return _hf_cached(model)


class CrossEncoderConfig(FamilyConfig):
    """The operator's default model: RERANK_MCP_CROSS_ENCODER_MODEL."""

    settings_prefix = "cross_encoder_"

    model: str = CROSS_ENCODER_MODEL


def _check_device(device: str, backend: str) -> None:
    if backend == "onnx" and device not in ("cpu", "auto"):
        raise InvalidInput("cross-encoder backend 'onnx' runs on the CPU; use backend 'torch' for device cuda")


class CrossEncoderOptions(RerankOptions):
    model: str | None = Field(None, description="Hugging Face name or local folder; default: the "
                              f"cross_encoder_model setting ({CROSS_ENCODER_MODEL})")
    backend: Literal["torch", "onnx"] | None = Field(
        None, description="torch (sentence-transformers, fp32; the torch extra) or onnx (ONNX Runtime int8, CPU; "
        "converted and cached on first use); default: torch where sentence-transformers is installed, else onnx")
    onnx_cache_dir: str | None = Field(None, min_length=1, description="where the int8 export is cached")
    device: str | None = Field(None, description="cpu, cuda, cuda:N or auto (torch backend)")
    batch_size: int | None = Field(None, gt=0, description="pairs per batch (default 32 with torch, 8 with onnx)")
    max_length: int | None = Field(None, ge=8, description="tokens per (query, passage) pair; default: the model's")
    normalize: bool = Field(False, description="sigmoid the logits to [0, 1]")
    window: bool = Field(False, description="score long passages by their best window instead of truncating")
    window_stride: int | None = Field(None, gt=0, description="tokens between windows (default half a window)")
    allow_download: bool = Field(False, description="let the model loader fetch a missing model itself")

    @field_validator("device")
    @classmethod
    def _device(cls, device: str | None) -> str | None:
        if device is not None and device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
            raise ValueError("must be cpu, cuda, cuda:N or auto")
        return device

    @model_validator(mode="after")
    def _onnx_on_cpu(self) -> CrossEncoderOptions:
        if self.device is not None:
            try:
                _check_device(self.device, self.backend)
            except InvalidInput as exc:
                raise ValueError(str(exc)) from None
        return self


def default_onnx_cache_dir() -> str:
    from rerank_mcp.index.model_names import cache_dir

    return str(cache_dir("cross-encoder-onnx"))


def _model_folder(model: str, allow_download: bool) -> Path:
    """The local folder holding ``model``'s files (a local path, or its HF cache snapshot)."""
    if os.path.isdir(model):
        return Path(model).resolve()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, local_files_only=not allow_download))


def _score_of(row: Any) -> tuple[float, bool]:
    """One model output row -> (score, multi_label).

    ``num_labels == 1``: the scalar logit. More labels: the last ("relevant") class logit
    minus the log-sum-exp, i.e. its log-probability.
    """
    if getattr(row, "ndim", 0) == 0 or len(row) == 1:
        return float(row if getattr(row, "ndim", 0) == 0 else row[0]), False
    vals = [float(v) for v in row]
    m = max(vals)
    lse = m + math.log(sum(math.exp(v - m) for v in vals))
    return vals[-1] - lse, True


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (longest first, stable), cut into batches of ``batch_size``:
    each batch then pads only to its own longest member (dynamic padding)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


class _TorchBackend:
    """sentence-transformers ``CrossEncoder`` (fp32 on CPU)."""

    name = "torch"

    def __init__(self, ce: Any, max_length: int | None) -> None:
        self.ce = ce
        self.tokenizer = ce.tokenizer
        limit = max_length or getattr(ce, "max_seq_length", None) or getattr(ce.tokenizer, "model_max_length", 512)
        self.limit = int(min(limit, 100_000))

    def run(self, query: str | list[str], texts: list[str], lengths: list[int], batch_size: int) -> list[Any]:
        """``query``: one for all texts, or one per text (pairs of several requests)."""
        import torch

        from rerank_mcp.index.threads import torch_threads

        torch_threads()  # every core, whatever this worker thread's OpenMP setting was
        queries = [query] * len(texts) if isinstance(query, str) else query
        rows: list[Any] = [None] * len(texts)
        for batch in length_sorted_batches(lengths, batch_size):
            check()  # a cancelled call stops here, between model batches
            # One predict call per batch: CrossEncoder pads the batch to its own longest pair.
            out = self.ce.predict(
                [(queries[i], texts[i]) for i in batch],
                batch_size=len(batch),
                show_progress_bar=False,
                activation_fn=torch.nn.Identity(),
                convert_to_numpy=True,
            )
            for i, row in zip(batch, out):
                rows[i] = row
        return rows


def _needs_transformers(folder: Path) -> str:
    from rerank_mcp.index.install import install_command

    return (f"the cross-encoder model in {folder.name} has no tokenizer.json, and its tokenizer files need "
            f"transformers: {install_command(extra='torch')}")


class _OnnxBackend:
    """The same model exported to ONNX, quantised to int8, run by ONNX Runtime."""

    name = "onnx"

    def __init__(self, folder: Path, cache_dir: Path, max_length: int | None) -> None:
        from rerank_mcp.index import onnx_embed

        if (folder / "tokenizer.json").is_file():  # the tokenizers library alone: no transformers, no torch
            self.tokenizer = onnx_embed.PairTokenizer(folder)
        else:  # a slow tokenizer only (vocab files): transformers reads it
            try:
                from transformers import AutoTokenizer
            except ImportError:
                raise DependencyMissing(_needs_transformers(folder)) from None
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        config = onnx_embed.read_config(folder)
        limit = max_length or getattr(self.tokenizer, "model_max_length", None) or 512
        if limit > 100_000:  # tokenizer without a declared limit
            positions = int(getattr(config, "max_position_embeddings", 512) or 512)
            # RoBERTa-style models number positions from padding_idx + 1: two fewer usable
            limit = positions - 2 if getattr(config, "model_type", "") in ("xlm-roberta", "roberta") else positions
        self.limit = int(limit)
        try:
            self.path = onnx_embed.export_int8(folder, cache_dir, "classifier")
        except OSError as exc:
            raise DependencyMissing(
                f"cannot write the ONNX export of the cross-encoder to {cache_dir} ({exc}): "
                f"set options.onnx_cache_dir to a writable folder"
            ) from None
        self.session = onnx_embed.ort_session(self.path, spin=False)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.pad_id = self.tokenizer.pad_token_id or 0

    def run(self, query: str | list[str], texts: list[str], lengths: list[int], batch_size: int) -> list[Any]:
        """``query``: one for all texts, or one per text (pairs of several requests)."""
        import numpy as np

        enc = self.tokenizer(
            [query] * len(texts) if isinstance(query, str) else list(query), texts, truncation=True, max_length=self.limit,
            return_attention_mask=False, verbose=False,
        )
        ids_all = enc["input_ids"]
        types_all = enc.get("token_type_ids")
        rows: list[Any] = [None] * len(texts)
        for batch in length_sorted_batches([len(x) for x in ids_all], batch_size):
            check()  # a cancelled call stops here, between model batches
            width = max(len(ids_all[i]) for i in batch)
            ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            types = np.zeros((len(batch), width), dtype=np.int64)
            for r, i in enumerate(batch):
                n = len(ids_all[i])
                ids[r, :n] = ids_all[i]
                mask[r, :n] = 1
                if types_all is not None:
                    types[r, :n] = types_all[i]
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            logits = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
            for i, row in zip(batch, logits):
                rows[i] = row
        return rows


class CrossEncoderReranker(Reranker):
    """Options: ``backend`` (torch | onnx; onnx = ONNX Runtime int8, CPU), ``onnx_cache_dir``
    (where the int8 export is cached; default the user cache dir), ``device`` (cpu | cuda |
    auto; torch backend), ``batch_size`` (32 pairs per batch with torch, 8 with onnx: small int8
    batches keep the activations in cache and ran fastest on 2 cores), ``max_length`` (model's), ``normalize``
    (sigmoid the logits to [0, 1]; default False: raw logits), ``window`` (False) and
    ``window_stride`` (tokens; default half a window), ``allow_download`` (False)."""

    family = "cross-encoder"
    Options = CrossEncoderOptions
    Config = CrossEncoderConfig
    options: CrossEncoderOptions
    config: CrossEncoderConfig
    path_options = ("model", "onnx_cache_dir")
    score_meaning = ("the model's relevance logit, unbounded (ms-marco models: above 0 leans relevant), or its "
                     "sigmoid in [0, 1] with normalize=true (multi-label models: the last class's log-probability, "
                     "or probability); mapped to [0, 1] by that sigmoid (exp of the log-probability)")

    def unit_scores(self, scores: Sequence[float]) -> list[float]:
        if self.normalize:
            return [min(1.0, max(0.0, float(x))) for x in scores]
        if self._multi_label:
            return [math.exp(min(0.0, float(x))) for x in scores]
        return [_sigmoid(float(x)) for x in scores]

    def __init__(self, options: CrossEncoderOptions | None = None, *, context: Any = None,
                 registry: Any = None) -> None:
        super().__init__(options, context=context, registry=registry)
        o = self.options
        self.backend = o.backend or default_backend()
        # the server's device setting when the options name none (checked against the backend here)
        self.device = o.device or getattr(context, "device", None) or "cpu"
        _check_device(self.device, self.backend)
        self.batch_size = o.batch_size or (ONNX_BATCH if self.backend == "onnx" else TORCH_BATCH)
        self.onnx_cache_dir = o.onnx_cache_dir or getattr(context, "onnx_cache_dir", None)
        self.max_length = o.max_length
        self.normalize = o.normalize
        self.window = o.window
        self.window_stride = o.window_stride
        self.allow_download = o.allow_download
        self._backend: Any = None
        self._multi_label = False
        self._lock = threading.Lock()

    @classmethod
    def availability(cls, context: Any) -> str | None:
        model = cls.default_model(context)
        return None if _present(model, context) else _not_available(model)

    @classmethod
    def default_model(cls, context: Any) -> str | None:
        return cls.family_config(context).model

    @classmethod
    def default_model_ref(cls, context: Any) -> Any:
        return _ref(cls.default_model(context))

    def required_model(self) -> Any:
        return _ref(self.model)

    def _source(self) -> str:
        """What to load: the model's folder in the model store when it is there, else the name."""
        store = getattr(self.context, "models", None)
        ref = _ref(self.model)
        if store is not None and ref is not None:
            folder = store.path(ref)
            if folder is not None:
                return str(folder)
        return self.model

    # -- loading -----------------------------------------------------------------------

    def _load(self) -> Any:
        with self._lock:
            if self._backend is not None:
                return self._backend
            if not self.allow_download and not _present(self.model, self.context):
                raise DependencyMissing(_not_available(self.model))
            self._backend = self._load_onnx() if self.backend == "onnx" else self._load_torch()
            return self._backend

    def _load_torch(self) -> _TorchBackend:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError:
            from rerank_mcp.index.embedding import torch_missing

            raise DependencyMissing(torch_missing(f"cross-encoder backend 'torch' ({self.model})")
                                    + "; or use backend 'onnx'") from None
        try:
            ce = CrossEncoder(
                self._source(),
                device=_resolve_device(self.device),
                max_length=self.max_length,
                local_files_only=not self.allow_download,
            )
        except Exception as exc:
            raise DependencyMissing(f"{_not_available(self.model)} (loading failed: {type(exc).__name__}: {exc})") from None
        return _TorchBackend(ce, self.max_length)

    def _onnx_dir(self, folder: Path) -> Path:
        if self.onnx_cache_dir:
            return Path(self.onnx_cache_dir)
        # One sub-folder per model source, so that two models never share an export.
        name = os.path.basename(os.path.normpath(self.model)) if os.path.isdir(self.model) else self.model.replace("/", "--")
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[-60:] or "model"
        tag = hashlib.sha256(str(folder).encode()).hexdigest()[:8]
        return Path(default_onnx_cache_dir()) / f"{slug}-{tag}"

    def _load_onnx(self) -> _OnnxBackend:
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise DependencyMissing("the cross-encoder onnx backend needs onnxruntime: pip install onnxruntime") from None
        try:
            folder = _model_folder(self._source(), self.allow_download)
        except Exception as exc:
            raise DependencyMissing(f"{_not_available(self.model)} (loading failed: {type(exc).__name__}: {exc})") from None
        try:
            return _OnnxBackend(folder, self._onnx_dir(folder), self.max_length)
        except DependencyMissing:
            raise
        except Exception as exc:
            raise DependencyMissing(
                f"cross-encoder model {self.model!r} could not be exported to / run with ONNX Runtime "
                f"({type(exc).__name__}: {exc}); use backend 'torch'"
            ) from None

    # -- scoring -----------------------------------------------------------------------

    def _score(self, query: str, texts: Sequence[str]) -> Scored:
        be = self._load()
        pairs, truncated, notes = self._pairs(be, query, texts)
        rows = be.run(query, [t for _, t, _ in pairs], [n for _, _, n in pairs], self.batch_size)
        return self._finish(be, len(texts), pairs, rows, truncated, notes)

    def _score_many(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[Scored]:
        """The pairs of all requests share one run of length-sorted, padded model batches."""
        if len(requests) < 2:
            return super()._score_many(requests)
        be = self._load()
        prepared = [self._pairs(be, q, texts) for q, texts in requests]
        queries = [q for (q, _), (pairs, _, _) in zip(requests, prepared) for _ in pairs]
        flat = [p for pairs, _, _ in prepared for p in pairs]
        rows = be.run(queries, [t for _, t, _ in flat], [n for _, _, n in flat], self.batch_size)
        out, start = [], 0
        for (_, texts), (pairs, truncated, notes) in zip(requests, prepared):
            out.append(self._finish(be, len(texts), pairs, rows[start : start + len(pairs)], truncated, notes))
            start += len(pairs)
        return out

    def _pairs(self, be: Any, query: str, texts: Sequence[str]) -> tuple[list[tuple[int, str, int]], list[bool], list[str]]:
        tok = be.tokenizer
        limit = be.limit
        specials = tok.num_special_tokens_to_add(pair=True)
        q_len = len(tok(query, add_special_tokens=False)["input_ids"])
        need_offsets = self.window and getattr(tok, "is_fast", False)
        enc = tok(list(texts), add_special_tokens=False, return_offsets_mapping=need_offsets, verbose=False)
        lengths = [q_len + len(ids) + specials for ids in enc["input_ids"]]
        notes: list[str] = []

        # Pairs to score: (passage index, passage text or window of it, its pair length in tokens).
        pairs: list[tuple[int, str, int]] = []
        truncated = [n > limit for n in lengths]
        budget = limit - q_len - specials
        if self.window and budget >= 8:
            stride = self.window_stride or max(1, budget // 2)
            stride = min(stride, budget)
            windowed = 0
            for i, text in enumerate(texts):
                n_tok = len(enc["input_ids"][i])
                if n_tok <= budget or not need_offsets:
                    pairs.append((i, text, min(lengths[i], limit)))
                    continue
                offsets = enc["offset_mapping"][i]
                windowed += 1
                truncated[i] = False
                start = 0
                while True:
                    end = min(start + budget, n_tok)
                    pairs.append((i, text[offsets[start][0] : offsets[end - 1][1]], q_len + specials + end - start))
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
            pairs = [(i, t, min(lengths[i], limit)) for i, t in enumerate(texts)]
        if self.window and not need_offsets:
            notes.append("windowing needs a fast tokenizer; long passages were truncated")
        return pairs, truncated, notes

    def _finish(self, be: Any, n_texts: int, pairs: list[tuple[int, str, int]], rows: list[Any],
                truncated: list[bool], notes: list[str]) -> Scored:
        limit = be.limit
        best = [-math.inf] * n_texts
        for (i, _, _), row in zip(pairs, rows):
            s, multi = _score_of(row)
            self._multi_label = self._multi_label or multi
            if s > best[i]:
                best[i] = s
        if self.normalize:
            if self._multi_label:  # already a log-probability
                best = [math.exp(s) for s in best]
            else:
                best = [1.0 / (1.0 + math.exp(-s)) if s > -700 else 0.0 for s in best]
        if any(truncated):
            notes.append(f"{sum(truncated)} passage(s) truncated to {limit} tokens (query + passage)")
        if be.name == "onnx":
            notes.append("backend: onnx int8 (ONNX Runtime)")
        return Scored(best, truncated=truncated, notes=notes)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
