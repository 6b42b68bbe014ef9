"""What the evaluations show about reranking a first stage, as notes a search result carries.

A reranker can rank *below* the first stage it reorders. Where the evaluations found that
(nDCG@10 lower on SciFact, Cranfield and NPL, significantly so in paired randomization tests:
docs/eval/report.md and docs/eval/significance/report.md), a ``search`` result says so, so that
no configuration hurts silently:

- ``embedding`` (the collection's own bi-encoder) over a ``dense`` or ``hybrid`` first stage:
  it re-scores candidates with the model that already ranked them; alone it gives back the dense
  order, and blended 50/50 or by position (docs/eval/auto/report.md) with the incoming order it
  still measured below hybrid alone;
- ``bm25`` over a ``hybrid`` first stage: the lexical order of the hybrid candidates, i.e. a
  BM25 restricted to them, which loses what the dense arm added;
- a ``cascade`` whose stages are all ``bm25`` / ``embedding``, over ``hybrid``: the same, in turn.

Over a ``bm25`` first stage, ``embedding`` alone was not significantly different from BM25,
blended 0.3-0.7 with it significantly above it on all three, and ``bm25`` (with the collection's
statistics) gives BM25's own order back (docs/eval/bm25-rerank): no note. ``auto`` is judged by what it
picked. Cross-encoders and remote rerankers were not measured here (no trained model can be
downloaded in the evaluation environment), so they carry no note.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LEXICAL_OR_BIENCODER = {"bm25", "embedding"}
REPORTS = "docs/eval/report.md, docs/eval/significance/report.md"


def _cheap_cascade(options: Mapping[str, Any]) -> bool:
    stages = options.get("stages") if isinstance(options, Mapping) else None
    if not stages:
        return False  # the default cascade ends with a cross-encoder
    names = {st.get("reranker") for st in stages if isinstance(st, Mapping)}
    return bool(names) and names <= LEXICAL_OR_BIENCODER


def below_first_stage_note(mode: str, reranker: str, options: Mapping[str, Any] | None, used: str | None,
                           blend: float | None = None, by_position: bool = False) -> str | None:
    """The note for a rerank step the evaluations show ranking below its first stage, else None.
    ``blend``: the input order's weight when the scores were fused with it (what ran, not what was
    asked: a stand-in or ``auto`` may blend where the named reranker's options do not say so)."""
    options = options or {}
    ran = used or reranker
    if ran == "embedding" and mode in ("dense", "hybrid") and not (reranker == "embedding" and options.get("model")):
        how = ("blended with the incoming order by position" if blend and by_position
               else f"blended {blend:g} with the incoming order" if blend else "alone")
        return (
            f"the embedding reranker with the collection's own model ({how}) re-scores the candidates with the "
            f"model that ranked them: over a {mode} first stage it measured lower nDCG@10 than {mode} alone on "
            f"SciFact, Cranfield and NPL ({REPORTS}); use a cross-encoder, or search without rerank"
        )
    if ran == "bm25" and mode == "hybrid":
        return (
            "the bm25 reranker over hybrid candidates gives back a BM25 order of them and drops what the dense arm "
            f"added: it measured lower nDCG@10 than hybrid alone on SciFact, Cranfield and NPL ({REPORTS}); use a "
            "cross-encoder, or search without rerank"
        )
    if ran == "cascade" and mode == "hybrid" and _cheap_cascade(options):
        return (
            "a cascade of only bm25 / embedding stages over hybrid candidates measured lower nDCG@10 than hybrid "
            f"alone on SciFact, Cranfield and NPL ({REPORTS}); end the cascade with a cross-encoder"
        )
    return None
