"""Multilingual rerankers: BAAI/bge-reranker-base and BAAI/bge-reranker-v2-m3 (XLM-R
cross-encoders) from the local Hugging Face-compatible hub, FlashRank's ms-marco-MultiBERT-L-12
from the local archive host, on both cross-encoder backends; the ``languages`` the listings
report; and ``auto`` taking a multilingual model for text that is not English.

The fixture models (tests/fixtures/multilingual.py) have the published architectures and
tokenizer types (XLM-R with a SentencePiece Unigram tokenizer; BERT with a multilingual
WordPiece vocabulary) and tiny random weights: scores are meaningless, so the checks compare
backends and paths with each other, never ranking quality.
"""

from __future__ import annotations

import numpy as np
import pytest

from rerank_mcp.tools.models_store import ModelStore, model_ref
from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry
from tests.e2e.test_languages import DOCS
from tests.fixtures.hub import FakeFileHost, FakeHub, zip_folder
from tests.fixtures.multilingual import MULTIBERT_FILE, build_multibert_flashrank, build_xlmr_cross_encoder

pytestmark = pytest.mark.slow  # fixture multilingual cross-encoders on two backends

CE = "cross-encoder/ms-marco-MiniLM-L-6-v2"
BGE = "BAAI/bge-reranker-base"
M3 = "BAAI/bge-reranker-v2-m3"
MB = "ms-marco-MultiBERT-L-12"
TEXTS = [d["text"] for d in DOCS]
ZH_QUERY = "大熊猫每天吃什么"
EN_QUERY = "what does the quick fox jump over"


@pytest.fixture(scope="module")
def bge_folder(tmp_path_factory):
    return build_xlmr_cross_encoder(tmp_path_factory.mktemp("bge") / "model")


@pytest.fixture(scope="module")
def m3_folder(tmp_path_factory):
    return build_xlmr_cross_encoder(tmp_path_factory.mktemp("m3") / "model", seed=12)


@pytest.fixture(scope="module")
def multibert(tmp_path_factory):
    return build_multibert_flashrank(tmp_path_factory.mktemp("mb"))



@pytest.fixture
def peers(online, ce_model, bge_folder, m3_folder, multibert):
    with FakeHub() as hub, FakeFileHost() as host:
        hub.add_repo(CE, folder=ce_model)
        hub.add_repo(BGE, folder=bge_folder)
        hub.add_repo(M3, folder=m3_folder)
        host.files[f"/{MB}.zip"] = zip_folder(multibert, MB)
        yield hub, host


def _registry(tmp_path, peers, pull=(), ce=CE, fr=None, **ctx):
    hub, host = peers
    store = ModelStore(tmp_path / "flashrank", host.base_url, hf_cache_dir=tmp_path / "hf", hf_endpoint=hub.base_url,
                       downloads=False)
    for name in pull:
        store.pull(model_ref(name))
    flashrank = {"cache_dir": store.flashrank_dir, **({"model": fr} if fr else {})}
    context = RerankContext(**{"configs": {"cross-encoder": {"model": ce}, "flashrank": flashrank},
                               "models": store, "fallback_when_missing": True,
                               "onnx_cache_dir": str(tmp_path / "onnx"), **ctx})
    return RerankerRegistry(context), store


@pytest.mark.parametrize("model, folder", [(BGE, "bge_folder"), (M3, "m3_folder")])
def test_xlmr_cross_encoders_from_the_hub_on_both_backends(tmp_path, peers, model, folder, request):
    reg, store = _registry(tmp_path, peers, pull=[model])
    torch_res = reg.get("cross-encoder", {"model": model}).rerank(ZH_QUERY, TEXTS)
    onnx_res = reg.get("cross-encoder", {"model": model, "backend": "onnx"}).rerank(ZH_QUERY, TEXTS)
    assert torch_res.used is None and torch_res.fallback is None and onnx_res.used is None
    assert "backend: onnx int8 (ONNX Runtime)" in onnx_res.notes
    t = {p.index: p.score for p in torch_res.passages}
    o = {p.index: p.score for p in onnx_res.passages}
    spread = max(t.values()) - min(t.values())
    assert spread > 1.0  # the fixture's scores differ: the comparison means something
    # int8 rounding: the same scores up to a small share of their spread (near-ties may swap)
    assert max(abs(t[i] - o[i]) for i in t) < 0.15 * spread
    assert np.corrcoef([t[i] for i in t], [o[i] for i in t])[0, 1] > 0.98
    # the model the store holds is the hub's: the same scores as loading the fixture folder itself
    direct = RerankerRegistry(RerankContext(configs={"cross-encoder": {"model": str(request.getfixturevalue(folder))}}))
    assert {p.index: p.score for p in direct.get("cross-encoder").rerank(ZH_QUERY, TEXTS).passages} == \
        pytest.approx(t, rel=1e-5)
    # the ONNX export of the XLM-R classifier pads with <pad> (1), not BERT's 0
    assert reg.get("cross-encoder", {"model": model, "backend": "onnx"})._backend.pad_id == 1


def test_multibert_flashrank_from_the_archive_host(tmp_path, peers, multibert):
    import torch
    from transformers import BertForSequenceClassification

    reg, store = _registry(tmp_path, peers, pull=[MB])
    assert (store.flashrank_dir / MB / MULTIBERT_FILE).is_file()
    fr = reg.get("flashrank", {"model": MB})
    res = fr.rerank(ZH_QUERY, TEXTS)
    assert res.used is None and res.fallback is None
    tok = fr._ranker.tokenizer
    unk = tok.token_to_id("[UNK]")
    enc = tok.encode(ZH_QUERY)
    assert unk not in enc.ids and len(enc.ids) == len(ZH_QUERY) + 2  # one WordPiece per Chinese character
    # the same network in torch (fp32) gives the same scores, within int8 rounding
    model = BertForSequenceClassification.from_pretrained(str(multibert / "torch")).eval()
    pairs = tok.encode_batch([[ZH_QUERY, t] for t in TEXTS])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([e.ids for e in pairs]),
                       attention_mask=torch.tensor([e.attention_mask for e in pairs]),
                       token_type_ids=torch.tensor([e.type_ids for e in pairs])).logits[:, 0].numpy()
    want = 1 / (1 + np.exp(-logits))
    got = np.array([{p.index: p.score for p in res.passages}[i] for i in range(len(TEXTS))])
    spread = float(want.max() - want.min())
    assert spread > 0.1  # scores that differ: the comparison means something
    assert np.abs(got - want).max() < 0.15 * spread  # int8 rounding
    assert np.corrcoef(got, want)[0, 1] > 0.98


def test_languages_in_list_rerankers_and_models_list(tmp_path, peers):
    reg, store = _registry(tmp_path, peers, pull=[CE], embedding_model="sentence-transformers/all-MiniLM-L6-v2")
    info = {i.name: i for i in reg.describe()}
    assert info["cross-encoder"].languages == "en" and info["flashrank"].languages == "en"
    assert info["bm25"].languages == "multilingual" and info["embedding"].languages == "en"
    assert info["cohere"].languages == "multilingual"  # rerank-v3.5
    assert info["auto"].languages == "en" and "not English" not in info["auto"].note  # nothing multilingual here
    store.pull(model_ref(BGE))
    info = {i.name: i for i in reg.describe()}
    assert info["auto"].languages == "zh,en"
    assert info["auto"].note == f"picks cross-encoder now; cross-encoder with {BGE} for text that is not English"
    store.pull(model_ref(M3))
    info = {i.name: i for i in reg.describe()}
    assert info["auto"].languages == "multilingual" and M3 in info["auto"].note

    reg2, _ = _registry(tmp_path, peers, ce=BGE, fr=MB,
                        embedding_model="intfloat/multilingual-e5-small")
    info = {i.name: i for i in reg2.describe()}
    assert info["cross-encoder"].languages == "zh,en" and info["flashrank"].languages == "multilingual"
    assert info["embedding"].languages == "multilingual"

    listed = {m.name: m for m in store.list({})}
    assert listed[CE].languages == "en" and listed[BGE].languages == "zh,en"


def _auto(reg, query, texts=TEXTS):
    res = reg.get("auto").rerank(query, texts)
    return res.used, res.notes[0]


def test_auto_takes_a_multilingual_model_for_text_that_is_not_english(tmp_path, peers):
    reg, store = _registry(tmp_path, peers, pull=[CE])
    # only the English cross-encoder here: it stays the pick, whatever the language
    assert _auto(reg, ZH_QUERY) == ("cross-encoder", "auto picked cross-encoder: the first choice")

    store.pull(model_ref(MB))
    used, note = _auto(reg, ZH_QUERY)
    assert used == "flashrank"
    assert note == (f"auto picked flashrank with model={MB} (multilingual): the query is not English and "
                    f"cross-encoder's model {CE} covers English only")
    store.pull(model_ref(BGE))
    used, note = _auto(reg, ZH_QUERY)
    assert used == "cross-encoder" and note.startswith(f"auto picked cross-encoder with model={BGE} (zh,en)")
    # the pick scores as that model does
    want = reg.get("cross-encoder", {"model": BGE}).rerank(ZH_QUERY, TEXTS)
    got = reg.get("auto").rerank(ZH_QUERY, TEXTS)
    assert [p.index for p in got.passages] == [p.index for p in want.passages]
    assert [p.score for p in got.passages] == pytest.approx([p.score for p in want.passages])
    store.pull(model_ref(M3))
    assert _auto(reg, "RAG中的Reranker")[1].startswith(f"auto picked cross-encoder with model={M3} (multilingual)")

    # English queries over English passages keep the first choice; Chinese passages switch too
    english = ["The quick brown fox jumps over the lazy dog.", "Rerankers order passages by relevance."]
    assert _auto(reg, EN_QUERY, english) == ("cross-encoder", "auto picked cross-encoder: the first choice")
    used, note = _auto(reg, EN_QUERY, TEXTS[:6])
    assert used == "cross-encoder" and "the passages are not English" in note and M3 in note
    # another script than Latin, not CJK: only a model trained on many languages covers it
    russian = "что едят большие панды каждый день"
    assert M3 in _auto(reg, russian)[1]


def test_auto_keeps_a_configured_multilingual_or_unknown_model(tmp_path, peers, bge_folder):
    reg, store = _registry(tmp_path, peers, pull=[BGE, MB], ce=BGE)
    assert _auto(reg, ZH_QUERY) == ("cross-encoder", "auto picked cross-encoder: the first choice")
    reg, _ = _registry(tmp_path, peers, ce=str(bge_folder))  # a folder: unknown languages
    assert _auto(reg, ZH_QUERY) == ("cross-encoder", "auto picked cross-encoder: the first choice")


def test_not_english_detection():
    from rerank_mcp.tools.rerank.auto import _not_english

    assert _not_english("倒排索引和BM25") == (True, True)
    assert _not_english("RAG中的Reranker") == (True, True)  # Chinese with English terms
    assert _not_english("臺灣高鐵") == (True, True)
    assert _not_english("what is BM25") == (False, False)
    assert _not_english("Die Häuser der Stadt") == (False, False)  # Latin script: not told apart from English
    assert _not_english("что едят панды") == (True, False)
    assert _not_english("12345") == (False, False)
