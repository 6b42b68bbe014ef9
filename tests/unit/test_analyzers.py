"""The lexical analyzers (index/analyzers.py): one per language family, and the legacy one kept exact."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.analyzers import LEGACY, check_name, describe, detect_language, get_analyzer, normalize, resolve
from rerank_mcp.index.tokenize import tokenize as legacy_tokenize

SCIFACT = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"


def test_cjk_runs_in_bigram_mode_become_overlapping_bigrams_and_a_lone_character_a_unigram():
    a = get_analyzer("english+bigram")
    assert a.tokenize("大熊猫每天吃什么") == ["大熊", "熊猫", "猫每", "每天", "天吃", "吃什", "什么"]
    assert a.tokenize("猫。狗") == ["猫", "狗"]  # punctuation ends a run: lone characters stay unigrams
    # Japanese kana and Korean Hangul are bigrammed the same way (Lucene's CJKAnalyzer)
    assert a.tokenize("カタカナ") == ["カタ", "タカ", "カナ"]
    assert a.tokenize("한국어") == ["한국", "국어"]


def test_mixed_script_keeps_latin_words_and_cjk_bigrams_in_one_pass():
    a = get_analyzer("english")
    toks = a.tokenize("倒排索引和BM25")
    assert "bm25" in toks and "倒排" in toks and "索引" in toks
    toks = a.tokenize("RAG中的Reranker能提升检索效果")
    assert "rag" in toks and "rerank" in toks and "检索" in toks  # the Latin word is stemmed as English


def test_a_snowball_language_other_than_english_stems_and_drops_its_stopwords():
    de = get_analyzer("german")
    assert de.tokenize("Die Häuser und die Hunde") == ["haus", "hund"]
    fr = get_analyzer("french")
    assert fr.tokenize("Les maisons et les chevaux") == ["maison", "cheval"]
    assert get_analyzer("none").tokenize("The Running dogs") == ["the", "running", "dogs"]


def test_full_width_half_width_and_traditional_forms_analyze_like_their_plain_simplified_forms():
    a = get_analyzer("english")
    assert a.tokenize("ＢＭ２５") == a.tokenize("BM25") == ["bm25"]
    assert a.tokenize("ｶﾀｶﾅ") == a.tokenize("カタカナ")  # half-width katakana -> full-width (NFKC)
    assert a.tokenize("臺灣的資訊檢索與倒排索引") == a.tokenize("台湾的资讯检索与倒排索引")
    assert normalize("檢索") == "检索"


def test_the_legacy_analyzer_is_todays_exactly():
    legacy = get_analyzer(None)
    assert legacy.name == LEGACY and get_analyzer("legacy") is legacy
    for text in ("Vitamin D deficiency is associated with fractures.", "倒排索引和BM25", "ＢＭ２５ full width"):
        assert legacy.tokenize(text) == legacy_tokenize(text)
    assert legacy.tokenize("倒排索引和BM25") == ["倒排索引和bm25"]  # the whole run: why CJK needs a new analyzer


def test_english_text_analyzes_as_before_wherever_nfkc_leaves_it_unchanged():
    """New English collections score as today's: same terms for every SciFact document that NFKC
    leaves as it is (the rest differ only in compatibility characters such as ligatures)."""
    if not SCIFACT.exists():
        pytest.skip(f"needs the SciFact collection at {SCIFACT}")
    a = get_analyzer("english")
    same = changed = 0
    with SCIFACT.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if n >= 1000:
                break
            d = json.loads(line)
            text = f"{d.get('title', '')} {d['text']}"
            if unicodedata.normalize("NFKC", text.lower()) != text.lower():
                changed += 1
                continue
            assert a.tokenize(text) == legacy_tokenize(text), d["_id"]
            same += 1
    assert same > 900, (same, changed)


def test_auto_detects_the_language_from_the_text_and_defaults_to_english():
    german = "Die Forschung zeigt, dass die Häuser in der Stadt nicht mehr so teuer sind, wie sie es waren. " * 5
    assert detect_language([german]) == "german"
    assert resolve("auto", [german]) == "german"
    assert resolve("auto", ["The quick brown fox jumps over the lazy dog and the cat."]) == "english"
    assert resolve("auto", ["大熊猫每天吃竹子。"]) == "english"  # CJK needs no detection: every analyzer bigrams it
    assert resolve(None, []) == "english"
    assert resolve("french+jieba", []) == "french+jieba"


def test_unknown_analyzer_names_are_refused_with_the_valid_ones():
    with pytest.raises(InvalidInput, match="unknown analyzer 'klingon'.*english"):
        check_name("klingon")
    with pytest.raises(InvalidInput, match="unknown CJK mode 'trigram'"):
        check_name("english+trigram")
    with pytest.raises(InvalidInput, match="non-empty"):
        check_name("")
    assert check_name(" English ") == "english"
    assert check_name("english+unibigram") == "english"  # characters and bigrams: the default
    assert check_name("english+bigram") == "english+bigram"
    assert "CJK characters and bigrams" in describe("auto")


def test_unigram_bigram_and_jieba_modes():
    assert get_analyzer("english").tokenize("熊猫") == ["熊", "猫", "熊猫"]  # the default mode
    assert get_analyzer("english+bigram").tokenize("熊猫") == ["熊猫"]
    pytest.importorskip("jieba", reason="jieba is in the test extra")
    toks = get_analyzer("english+jieba").tokenize("大熊猫每天吃什么")
    assert "大熊猫" in toks and "每天" in toks
