"""``cascade``: a cheap reranker over many candidates, then an expensive one over the top few.

``stages`` is a list of ``{"reranker": name, "options": {...}, "top_k": int}``. Stage 1 ranks
every candidate and keeps its ``top_k``; stage 2 ranks those and keeps its ``top_k``; and so
on. The final order is the last stage's order of the survivors, followed by the passages
each earlier stage dropped, in that stage's order (those dropped later first). Scores from
different stages are not comparable, so cascade scores are ``1 / rank`` of the final order;
truncation is the union over stages; each stage adds a note naming the reranker that ranked it.
A stage whose model is not here is answered by the best reranker present (the base class's
stand-in); the result's ``used`` then names the rerankers that actually ranked (one name when
one family ranked every stage), its ``fallback`` says why, and the HTTP API refuses the request
as it does for any named model that is not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rerank_mcp.tools.rerank.base import CorpusStats, Reranker, RerankOptions, Scored

DEFAULT_STAGES: list[dict[str, Any]] = [
    {"reranker": "flashrank", "options": {}, "top_k": 20},
    {"reranker": "cross-encoder", "options": {}},
]


class CascadeStage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reranker: str = Field(description="a reranker family (not cascade)")
    options: dict[str, Any] = Field(default_factory=dict, description="that family's options")
    top_k: int | None = Field(None, description="passages this stage hands on (every stage but the last needs it)")


class CascadeOptions(RerankOptions):
    stages: list[CascadeStage] | None = Field(
        None, description="stages in order; default: flashrank keeps 20, then cross-encoder")

    @model_validator(mode="after")
    def _stages(self) -> CascadeOptions:
        stages = self.stages
        if stages is None:
            return self
        if not stages:
            raise ValueError("cascade option stages must be a non-empty list of {reranker, options, top_k}")
        for n, st in enumerate(stages, start=1):
            if not st.reranker:
                raise ValueError(f"cascade stage {n} needs a reranker name")
            if st.reranker == "cascade":
                raise ValueError("a cascade stage cannot itself be a cascade")
            if st.top_k is not None and st.top_k <= 0:
                raise ValueError(f"cascade stage {n} top_k must be a positive integer, got {st.top_k!r}")
            if st.top_k is None and n < len(stages):
                raise ValueError(f"cascade stage {n} needs top_k: how many passages go on to stage {n + 1}")
        return self


class CascadeReranker(Reranker):
    """Options: ``stages`` (default: flashrank top_k 20, then cross-encoder)."""

    family = "cascade"
    Options = CascadeOptions
    score_meaning = "1/rank of the final order (stages' scores are not comparable), in (0, 1]; returned as is"
    corpus_aware = True

    def __init__(self, options: CascadeOptions | None = None, *, context: Any = None, registry: Any = None) -> None:
        super().__init__(options, context=context, registry=registry)
        given = self.options.stages
        self.stages = ([st.model_dump() for st in given] if given is not None
                       else [{**s, "top_k": s.get("top_k")} for s in DEFAULT_STAGES])
        for st in self.stages:
            registry.family(st["reranker"])  # NotFound for an unknown name

    @staticmethod
    def _stage_reasons(context: Any) -> list[tuple[str, str, bool]]:
        """``(stage family, why it cannot run as named, whether a stand-in answers for it)`` for
        each default stage that cannot run as named."""
        from rerank_mcp.tools.rerank.registry import RerankerRegistry

        reg = RerankerRegistry(context)
        out = []
        for st in DEFAULT_STAGES:
            reason = reg.resolve_class(st["reranker"]).availability(context)
            if reason:
                ref = reg.model_ref(st["reranker"])
                models = getattr(context, "models", None)
                # a missing model is answered by the best reranker present while it is fetched
                stand_in = bool(ref is not None and models is not None and getattr(context, "fallback_when_missing", False))
                out.append((st["reranker"], reason, stand_in))
        return out

    @classmethod
    def availability(cls, context: Any) -> str | None:
        for name, reason, stand_in in CascadeReranker._stage_reasons(context):
            if not stand_in:
                return f"default stage {name} unavailable: {reason} (pass options.stages to choose others)"
        return None

    @classmethod
    def status_note(cls, context: Any, registry: Any) -> str | None:
        """What the default cascade runs now, when a stage's model is missing but stood in for."""
        parts = []
        for name, _, stand_in in CascadeReranker._stage_reasons(context):
            if stand_in:
                sub, _ = registry.best_present(exclude={name})
                parts.append(f"stage {name} is answered by {sub} until its model is here")
        return "runs now; " + "; ".join(parts) if parts else None

    def _raw(self, query: str, texts: Sequence[str], corpus: CorpusStats | None = None,
             ordered: bool = False) -> Scored:
        return self._stages(query, texts, corpus, ordered)

    def _score(self, query: str, texts: Sequence[str], corpus: CorpusStats | None = None) -> Scored:
        return self._stages(query, texts, corpus, False)

    def _stages(self, query: str, texts: Sequence[str], corpus: CorpusStats | None, ordered: bool) -> Scored:
        n = len(texts)
        survivors = list(range(n))
        dropped: list[list[int]] = []  # per stage, in that stage's order
        truncated = [False] * n
        notes: list[str] = []
        fallbacks: list[str] = []
        final: list[int] = []
        download = None
        downloads: list[Any] = []
        ranked_by: list[str] = []  # the family that ranked each stage
        stood_in = False
        for s, st in enumerate(self.stages, start=1):
            # the stages' options were checked with the cascade's own (tools/rerank/client_options.py)
            rr = self.registry.get(st["reranker"], st["options"], trusted=True)
            # stage 1 sees the input order (a ranking only when ordered); later stages, the previous stage's
            scored = rr.score(query, [texts[i] for i in survivors], corpus, ordered or s > 1)
            if len(scored.scores) != len(survivors):
                raise RuntimeError(f"cascade stage {s} ({st['reranker']}) returned {len(scored.scores)} scores for {len(survivors)} passages")
            pos = sorted(range(len(survivors)), key=lambda k: -float(scored.scores[k]))  # stable
            ranked = [survivors[k] for k in pos]
            for k, t in enumerate(scored.truncated or []):
                if t:
                    truncated[survivors[k]] = True
            last = s == len(self.stages)
            keep = len(ranked) if last or st["top_k"] is None else min(st["top_k"], len(ranked))
            ran = scored.used or st["reranker"]
            ranked_by.append(ran)
            if ran == st["reranker"]:
                who = st["reranker"] + (f" ({rr.model})" if rr.model else "")
            elif scored.fallback:  # the stage's model is missing: another reranker stood in
                stood_in = True
                who = f"{ran}, standing in for {st['reranker']}" + (f" ({rr.model}, not here)" if rr.model else "") + ","
            else:  # a stage that picks (auto)
                who = f"{ran} (picked by {st['reranker']})"
            notes.append(f"stage {s}: {who} ranked {len(survivors)}" + ("" if last else f", kept {keep}"))
            notes.extend(f"stage {s}: {m}" for m in scored.notes)
            if scored.fallback:
                fallbacks.append(f"stage {s}: {scored.fallback}")
                download = download or scored.download
                if scored.download is not None:
                    downloads.append(scored.download)
            if last:
                final = ranked
            else:
                dropped.append(ranked[keep:])
                survivors = ranked[:keep]
        order = final + [i for d in reversed(dropped) for i in d]
        scores = [0.0] * n
        for rank, i in enumerate(order, start=1):
            scores[i] = 1.0 / rank
        # what ranked, when not the stages as named: the stand-ins (one name when one family ran every stage)
        used = None
        if ranked_by != [st["reranker"] for st in self.stages]:
            distinct = list(dict.fromkeys(ranked_by))
            used = distinct[0] if len(distinct) == 1 else " then ".join(ranked_by)
        if stood_in:
            notes.insert(0, f"cascade ran with stand-ins: ranked by {used}, not its stages' own models "
                            "(see fallback)")
        return Scored(scores, truncated=truncated, notes=notes, fallback="; ".join(fallbacks) or None,
                      download=download, used=used, downloads=downloads)
