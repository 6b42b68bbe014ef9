"""Multilingual model names, prompts and pooling, and the ONNX path on an XLM-R fixture model
(tests/fixtures/multilingual.py: the published architecture and tokenizer type, tiny random weights)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from rerank_mcp.index.model_names import model_covers_cjk, model_languages, pooling_of, text_prompts
from tests.fixtures.multilingual import build_xlmr_encoder

TEXTS = ["大熊猫每天吃竹子。", "倒排索引和BM25", "The quick brown fox jumps over the lazy dog.", "臺灣高鐵"]


@pytest.mark.parametrize("name, langs", [
    ("sentence-transformers/all-MiniLM-L6-v2", "en"),
    ("sentence-transformers/all-MiniLM-L6-v2#onnx-mixed-l0", "en"),
    ("cross-encoder/ms-marco-MiniLM-L-6-v2", "en"),
    ("ms-marco-TinyBERT-L-2-v2", "en"),
    ("intfloat/e5-small-v2", "en"),
    ("BAAI/bge-reranker-base", "zh,en"),
    ("BAAI/bge-small-zh-v1.5", "zh,en"),
    ("intfloat/multilingual-e5-small#onnx-mixed-l0", "multilingual"),
    ("sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2", "multilingual"),
    ("BAAI/bge-m3", "multilingual"),
    ("BAAI/bge-reranker-v2-m3", "multilingual"),
    ("ms-marco-MultiBERT-L-12", "multilingual"),
    ("someone/some-model", None),
])
def test_languages_of_known_models(name, langs):
    assert model_languages(name) == langs
    assert model_covers_cjk(name) == (None if langs is None else langs != "en")


def test_prompts_from_the_family_and_from_the_models_own_config(tmp_path):
    assert text_prompts("intfloat/multilingual-e5-small") == ("query: ", "passage: ")
    assert text_prompts("intfloat/e5-base-v2#onnx") == ("query: ", "passage: ")
    assert text_prompts("intfloat/multilingual-e5-large-instruct") == ("", "")  # takes instructions instead
    assert text_prompts("BAAI/bge-m3") == ("", "")
    assert text_prompts("sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2") == ("", "")
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "Q: ", "document": "D: "}}))
    assert text_prompts("intfloat/multilingual-e5-small", tmp_path) == ("Q: ", "D: ")  # the model's own win


def test_pooling_read_from_the_model_folder(tmp_path):
    assert pooling_of(tmp_path) == "mean"  # nothing said: mean, as sentence-transformers defaults

    def model(name, modes, path="1_Pooling"):
        folder = tmp_path / name
        (folder / path).mkdir(parents=True)
        (folder / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": path, "type": "sentence_transformers.models.Pooling"}]))
        (folder / path / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 32, **{f"pooling_mode_{m}": m in modes for m in
                                                ("cls_token", "mean_tokens", "max_tokens", "lasttoken")}}))
        return folder

    assert pooling_of(model("mean", {"mean_tokens"})) == "mean"
    assert pooling_of(model("cls", {"cls_token"}, path="pooling")) == "cls"  # where modules.json says
    assert pooling_of(model("max", {"max_tokens"})) == "max_tokens"
    assert pooling_of(model("both", {"cls_token", "mean_tokens"})) == "cls_token+mean_tokens"


@pytest.mark.slow  # ONNX exports of fixture models
@pytest.mark.parametrize("arch, pooling", [("xlmr", "mean"), ("xlmr", "cls"), ("bert", "mean")])
def test_xlmr_model_on_the_default_onnx_backend_matches_fp32(tmp_path, arch, pooling):
    """The export of an XLM-R graph (and of a BERT one reading XLM-R's vocabulary): SentencePiece
    ids, <pad> = 1, pooling as the model says, the first layer's FFN output projection kept in fp32
    (onnx-mixed-l0 finds it by the same name in both architectures)."""
    import onnx
    from sentence_transformers import SentenceTransformer

    from rerank_mcp.index.embedding import load_embedder

    folder = build_xlmr_encoder(tmp_path / "m", pooling=pooling, arch=arch)
    emb = load_embedder("intfloat/multilingual-e5-small", "onnx-mixed-l0", cache_dir=tmp_path / "onnx", folder=folder)
    assert emb.backend == "onnx-mixed-l0" and emb.identity == "intfloat/multilingual-e5-small#onnx-mixed-l0"
    assert (emb.query_prefix, emb.passage_prefix) == ("query: ", "passage: ")
    assert emb._tok.pad_id == 1  # XLM-R's <pad>, not BERT's 0
    kept = [n.name for n in onnx.load(str(emb.path)).graph.node if n.op_type == "MatMul" and "output/dense" in n.name]
    assert kept == ["/encoder/layer.0/output/dense/MatMul"]
    want = SentenceTransformer(str(folder)).encode(TEXTS, normalize_embeddings=True)
    got = emb.encode(TEXTS)  # one batch, padded to the longest text
    assert np.min(np.sum(want * got, axis=1)) > 0.999
    other = build_xlmr_encoder(tmp_path / "o", pooling="cls" if pooling == "mean" else "mean", arch=arch)
    wrong = SentenceTransformer(str(other)).encode(TEXTS, normalize_embeddings=True)
    assert np.min(np.sum(wrong * got, axis=1)) < 0.99  # the pooling mode matters
    q = emb.encode_query(["大熊猫"])[0]
    assert np.dot(q, emb.encode(["query: 大熊猫"])[0]) == pytest.approx(1.0, abs=1e-6)


def test_a_pooling_the_onnx_path_lacks_runs_on_torch_and_says_so(tmp_path, caplog):
    from rerank_mcp.index.embedding import Embedder, load_embedder

    folder = build_xlmr_encoder(tmp_path / "m")
    cfg = json.loads((folder / "1_Pooling" / "config.json").read_text())
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({**cfg, "pooling_mode_mean_tokens": False,
                                                                   "pooling_mode_max_tokens": True}))
    with caplog.at_level(logging.WARNING):
        emb = load_embedder("org/max-pooled-xlmr", "onnx-mixed-l0", cache_dir=tmp_path / "onnx", folder=folder)
    assert isinstance(emb, Embedder) and emb.backend == "torch"
    assert emb.identity == "org/max-pooled-xlmr"  # what collections it builds record: torch
    assert "does not run on the onnx-mixed-l0 backend (its pooling (max_tokens) is not implemented there)" in caplog.text
    assert not list((tmp_path / "onnx").glob("*.onnx"))
