"""``bm25``: lexical BM25 (instant, no model).

Inside ``search`` the reranker scores with the collection's own statistics: the BM25 index's
document count, average length and each query term's document frequency (the index contract's
``bm25_stats``), with the index's k1=1.2, b=0.75, Lucene IDF and length quantisation. Candidates
are then scored exactly as the collection's BM25 scores them, so reranking BM25's own top 100
gives back BM25's order (docs/eval/bm25-rerank). Over candidates alone, IDF would be computed
over a list where the query's terms are in most passages, and scores would lose the signal the
whole collection gives (a term in 3 of 100 candidates may be in half the collection).

Elsewhere (the ``rerank`` tool, passages without a collection) the candidates form the BM25
"corpus": IDF and length normalisation come from the candidate list, via rank-bm25. Terms come
from the project's analyzers (:mod:`index.analyzers`): inside ``search`` the collection's own, so
reranker and corpus index see the same terms; elsewhere the ``analyzer`` option (default
``auto``: the language of the query and passages, with CJK text split into characters and character bigrams).

IDF: rank-bm25's BM25Okapi uses ``log((N - n + 0.5) / (n + 0.5))``, which is negative for a
term found in more than half the documents (floored to ``epsilon`` x the mean IDF, itself
possibly negative). Over a candidate list, where the query's terms are *usually* in most
candidates, that ranks passages containing the query terms *below* those without them. The
default ``idf="lucene"`` therefore uses Lucene's ``log(1 + (N - n + 0.5) / (n + 0.5))``
(always positive) with BM25Okapi's term weighting; ``idf="okapi"`` restores rank-bm25's
formula. BM25L and BM25Plus have positive IDFs already and are used as rank-bm25 ships them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rerank_mcp.errors import RerankMCPError
from rerank_mcp.index.bm25 import K1, B, fieldnorm
from rerank_mcp.tools.rerank.base import CorpusStats, Reranker, RerankOptions, Scored

BM25_UNIT_K = 5.0  # the BM25 score mapped to 0.5 in [0, 1] (s / (s + K))

_VARIANTS = {
    "okapi": "BM25Okapi",
    "bm25okapi": "BM25Okapi",
    "l": "BM25L",
    "bm25l": "BM25L",
    "plus": "BM25Plus",
    "bm25plus": "BM25Plus",
}


def _lucene_okapi_class():
    import rank_bm25

    class LuceneIdfOkapi(rank_bm25.BM25Okapi):
        def _calc_idf(self, nd):
            for word, freq in nd.items():
                self.idf[word] = math.log(1.0 + (self.corpus_size - freq + 0.5) / (freq + 0.5))

    return LuceneIdfOkapi


def _LuceneIdfOkapi(docs, **params):
    return _lucene_okapi_class()(docs, **params)


class BM25Options(RerankOptions):
    variant: Literal["okapi", "l", "plus", "bm25okapi", "bm25l", "bm25plus"] = Field(
        "okapi", description="BM25 variant (rank-bm25's BM25Okapi, BM25L, BM25Plus)")
    k1: float | None = Field(None, ge=0.0, description="term-frequency saturation; default 1.2 with the "
                             "collection's statistics (the index's), 1.5 over candidates alone (rank-bm25's)")
    b: float = Field(B, ge=0.0, le=1.0, description="length normalisation")
    idf: Literal["lucene", "okapi"] = Field(
        "lucene", description="lucene: log(1 + (N - n + 0.5) / (n + 0.5)), always positive; okapi: rank-bm25's "
        "log((N - n + 0.5) / (n + 0.5)) floored by epsilon (variant okapi only)")
    epsilon: float | None = Field(None, description="rank-bm25's Okapi IDF floor (0.25), with idf okapi")
    delta: float | None = Field(None, description="BM25L (0.5) / BM25Plus (1.0) delta")
    corpus: bool = Field(True, description="inside search, score with the collection's statistics (variant "
                         "okapi, idf lucene); false: IDF and lengths over the candidates only")
    analyzer: str = Field("auto", description="outside search: the analyzer (auto: from the query and passages; "
                          "english, german, ..., none; CJK text is split into characters and bigrams). Inside search "
                          "the collection's analyzer is used")

    @field_validator("analyzer")
    @classmethod
    def _analyzer(cls, name: str) -> str:
        from rerank_mcp.index.analyzers import check_name

        try:
            return check_name(name)
        except RerankMCPError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _variant_options(self) -> BM25Options:
        okapi = _VARIANTS[self.variant] == "BM25Okapi"
        if self.epsilon is not None and (not okapi or self.idf != "okapi"):
            raise ValueError("bm25 option epsilon only applies to variant okapi with idf=okapi")
        if self.delta is not None and okapi:
            raise ValueError("bm25 option delta only applies to variants l and plus")
        if self.idf == "okapi" and not okapi:
            raise ValueError("bm25 option idf=okapi only applies to variant okapi")
        return self


class BM25Reranker(Reranker):
    """Options: see :class:`BM25Options`."""

    family = "bm25"
    Options = BM25Options
    corpus_aware = True
    score_meaning = (f"the BM25 score: 0 when no query term occurs, unbounded above (a rare term matched once "
                     f"gives a few points); mapped to [0, 1] as s / (s + {BM25_UNIT_K:g})")

    def unit_scores(self, scores: Sequence[float]) -> list[float]:
        return [max(0.0, float(x)) / (max(0.0, float(x)) + BM25_UNIT_K) for x in scores]

    options: BM25Options

    def __init__(self, options: BM25Options | None = None, *, context: Any = None, registry: Any = None) -> None:
        super().__init__(options, context=context, registry=registry)
        o = self.options
        self.analyzer_name = o.analyzer
        self.variant = _VARIANTS[o.variant]
        self.idf = o.idf
        self.use_corpus = o.corpus and self.variant == "BM25Okapi" and o.idf == "lucene"
        self.corpus_k1 = K1 if o.k1 is None else o.k1  # the corpus index's (index/bm25.py)
        self.b = o.b
        self._params: dict[str, float] = {"k1": 1.5 if o.k1 is None else o.k1, "b": o.b}
        if o.epsilon is not None:
            self._params["epsilon"] = o.epsilon
        if o.delta is not None:
            self._params["delta"] = o.delta

    def _analyzer(self, query: str, texts: Sequence[str], corpus: CorpusStats | None):
        from rerank_mcp.index.analyzers import get_analyzer, resolve

        if corpus is not None and getattr(corpus, "analyzer", None) is not None:
            return corpus.analyzer
        return get_analyzer(resolve(self.analyzer_name, [query, *texts[:50]]))

    def _score(self, query: str, texts: Sequence[str], corpus: CorpusStats | None = None) -> Scored:
        analyzer = self._analyzer(query, texts, corpus)
        if corpus is not None and self.use_corpus:
            got = self._score_corpus(query, texts, corpus, analyzer)
            if got is not None:
                return got
        return self._score_candidates(query, texts, analyzer)

    def _score_corpus(self, query: str, texts: Sequence[str], corpus: CorpusStats, analyzer: Any) -> Scored | None:
        """BM25 as the collection's index computes it: its N, avgdl and document frequencies,
        k1, b, Lucene IDF, and lengths quantised as tantivy stores them. None when the
        collection cannot say (the caller then scores over the candidates)."""
        tokenize = analyzer.tokenize
        terms = list(dict.fromkeys(analyzer.tokenize_query(query)))  # the index scores each distinct term once
        if not terms:
            return Scored([0.0] * len(texts), notes=["query has no indexable terms after analysis; input order kept"])
        try:
            n_docs, avgdl, df = corpus(terms)
        except NotImplementedError:
            return None
        idf = {t: math.log(1.0 + (n_docs - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5)) for t in terms}
        k1, b = self.corpus_k1, self.b
        avg = avgdl if avgdl > 0 else 1.0
        scores = []
        for text in texts:
            toks = tokenize(text)
            tf = Counter(toks)
            norm = k1 * (1.0 - b + b * fieldnorm(len(toks)) / avg)
            scores.append(sum(idf[t] * tf[t] * (k1 + 1.0) / (tf[t] + norm) for t in terms if tf[t]))
        return Scored(scores, notes=[
            f"BM25 with the collection's statistics (N={n_docs}, average length {avgdl:.1f} terms, k1={k1:g}, b={b:g})"
        ])

    def _score_candidates(self, query: str, texts: Sequence[str], analyzer: Any) -> Scored:
        import rank_bm25

        tokenize = analyzer.tokenize

        q = tokenize(query)
        docs = [tokenize(t) for t in texts]
        if not q:
            return Scored([0.0] * len(texts), notes=["query has no indexable terms after analysis; input order kept"])
        if not any(docs):
            return Scored([0.0] * len(texts), notes=["no passage has indexable terms; input order kept"])
        if self.variant == "BM25Okapi" and self.idf == "lucene":
            bm25 = _LuceneIdfOkapi(docs, **self._params)
        else:
            bm25 = getattr(rank_bm25, self.variant)(docs, **self._params)
        scores = bm25.get_scores(q)
        return Scored([float(s) for s in scores])
