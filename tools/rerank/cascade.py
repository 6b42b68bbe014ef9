"""``cascade``: a cheap reranker over many candidates, then an expensive one over the top few.

``stages`` is a list of ``{"reranker": name, "options": {...}, "top_k": int}``. Stage 1 ranks
every candidate and keeps its ``top_k``; stage 2 ranks those and keeps its ``top_k``; and so
on. The final order is the last stage's order of the survivors, followed by the passages
each earlier stage dropped, in that stage's order (those dropped later first). Scores from
different stages are not comparable, so cascade scores are ``1 / rank`` of the final order;
truncation is the union over stages; each stage adds a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rerank_mcp.errors import InvalidInput
from rerank_mcp.tools.rerank.base import CorpusStats, Reranker, RerankOptions, Scored

DEFAULT_STAGES: list[dict[str, Any]] = [
    {"reranker": "flashrank", "options": {}, "top_k": 20},
    {"reranker": "cross-encoder", "options": {}},
]


def _validate(stages: Any, registry: Any) -> list[dict[str, Any]]:
    if not isinstance(stages, list) or not stages:
        raise InvalidInput("cascade option stages must be a non-empty list of {reranker, options, top_k}")
    out = []
    for n, st in enumerate(stages, start=1):
        if not isinstance(st, dict):
            raise InvalidInput(f"cascade stage {n} must be an object with reranker, options and top_k")
        unknown = set(st) - {"reranker", "options", "top_k"}
        if unknown:
            raise InvalidInput(f"cascade stage {n} has unknown key(s) {', '.join(sorted(unknown))}")
        name = st.get("reranker")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"cascade stage {n} needs a reranker name")
        if name == "cascade":
            raise InvalidInput("a cascade stage cannot itself be a cascade")
        registry.family(name)  # NotFound for an unknown name
        options = st.get("options") or {}
        if not isinstance(options, dict):
            raise InvalidInput(f"cascade stage {n} options must be an object")
        top_k = st.get("top_k")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k <= 0):
            raise InvalidInput(f"cascade stage {n} top_k must be a positive integer, got {top_k!r}")
        if top_k is None and n < len(stages):
            raise InvalidInput(f"cascade stage {n} needs top_k: how many passages go on to stage {n + 1}")
        out.append({"reranker": name, "options": dict(options), "top_k": top_k})
    return out


class CascadeStage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reranker: str = Field(description="a reranker family (not cascade)")
    options: dict[str, Any] = Field(default_factory=dict, description="that family's options")
    top_k: int | None = Field(None, description="passages this stage hands on (every stage but the last needs it)")


class CascadeOptions(RerankOptions):
    stages: list[CascadeStage] | None = Field(
        None, description="stages in order; default: flashrank keeps 20, then cross-encoder")


class CascadeReranker(Reranker):
    """Options: ``stages`` (default: flashrank top_k 20, then cross-encoder)."""

    family = "cascade"
    Options = CascadeOptions
    score_meaning = "1/rank of the final order (stages' scores are not comparable), in (0, 1]; returned as is"
    corpus_aware = True

    def __init__(
        self,
        model: str | None = None,
        *,
        context: Any,
        registry: Any,
        stages: list[dict[str, Any]] | None = None,
    ) -> None:
        if model is not None:
            raise InvalidInput("the cascade reranker has no model of its own: set each stage's options.model")
        self.stages = _validate(stages if stages is not None else [dict(s) for s in DEFAULT_STAGES], registry)
        super().__init__(None, stages=self.stages)
        self.registry = registry

    @staticmethod
    def _stage_reasons(context: Any) -> list[tuple[str, str, bool]]:
        """``(stage family, why it cannot run as named, whether a stand-in answers for it)`` for
        each default stage that cannot run as named."""
        from rerank_mcp.tools.rerank.registry import RerankerRegistry

        reg = RerankerRegistry(context)
        out = []
        for st in DEFAULT_STAGES:
            cls = reg.resolve_class(st["reranker"])
            check = getattr(cls, "availability", None)
            reason = check(context) if check else None
            if reason:
                ref = reg.model_ref(st["reranker"])
                models = getattr(context, "models", None)
                # a missing model is answered by the best reranker present while it is fetched
                stand_in = bool(ref is not None and models is not None and getattr(context, "fallback_when_missing", False))
                out.append((st["reranker"], reason, stand_in))
        return out

    @staticmethod
    def availability(context: Any) -> str | None:
        for name, reason, stand_in in CascadeReranker._stage_reasons(context):
            if not stand_in:
                return f"default stage {name} unavailable: {reason} (pass options.stages to choose others)"
        return None

    @staticmethod
    def status_note(context: Any, registry: Any) -> str | None:
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
            notes.append(
                f"stage {s}: {st['reranker']}" + (f" ({rr.model})" if rr.model else "")
                + f" ranked {len(survivors)}" + ("" if last else f", kept {keep}")
            )
            notes.extend(f"stage {s}: {m}" for m in scored.notes)
            if scored.fallback:
                fallbacks.append(f"stage {s}: {scored.fallback}")
                download = download or scored.download
            if last:
                final = ranked
            else:
                dropped.append(ranked[keep:])
                survivors = ranked[:keep]
        order = final + [i for d in reversed(dropped) for i in d]
        scores = [0.0] * n
        for rank, i in enumerate(order, start=1):
            scores[i] = 1.0 / rank
        return Scored(scores, truncated=truncated, notes=notes, fallback="; ".join(fallbacks) or None,
                      download=download)
