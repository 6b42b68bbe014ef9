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
it is complete; the result reports the download's progress.
"""

from __future__ import annotations

from typing import Any, Sequence

from rerank_mcp.errors import InvalidInput
from rerank_mcp.tools.rerank.base import CorpusStats, RerankOptions, Reranker, Scored


KEEP_ORDER = "none"  # what auto reports as `used` when it keeps a ranked input's order
EVIDENCE = "docs/eval/auto/report.md"


class AutoReranker(Reranker):
    """Options: ``blend`` only (applied over the pick's scores)."""

    family = "auto"
    Options = RerankOptions
    score_meaning = "the score of the family it picked (see `used`), on that family's scale"
    corpus_aware = True

    def __init__(self, model: str | None = None, *, context: Any = None, registry: Any = None) -> None:
        if model is not None:
            raise InvalidInput("the auto reranker has no model of its own: name a family to choose its model")
        super().__init__(None)
        self.context = context
        self.registry = registry

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
        if name == KEEP_ORDER:  # the input order, a ranking, kept: scores are 1/rank
            keep = [1.0 / (i + 1) for i in range(len(texts))]
            return Scored(keep, notes=notes, used=KEEP_ORDER, download=download, unit=list(keep))
        scored = self.registry.get(name, options).score(query, texts, corpus, ordered)
        scored.notes = notes + list(scored.notes)
        scored.used = scored.used or name
        scored.download = scored.download or download
        return self._blended(scored, len(texts), ordered)

    def _score(self, query: str, texts: Sequence[str], corpus: CorpusStats | None = None) -> Scored:
        return self.score(query, texts, corpus)


def _pct(d: Any) -> str:
    if d.total_bytes:
        return f"{d.percent or 0:.0f}% of {d.total_bytes / 1e6:.1f} MB"
    return f"{d.done_bytes / 1e6:.1f} MB so far"
