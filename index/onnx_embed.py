"""ONNX Runtime int8 path for bi-encoders (and the same recipe for cross-encoders).

The transformer is exported once with ``torch.onnx.export``, quantised with ONNX Runtime's
dynamic int8 quantisation, and cached on disk next to the index (keyed by the model's
files). Inference tokenises with the model's own fast tokenizer, sorts texts by length so
each batch pads only to its own longest text, and pools (mean, or the first token's vector for
models that pool so, such as BAAI/bge-m3) and normalises in NumPy, exactly like the
sentence-transformers pipeline of the model. BERT and XLM-RoBERTa graphs export alike (their
layers' MatMuls carry the same names, so the ``onnx-mixed`` backends keep the same ones in fp32).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rerank_mcp.index.model_names import Prompted
from rerank_mcp.index.persist import atomic_write

log = logging.getLogger(__name__)

# MatMuls of the FFN output projections (intermediate -> hidden) in the exported BERT graph: the
# ``onnx-mixed`` embedding backend keeps these in fp32 and quantises the rest to int8.
FFN_OUTPUT = r"layer\.\d+/output/dense/MatMul"
# Only the first layer's FFN output projection: ``onnx-mixed-l0`` (and the default, onnx-smooth-l0). Its input (GELU
# outputs with a few large channels) quantises worst of all, and an error made there travels
# through every later layer. Kept in fp32, this one MatMul brings retrieval quality as close to
# fp32 as keeping all six does (closer, on SciFact, Cranfield and NPL) for a sixth of their cost
# (docs/adr/0009-first-layer-fp32.md).
FIRST_FFN_OUTPUT = r"layer\.0/output/dense/MatMul"
# How the ONNX path pools token vectors into a text's vector (sentence-transformers' pooling modes).
ONNX_POOLING = ("mean", "cls")
# Prefix of a recipe whose graph is smoothed (index.smooth_quant) before it is quantised.
SMOOTH = "smooth:"
# ``onnx-smooth-l0``, the default: ``onnx-mixed-l0`` with the Q/K/V and FFN input projections' inputs
# smoothed (SmoothQuant): vectors closer to fp32 at the same speed (docs/eval/int8-smooth, docs/adr/0012).
SMOOTH_FIRST_FFN_OUTPUT = SMOOTH + FIRST_FFN_OUTPUT
# ``onnx-smooth-l01``: the same with the first two layers' FFN output projections in fp32: closer
# still, for about the cost of one more fp32 MatMul (a few percent).
SMOOTH_FIRST_TWO_FFN_OUTPUTS = SMOOTH + r"layer\.[01]/output/dense/MatMul"
# The ONNX embedding backends and their recipes: the MatMuls each keeps in fp32 (a regular
# expression; None: all int8), after the SMOOTH prefix where the graph is smoothed first.
ONNX_BACKENDS = {"onnx": None, "onnx-mixed": FFN_OUTPUT, "onnx-mixed-l0": FIRST_FFN_OUTPUT,
                 "onnx-smooth-l0": SMOOTH_FIRST_FFN_OUTPUT, "onnx-smooth-l01": SMOOTH_FIRST_TWO_FFN_OUTPUTS}


class ExportFailed(Exception):
    """The model's graph could not be exported to ONNX or quantised (an architecture the exporter
    does not handle)."""


def _model_key(folder: Path) -> str:
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        p = folder / name
        if p.is_file():
            st = p.stat()
            h.update(f"{name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def export_path(model_dir: Path, out_dir: Path, kind: str = "encoder", keep_fp32: str | None = None) -> Path:
    """The file :func:`export_int8` makes (or has made) for these arguments."""
    tag = ("-fused" if kind == "classifier" else "") + (
        f"-keep{hashlib.sha256(keep_fp32.encode()).hexdigest()[:8]}" if keep_fp32 else "")
    return out_dir / f"{kind}-{_model_key(model_dir)}-int8{tag}.onnx"


def export_int8(model_dir: Path, out_dir: Path, kind: str = "encoder", keep_fp32: str | None = None) -> Path:
    """:func:`_export_int8` for one process at a time per model (a file lock that the system drops
    when its holder dies): a second process waits, then finds the file made. The leftovers of an
    export that was killed (its temporary files) are removed before the next one starts; the
    finished file only appears by an atomic rename, so a half-written export is never loaded."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = export_path(model_dir, out_dir, kind, keep_fp32)
    if target.exists():
        return target
    from rerank_mcp.index.persist import exclusive_lock

    with exclusive_lock(export_lock_path(target)):
        return export_locked(model_dir, out_dir, kind, keep_fp32)


def export_lock_path(target: Path) -> Path:
    return target.with_name(f".{target.stem}.lock")


def export_locked(model_dir: Path, out_dir: Path, kind: str = "encoder", keep_fp32: str | None = None) -> Path:
    """:func:`_export_int8` for a caller holding the export's lock (:func:`export_lock_path`):
    nothing when the file is there (made by another process while this one waited), else the
    leftovers of a killed export removed and the export made."""
    target = export_path(model_dir, out_dir, kind, keep_fp32)
    if target.exists():
        return target
    for stale in out_dir.glob(f".{target.stem}*"):
        if not stale.name.endswith(".lock"):
            stale.unlink(missing_ok=True)
    return _export_int8(model_dir, out_dir, kind, keep_fp32)


def _export_int8(model_dir: Path, out_dir: Path, kind: str = "encoder", keep_fp32: str | None = None) -> Path:
    """Export the HF model in ``model_dir`` to ONNX and quantise it to int8; returns the file.

    ``kind`` is ``encoder`` (outputs last_hidden_state) or ``classifier`` (outputs logits).
    Classifiers (cross-encoders) are exported with eager attention and passed through ONNX
    Runtime's transformer optimizer before quantisation, which fuses each layer's attention,
    bias + GELU and residual + LayerNorm into single kernels (quantised attention included),
    which ran faster on 2 cores (docs/adr/0005). Encoders are not: there the fused graph gained
    less and lowered the worst chunk's cosine to fp32. ``keep_fp32``: a regular
    expression; MatMul nodes whose names match stay in fp32 (a precision / speed trade-off the
    benchmark measures); after a ``smooth:`` prefix (:data:`SMOOTH`), the fp32 graph is first
    smoothed (:func:`index.smooth_quant.smooth`). Cached: a second call with the same model files returns the existing
    file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    fuse = kind == "classifier"
    target = export_path(model_dir, out_dir, kind, keep_fp32)
    if target.exists():
        return target
    log.info("exporting %s to ONNX int8 (once per model: later starts load %s)", model_dir.name, target.name)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from rerank_mcp.index import bert_graph

    fp32 = out_dir / f".{target.stem}-fp32.onnx"
    config = read_config(model_dir)
    unsupported = bert_graph.supported(model_dir)
    if unsupported is None:  # BERT / XLM-RoBERTa from their safetensors: no torch (docs/adr/0011)
        bert_graph.write(model_dir, fp32, kind)
    else:
        _torch_export(model_dir, fp32, kind, fuse, unsupported)
    source = fp32
    smoothed = None
    try:
        if fuse:
            source = _fuse(fp32, config) or fp32
        import onnx

        if keep_fp32 and keep_fp32.startswith(SMOOTH):
            from rerank_mcp.index import smooth_quant

            keep_fp32 = keep_fp32[len(SMOOTH):] or None
            try:
                smoothed = source = smooth_quant.smooth(source, out_dir / f".{target.stem}-smooth.onnx",
                                                        calibration_feeds(model_dir, smooth_quant.CALIBRATION))
            except Exception as exc:  # a graph it does not know, one over 2 GB, calibration that cannot run
                # the same recipe without the smoothing: still a working file, the same one every time
                log.warning("%s: quantised without SmoothQuant (%s)", model_dir.name, exc)
        exclude = []
        if keep_fp32:
            import re

            exclude = [n.name for n in onnx.load(str(source)).graph.node
                       if n.op_type == "MatMul" and re.search(keep_fp32, n.name)]
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.ERROR))  # the quantiser logs every tensor at INFO (and advice at WARNING) on the root logger
        try:
            atomic_write(target, lambda p: quantize_dynamic(
                str(source), str(p), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=exclude,
                # fused contrib ops have no shape inference: their outputs are float tensors
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}))
        finally:
            root.setLevel(level)
    finally:
        for leftover in {fp32, source, smoothed} - {None}:
            leftover.unlink(missing_ok=True)
            leftover.with_name(leftover.name + ".data").unlink(missing_ok=True)
    log.info("exported %s to %s", model_dir, target)
    return target


def read_config(model_dir: Path):
    """config.json as attributes (heads, hidden size, model type, positions); empty where unreadable."""
    from types import SimpleNamespace

    from rerank_mcp.index import bert_graph

    try:
        return SimpleNamespace(**bert_graph.read_config(model_dir))
    except (bert_graph.Unsupported, TypeError):
        return SimpleNamespace()


def _torch_export(model_dir: Path, fp32: Path, kind: str, fuse: bool, why: str) -> None:
    """``torch.onnx.export`` of a model :mod:`index.bert_graph` does not write (``why``): needs
    torch and transformers, which the ``torch`` extra installs."""
    try:
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
    except ImportError:
        from rerank_mcp.index.install import install_command

        raise ExportFailed(
            f"{model_dir.name} cannot be converted to ONNX without torch ({why}); install the torch extra: "
            f"{install_command(extra='torch')}"
        ) from None

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    loader = AutoModel if kind == "encoder" else AutoModelForSequenceClassification
    extra = {"attn_implementation": "eager"} if fuse else {}  # the pattern the optimizer fuses
    model = loader.from_pretrained(str(model_dir), **extra).eval()

    class Wrapped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state if kind == "encoder" else out.logits

    enc = tok(["an example sentence", "a second, somewhat longer example sentence"], padding=True, return_tensors="pt")
    if "token_type_ids" not in enc:
        enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
    dyn = {0: "batch", 1: "seq"}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrapped(model), (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]), str(fp32),
            input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["out"],
            dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "token_type_ids": dyn, "out": {0: "batch"}},
            opset_version=17, dynamo=False,
        )


def _fuse(fp32: Path, config) -> Path | None:
    """ONNX Runtime's BERT graph fusions on ``fp32``; the fused file, or None where they do not apply.
    BERT only: on XLM-RoBERTa graphs the fused attention, once quantised (QAttention), scored far
    from fp32 (tests/rerank/test_multilingual_rerankers.py), where the unfused int8 graph does not."""
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    if not heads or not hidden or getattr(config, "model_type", "bert") != "bert":
        return None
    try:
        from onnxruntime.transformers import optimizer

        fused = optimizer.optimize_model(str(fp32), model_type="bert", num_heads=int(heads), hidden_size=int(hidden), opt_level=1)
        if not fused.get_fused_operator_statistics().get("Attention"):
            log.info("no attention fusion for %s: exporting it unfused", fp32.name)
            return None
        out = fp32.with_name(fp32.stem + "-fused.onnx")
        fused.save_model_to_file(str(out))
        return out
    except Exception as exc:  # an architecture the optimizer does not know: the plain graph still works
        log.info("graph fusion failed (%s: %s): exporting unfused", type(exc).__name__, exc)
        return None


def ort_session(path: Path, threads: int | None = None, spin: bool = True):
    """An ONNX Runtime CPU session using the cores this process may run on.

    ``spin=False`` stops the worker threads from busy-waiting for more work after each run:
    right for rerankers, whose sessions run one after another (a cascade's stages, FlashRank
    then a cross-encoder): a finished session's spinning threads otherwise compete for the same
    two cores with the next one (docs/adr/0005)."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use, not the host's
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    opts.intra_op_num_threads = threads or max(1, min(4, cores))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _cores() -> int:
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))  # the cores this process may use
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(4, os.cpu_count() or 1))


class WordPieces:
    """The model's tokenizer, read with the ``tokenizers`` library from its ``tokenizer.json``
    where there is one (milliseconds to load, where importing transformers takes seconds), else
    transformers' AutoTokenizer. ``ids(texts, special=True)``: with [CLS]/[SEP], truncated to
    ``max_length`` as sentence-transformers does; ``special=False``: every word piece, untruncated."""

    def __init__(self, model_dir: Path, max_length: int) -> None:
        self.max_length = max_length
        self._fast = self._auto = None
        self.pad_id = 0
        if (model_dir / "tokenizer.json").exists():
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            self.pad_id = _pad_id(model_dir, self._fast)
            self._fast.no_padding()
            self._fast.no_truncation()
            self._trunc = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            self._trunc.no_padding()
            self._trunc.enable_truncation(max_length)
        else:
            from transformers import AutoTokenizer

            self._auto = AutoTokenizer.from_pretrained(str(model_dir))
            self.pad_id = int(self._auto.pad_token_id or 0)

    def ids(self, texts: Sequence[str], special: bool) -> list[list[int]]:
        texts = list(texts)
        if self._fast is not None:
            tok = self._trunc if special else self._fast
            return [e.ids for e in tok.encode_batch(texts, add_special_tokens=special)]
        kw = {"truncation": True, "max_length": self.max_length} if special else {}
        return self._auto(texts, add_special_tokens=special, return_attention_mask=False,
                          return_token_type_ids=False, verbose=False, **kw)["input_ids"]


class PairTokenizer:
    """The part of a transformers tokenizer's call interface the cross-encoders use, on the
    ``tokenizers`` library and the model's ``tokenizer.json``: no transformers (nor torch) needed.
    Pairs are truncated longest-first, as transformers does with ``truncation=True``; special
    tokens, token type ids and offsets come from the file's own post-processor."""

    is_fast = True

    def __init__(self, model_dir: Path) -> None:
        import json
        import threading

        from tokenizers import Tokenizer

        self._file = str(model_dir / "tokenizer.json")
        self._plain = Tokenizer.from_file(self._file)
        self._plain.no_padding()
        self._plain.no_truncation()
        self._truncating: dict[int, object] = {}
        self._lock = threading.Lock()
        self.pad_token_id = _pad_id(model_dir, self._plain)
        try:
            cfg = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = {}
        limit = cfg.get("model_max_length")
        self.model_max_length = int(limit) if isinstance(limit, int | float) and limit < 1e12 else int(1e30)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        post = self._plain.post_processor
        if post is None:
            return 0
        return int(post.num_special_tokens_to_add(pair))

    def _truncated(self, max_length: int):
        with self._lock:
            tok = self._truncating.get(max_length)
            if tok is None:
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(self._file)
                tok.no_padding()
                tok.enable_truncation(max_length, strategy="longest_first")
                self._truncating[max_length] = tok
            return tok

    def __call__(self, text, text_pair=None, add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, **_ignored) -> dict:
        single = isinstance(text, str)
        firsts = [text] if single else list(text)
        if text_pair is not None:
            seconds = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            inputs: list = list(zip(firsts, seconds))
        else:
            inputs = firsts
        tok = self._truncated(int(max_length)) if truncation and max_length else self._plain
        encs = tok.encode_batch(inputs, add_special_tokens=add_special_tokens)
        out = {"input_ids": [e.ids for e in encs], "token_type_ids": [e.type_ids for e in encs],
               "offset_mapping": [e.offsets for e in encs]}
        return {k: v[0] for k, v in out.items()} if single else out


def _pad_id(model_dir: Path, tok) -> int:
    """The padding token's id: ``[PAD]`` is 0 in BERT vocabularies, ``<pad>`` is 1 in XLM-R's."""
    import json

    name = None
    try:
        name = json.loads((model_dir / "tokenizer_config.json").read_text()).get("pad_token")
    except (OSError, ValueError):
        pass
    if isinstance(name, dict):
        name = name.get("content")
    for cand in ([name] if isinstance(name, str) else []) + ["[PAD]", "<pad>"]:
        i = tok.token_to_id(cand)
        if i is not None:
            return int(i)
    return 0


def calibration_feeds(model_dir: Path, texts: Sequence[str], batch_size: int = 4):
    """The model's inputs for ``texts`` as the embedder feeds them: length-sorted batches of
    ``batch_size`` (:func:`plan_batches`), padded to each batch's longest text (what the smoothing's
    calibration runs the fp32 graph on)."""
    tok = WordPieces(model_dir, 256)
    enc = tok.ids(list(texts), special=True)
    for idx in plan_batches([len(e) for e in enc], batch_size):
        yield padded_batch(enc, idx, tok.pad_id)


def padded_batch(enc: Sequence[Sequence[int]], idx: Sequence[int], pad_id: int) -> dict[str, np.ndarray]:
    """The model's inputs for the encodings ``enc[i]``, ``i`` in ``idx``: padded with ``pad_id`` to
    the batch's longest, with the attention mask and zero token types."""
    width = max(len(enc[i]) for i in idx)
    ids = np.full((len(idx), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    for r, i in enumerate(idx):
        ids[r, : len(enc[i])] = enc[i]
        mask[r, : len(enc[i])] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def plan_batches(lengths: Sequence[int], batch_size: int, workers: int = 1) -> list[np.ndarray]:
    """Indices of the texts in each model run: sorted by length (a batch pads only to its own
    longest text), at most ``batch_size`` a batch, as many batches as makes a multiple of the
    workers and of near-equal size, longest first: the workers finish a call together instead of
    one waiting for the other's last batch, and the short batches fill in at the end."""
    if not len(lengths):
        return []
    order = np.argsort(np.asarray(lengths), kind="stable")
    n = -(-len(order) // batch_size)
    if workers > 1 and n > 1:
        n = -(-n // workers) * workers
    return [b for b in np.array_split(order, n) if len(b)][::-1]


class OnnxEmbedder(Prompted):
    """Same interface as :class:`index.embedding.Embedder`, on ONNX Runtime int8."""

    def __init__(self, name: str, model_dir: Path, cache_dir: Path, batch_size: int = 32, max_seq_length: int = 256,
                 keep_fp32: str | None = None, backend: str | None = None, pooling: str = "mean"):
        from rerank_mcp.index.model_names import canonical_name, identity, text_prompts

        self.name = canonical_name(name)
        self.query_prefix, self.passage_prefix = text_prompts(self.name, model_dir)
        named = {pattern: b for b, pattern in ONNX_BACKENDS.items()}
        self.backend = backend or named.get(keep_fp32, f"onnx-keep:{keep_fp32}")
        self.identity = identity(self.name, self.backend)  # recorded with the collections it builds
        self.cache_key = self.name + "#onnx-int8" + (f"-keep:{keep_fp32}" if keep_fp32 else "")
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        if pooling not in ONNX_POOLING:
            raise ValueError(f"pooling {pooling!r} is not implemented on the ONNX path (mean and cls are)")
        self.pooling = pooling
        self._tok = WordPieces(model_dir, max_seq_length)
        try:
            self.path = export_int8(model_dir, cache_dir, "encoder", keep_fp32)
        except OSError:
            raise
        except Exception as exc:
            raise ExportFailed(f"{type(exc).__name__}: {exc}") from exc
        # One single-threaded session run from one worker per core, a batch each: the same batches
        # as one multi-threaded session (the same vectors), without a thread hand-off per operator.
        self._workers = _cores()
        self.session = ort_session(self.path, threads=1 if self._workers > 1 else None)
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="onnx-embed") if self._workers > 1 else None
        self.dim = int(self.encode(["dimension probe"]).shape[1])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self._tok.ids(texts, special=False)]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        enc = self._tok.ids(texts, special=True)
        batches = plan_batches([len(e) for e in enc], self.batch_size, self._workers if self._pool else 1)

        def run(idx: np.ndarray) -> np.ndarray:
            feed = padded_batch(enc, idx, self._tok.pad_id)
            mask = feed["attention_mask"]
            hidden = self.session.run(None, feed)[0]
            if self.pooling == "cls":
                pooled = hidden[:, 0, :]
            else:
                m = mask[..., None].astype(np.float32)
                pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

        if self._pool is not None and len(batches) > 1:
            results = list(self._pool.map(run, batches))
        else:  # one batch (a query), or one core: in the calling thread
            results = [run(b) for b in batches]
        out = np.empty((len(texts), results[0].shape[1]), dtype=np.float32)
        for idx, pooled in zip(batches, results):
            out[idx] = pooled
        return out
