"""BM25 term weights as the embedded engine's tantivy index computes them, for any engine or
scorer that must agree with it: k1=1.2, b=0.75, Lucene's IDF, and document lengths quantised to
one byte as tantivy (and Lucene) store them.

An engine without a BM25 index of its own stores each chunk as a sparse vector over hashed
terms (:func:`term_id`) holding the saturated, length-normalised term frequency
(:func:`bm25_document_vector`) and multiplies in the IDF at query time (Qdrant's IDF modifier
does); the query is each distinct analyzed term once, weight 1 (:func:`bm25_query_vector`). A
sparse vector is written with the average length of its time: :func:`renormalised` rewrites its
values for a new average without the text. The ``bm25`` reranker scores candidates with the same
pieces (:func:`length_norm`, :func:`term_weight`, :func:`idf`).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence

from rerank_mcp.index.analyzers import Analyzer, get_analyzer

K1, B = 1.2, 0.75


def term_id(term: str) -> int:
    """The sparse-vector index of an analyzed term: a stable unsigned 32-bit hash."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "little")


def _int4_to_long(i: int) -> int:
    bits, shift = i & 0x07, (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


def _long_to_int4(i: int) -> int:
    num_bits = i.bit_length()
    if num_bits < 4:
        return i
    shift = num_bits - 4
    return ((i >> shift) & 0x07) | ((shift + 1) << 3)


_FREE = 255 - _long_to_int4(2**31 - 1)  # 24 lengths stored exactly


def fieldnorm(length: int) -> int:
    """A document length as tantivy (and Lucene) store it: one byte, exact up to 24 tokens, then
    rounded down to 4 significant bits (``SmallFloat.intToByte4`` / ``byte4ToInt``)."""
    if length < _FREE:
        return length
    return _FREE + _int4_to_long(_long_to_int4(length - _FREE))


def idf(n_docs: int, df: int) -> float:
    """Lucene's IDF: ``ln(1 + (N - df + 0.5) / (df + 0.5))``."""
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


def length_norm(length: int, avgdl: float, k1: float = K1, b: float = B) -> float:
    """``k1 * (1 - b + b * dl / avgdl)`` with the quantised length ``dl`` (:func:`fieldnorm`)."""
    return k1 * (1.0 - b + b * fieldnorm(length) / (avgdl if avgdl > 0 else 1.0))


def term_weight(tf: float, norm: float, k1: float = K1) -> float:
    """The saturated term frequency ``tf * (k1 + 1) / (tf + norm)`` (``norm``: :func:`length_norm`)."""
    return tf * (k1 + 1.0) / (tf + norm)


def bm25_document_vector(tokens: Sequence[str], avgdl: float) -> tuple[list[int], list[float]]:
    """A chunk's BM25 sparse vector from its analyzed tokens: saturated, length-normalised tf
    per term, sorted by term id (the IDF factor is applied at query time). ``avgdl`` is the
    exact average length, as tantivy's."""
    if not tokens:
        return [], []
    tf = Counter(term_id(t) for t in tokens)
    norm = length_norm(len(tokens), avgdl)
    idx = sorted(tf)
    return idx, [term_weight(tf[i], norm) for i in idx]


def bm25_query_vector(query: str, analyzer: Analyzer | None = None) -> tuple[list[int], list[float]]:
    """A query's sparse vector: each distinct analyzed term once, weight 1 (as tantivy's
    boolean query over the distinct terms scores them)."""
    c = Counter(term_id(t) for t in dict.fromkeys((analyzer or get_analyzer(None)).tokenize_query(query)))
    idx = sorted(c)
    return idx, [float(c[i]) for i in idx]


def renormalised(values: Sequence[float], length: int, old_avgdl: float, new_avgdl: float) -> list[float]:
    """A document vector's values written with ``old_avgdl``, rewritten for ``new_avgdl``: the
    term frequencies are recovered exactly (they are whole numbers) and weighted again."""
    old, new = length_norm(length, old_avgdl), length_norm(length, new_avgdl)
    out = []
    for v in values:
        tf = round(v * old / (K1 + 1.0 - v))  # invert tf*(k1+1)/(tf+norm)
        out.append(term_weight(tf, new))
    return out
