"""The quantised variants the proxy (proxy.py) measures, each made from the fp32 graph.

Names: ``fp32``; ``int8`` (all MatMuls int8, as ``onnx``); ``l0`` (the default, ``onnx-mixed-l0``);
``l01`` (layers 0 and 1 FFN output fp32); ``l0-rr`` (reduce_range); ``l0-sym`` (symmetric
activations); ``smooth-A[-PARTS][-l0]``: SmoothQuant with migration strength A (e.g. 0.5) on the
parts PARTS (``all`` or a ``+``-joined subset of qkv, ao, fi, fo: the Q/K/V projections, the
attention output projection, the FFN input and output projections), then dynamic int8, with
``-l0`` the first FFN output also kept fp32; ``static-METHOD``: static QDQ int8 (per-channel
weights) calibrated with MinMax / Percentile / Entropy.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

L0 = r"layer\.0/output/dense/MatMul"
L01 = r"layer\.[01]/output/dense/MatMul"


def _dynamic(src: Path, dst: Path, keep: str | None, **kw) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    exclude = [n.name for n in onnx.load(str(src)).graph.node
               if keep and n.op_type == "MatMul" and re.search(keep, n.name)]
    logging.getLogger().setLevel(logging.ERROR)
    extra = kw.pop("extra_options", {})
    kw.setdefault("weight_type", QuantType.QInt8)
    quantize_dynamic(str(src), str(dst), per_channel=True, nodes_to_exclude=exclude,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, **extra}, **kw)
    return dst


def _feeds(tok, texts, batch=4):
    enc = tok.ids(texts, special=True)
    order = np.argsort([len(e) for e in enc])
    for b in np.array_split(order, max(1, len(order) // batch)):
        width = max(len(enc[i]) for i in b)
        ids = np.zeros((len(b), width), np.int64)
        mask = np.zeros((len(b), width), np.int64)
        for r, i in enumerate(b):
            ids[r, : len(enc[i])] = enc[i]
            mask[r, : len(enc[i])] = 1
        yield {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def activation_maxima(fp32: Path, tensors: list[str], tok, texts) -> dict[str, np.ndarray]:
    """max |x| per channel (last axis) of the named tensors over the texts, padding included (the
    dynamic quantiser's range includes padded positions too)."""
    import onnxruntime as ort

    model = onnx.load(str(fp32))
    for t in tensors:
        model.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out = {t: None for t in tensors}
    for feed in _feeds(tok, texts):
        got = sess.run(tensors, feed)
        for t, a in zip(tensors, got):
            m = np.abs(a).reshape(-1, a.shape[-1]).max(0)
            out[t] = m if out[t] is None else np.maximum(out[t], m)
    return out


def smooth(fp32: Path, dst: Path, tok, texts, alpha: float, parts: set[str], floor: float = 1e-3,
           data_free: float | None = None) -> Path:
    """SmoothQuant (Xiao et al. 2023) on the graph bert_graph writes: per input channel j of a
    MatMul, s_j = max|X_j|^alpha / max|W_j|^(1-alpha); W' = diag(s) W and X' = X / s, where X / s is
    folded into the value projection (attention output's input: ctx is linear in V per channel),
    into the GELU's final Mul by 0.5 (FFN output's input), or, for the Q/K/V and FFN input
    projections (whose input, a LayerNorm output, is also the residual), a Mul node inserted on
    the MatMul's side only."""
    model = onnx.load(str(fp32))
    g = model.graph
    nodes = {n.name: n for n in g.node}
    inits = {t.name: t for t in g.initializer}

    def arr(name):
        return numpy_helper.to_array(inits[name]).copy()

    def put(name, a):
        inits[name].CopyFrom(numpy_helper.from_array(a.astype(np.float32), name))

    layers = sorted({int(m.group(1)) for n in nodes if (m := re.match(r"/encoder/layer\.(\d+)/", n))})
    groups = []  # (part, layer, matmul node names)
    for i in layers:
        s = f"/encoder/layer.{i}"
        groups += [("qkv", i, [f"{s}/attention/self/{p}/MatMul" for p in ("query", "key", "value")]),
                   ("ao", i, [f"{s}/attention/output/dense/MatMul"]),
                   ("fi", i, [f"{s}/intermediate/dense/MatMul"]),
                   ("fo", i, [f"{s}/output/dense/MatMul"])]
    groups = [gr for gr in groups if gr[0] in parts]
    xs = sorted({nodes[gr[2][0]].input[0] for gr in groups})
    if data_free is None:
        maxima = activation_maxima(fp32, xs, tok, texts)
    else:  # from the LayerNorm that makes x: |gamma| * k + |beta| (no data)
        made = {n.output[0]: n for n in g.node}
        maxima = {x: np.abs(arr(made[x].input[1])) * data_free + np.abs(arr(made[x].input[2])) for x in xs}
    new_nodes = []
    for part, i, mms in groups:
        x = nodes[mms[0]].input[0]
        wmax = np.max([np.abs(arr(nodes[m].input[1])).max(1) for m in mms], axis=0)
        s = np.power(np.maximum(maxima[x], 1e-5), alpha) / np.power(np.maximum(wmax, 1e-5), 1 - alpha)
        s = np.clip(s, floor, 1e3)
        for m in mms:
            w = nodes[m].input[1]
            put(w, arr(w) * s[:, None])
        if part == "ao":
            sc = f"/encoder/layer.{i}/attention/self/value"
            wv, bv = nodes[f"{sc}/MatMul"].input[1], nodes[f"{sc}/Add"].input[0]
            put(wv, arr(wv) / s[None, :])
            put(bv, arr(bv) / s)
        elif part == "fo":
            mul = nodes[f"/encoder/layer.{i}/intermediate/intermediate_act_fn/Mul_1"]
            name = f"smooth_half_{i}"
            g.initializer.append(numpy_helper.from_array((0.5 / s).astype(np.float32), name))
            mul.input[1] = name
        else:  # a Mul by 1/s on the MatMuls' side of the LayerNorm output
            name = f"/encoder/layer.{i}/smooth_{part}"
            g.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), name + "_scale"))
            new_nodes.append((mms, helper.make_node("Mul", [x, name + "_scale"], [name + "_out"], name=name + "/Mul")))
            for m in mms:
                nodes[m].input[0] = name + "_out"
    # insert each Mul just before the first MatMul that reads it (topological order)
    for mms, mul in new_nodes:
        idx = [k for k, n in enumerate(g.node) if n.name == mms[0]][0]
        g.node.insert(idx, mul)
    onnx.save_model(model, str(dst))
    return dst


def static(fp32: Path, dst: Path, tok, texts, method: str) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(list(_feeds(tok, texts)))

        def get_next(self):
            return next(self.it, None)

    logging.getLogger().setLevel(logging.ERROR)
    quantize_static(str(fp32), str(dst), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method={"minmax": CalibrationMethod.MinMax, "pct": CalibrationMethod.Percentile,
                                      "entropy": CalibrationMethod.Entropy}[method],
                    extra_options={"MatMulConstBOnly": True, "CalibPercentile": 99.999})
    return dst


def build(name: str, fp32: Path, out: Path, cal, tok) -> Path:
    if name.startswith("file:"):  # an exported file, e.g. a backend's in the ONNX cache
        return Path(name[5:])
    dst = out / f"{name}.onnx"
    if dst.exists() or name == "fp32":
        return fp32 if name == "fp32" else dst
    if name == "int8":
        return _dynamic(fp32, dst, None)
    if name == "l0":
        return _dynamic(fp32, dst, L0)
    if name == "mixed":  # onnx-mixed: every FFN output projection fp32
        return _dynamic(fp32, dst, r"layer\.\d+/output/dense/MatMul")
    if name == "l01":
        return _dynamic(fp32, dst, L01)
    if name == "l0-rr":
        return _dynamic(fp32, dst, L0, reduce_range=True)
    if name == "int8-rr":
        return _dynamic(fp32, dst, None, reduce_range=True)
    if name == "l0-sym":
        return _dynamic(fp32, dst, L0, extra_options={"ActivationSymmetric": True})
    if name.startswith("smooth-"):
        bits = name.split("-")[1:]
        flags = {b for b in bits[1:] if b in ("l0", "l01", "rr", "u8", "ge1") or b.startswith(("df", "cal"))}
        df = next((float(b[2:]) for b in flags if b.startswith("df")), None)
        ncal = next((int(b[3:]) for b in flags if b.startswith("cal")), None)
        cal = cal[::max(1, len(cal) // ncal)][:ncal] if ncal else cal
        bits = [b for b in bits if b not in flags]
        keep = L01 if "l01" in flags else L0 if "l0" in flags else None
        alpha = float(bits[0])
        parts = {"qkv", "ao", "fi", "fo"} if len(bits) < 2 or bits[1] == "all" else set(bits[1].split("+"))
        sm = out / f".{name}-fp32.onnx"
        smooth(fp32, sm, tok, cal, alpha, parts, 1.0 if "ge1" in flags else 1e-3, df)
        kw = {"reduce_range": True} if "rr" in flags else {}
        if "u8" in flags:
            from onnxruntime.quantization import QuantType

            return _dynamic(sm, dst, keep, weight_type=QuantType.QUInt8, **kw)
        return _dynamic(sm, dst, keep, **kw)
    if name.startswith("q-"):  # only these parts int8, the rest fp32
        parts = name[2:].split("+")
        pat = {"qkv": r"attention/self/(query|key|value)/MatMul", "ao": r"attention/output/dense/MatMul",
               "fi": r"intermediate/dense/MatMul", "fo": r"layer\.\d+/output/dense/MatMul"}
        keep = "|".join(v for k, v in pat.items() if k not in parts)
        return _dynamic(fp32, dst, keep or None)
    if name.startswith("smoothfp-"):  # the smoothed graph unquantised: must equal fp32
        return smooth(fp32, dst, tok, cal, float(name.split("-")[1]), {"qkv", "ao", "fi", "fo"})
    if name.startswith("static-"):
        return static(fp32, dst, tok, cal, name.split("-", 1)[1])
    raise SystemExit(f"unknown variant {name}")
