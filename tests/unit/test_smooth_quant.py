"""SmoothQuant for the ``onnx-smooth-l0`` embedding backend (index/smooth_quant.py).

On the packaged default model (all-MiniLM-L6-v2): the smoothed fp32 graph computes what the
written graph computes, and the backend's int8 vectors are closer to the fp32 graph's than the
default backend's (``onnx-mixed-l0``) are.
"""

from __future__ import annotations

import numpy as np
import pytest

from rerank_mcp.index import bert_graph, smooth_quant
from rerank_mcp.index.onnx_embed import WordPieces, calibration_feeds, ort_session

TEXTS = ["what do pandas eat", "Giant pandas eat bamboo shoots and leaves for most of the day.",
         "The stock market closed higher on Friday after a volatile week of trading.",
         "A numerical method for the laminar boundary layer on a flat plate with suction is given.",
         "Does vitamin C reduce the duration of colds in adults?",
         "the measurement of the dielectric constant of liquids at microwave frequencies",
         "Randomised trials found no effect of the drug on mortality at one year, though hospital stays were shorter.",
         "How to bake bread without yeast"]


def _default_model():
    from rerank_mcp.index.model_names import packaged_default

    folder = packaged_default()
    if folder is None:
        pytest.skip("the default model's package is not installed")
    return folder


def _feed(folder, texts):
    tok = WordPieces(folder, 256)
    enc = tok.ids(texts, special=True)
    width = max(len(e) for e in enc)
    ids = np.zeros((len(enc), width), np.int64)
    mask = np.zeros_like(ids)
    for r, e in enumerate(enc):
        ids[r, : len(e)] = e
        mask[r, : len(e)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}, mask


@pytest.mark.slow
def test_smoothing_moves_scale_into_weights_and_keeps_the_outputs(tmp_path):
    import onnx
    from onnx import numpy_helper

    folder = _default_model()
    fp32 = bert_graph.write(folder, tmp_path / "fp32.onnx")
    smoothed = smooth_quant.smooth(fp32, tmp_path / "smooth.onnx", calibration_feeds(folder, smooth_quant.CALIBRATION))
    before = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(fp32)).graph.initializer}
    graph = onnx.load(str(smoothed)).graph
    after = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    muls = [n for n in graph.node if n.name.endswith("/Mul") and "/smooth_" in n.name]
    assert len(muls) == 12  # six layers: one for Q/K/V, one for the FFN input
    for layer in range(6):
        for w in (f"encoder.layer.{layer}.attention.self.query.weight", f"encoder.layer.{layer}.intermediate.dense.weight"):
            assert not np.allclose(before[w], after[w])  # rows rescaled
        out = f"encoder.layer.{layer}.output.dense.weight"
        np.testing.assert_array_equal(before[out], after[out])  # FFN output projections not smoothed
    feed, mask = _feed(folder, TEXTS)
    want = ort_session(fp32).run(None, feed)[0]
    got = ort_session(smoothed).run(None, feed)[0]
    keep = mask[..., None].astype(bool)
    np.testing.assert_allclose(np.where(keep, got, 0), np.where(keep, want, 0), atol=2e-4)


def test_a_graph_without_encoder_layers_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, ["b", "s"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "s"])
    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["out"], name="/out/Identity")], "g", [x], [y])
    src = tmp_path / "g.onnx"
    onnx.save_model(helper.make_model(graph), str(src))
    with pytest.raises(ValueError, match="no /encoder/layer"):
        smooth_quant.smooth(src, tmp_path / "s.onnx", calibration_feeds(_default_model(), smooth_quant.CALIBRATION))
    assert not (tmp_path / "s.onnx").exists()


@pytest.mark.parametrize("backend", ["onnx-smooth-l0", "onnx-smooth-l01"])
def test_settings_select_the_smooth_backends(monkeypatch, tmp_path, backend):
    from rerank_mcp.index.model_names import EMBEDDING_BACKENDS, split_identity
    from rerank_mcp.server.settings import load_settings

    monkeypatch.setenv("RERANK_MCP_EMBEDDING_BACKEND", backend)
    assert load_settings(data_dir=tmp_path).embedding_backend == backend
    assert backend in EMBEDDING_BACKENDS
    # a collection built with it records the backend, and is served with it again
    assert split_identity(f"sentence-transformers/all-MiniLM-L6-v2#{backend}")[1] == backend


@pytest.mark.slow
def test_smooth_backends_are_closer_to_fp32_than_the_default(tmp_path):
    """The exports made by the real path (load_embedder), in the same cache folder: distinct files,
    and onnx-smooth-l0's vectors nearer the fp32 graph's than onnx-mixed-l0's, onnx-smooth-l01's
    nearer still (the proxy measured mean cosine 0.9953, 0.9975 and 0.9981 on 600 SciFact /
    Cranfield / NPL texts, docs/eval/int8-smooth)."""
    from rerank_mcp.index.embedding import load_embedder

    folder = _default_model()
    smooth = load_embedder("all-MiniLM-L6-v2", "onnx-smooth-l0", cache_dir=tmp_path)
    default = load_embedder("all-MiniLM-L6-v2", "onnx-mixed-l0", cache_dir=tmp_path)
    two = load_embedder("all-MiniLM-L6-v2", "onnx-smooth-l01", cache_dir=tmp_path)
    assert smooth.backend == "onnx-smooth-l0" and smooth.identity.endswith("#onnx-smooth-l0")
    assert two.backend == "onnx-smooth-l01"
    assert len({smooth.path, default.path, two.path}) == 3
    assert len({smooth.cache_key, default.cache_key, two.cache_key}) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")) == []

    feed, mask = _feed(folder, TEXTS)
    hidden = ort_session(bert_graph.write(folder, tmp_path / "fp32.onnx")).run(None, feed)[0]
    m = mask[..., None].astype(np.float32)
    ref = (hidden * m).sum(1) / m.sum(1)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    cos_smooth = np.sum(smooth.encode(TEXTS) * ref, axis=1)
    cos_default = np.sum(default.encode(TEXTS) * ref, axis=1)
    assert cos_smooth.min() > 0.995, cos_smooth
    cos_two = np.sum(two.encode(TEXTS) * ref, axis=1)
    assert cos_smooth.mean() > cos_default.mean(), (cos_smooth, cos_default)
    assert cos_two.mean() > cos_smooth.mean(), (cos_two, cos_smooth)


@pytest.mark.slow
def test_a_graph_smoothing_cannot_take_is_quantised_without_it(tmp_path, monkeypatch, caplog):
    """The default backend must not fail for a model smoothing does not know (another graph layout,
    a graph over 2 GB): the same recipe without the smoothing, and a warning saying so."""
    import logging

    import onnx

    from rerank_mcp.index import onnx_embed

    folder = _default_model()

    def refuse(*_args, **_kw):
        raise ValueError("cannot smooth this graph: no /encoder/layer.N/ MatMuls")

    monkeypatch.setattr(smooth_quant, "smooth", refuse)
    with caplog.at_level(logging.WARNING, logger="rerank_mcp.index.onnx_embed"):
        path = onnx_embed.export_int8(folder, tmp_path, "encoder", onnx_embed.SMOOTH_FIRST_FFN_OUTPUT)
    assert path.exists()
    assert "quantised without SmoothQuant (cannot smooth this graph" in caplog.text
    nodes = onnx.load(str(path)).graph.node
    assert not [n for n in nodes if "/smooth_" in n.name]
    assert [n for n in nodes if n.op_type == "MatMul" and n.name.endswith("layer.0/output/dense/MatMul")]  # fp32 kept
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [path.name]  # no leftovers
