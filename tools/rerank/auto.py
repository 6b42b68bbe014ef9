"""``auto``: the default reranker, which never fails for want of a model.

It ranks with the best family that runs here now, in the order the registry gives
(:meth:`RerankerRegistry.auto_order`): ``cross-encoder`` when its model is on this machine,
else ``flashrank`` when its model is. Without either, what it does follows the measurements in
docs/eval/auto/report.md, per case:

- the passages are unordered (``rerank`` without ``ordered=true``): ``embedding`` alone, the
  best offline reranker over candidates without collection statistics (``bm25`` when no
  bi-encoder runs);
- the passages are a ranking (inside ``search``, or ``ordered=true``): their order is kept
  (``used`` is ``none``, scores 1/rank). Over a hybrid first stage (search's default) every
  offline reranker (``embedding`` alone, blended 0.5 or position-aware, ``bm25`` with the
  collection's statistics or the candidates') measured below it on SciFact, Cranfield and NPL;
  over a BM25 first stage ``embedding`` blended 0.5 measured above it, but auto is not told
  which first stage ranked, and keeping the order never scores below it. The
result names the pick (``used``) and why. Where model downloads are allowed and the first
choice's model is missing, its download starts in the background and later calls pick it once
it is complete; the result reports the download's progress (or that it failed, why, and when it
is tried again). When the pick cannot load its model (the embedding model missing and not to be
downloaded, say), ``bm25``, which needs none, ranks instead and the first note says why.

For a query or passages in another language than English (CJK text, or mostly letters of
another script), when the pick's model covers English only, ``auto`` takes a multilingual
reranker present here instead (:func:`multilingual_pick`, over the registry's
MULTILINGUAL_RERANKERS: BAAI/bge-reranker-v2-m3, then
BAAI/bge-reranker-base, then FlashRank's ms-marco-MultiBERT-L-12) and says so in its notes.
Without one, where it would rank Chinese, Japanese or Korean text with an English-only
``embedding`` model, it takes ``bm25`` (the CJK-aware analyzer) instead (:func:`lexical_pick`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rerank_mcp.errors import DependencyMissing, NotFound, UpstreamError
from rerank_mcp.tools.rerank.base import CorpusStats, Reranker, RerankOptions, Scored, download_text

log = logging.getLogger(__name__)

KEEP_ORDER = "none"  # what auto reports as `used` when it keeps a ranked input's order
EVIDENCE = "docs/eval/auto/report.md"


class AutoReranker(Reranker):
    """Options: ``blend`` only (applied over the pick's scores)."""

    family = "auto"
    Options = RerankOptions
    score_meaning = "the score of the family it picked (see `used`), on that family's scale"
    corpus_aware = True

    def pick(self, ordered: bool = True) -> tuple[str, dict[str, Any], list[str], Any]:
        """``(family, options, notes, download)``: what runs now, why, and the download awaited."""
        reg = self.registry
        order = reg.auto_order(ordered)
        name, options = reg.best_present(ordered=ordered)
        # over a ranked input (inside search) the offline fallbacks measured below the first stage:
        # keep its order instead (docs/eval/auto/report.md)
        offline = [f for f, _ in order if not reg.family(f).auto_over_ranked]
        kept = ordered and name in offline
        if kept:
            name, options = KEEP_ORDER, {}
        notes: list[str] = []
        download = None
        skipped = []
        for fam, _ in order:
            if fam == name:
                break
            skipped.append(fam)
        why = []
        models = getattr(self.context, "models", None)
        for fam in skipped:
            if kept and fam in offline:
                continue
            reason = reg.availability(fam)
            ref = reg.model_ref(fam)
            if ref is not None and (models is None or not models.present(ref)):
                d = None
                if models is not None:
                    d = models.ensure(ref) if fam == order[0][0] else models.state(ref)
                if d is not None and d.state == "downloading":
                    why.append(f"{fam}'s model {ref.name} is downloading ({_pct(d)})")
                    download = download or d
                elif d is not None and d.state == "failed":
                    why.append(f"{fam}'s model {ref.name} is not here: {download_text(d, models, ref)}")
                    download = download or d
                else:
                    why.append(f"{fam}'s model {ref.name} is not here (`{ref.command}`)")
                    if fam == order[0][0] and d is not None:
                        download = download or d
            else:
                why.append(f"{fam} is unavailable ({reason})")
        if kept:
            why.append(f"over a ranked first stage {' and '.join(offline)} measured below it ({EVIDENCE})")
            notes.append("auto kept the input order (a ranking): " + "; ".join(why))
            return name, options, notes, download
        opts = f" with {', '.join(f'{k}={v}' for k, v in options.items())}" if options else ""
        notes.append(f"auto picked {name}{opts}" + (f": {'; '.join(why)}" if why else ": the first choice"))
        return name, options, notes, download

    def score(self, query: str, texts: Sequence[str], corpus: CorpusStats | None = None,
              ordered: bool = False) -> Scored:
        name, options, notes, download = self.pick(ordered)
        other = multilingual_pick(self.registry, query, texts, name, options)
        if other is None:
            other = lexical_pick(self.registry, query, texts, name, options)
        if other is not None:  # a model (or BM25) that covers the text's language ranks it
            name, options, note = other
            notes = [note]
        if name == KEEP_ORDER:  # the input order, a ranking, kept: scores are 1/rank
            keep = [1.0 / (i + 1) for i in range(len(texts))]
            return Scored(keep, notes=notes, used=KEEP_ORDER, download=download, unit=list(keep))
        try:
            scored = self.registry.get(name, options, trusted=True).score(query, texts, corpus, ordered)
        except (DependencyMissing, UpstreamError, NotFound) as exc:
            if name == "bm25":
                raise
            # the pick's model cannot be loaded here (the embedding model missing and not
            # downloadable, say): auto never fails for want of a model, so BM25 ranks instead
            log.warning("auto: %s could not rank (%s); bm25 ranks instead", name, exc)
            _, _, was = notes[0].partition(": ") if notes else ("", "", "")
            notes = [f"auto picked bm25: {name} could not load its model ({exc})"
                     + (f"; {was}" if was and was != "the first choice" else "")]
            name = "bm25"
            scored = self.registry.get(name, {}, trusted=True).score(query, texts, corpus, ordered)
        scored.notes = notes + list(scored.notes)
        scored.used = scored.used or name
        scored.download = scored.download or download
        return self._blended(scored, len(texts), ordered)

    def _score(self, query: str, texts: Sequence[str], corpus: CorpusStats | None = None) -> Scored:
        return self.score(query, texts, corpus)


def _not_english(text: str) -> tuple[bool, bool]:
    """``(not English, CJK)``: CJK characters anywhere (a Chinese query with English terms is
    Chinese), or at least half its letters outside the Latin script."""
    from rerank_mcp.index.analyzers import has_cjk

    if has_cjk(text):
        return True, True
    letters = [c for c in text if c.isalpha()]
    other = sum(1 for c in letters if ord(c) > 0x24F)
    return bool(letters) and other * 2 >= len(letters), False


def lexical_pick(registry: Any, query: str, texts: Sequence[str], family: str,
                 options: dict[str, Any]) -> tuple[str, dict[str, Any], str] | None:
    """``("bm25", {}, note)`` when the pick is the ``embedding`` reranker with a model trained on
    English only and the query (or most passages) is Chinese, Japanese or Korean: BM25 with the
    CJK-aware analyzer ranks that text far better (docs/eval/auto/zh-shuffled); None otherwise."""
    if family != "embedding":
        return None
    from rerank_mcp.index.analyzers import cjk_share
    from rerank_mcp.index.contract import CJK_QUERY_SHARE
    from rerank_mcp.index.model_names import model_covers_cjk

    model = options.get("model") or getattr(registry.context, "embedding_model", None)
    if not model or model_covers_cjk(model) is not False:
        return None
    q_cjk = cjk_share(query) >= CJK_QUERY_SHARE
    p_cjk = bool(texts) and sum(cjk_share(t) >= CJK_QUERY_SHARE for t in texts) * 2 >= len(texts)
    if not (q_cjk or p_cjk):
        return None
    which = "the query is" if q_cjk else "the passages are"
    return "bm25", {}, (f"auto picked bm25: {which} Chinese, Japanese or Korean and the embedding model {model} "
                        "was trained on English only")


def multilingual_pick(registry: Any, query: str, texts: Sequence[str], family: str,
                      options: dict[str, Any]) -> tuple[str, dict[str, Any], str] | None:
    """``(family, options, note)`` of a multilingual reranker present here, when the query or most
    passages are not English and ``family`` (with ``options``) ranks with a model that covers
    English only (or is bm25); None to keep the pick."""
    from rerank_mcp.index.model_names import ENGLISH, MULTILINGUAL, model_languages

    q_other, q_cjk = _not_english(query)
    marks = [_not_english(t) for t in texts]
    p_other = bool(marks) and sum(o for o, _ in marks) * 2 >= len(marks)
    if not (q_other or p_other):
        return None
    cjk = q_cjk or (p_other and any(c for _, c in marks))
    ctx = registry.context
    if family in ("bm25", KEEP_ORDER):
        current, langs = None, None
    else:
        current = options.get("model") or registry.get(family, options).model
        if family == "embedding" and current is None:
            current = getattr(ctx, "embedding_model", None)
        langs = model_languages(current)
        if langs != ENGLISH:
            return None  # a model that covers the text, or one this does not know: the user's choice stands
    models = getattr(ctx, "models", None)
    if models is None:
        return None
    from rerank_mcp.tools.models_store import ModelRef
    from rerank_mcp.tools.rerank.registry import MULTILINGUAL_RERANKERS, _missing_modules

    for fam, model in MULTILINGUAL_RERANKERS:
        covers = model_languages(model) == MULTILINGUAL or cjk
        ref = ModelRef(model, "flashrank" if fam == "flashrank" else "hf")
        if covers and not _missing_modules(registry.family(fam)) and models.present(ref):
            which = "the query" if q_other else "the passages"
            was = (f"{family}'s model {current} covers English only" if current
                   else "no other trained reranker is here" if family == KEEP_ORDER else f"{family} is lexical")
            return fam, {"model": model}, (f"auto picked {fam} with model={model} ({model_languages(model)}): {which} "
                                           f"{'is' if q_other else 'are'} not English and {was}")
    return None


def _pct(d: Any) -> str:
    if d.total_bytes:
        return f"{d.percent or 0:.0f}% of {d.total_bytes / 1e6:.1f} MB"
    if not d.done_bytes:
        return "started just now, nothing received yet"
    return f"{d.done_bytes / 1e6:.1f} MB so far"
