"""Compare rerankers on one query and its passages: orders, scores and latency side by side.

Each reranker ranks every passage. The result gives each one's order, scores and latency
(measured after a one-passage warm-up, so loading a model is reported apart as ``load_ms``);
for every pair of rerankers, and for each against the input order, overlap@k (the share of
the top k they have in common) and Kendall's tau-b (over all passages, from the scores: ties
count as ties; the input order scores passage i as -i); and, when judgments are given (a grade
per passage, by id or input index), nDCG@k with linear gains (as trec_eval / BEIR).

A reranker that fails (model missing, service down) is reported with its error; the others are
still compared. Unknown reranker names are refused before anything runs.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from itertools import combinations
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rerank_mcp.errors import InvalidInput, NotFound, RerankMCPError
from rerank_mcp.tools.rerank.base import Passage
from rerank_mcp.tools.rerank.registry import RerankerRegistry
from rerank_mcp.tools.reranking import RerankLimits, to_passages
from rerank_mcp.tools.schema import compact_nullable
from rerank_mcp.tools.search import check_options, check_query, check_scores

log = logging.getLogger(__name__)

MAX_RERANKERS = 8
INPUT = "input"
PREVIEW_CHARS = 160


class RerankerSpec(BaseModel):
    """A reranker to compare: a family name, its options and an optional column label."""

    model_config = ConfigDict(extra="forbid")

    reranker: str = Field(description="family name, e.g. 'bm25', 'embedding', 'cross-encoder'")
    options: dict[str, Any] = Field(default_factory=dict, description="family options, e.g. {\"model\": ...}")
    label: str | None = Field(None, description="name of this reranker in the result (default: derived)")


class RerankerOutcome(BaseModel):
    model_config = ConfigDict(frozen=True, json_schema_extra=compact_nullable)

    label: str
    reranker: str
    model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    order: list[int] = Field(default_factory=list, description="input indices, best first")
    scores: list[float] = Field(default_factory=list, description="the scores in the same order as `order`")
    latency_ms: float | None = Field(None, description="reranking all passages, model already loaded")
    load_ms: float | None = Field(None, description="the warm-up call on one passage (loads the model)")
    ndcg_at_k: float | None = None
    truncated: list[int] = Field(default_factory=list, description="input indices cut to fit the model")
    fallback: str | None = None
    notes: list[str] = Field(default_factory=list)
    error: str | None = Field(None, description="why this reranker produced no ranking")


class PairAgreement(BaseModel):
    model_config = ConfigDict(frozen=True, json_schema_extra=compact_nullable)

    a: str
    b: str = Field(description="another reranker's label, or 'input' for the input order")
    overlap_at_k: float = Field(description="|top k of a ∩ top k of b| / k")
    kendall_tau: float | None = Field(None, description="Kendall's tau-b over all passages; null when a side is all ties")


class PassageRow(BaseModel):
    model_config = ConfigDict(frozen=True, json_schema_extra=compact_nullable)

    index: int
    id: str | None = None
    text: str = Field(description=f"the passage, cut to {PREVIEW_CHARS} characters")
    relevance: float | None = None
    ranks: dict[str, int] = Field(default_factory=dict, description="1-based rank under each reranker")
    scores: dict[str, float] = Field(default_factory=dict)


class CompareResult(BaseModel):
    model_config = ConfigDict(frozen=True, json_schema_extra=compact_nullable)

    query: str
    k: int = Field(description="the k of overlap@k and nDCG@k (at most the number of passages)")
    rerankers: list[RerankerOutcome]
    agreement: list[PairAgreement] = Field(description="every pair of rerankers, and each against the input order")
    passages: list[PassageRow] = Field(description="side by side, in input order")
    input_ndcg_at_k: float | None = Field(None, description="nDCG@k of the input order (with judgments)")
    judged: int = Field(0, description="passages with a judgment")
    notes: list[str] = Field(default_factory=list)


# ----------------------------------------------------------------------------- metrics


def overlap_at_k(a: Sequence[int], b: Sequence[int], k: int) -> float:
    if k <= 0:
        return 0.0
    return len(set(a[:k]) & set(b[:k])) / k


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two score vectors over the same items (None if either is all ties)."""
    import numpy as np

    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    n = len(a)
    if n < 2 or len(b) != n:
        return None
    iu = np.triu_indices(n, 1)
    da = np.sign(a[:, None] - a[None, :])[iu]
    db = np.sign(b[:, None] - b[None, :])[iu]
    na = float(np.count_nonzero(da))
    nb = float(np.count_nonzero(db))
    if na == 0 or nb == 0:
        return None
    return float(np.dot(da, db) / math.sqrt(na * nb))


def ndcg_at_k(order: Sequence[int], grades: dict[int, float], k: int) -> float | None:
    """nDCG@k with linear gains and log2 discounts; None when nothing is relevant."""
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
    if idcg <= 0:
        return None
    dcg = sum(grades.get(i, 0.0) / math.log2(r + 2) for r, i in enumerate(order[:k]))
    return dcg / idcg


# ----------------------------------------------------------------------------- inputs


_CALL = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*\((.*)\)\s*$", re.DOTALL)


def parse_spec(spec: Any) -> RerankerSpec:
    """A reranker as a name, ``name(k=v,...)``, ``name={json options}`` or an object."""
    import json

    if isinstance(spec, RerankerSpec):
        return spec
    if isinstance(spec, dict):
        try:
            return RerankerSpec.model_validate(spec)
        except Exception as exc:
            raise InvalidInput(f"reranker {spec!r} is malformed: give {{reranker, options?, label?}} "
                               f"({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInput(f"a reranker must be a name or {{reranker, options}}, got {spec!r}")
    text = spec.strip()
    name, eq, rest = text.partition("=")
    if eq and rest.lstrip().startswith("{"):
        try:
            options = json.loads(rest)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"reranker {text!r}: the options after '=' are not valid JSON ({exc.msg})") from None
        if not isinstance(options, dict):
            raise InvalidInput(f"reranker {text!r}: the options must be a JSON object")
        return RerankerSpec(reranker=name.strip(), options=options)
    m = _CALL.match(text)
    if m:
        from rerank_mcp.tools.evaluate import _parse_options

        return RerankerSpec(reranker=m.group(1), options=_parse_options(text, m.group(2)) if m.group(2).strip() else {})
    return RerankerSpec(reranker=text)


def _label(spec: RerankerSpec, taken: set[str]) -> str:
    if spec.label:
        base = spec.label
    elif not spec.options:
        base = spec.reranker
    else:
        parts = []
        for k, v in spec.options.items():
            if k == "model" and isinstance(v, str):
                v = v.rstrip("/").rsplit("/", 1)[-1]
            parts.append(f"{k}={v}" if not isinstance(v, (dict, list)) else f"{k}=…")
        base = f"{spec.reranker}({','.join(parts)})"
    label, n = base, 2
    while label in taken or label == INPUT:
        label = f"{base}#{n}"
        n += 1
    taken.add(label)
    return label


def _grades(judgments: Any, items: list[Passage]) -> dict[int, float]:
    """Judgments as {passage id or input index: grade} or a list of grades in input order."""
    if judgments is None:
        return {}
    out: dict[int, float] = {}

    def grade(v: Any, where: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise InvalidInput(f"judgment for {where} must be a finite number >= 0, got {v!r}")
        return float(v)

    if isinstance(judgments, (list, tuple)):
        if len(judgments) != len(items):
            raise InvalidInput(f"judgments as a list need one grade per passage: {len(judgments)} for {len(items)}")
        return {i: grade(v, f"passage {i}") for i, v in enumerate(judgments)}
    if not isinstance(judgments, dict):
        raise InvalidInput("judgments must be {passage id or index: grade} or a list of grades")
    by_id = {p.id: i for i, p in enumerate(items) if p.id is not None}
    for key, v in judgments.items():
        if isinstance(key, str) and key in by_id:
            i = by_id[key]
        elif isinstance(key, int) and not isinstance(key, bool) or (isinstance(key, str) and key.strip().isdigit()):
            i = int(key)
            if not 0 <= i < len(items):
                raise InvalidInput(f"judgment for passage index {i}: there are {len(items)} passages")
        else:
            raise InvalidInput(f"judgment key {key!r} is neither a passage id nor an input index")
        out[i] = grade(v, f"passage {key!r}")
    return out


# ----------------------------------------------------------------------------- compare


def compare(
    registry: RerankerRegistry,
    query: str,
    passages: Sequence[Passage | str | dict],
    rerankers: Sequence[str | dict | RerankerSpec],
    judgments: dict[str, float] | list[float] | None = None,
    k: int = 10,
    limits: RerankLimits = RerankLimits(),
) -> CompareResult:
    check_query(query, limits.max_query_chars)
    items = to_passages(passages, limits)
    if not items:
        raise InvalidInput("passages is empty: give at least one passage to rank")
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise InvalidInput(f"k must be a positive integer, got {k!r}")
    if not isinstance(rerankers, (list, tuple)) or not rerankers:
        raise InvalidInput("rerankers must be a non-empty list of names or {reranker, options} objects")
    if len(rerankers) > MAX_RERANKERS:
        raise InvalidInput(f"{len(rerankers)} rerankers, over the limit of {MAX_RERANKERS} per comparison")
    specs = [parse_spec(s) for s in rerankers]
    for s in specs:
        registry.family(s.reranker)  # NotFound for an unknown name, before anything runs
        check_options(s.options, f"options of {s.reranker}")
    grades = _grades(judgments, items)
    n = len(items)
    kk = min(k, n)
    notes: list[str] = []
    if kk < k:
        notes.append(f"k={k} is more than the {n} passages: metrics use k={kk}")

    taken: set[str] = set()
    outcomes: list[RerankerOutcome] = []
    for spec in specs:
        label = _label(spec, taken)
        outcomes.append(_run_one(registry, spec, label, query, items, grades, kk))

    input_order = list(range(n))
    input_scores = [-float(i) for i in range(n)]
    ok = [o for o in outcomes if o.error is None]
    score_of = {o.label: _by_index(o, n) for o in ok}
    agreement = []
    for a, b in combinations(ok, 2):
        agreement.append(PairAgreement(a=a.label, b=b.label, overlap_at_k=overlap_at_k(a.order, b.order, kk),
                                       kendall_tau=kendall_tau(score_of[a.label], score_of[b.label])))
    for a in ok:
        agreement.append(PairAgreement(a=a.label, b=INPUT, overlap_at_k=overlap_at_k(a.order, input_order, kk),
                                       kendall_tau=kendall_tau(score_of[a.label], input_scores)))

    ranks = {o.label: {i: r + 1 for r, i in enumerate(o.order)} for o in ok}
    rows = [
        PassageRow(
            index=i, id=p.id, text=p.text if len(p.text) <= PREVIEW_CHARS else p.text[: PREVIEW_CHARS - 1] + "…",
            relevance=grades.get(i) if grades else None,
            ranks={lab: ranks[lab][i] for lab in ranks}, scores={lab: score_of[lab][i] for lab in score_of},
        )
        for i, p in enumerate(items)
    ]
    input_ndcg = ndcg_at_k(input_order, grades, kk) if grades else None
    if grades and input_ndcg is None:
        notes.append("no passage is judged relevant (grade > 0): nDCG is undefined")
    return CompareResult(query=query, k=kk, rerankers=outcomes, agreement=agreement, passages=rows,
                         input_ndcg_at_k=input_ndcg, judged=len(grades), notes=notes)


def _by_index(o: RerankerOutcome, n: int) -> list[float]:
    out = [0.0] * n
    for i, s in zip(o.order, o.scores):
        out[i] = s
    return out


def _run_one(registry: RerankerRegistry, spec: RerankerSpec, label: str, query: str, items: list[Passage],
             grades: dict[int, float], k: int) -> RerankerOutcome:
    base = {"label": label, "reranker": spec.reranker, "options": spec.options}
    try:
        reranker = registry.get(spec.reranker, dict(spec.options))
        t = time.perf_counter()
        reranker.rerank(query, items[:1])  # loads the model, so latency_ms is the ranking alone
        load_ms = (time.perf_counter() - t) * 1000.0
        t = time.perf_counter()
        res = check_scores(reranker.rerank(query, items), spec.reranker)
        latency = (time.perf_counter() - t) * 1000.0
    except NotFound:
        raise
    except RerankMCPError as exc:
        return RerankerOutcome(**base, error=str(exc))
    except Exception as exc:  # a reranker's own bug: reported, the others still compared
        log.exception("reranker %s failed", label)
        return RerankerOutcome(**base, error=f"internal error in {spec.reranker}: {type(exc).__name__}: {exc}")
    if res.download is not None and res.used and spec.reranker != "auto":
        # a stand-in ranked while the family's model is missing: comparing it would compare the
        # stand-in, so the family is reported as not runnable yet
        return RerankerOutcome(**base, error=res.fallback or f"{spec.reranker}'s model is not on this machine",
                               fallback=res.fallback)
    order = [p.index for p in res.passages]
    return RerankerOutcome(
        **base, model=res.model, order=order, scores=[p.score for p in res.passages],
        latency_ms=round(latency, 3), load_ms=round(load_ms, 3),
        ndcg_at_k=ndcg_at_k(order, grades, k) if grades else None,
        truncated=res.truncated, fallback=res.fallback, notes=res.notes,
    )
