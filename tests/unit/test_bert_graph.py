"""The ONNX graphs written from a model's weights without torch (index/bert_graph.py).

Each graph is checked against the transformers implementation of the same weights (torch, fp32,
from the test extra): BERT and XLM-RoBERTa encoders and classifiers, with padding. The default
model's int8 conversion is then made in a process where torch, transformers and
sentence-transformers cannot be imported at all, and its vectors are compared with
sentence-transformers' fp32 ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rerank_mcp.index import bert_graph
from rerank_mcp.index.onnx_embed import ExportFailed, ort_session

TEXTS = ["what do pandas eat", "Giant pandas eat bamboo shoots and leaves for most of the day.",
         "The stock market closed higher on Friday after a volatile week of trading."]

# What a process without the torch extra sees: these imports fail.
NO_TORCH = textwrap.dedent("""
    import sys
    for name in ("torch", "transformers", "sentence_transformers"):
        sys.modules[name] = None
""")


def _tiny(tmp_path, arch: str, head: bool):
    torch = pytest.importorskip("torch")
    import transformers as tf

    torch.manual_seed(0)
    cfg_cls = tf.BertConfig if arch == "bert" else tf.XLMRobertaConfig
    cfg = cfg_cls(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                  max_position_embeddings=80, num_labels=1)
    if arch == "bert":
        model = (tf.BertForSequenceClassification if head else tf.BertModel)(cfg)
    else:
        model = (tf.XLMRobertaForSequenceClassification if head else tf.XLMRobertaModel)(cfg)
    model.eval()
    folder = tmp_path / f"{arch}-{'cls' if head else 'enc'}"
    model.save_pretrained(folder)
    return model, cfg, folder


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
@pytest.mark.parametrize("head", [False, True], ids=["encoder", "classifier"])
def test_graph_computes_what_transformers_computes(tmp_path, arch, head):
    import torch

    model, cfg, folder = _tiny(tmp_path, arch, head)
    path = bert_graph.write(folder, tmp_path / "g.onnx", "classifier" if head else "encoder")
    pad = cfg.pad_token_id
    ids = torch.tensor([[5, 17, 23, 42, 8, 9, 3], [5, 60, 61, 3, pad, pad, pad]])
    mask = (ids != pad).long()
    types = torch.zeros_like(ids)
    types[0, 4:] = 1 if arch == "bert" else 0  # a pair's second segment
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    want = (out.logits if head else out.last_hidden_state).numpy()
    got = ort_session(path).run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                       "token_type_ids": types.numpy()})[0]
    if not head:  # padded positions' vectors are never used
        keep = mask.numpy()[..., None].astype(bool)
        want, got = np.where(keep, want, 0), np.where(keep, got, 0)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_unsupported_models_are_named(tmp_path):
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert "gpt2" in bert_graph.supported(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert "model.safetensors" in bert_graph.supported(folder)  # a pickled checkpoint needs torch to read
    with pytest.raises(bert_graph.Unsupported, match="model.safetensors"):
        bert_graph.write(folder, tmp_path / "x.onnx")


def test_classifier_attention_is_fused(tmp_path):
    """The cross-encoder export fuses each layer's attention (docs/adr/0005) on the written graph too."""
    import onnx

    from rerank_mcp.index.onnx_embed import export_int8

    _, cfg, folder = _tiny(tmp_path, "bert", head=True)
    path = export_int8(folder, tmp_path / "onnx", "classifier")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("QAttention") + ops.count("Attention") == cfg.num_hidden_layers, sorted(set(ops))


def _convert_without_torch(tmp_path, script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH + textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)


@pytest.mark.slow
def test_default_model_converts_and_embeds_without_torch(tmp_path):
    """The default backend's file (onnx-smooth-l0) for the packaged all-MiniLM-L6-v2, made where
    torch, transformers and sentence-transformers cannot be imported, gives the vectors
    sentence-transformers gives in fp32 (within int8 rounding)."""
    from sentence_transformers import SentenceTransformer

    from rerank_mcp.index.model_names import packaged_default

    folder = packaged_default()
    assert folder is not None
    out = tmp_path / "vecs.npy"
    proc = _convert_without_torch(tmp_path, f"""
        import numpy as np
        from pathlib import Path
        from rerank_mcp.index.embedding import load_embedder
        emb = load_embedder("all-MiniLM-L6-v2", "onnx-smooth-l0", cache_dir=Path({str(tmp_path / 'onnx')!r}))
        assert emb.backend == "onnx-smooth-l0", emb.backend
        np.save({str(out)!r}, emb.encode({TEXTS!r}))
        print(emb.path.name)
        assert "torch" not in sys.modules or sys.modules["torch"] is None
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "without SmoothQuant" not in proc.stderr  # smoothed, not the fallback
    got = np.load(out)
    want = SentenceTransformer(str(folder)).encode(TEXTS, normalize_embeddings=True)
    assert np.min(np.sum(got * want, axis=1)) > 0.99
    assert np.argmax(got[1:] @ got[0]) == 0  # the pandas passage, not the market one


def test_architecture_needing_torch_says_which_extra(tmp_path):
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    proc = _convert_without_torch(tmp_path, f"""
        from pathlib import Path
        from rerank_mcp.index.onnx_embed import ExportFailed, export_int8
        try:
            export_int8(Path({str(folder)!r}), Path({str(tmp_path / 'onnx')!r}))
        except ExportFailed as exc:
            print(exc)
        else:
            raise SystemExit("exported")
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "without torch" in proc.stdout and "gpt2" in proc.stdout and "rerank-mcp[torch]" in proc.stdout
    assert ExportFailed  # the type the server maps to a clear error


def test_pair_tokenizer_matches_transformers(tmp_path):
    """The cross-encoders' ONNX path tokenises pairs with the tokenizers library alone: the same
    ids, token types and longest-first truncation as transformers' tokenizer."""
    from transformers import AutoTokenizer

    from rerank_mcp.index.model_names import packaged_default
    from rerank_mcp.index.onnx_embed import PairTokenizer

    folder = packaged_default()
    ours, theirs = PairTokenizer(folder), AutoTokenizer.from_pretrained(str(folder))
    long = " ".join(TEXTS * 20)
    queries, passages = ["pandas bamboo", "a much longer query " * 12], [TEXTS[1], long]
    for kw in ({}, {"truncation": True, "max_length": 32}):
        a = ours(queries, passages, **kw)
        b = theirs(queries, passages, **kw)
        assert a["input_ids"] == b["input_ids"] and a["token_type_ids"] == b["token_type_ids"]
    assert ours.num_special_tokens_to_add(pair=True) == theirs.num_special_tokens_to_add(pair=True) == 3
    assert ours("pandas", add_special_tokens=False)["input_ids"] == theirs("pandas", add_special_tokens=False)["input_ids"]
    assert ours.pad_token_id == theirs.pad_token_id
