"""``bm25``: rank-bm25 over the candidate passages only (lexical, instant, no model).

The candidates form the BM25 "corpus", so IDF and length normalisation come from the
candidate list, not the whole collection. Terms come from the project's shared analyzer
(:func:`index.tokenize.tokenize`), so reranker and corpus index see the same terms.

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
from typing import Any, Sequence

from rerank_mcp.errors import InvalidInput
from rerank_mcp.tools.rerank.base import Reranker, Scored

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


class BM25Reranker(Reranker):
    """Options: ``variant`` (okapi | l | plus; default okapi), ``k1`` (1.5), ``b`` (0.75),
    ``idf`` (lucene | okapi, for variant okapi; default lucene), ``epsilon`` (rank-bm25's
    Okapi IDF floor, 0.25, with idf=okapi), ``delta`` (BM25L 0.5 / BM25Plus 1.0)."""

    family = "bm25"

    def __init__(
        self,
        model: str | None = None,
        *,
        context: Any = None,
        registry: Any = None,
        variant: str = "okapi",
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float | None = None,
        delta: float | None = None,
        idf: str = "lucene",
    ) -> None:
        if model is not None:
            raise InvalidInput("the bm25 reranker has no model; leave 'model' unset")
        cls_name = _VARIANTS.get(str(variant).lower())
        if cls_name is None:
            raise InvalidInput(f"unknown bm25 variant {variant!r}: use okapi, l or plus")
        for name, val in (("k1", k1), ("b", b)):
            if not isinstance(val, (int, float)) or isinstance(val, bool):
                raise InvalidInput(f"bm25 option {name} must be a number, got {val!r}")
        if not 0.0 <= b <= 1.0:
            raise InvalidInput(f"bm25 option b must be in [0, 1], got {b}")
        if k1 < 0:
            raise InvalidInput(f"bm25 option k1 must be >= 0, got {k1}")
        if epsilon is not None and (cls_name != "BM25Okapi" or idf != "okapi"):
            raise InvalidInput("bm25 option epsilon only applies to variant okapi with idf=okapi")
        if delta is not None and cls_name == "BM25Okapi":
            raise InvalidInput("bm25 option delta only applies to variants l and plus")
        if idf not in ("lucene", "okapi"):
            raise InvalidInput(f"bm25 option idf must be lucene or okapi, got {idf!r}")
        if idf == "okapi" and cls_name != "BM25Okapi":
            raise InvalidInput("bm25 option idf=okapi only applies to variant okapi")
        super().__init__(None, variant=cls_name, k1=k1, b=b, epsilon=epsilon, delta=delta, idf=idf)
        self.variant = cls_name
        self.idf = idf
        self._params: dict[str, float] = {"k1": float(k1), "b": float(b)}
        if epsilon is not None:
            self._params["epsilon"] = float(epsilon)
        if delta is not None:
            self._params["delta"] = float(delta)

    def _score(self, query: str, texts: Sequence[str]) -> Scored:
        import rank_bm25

        from rerank_mcp.index.tokenize import tokenize

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
