"""The lexical analyzer shared by the corpus BM25 index and the ``bm25`` reranker.

Lowercase, split on non-alphanumerics (unicode aware), drop English stopwords, Snowball
(Porter2) stemming via PyStemmer. One analyzer for both sides keeps corpus scores and
reranker scores comparable.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

# NLTK's English stopword list (179 words), the list bm25s and many BEIR baselines use.
STOPWORDS = frozenset(
    """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself
    yourselves he him his himself she she's her hers herself it it's its itself they them their
    theirs themselves what which who whom this that that'll these those am is are was were be been
    being have has had having do does did doing a an the and but if or because as until while of
    at by for with about against between into through during before after above below to from up
    down in out on off over under again further then once here there when where why how all any
    both each few more most other some such no nor not only own same so than too very s t can will
    just don don't should should've now d ll m o re ve y ain aren aren't couldn couldn't didn
    didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn
    mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn
    wouldn't""".split()
)

_TOKEN_RE = re.compile(r"\w+", re.UNICODE)
_local = threading.local()


def _stemmer():
    # PyStemmer objects are not thread-safe: one per thread.
    st = getattr(_local, "stemmer", None)
    if st is None:
        import Stemmer

        st = Stemmer.Stemmer("english")
        st.maxCacheSize = 100_000
        _local.stemmer = st
    return st


def tokenize(text: str) -> list[str]:
    """Analyze ``text`` into index terms."""
    words = [w for w in _TOKEN_RE.findall(text.lower()) if w not in STOPWORDS and len(w) < 64]
    return _stemmer().stemWords(words) if words else []


@lru_cache(maxsize=4096)
def tokenize_query(text: str) -> tuple[str, ...]:
    """Analyze a query; cached because agents repeat queries."""
    return tuple(tokenize(text))
