"""SmoothQuant (Xiao et al. 2023) for the ``onnx-smooth-l0`` and ``onnx-smooth-l01`` embedding backends.

Dynamic int8 quantisation gives each MatMul input one scale for the whole tensor. The inputs of
each layer's Q/K/V projections and FFN input projection are LayerNorm outputs, in which a few
hidden channels are far larger than the rest, so the other channels lose most of their
resolution. Smoothing moves part of that range into the weights: per input channel j,
``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``, the weights' rows are multiplied by ``s`` and the
input divided by it, which leaves the fp32 result unchanged (up to rounding) and balances what the
quantiser sees. The division is a Mul node on the MatMuls' side of the LayerNorm output (that
output is also the residual, which must stay as it is). ``max|X_j|`` is calibrated by running the
fp32 graph on :data:`CALIBRATION`, a few sentences of ordinary English (a few dozen texts give the
same result as a few hundred, docs/eval/int8-smooth).

The FFN output projections (GELU outputs) are not smoothed: there it lowered the cosine to fp32
instead of raising it; the first layer's stays fp32 as in ``onnx-mixed-l0`` (and the second's too
in ``onnx-smooth-l01``). Node names are those
``index.bert_graph`` writes (and ``torch.onnx.export`` produces) for BERT-family encoders.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

# migration strength: 0.65 measured best of 0.35, 0.5, 0.65, 0.8 (docs/eval/int8-smooth)
ALPHA = 0.65
# the MatMuls smoothed per layer: Q/K/V share one input (one s), the FFN input projection its own
_GROUPS = (("attention/self/query/MatMul", "attention/self/key/MatMul", "attention/self/value/MatMul"),
           ("intermediate/dense/MatMul",))
CALIBRATION = (
    "The committee approved the budget after a long debate about school funding.",
    "Mitochondria produce most of the chemical energy needed to power the cell's reactions.",
    "How do I reset my password if I no longer have access to the recovery email?",
    "Heat transfer in the boundary layer of a flat plate depends on the Reynolds number.",
    "She walked along the river at dawn, listening to the birds in the reeds.",
    "Patients receiving the higher dose showed a significant reduction in blood pressure (p < 0.01).",
    "The compiler reports an error when a variable is used before it is assigned.",
    "Shares fell 3% on Tuesday after the company cut its forecast for the year.",
    "what is the effect of temperature on the viscosity of lubricating oils",
    "An electronic circuit for measuring the phase difference between two signals is described.",
    "In 1969 the first crewed landing on the Moon was watched by millions on television.",
    "Add the flour gradually and stir until the batter is smooth, then bake for 25 minutes.",
    "The enzyme binds its substrate at the active site and lowers the activation energy.",
    "Supersonic flow over a wedge produces an oblique shock whose angle depends on the Mach number.",
    "Is there a vaccine for the common cold?",
    "The library is open from nine to five on weekdays and closed on public holidays.",
    "Gene expression in tumour cells was compared with that in adjacent normal tissue.",
    "A method is proposed for the numerical solution of the heat conduction equation.",
    "The goalkeeper saved a penalty in the final minute to keep the score level.",
    "Use the search function to find documents that mention both terms.",
    "Vitamin D deficiency has been associated with an increased risk of fractures in older adults.",
    "The transistor amplifier has a gain of 40 dB over a bandwidth of 10 MHz.",
    "Rain is expected in the north tomorrow, with sunny spells later in the week.",
    "The court ruled that the contract was void because one party had been misled.",
    "Protein folding is driven largely by the hydrophobic effect.",
    "The aircraft's wing was tested in a wind tunnel at several angles of attack.",
    "Children who read every day develop larger vocabularies than those who do not.",
    "The database stores each record with a timestamp and the identifier of its author.",
    "Microwave antennas for radar systems: design of slotted waveguide arrays.",
    "Smoking is the leading cause of lung cancer, but not the only one.",
    "He said the results were preliminary and that more work was needed to confirm them.",
    "The algorithm sorts the list in place and runs in O(n log n) time on average.",
)


def _maxima(model, tensors: list[str], feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """max |x| per channel of the named tensors over the calibration ``feeds`` (the model's inputs,
    batch by batch, as the embedder feeds them: padded positions count, as they do for the quantiser)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for t in tensors:
        probe.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out: dict[str, np.ndarray] = {}
    for feed in feeds:
        feed = {i.name: feed[i.name] for i in sess.get_inputs()}
        for t, a in zip(tensors, sess.run(tensors, feed)):
            m = np.abs(a).reshape(-1, a.shape[-1]).max(0)
            out[t] = np.maximum(out[t], m) if t in out else m
    if not out:
        raise ValueError("cannot smooth this graph: no calibration input")
    return out


def smooth(source: Path, target: Path, feeds: Iterable[dict[str, np.ndarray]], alpha: float = ALPHA) -> Path:
    """Write ``source`` (an fp32 encoder graph) smoothed to ``target``; same outputs in fp32.
    ``feeds``: the model's inputs for :data:`CALIBRATION`, batch by batch
    (``onnx_embed.calibration_feeds``)."""
    import onnx
    from onnx import helper, numpy_helper

    if Path(str(source) + ".data").exists():
        raise ValueError("cannot smooth a graph over 2 GB (its weights in a side file)")
    model = onnx.load(str(source))
    g = model.graph
    nodes = {n.name: n for n in g.node}
    inits = {t.name: t for t in g.initializer}
    layers = sorted({int(m.group(1)) for n in nodes if (m := re.match(r"/encoder/layer\.(\d+)/", n))})
    groups = []
    for i in layers:
        for names in _GROUPS:
            mms = [f"/encoder/layer.{i}/{n}" for n in names]
            missing = [m for m in mms if m not in nodes or nodes[m].input[1] not in inits]
            if missing:
                raise ValueError(f"cannot smooth this graph: no MatMul {missing[0]} with constant weights")
            groups.append((i, mms))
    if not groups:
        raise ValueError("cannot smooth this graph: no /encoder/layer.N/ MatMuls")
    maxima = _maxima(model, sorted({nodes[mms[0]].input[0] for _, mms in groups}), feeds)
    for n, (i, mms) in enumerate(groups):
        x = nodes[mms[0]].input[0]
        weights = {m: numpy_helper.to_array(inits[nodes[m].input[1]]) for m in mms}
        wmax = np.max([np.abs(w).max(axis=1) for w in weights.values()], axis=0)
        s = np.power(np.maximum(maxima[x], 1e-5), alpha) / np.power(np.maximum(wmax, 1e-5), 1 - alpha)
        s = np.clip(s, 1e-3, 1e3).astype(np.float32)
        for m, w in weights.items():
            name = nodes[m].input[1]
            inits[name].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), name))
        scope = f"/encoder/layer.{i}/smooth_{n % len(_GROUPS)}"
        g.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), f"{scope}/inverse_scale"))
        mul = helper.make_node("Mul", [x, f"{scope}/inverse_scale"], [f"{scope}/Mul_output_0"], name=f"{scope}/Mul")
        for m in mms:
            nodes[m].input[0] = f"{scope}/Mul_output_0"
        first = next(k for k, node in enumerate(g.node) if node.name == mms[0])
        g.node.insert(first, mul)
    onnx.save_model(model, str(target))
    return Path(target)
