"""ONNX graphs of BERT-family transformers, written from the model's weights without torch.

The default embedding model (all-MiniLM-L6-v2), the ms-marco MiniLM cross-encoders and the
XLM-RoBERTa models (multilingual-e5, bge-m3, bge-reranker-base / -v2-m3) are all one
architecture: embeddings, then N identical encoder layers (self-attention, a GELU feed-forward
block, residuals and LayerNorms), then for a classifier a head on the first token. This module
reads ``config.json`` and ``model.safetensors`` (NumPy, through the ``safetensors`` package) and
writes that graph with the ``onnx`` helper API, operator for operator what ``torch.onnx.export``
produces for the transformers implementation (eager attention, exact erf GELU), with the same
node names (``/encoder/layer.0/output/dense/MatMul``, ...) so the quantiser's per-node choices
(``index.onnx_embed.ONNX_BACKENDS``) apply alike. The int8 quantisation that follows is ONNX
Runtime's own (``quantize_dynamic``), so torch is needed only for architectures this module does
not write, or for weights stored only as a pickled ``pytorch_model.bin`` (docs/adr/0011).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# model_type -> how positions are numbered: BERT counts 0..S-1; RoBERTa-style models count
# the non-padding tokens from padding_idx + 1 (padding positions take padding_idx).
FAMILIES = {"bert": "absolute", "xlm-roberta": "roberta", "roberta": "roberta", "camembert": "roberta"}
# where the encoder's weights sit in a classifier's checkpoint (and sometimes an encoder's)
_PREFIXES = ("bert.", "roberta.", "model.")
# ONNX files above this size keep their weights in a side file (protobuf's 2 GB limit)
_EXTERNAL_DATA_BYTES = 1_800_000_000


class Unsupported(Exception):
    """This model cannot be written here (another architecture, or weights not in safetensors);
    the message says which and why."""


def read_config(model_dir: Path) -> dict:
    try:
        return json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Unsupported(f"no readable config.json in {Path(model_dir).name} ({exc})") from None


def check(model_dir: Path) -> None:
    """Raise :class:`Unsupported` unless :func:`write` can write this model."""
    cfg = read_config(model_dir)
    kind = cfg.get("model_type")
    if kind not in FAMILIES:
        raise Unsupported(f"architecture {kind!r} (written without torch: {', '.join(sorted(FAMILIES))})")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise Unsupported(f"position_embedding_type {cfg.get('position_embedding_type')!r} (absolute only)")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise Unsupported(f"hidden_act {cfg.get('hidden_act')!r} (gelu only)")
    if cfg.get("is_decoder") or cfg.get("add_cross_attention"):
        raise Unsupported("decoder configuration")
    if not (Path(model_dir) / "model.safetensors").is_file():
        raise Unsupported("no model.safetensors (weights stored only as pytorch_model.bin need torch to read)")


def supported(model_dir: Path) -> str | None:
    """None when :func:`write` can write this model, else the reason it cannot."""
    try:
        check(model_dir)
    except Unsupported as exc:
        return str(exc)
    return None


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    raw = load_file(str(Path(model_dir) / "model.safetensors"))
    out: dict[str, np.ndarray] = {}
    for key, arr in raw.items():
        name = key
        for p in _PREFIXES:
            if name.startswith(p):
                name = name[len(p):]
                break
        if arr.dtype != np.float32 and np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float32)
        out[name] = arr
    return out


class _Graph:
    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self._consts = 0

    def const(self, arr, name: str | None = None) -> str:
        from onnx import numpy_helper

        if name is None:
            self._consts += 1
            name = f"const_{self._consts}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        from onnx import helper

        out = f"{name}_output_0"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out


def write(model_dir: Path, path: Path, kind: str = "encoder") -> Path:
    """Write the fp32 ONNX graph of the model in ``model_dir`` to ``path``.

    ``kind``: ``encoder`` (output ``out``: last hidden state, batch x seq x hidden) or
    ``classifier`` (output ``out``: logits, batch x labels). Inputs ``input_ids``,
    ``attention_mask`` and ``token_type_ids`` (int64, batch x seq), as the torch export has them.
    """
    import onnx
    from onnx import TensorProto, helper

    check(model_dir)
    cfg = read_config(model_dir)
    w = _weights(model_dir)
    positions = FAMILIES[cfg["model_type"]]
    hidden = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    layers = int(cfg["num_hidden_layers"])
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    head_dim = hidden // heads
    pad = int(cfg.get("pad_token_id") if cfg.get("pad_token_id") is not None else (1 if positions == "roberta" else 0))

    def get(name: str) -> np.ndarray:
        try:
            return w[name]
        except KeyError:
            raise Unsupported(f"weight {name!r} missing from model.safetensors") from None

    g = _Graph()

    def linear(x: str, key: str, scope: str) -> str:
        mm = g.op("MatMul", [x, g.const(np.ascontiguousarray(get(f"{key}.weight").T), f"{key}.weight")], f"{scope}/MatMul")
        return g.op("Add", [g.const(get(f"{key}.bias"), f"{key}.bias"), mm], f"{scope}/Add")

    def layer_norm(x: str, key: str, scope: str) -> str:
        return g.op("LayerNormalization", [x, g.const(get(f"{key}.weight"), f"{key}.weight"),
                                           g.const(get(f"{key}.bias"), f"{key}.bias")],
                    f"{scope}/LayerNormalization", axis=-1, epsilon=eps)

    # Embeddings: words + positions + token types, then LayerNorm.
    x = g.op("Gather", [g.const(get("embeddings.word_embeddings.weight"), "embeddings.word_embeddings.weight"),
                        "input_ids"], "/embeddings/word_embeddings/Gather")
    pos_table = g.const(get("embeddings.position_embeddings.weight"), "embeddings.position_embeddings.weight")
    if positions == "absolute":
        seq = g.op("Shape", ["input_ids"], "/embeddings/Shape", start=1, end=2)
        pos = g.op("Slice", [pos_table, g.const(np.array([0], np.int64)), seq, g.const(np.array([0], np.int64))],
                   "/embeddings/Slice")
    else:
        not_pad = g.op("Cast", [g.op("Not", [g.op("Equal", ["input_ids", g.const(np.array(pad, np.int64))],
                                                   "/embeddings/Equal")], "/embeddings/Not")],
                       "/embeddings/Cast", to=TensorProto.INT64)
        counted = g.op("CumSum", [not_pad, g.const(np.array(1, np.int64))], "/embeddings/CumSum")
        ids = g.op("Add", [g.op("Mul", [counted, not_pad], "/embeddings/Mul"), g.const(np.array(pad, np.int64))],
                   "/embeddings/Add_positions")
        pos = g.op("Gather", [pos_table, ids], "/embeddings/position_embeddings/Gather")
    x = g.op("Add", [x, pos], "/embeddings/Add")
    if "embeddings.token_type_embeddings.weight" in w:
        types = g.op("Gather", [g.const(get("embeddings.token_type_embeddings.weight"),
                                        "embeddings.token_type_embeddings.weight"), "token_type_ids"],
                     "/embeddings/token_type_embeddings/Gather")
        x = g.op("Add", [x, types], "/embeddings/Add_1")
    x = layer_norm(x, "embeddings.LayerNorm", "/embeddings/LayerNorm")

    # The additive attention mask: 0 where attended, the float minimum where padded (batch x 1 x 1 x seq).
    # In this order (Unsqueeze, Unsqueeze, Cast, Sub, Mul) ONNX Runtime's optimizer recognises it and
    # fuses each layer's attention into one kernel (index.onnx_embed._fuse, for classifiers).
    mask = g.op("Unsqueeze", ["attention_mask", g.const(np.array([1], np.int64))], "/Unsqueeze")
    mask = g.op("Unsqueeze", [mask, g.const(np.array([2], np.int64))], "/Unsqueeze_1")
    keep = g.op("Cast", [mask], "/Cast", to=TensorProto.FLOAT)
    masked = g.op("Sub", [g.const(np.array(1.0, np.float32)), keep], "/Sub")
    bias = g.op("Mul", [masked, g.const(np.array(np.finfo(np.float32).min, np.float32))], "/Mul")

    split_heads = g.const(np.array([0, 0, heads, head_dim], np.int64), "split_heads")
    merge_heads = g.const(np.array([0, 0, hidden], np.int64), "merge_heads")
    scale = g.const(np.array(np.sqrt(head_dim), np.float32), "attention_scale")
    sqrt2 = g.const(np.array(np.sqrt(2.0), np.float32), "sqrt2")
    one = g.const(np.array(1.0, np.float32), "one")
    half = g.const(np.array(0.5, np.float32), "half")
    for i in range(layers):
        key, scope = f"encoder.layer.{i}", f"/encoder/layer.{i}"
        sa = f"{scope}/attention/self"

        def heads_of(name: str, perm: list[int], key=key, sa=sa, x=x) -> str:
            y = linear(x, f"{key}.attention.self.{name}", f"{sa}/{name}")
            y = g.op("Reshape", [y, split_heads], f"{sa}/{name}/Reshape")
            return g.op("Transpose", [y], f"{sa}/{name}/Transpose", perm=perm)

        q = heads_of("query", [0, 2, 1, 3])
        k = heads_of("key", [0, 2, 3, 1])
        v = heads_of("value", [0, 2, 1, 3])
        scores = g.op("Div", [g.op("MatMul", [q, k], f"{sa}/MatMul"), scale], f"{sa}/Div")
        probs = g.op("Softmax", [g.op("Add", [scores, bias], f"{sa}/Add")], f"{sa}/Softmax", axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v], f"{sa}/MatMul_1")], f"{sa}/Transpose_3", perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merge_heads], f"{sa}/Reshape_3")
        out = linear(ctx, f"{key}.attention.output.dense", f"{scope}/attention/output/dense")
        x = layer_norm(g.op("Add", [out, x], f"{scope}/attention/output/Add"), f"{key}.attention.output.LayerNorm",
                       f"{scope}/attention/output/LayerNorm")
        inner = linear(x, f"{key}.intermediate.dense", f"{scope}/intermediate/dense")
        act = f"{scope}/intermediate/intermediate_act_fn"  # exact GELU: x * 0.5 * (1 + erf(x / sqrt(2)))
        erf = g.op("Erf", [g.op("Div", [inner, sqrt2], f"{act}/Div")], f"{act}/Erf")
        gelu = g.op("Mul", [g.op("Mul", [inner, g.op("Add", [erf, one], f"{act}/Add")], f"{act}/Mul"), half],
                    f"{act}/Mul_1")
        out = linear(gelu, f"{key}.output.dense", f"{scope}/output/dense")
        x = layer_norm(g.op("Add", [out, x], f"{scope}/output/Add"), f"{key}.output.LayerNorm",
                       f"{scope}/output/LayerNorm")

    if kind == "encoder":
        result = x
        out_shape = ["batch", "seq", hidden]
    elif kind == "classifier":
        first = g.op("Gather", [x, g.const(np.array(0, np.int64))], "/head/Gather", axis=1)
        if "classifier.out_proj.weight" in w:  # RoBERTa-style head: dense + tanh + out_proj on the first token
            pooled = g.op("Tanh", [linear(first, "classifier.dense", "/classifier/dense")], "/classifier/Tanh")
            result = linear(pooled, "classifier.out_proj", "/classifier/out_proj")
            labels = get("classifier.out_proj.weight").shape[0]
        else:  # BERT: the pooler (dense + tanh on the first token), then the classifier
            pooled = g.op("Tanh", [linear(first, "pooler.dense", "/pooler/dense")], "/pooler/activation/Tanh")
            result = linear(pooled, "classifier", "/classifier")
            labels = get("classifier.weight").shape[0]
        out_shape = ["batch", int(labels)]
    else:
        raise ValueError(f"kind must be encoder or classifier, got {kind!r}")
    g.nodes.append(helper.make_node("Identity", [result], ["out"], name="/out/Identity"))

    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
            for n in ("input_ids", "attention_mask", "token_type_ids")]
    graph = helper.make_graph(g.nodes, "encoder" if kind == "encoder" else "classifier", ints,
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="rerank-mcp")
    model.ir_version = 8
    path = Path(path)
    large = sum(t.ByteSize() for t in g.inits) > _EXTERNAL_DATA_BYTES
    if large:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data")
    else:
        onnx.save_model(model, str(path))
    return path
