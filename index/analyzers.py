"""Lexical analyzers: what BM25 (the corpus index of both engines, the ``bm25`` reranker and query
parsing) sees of a text. A collection's analyzer is part of its identity, like its embedding
model: chosen when the collection is created, recorded with it, and used on both sides.

Names:

- ``english``, ``german``, ``french``, ... (every language PyStemmer's Snowball stemmers know):
  NFKC, lowercase, Traditional Chinese characters folded to Simplified; runs of Chinese,
  Japanese or Korean characters give each character and each overlapping character bigram;
  every other word (``\\w+``) loses the language's stopwords and is Snowball-stemmed. Mixed text
  is handled in one pass: "倒排索引和BM25" gives ``倒 排 索 引 和 倒排 排索 索引 引和`` and ``bm25``.
- ``LANG+bigram``: CJK runs give overlapping bigrams only (a lone character stays a unigram), as
  Lucene's ``CJKAnalyzer`` does; ``LANG+jieba``: CJK runs are segmented into words by jieba
  (``pip install jieba``). Characters and bigrams together scored best of the three on cmrc2018
  and drcd (docs/eval/languages/), so they are the default.
- ``none``: as above without stopwords or stemming (any language written with spaces).
- ``legacy``: the analyzer of collections created before analyzers were recorded: lowercase,
  ``\\w+`` runs (a whole run of CJK characters is one token), English stopwords, Porter2. Kept so
  those collections score exactly as they did; ``rerank-mcp reindex NAME --analyzer auto`` moves
  them to a current analyzer.
- ``auto`` (the default for new collections): resolved once, when the collection is created,
  from its first documents: the Snowball language whose stopwords the text uses most (English
  unless another language clearly dominates). CJK text needs no detection: every analyzer but
  ``legacy`` splits it.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable
from functools import cache, lru_cache

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.tokenize import STOPWORDS as ENGLISH_STOPWORDS
from rerank_mcp.index.tokenize import tokenize as legacy_tokenize

AUTO = "auto"
LEGACY = "legacy"
DEFAULT_LANGUAGE = "english"
CJK_MODES = ("unibigram", "bigram", "jieba")  # the first is the default

# Scripts written without spaces between words (plus Hangul, which Lucene's CJKAnalyzer bigrams too):
# CJK ideographs (unified, extensions A-F, compatibility), Hiragana, Katakana (and half-width forms),
# Hangul syllables and jamo, Bopomofo.
CJK_CHARS = (
    "\u1100-\u11ff\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31bf\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0002ebef\U00030000-\U0003134f"
)
_TOKEN_RE = re.compile(rf"(?P<cjk>[{CJK_CHARS}]+)|(?P<word>[^\W{CJK_CHARS}]+)")
_CJK_RE = re.compile(rf"[{CJK_CHARS}]")
_local = threading.local()


def snowball_languages() -> list[str]:
    import Stemmer

    return sorted(a for a in Stemmer.algorithms() if a not in ("porter", "dutch_porter"))


@cache
def _stopwords(language: str) -> frozenset[str]:
    if language == "english":
        return ENGLISH_STOPWORDS  # NLTK's list: the one BEIR baselines and the legacy analyzer use
    try:
        from stop_words import get_stop_words

        return frozenset(w.lower() for w in get_stop_words(language))
    except Exception:  # the stop-words package has no list for this language: stem only
        return frozenset()


def _stemmer(language: str):
    # PyStemmer objects are not thread-safe: one per thread and language
    cache = getattr(_local, "stemmers", None)
    if cache is None:
        cache = _local.stemmers = {}
    st = cache.get(language)
    if st is None:
        import Stemmer

        st = Stemmer.Stemmer(language)
        st.maxCacheSize = 100_000
        cache[language] = st
    return st


@lru_cache(maxsize=1)
def _fold_table() -> dict[int, int]:
    from rerank_mcp.index.hanzi_fold import SIMPLIFIED, TRADITIONAL

    return str.maketrans(TRADITIONAL, SIMPLIFIED)


def normalize(text: str) -> str:
    """NFKC (full-width and half-width forms, compatibility ideographs), lowercase, and Traditional
    Chinese characters folded to Simplified, so either script of the same text gives the same terms."""
    return unicodedata.normalize("NFKC", text).lower().translate(_fold_table())


def has_cjk(text: str) -> bool:
    return _CJK_RE.search(text) is not None


def cjk_share(text: str) -> float:
    """How much of ``text`` is Chinese, Japanese or Korean: CJK characters over CJK characters plus
    other words (a CJK character carries about what a word does)."""
    cjk = words = 0
    for m in _TOKEN_RE.finditer(text):
        if m.group("cjk") is not None:
            cjk += len(m.group("cjk"))
        else:
            words += 1
    return cjk / (cjk + words) if cjk else 0.0


def _bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def _unibigrams(run: str) -> list[str]:
    return list(run) + ([] if len(run) == 1 else _bigrams(run))


def _jieba(run: str) -> list[str]:
    try:
        import jieba
    except ImportError:
        raise InvalidInput("the jieba analyzers need the jieba package: pip install jieba") from None
    jieba.setLogLevel(60)
    return [w for w in jieba.lcut(run, HMM=True) if w.strip()]


class Analyzer:
    """Text -> index terms. Instances are shared and thread-safe (see :func:`get_analyzer`)."""

    def __init__(self, name: str, language: str | None, cjk: str) -> None:
        self.name = name
        self.language = language  # Snowball language of the words outside CJK runs; None: no stemming
        self.cjk = cjk
        self._stop = _stopwords(language) if language else frozenset()
        self._cjk_fn = {"bigram": _bigrams, "unibigram": _unibigrams, "jieba": _jieba}[cjk]
        self._query_cache = lru_cache(maxsize=4096)(self._tokenize_query)

    def __repr__(self) -> str:
        return f"Analyzer({self.name!r})"

    def tokenize(self, text: str) -> list[str]:
        out: list[str] = []
        words: list[str] = []
        stop = self._stop
        for m in _TOKEN_RE.finditer(normalize(text)):
            run = m.group("cjk")
            if run is not None:
                out.extend(self._cjk_fn(run))
            else:
                w = m.group("word")
                if w not in stop and len(w) < 64:
                    out.append(w)
                    words.append(w)
        if words and self.language:
            stemmed = iter(_stemmer(self.language).stemWords(words))
            out = [next(stemmed) if not _CJK_RE.match(t) else t for t in out]
        return out

    def _tokenize_query(self, text: str) -> tuple[str, ...]:
        return tuple(self.tokenize(text))

    def tokenize_query(self, text: str) -> tuple[str, ...]:
        """Analyze a query; cached because agents repeat queries."""
        return self._query_cache(text)


class _LegacyAnalyzer(Analyzer):
    def __init__(self) -> None:
        self.name = LEGACY
        self.language = DEFAULT_LANGUAGE
        self.cjk = "none"
        self._query_cache = lru_cache(maxsize=4096)(self._tokenize_query)

    def tokenize(self, text: str) -> list[str]:
        return legacy_tokenize(text)


def _parse(name: str) -> tuple[str | None, str]:
    lang, _, mode = name.partition("+")
    mode = mode or CJK_MODES[0]
    if mode not in CJK_MODES:
        raise InvalidInput(f"unknown CJK mode {mode!r} in analyzer {name!r}: use one of {', '.join(CJK_MODES)}")
    if lang == "none":
        return None, mode
    if lang not in snowball_languages():
        raise InvalidInput(
            f"unknown analyzer {name!r}: use auto, none, legacy or a language "
            f"({', '.join(snowball_languages())}), optionally with +bigram or +jieba for CJK text"
        )
    return lang, mode


def check_name(name: str) -> str:
    """Validate an analyzer name (``auto`` included); returns it normalised."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("analyzer must be a non-empty string such as 'auto' or 'english'")
    name = name.strip().lower()
    if name in (AUTO, LEGACY):
        return name
    lang, mode = _parse(name)
    if mode == "jieba":
        _jieba("")  # fails now, with the install hint, if jieba is missing
    return (lang or "none") + ("" if mode == CJK_MODES[0] else f"+{mode}")


def get_analyzer(name: str | None) -> Analyzer:
    """The analyzer for a recorded name (None: a collection made before analyzers were recorded;
    ``auto`` without text to look at: English)."""
    if name is None:
        return _analyzer(LEGACY)
    name = check_name(name)
    return _analyzer(DEFAULT_LANGUAGE if name == AUTO else name)


@cache
def _analyzer(name: str) -> Analyzer:
    if name == LEGACY:
        return _LegacyAnalyzer()
    lang, mode = _parse(name)
    return Analyzer(name, lang, mode)


def detect_language(texts: Iterable[str], limit_chars: int = 200_000) -> str:
    """The Snowball language whose stopwords ``texts`` use most, by counting words outside CJK runs
    (English unless another language has at least twice English's count and 20 hits)."""
    counts: dict[str, int] = {}
    seen = 0
    words: list[str] = []
    for t in texts:
        if seen >= limit_chars:
            break
        t = t[: limit_chars - seen]
        seen += len(t)
        words.extend(m.group("word") for m in _TOKEN_RE.finditer(normalize(t)) if m.group("word"))
    if not words:
        return DEFAULT_LANGUAGE
    for lang in snowball_languages():
        stop = _stopwords(lang)
        if stop:
            counts[lang] = sum(1 for w in words if w in stop)
    best = max(counts, key=lambda k: counts[k])
    en = counts.get(DEFAULT_LANGUAGE, 0)
    if best != DEFAULT_LANGUAGE and counts[best] >= 20 and counts[best] >= 2 * en:
        return best
    return DEFAULT_LANGUAGE


def resolve(name: str | None, sample: Iterable[str] = ()) -> str:
    """The concrete analyzer to record for a new collection: ``auto`` (or None) is resolved from
    ``sample``, the collection's first texts."""
    name = check_name(name or AUTO)
    if name != AUTO:
        return name
    return detect_language(sample)


def describe(name: str | None) -> str:
    a = get_analyzer(name)
    if a.name == LEGACY:
        return "legacy (English words, CJK runs unsplit; `rerank-mcp reindex NAME --analyzer auto` updates it)"
    cjk = {"bigram": "CJK character bigrams", "unibigram": "CJK characters and bigrams", "jieba": "CJK words (jieba)"}
    words = f"{a.language} stopwords and Snowball stemming" if a.language else "words unstemmed"
    return f"{a.name} ({cjk[a.cjk]}, {words}, NFKC, Traditional folded to Simplified)"
