"""Evaluation: retrieval and reranking quality of search pipelines against judgments.

The ``evaluate`` tool runs :func:`evaluate_collection` on an existing collection with judgments
an agent supplies; ``rerank-mcp eval`` (bench/) runs the same :func:`run_pipeline` on BEIR
datasets. Everything goes through :func:`tools.search.search`, the same path the ``search`` tool takes,
so the numbers measure the product. Search returns chunks; a document's rank is the rank of
its best chunk (first occurrence in the ranked list). Metrics are ranx's definitions
(nDCG@10 with linear gains as in trec_eval / BEIR, Recall@100, MRR@10), computed by
:mod:`tools.metrics`.

Pipelines are named by strings:

``bm25`` | ``dense`` | ``hybrid`` (the search defaults) | ``hybrid-rrf`` | ``hybrid-minmax`` |
``hybrid-zscore``, optionally with per-arm weights ``hybrid-zscore(dense=1,bm25=0.5)``, dense
pseudo-relevance feedback ``hybrid(feedback)`` or ``dense(feedback)`` (search's ``feedback``), and
optionally ``+<reranker>`` (any registered family, e.g. ``hybrid+embedding``, ``bm25+flashrank``)
which reranks the first-stage top ``candidates`` (100). ``+cascade(bm25:30,embedding)`` is a
cascade whose stages are given inline (``name:top_k``, last stage without top_k).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rerank_mcp.errors import InvalidInput, NotFound
from rerank_mcp.index.contract import Progress
from rerank_mcp.index.fusion import client_side
from rerank_mcp.tools.cancel import CancelCheck, cancellable, check
from rerank_mcp.tools.metrics import mean, paired_randomization_p, percentile, ranking_metrics
from rerank_mcp.tools.models import RerankStep
from rerank_mcp.tools.schema import Frozen

METRICS = ("ndcg@10", "recall@100", "mrr@10")
SIGNIFICANCE_P = 0.05  # findings need a difference this unlikely under the paired randomization test
DEFAULT_K = 100  # chunks fetched per query; documents are aggregated from them
DEFAULT_CANDIDATES = 100  # first-stage hits a reranker sees


# --------------------------------------------------------------------------- result models
class PipelineMetrics(Frozen):
    pipeline: str = Field(description="pipeline name, e.g. 'hybrid-rrf+embedding'")
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    latency_p50_ms: float = Field(description="median wall time of one search call")
    latency_p95_ms: float
    queries: int
    errors: int = Field(0, description="queries whose search call failed (scored as empty results)")
    ran: str | None = Field(None, description="the reranker that actually ranked, when not the one the pipeline "
                            "names (auto's pick, or a stand-in for a missing model); its figures are that reranker's")
    stand_in: bool = Field(False, description="another reranker stood in for the one named (its model is missing)")

    @property
    def label(self) -> str:
        """The pipeline's name, with what actually ranked when that is not the reranker it names."""
        if not self.ran:
            return self.pipeline
        return f"{self.pipeline} ({'stand-in: ' if self.stand_in else 'ran '}{self.ran})"


class Finding(Frozen):
    kind: str = Field(description="'rerank_below_first_stage' or 'hybrid_below_best_arm'")
    dataset: str
    pipeline: str
    baseline: str = Field(description="the pipeline it is compared with")
    ndcg_at_10: float
    baseline_ndcg_at_10: float
    delta: float
    wins: int = Field(description="queries where the pipeline's nDCG@10 is higher than the baseline's")
    losses: int
    p_value: float | None = Field(None, description="paired randomization test of the difference (seeded); a "
                                  "finding is reported only when p < 0.05")
    message: str


class Judgment(BaseModel):
    """One query with the documents an agent judges relevant (binary list or graded map)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    query_id: str | None = Field(None, description="optional id; defaults to q<position>")
    query: str
    relevant: list[str] | dict[str, int] = Field(description="relevant doc ids, or {doc_id: grade}")


class QueryOutcome(Frozen):
    query_id: str
    query: str
    ndcg_at_10: dict[str, float] = Field(description="per pipeline")
    top_docs: dict[str, list[str]] = Field(description="per pipeline, the first 10 document ids")


class CollectionEvalResult(Frozen):
    collection: str
    queries: int
    pipelines: list[PipelineMetrics]
    findings: list[Finding]
    per_query: list[QueryOutcome]


# --------------------------------------------------------------------------- pipelines
@dataclass(frozen=True)
class Pipeline:
    name: str
    mode: str
    fusion: str | None = None  # None: the search default
    weights: Mapping[str, float] | None = None
    reranker: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    feedback: bool = False

    @property
    def first_stage(self) -> str:
        return self.name.split("+", 1)[0]


_RERANK_RE = re.compile(r"^([A-Za-z0-9_\-]+)(?:\(([^)]*)\))?$")


def parse_pipeline(name: str) -> Pipeline:
    """Parse a pipeline name such as ``hybrid-zscore(dense=1,bm25=0.5)+embedding``."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("pipeline name is empty")
    name = name.strip()
    first, _, rr = name.partition("+")
    fusions = client_side()  # index/fusion.METHODS
    m = re.match(r"^(bm25|dense|hybrid)(?:-(" + "|".join(map(re.escape, fusions)) + r"))?(?:\(([^)]*)\))?$", first)
    if not m:
        raise InvalidInput(
            f"unknown pipeline {name!r}: the first stage must be bm25, dense, hybrid, "
            f"{', '.join('hybrid-' + f for f in fusions[:-1])} or hybrid-{fusions[-1]} (optionally with weights, "
            "e.g. hybrid-zscore(dense=1,bm25=0.5), "
            "and feedback, e.g. hybrid(feedback)), then optionally +<reranker>"
        )
    mode, fusion, wtxt = m.groups()
    if fusion and mode != "hybrid":
        raise InvalidInput(f"pipeline {name!r}: only hybrid takes a fusion method")
    weights = None
    feedback = False
    if wtxt:
        parts = [x.strip() for x in wtxt.split(",")]
        if "feedback" in parts:
            if mode == "bm25":
                raise InvalidInput(f"pipeline {name!r}: feedback moves the dense query vector (hybrid or dense only)")
            feedback = True
            parts = [x for x in parts if x != "feedback"]
        if parts and mode != "hybrid":
            raise InvalidInput(f"pipeline {name!r}: only hybrid takes weights")
        weights = {} if parts else None
        for part in parts:
            k, eq, v = part.partition("=")
            k = k.strip()
            try:
                val = float(v)
            except ValueError:
                val = -1.0
            if not eq or k not in ("dense", "bm25") or not val >= 0:
                raise InvalidInput(f"pipeline {name!r}: weights look like (dense=1,bm25=0.5)")
            weights[k] = val  # type: ignore[index]
    reranker, options = None, {}
    if rr:
        mr = _RERANK_RE.match(rr.strip())
        if not mr:
            raise InvalidInput(f"pipeline {name!r}: the part after '+' must be a reranker name")
        reranker, args = mr.groups()
        if args is not None and reranker != "cascade":
            options = _parse_options(name, args)
        elif args is not None:
            stages = []
            for part in args.split(","):
                st, _, top = part.strip().partition(":")
                if not st:
                    raise InvalidInput(f"pipeline {name!r}: cascade stages look like cascade(bm25:30,embedding)")
                if top and not top.isdigit():
                    raise InvalidInput(f"pipeline {name!r}: cascade stage top_k must be an integer")
                stages.append({"reranker": st, "options": {}, "top_k": int(top) if top else None})
            options = {"stages": stages}
    return Pipeline(name, mode, fusion, weights, reranker, options, feedback)


def _parse_options(name: str, text: str) -> dict[str, Any]:
    """``blend=0.5,model=x`` -> {"blend": 0.5, "model": "x"} (numbers, true/false, else strings)."""
    out: dict[str, Any] = {}
    for part in text.split(","):
        k, eq, v = part.partition("=")
        k, v = k.strip(), v.strip()
        if not eq or not k:
            raise InvalidInput(f"pipeline {name!r}: reranker options look like embedding(blend=0.5)")
        if v.lower() in ("true", "false"):
            out[k] = v.lower() == "true"
            continue
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def split_pipelines(text: str) -> list[str]:
    """Split a comma-separated list of pipeline names, ignoring commas inside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            if cur.strip():
                out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def with_baselines(names: Sequence[str]) -> list[str]:
    """The pipelines plus what the findings compare them with: first stages and both arms."""
    out = list(dict.fromkeys(names))
    extra: list[str] = []
    for n in out:
        p = parse_pipeline(n)
        if p.reranker:
            extra.append(p.first_stage)
        if p.mode == "hybrid":
            extra += ["bm25", "dense"]
    for e in extra:
        if e not in out:
            out.append(e)
    # stable, readable order: arms first, then hybrids, then reranked
    def key(n: str) -> tuple[int, int]:
        p = parse_pipeline(n)
        return (1 if p.reranker else 0, {"bm25": 0, "dense": 1, "hybrid": 2}[p.mode])

    return sorted(out, key=key)


# --------------------------------------------------------------------------- running
def doc_ranking(hits: Sequence[Any], limit: int = DEFAULT_K) -> list[str]:
    """Chunk hits to document ids: a document takes the rank of its first (best) chunk."""
    out: dict[str, None] = {}
    for h in hits:
        out.setdefault(h.doc_id, None)
        if len(out) >= limit:
            break
    return list(out)


def _metrics(qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Sequence[str]]) -> tuple[dict[str, float], dict[str, float]]:
    """Means over the judged queries and per-query nDCG@10 for one pipeline's document rankings."""
    per = ranking_metrics(qrels, runs, METRICS)
    return {m: mean(per[m].values()) for m in METRICS}, per["ndcg@10"]


@dataclass
class PipelineRun:
    metrics: PipelineMetrics
    per_query_ndcg: dict[str, float]
    rankings: dict[str, list[str]]


def run_pipeline(
    engine: Any,
    registry: Any,
    collection: str,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    pipeline: str | Pipeline,
    *,
    k: int = DEFAULT_K,
    candidates: int = DEFAULT_CANDIDATES,
    limits: Any = None,
    progress: Progress | None = None,
    label: str = "",
    cancelled: CancelCheck | None = None,
    shuffle_candidates: int | None = None,
) -> PipelineRun:
    """``cancelled`` (default: the thread's check) is asked before each query. ``shuffle_candidates``
    (a seed): a reranker sees the first stage's candidates shuffled, as unordered passages."""
    from rerank_mcp.tools.search import SearchLimits, search

    p = pipeline if isinstance(pipeline, Pipeline) else parse_pipeline(pipeline)
    kwargs: dict[str, Any] = {"k": k, "mode": p.mode, "limits": limits or SearchLimits()}
    if p.fusion:
        kwargs["fusion"] = p.fusion
    if p.weights is not None:
        kwargs["weights"] = dict(p.weights)
    if p.feedback:
        kwargs["feedback"] = True
    if p.reranker:
        kwargs["rerank"] = RerankStep(reranker=p.reranker, options=dict(p.options), candidates=candidates)
        if shuffle_candidates is not None:
            kwargs["shuffle_candidates"] = shuffle_candidates
    rankings: dict[str, list[str]] = {}
    lat: list[float] = []
    errors = 0
    ran: dict[str, int] = {}  # the reranker that actually ranked, per query
    stood_in = False
    qids = list(queries)
    if qids:  # one untimed call first: model loading is not query latency
        try:
            search(engine, registry, queries[qids[0]], collection, **kwargs)
        except (InvalidInput, NotFound):
            raise
        except Exception:
            pass
    for i, qid in enumerate(qids):
        check(cancelled)
        t = time.perf_counter()
        try:
            res = search(engine, registry, queries[qid], collection, **kwargs)
            hits = res.hits
            if p.reranker:
                used = res.rerank_used or p.reranker
                ran[used] = ran.get(used, 0) + 1
                stood_in = stood_in or bool(res.rerank_fallback and res.rerank_used)
        except InvalidInput:
            raise
        except NotFound:
            raise
        except Exception:  # a failing reranker call is scored as an empty result, and counted
            errors += 1
            hits = []
            if errors > max(3, len(qids) // 10):
                raise
        lat.append((time.perf_counter() - t) * 1000)
        rankings[qid] = doc_ranking(hits, k)
        if progress and (i % 5 == 0 or i == len(qids) - 1):
            progress(i + 1, len(qids), f"{label}{p.name}: queries")
    check(cancelled)  # the metrics' first use in a process loads numba kernels: seconds, not interruptible
    means, per_q = _metrics(qrels, rankings)
    return PipelineRun(
        PipelineMetrics(
            pipeline=p.name,
            ndcg_at_10=round(means["ndcg@10"], 4),
            recall_at_100=round(means["recall@100"], 4),
            mrr_at_10=round(means["mrr@10"], 4),
            latency_p50_ms=round(percentile(lat, 50, empty=0.0), 2),
            latency_p95_ms=round(percentile(lat, 95, empty=0.0), 2),
            queries=len(qids),
            errors=errors,
            ran=_ran(p.reranker, ran),
            stand_in=stood_in,
        ),
        per_q,
        rankings,
    )


def _ran(named: str | None, ran: Mapping[str, int]) -> str | None:
    """What ranked a pipeline's queries when it is not the reranker named: ``embedding``, or
    ``embedding (298 queries), bm25 (2 queries)`` when it changed along the way."""
    if not named or not ran or set(ran) == {named}:
        return None
    if len(ran) == 1:
        return next(iter(ran))
    return ", ".join(f"{k} ({_queries(v)})" for k, v in sorted(ran.items(), key=lambda kv: -kv[1]))


def check_pipelines(registry: Any, pipelines: Sequence[str], allow_stand_in: bool = False) -> list[Pipeline]:
    """Validate pipelines before any work: names, reranker families and their options, and that
    every model a named reranker needs is on this machine. A missing model is an error giving the
    command that fetches it, unless ``allow_stand_in`` (then another reranker stands in, and the
    results say which ran). ``auto`` is never refused: it picks what is present, and the results
    say what it picked."""
    specs = [parse_pipeline(p) for p in pipelines]
    missing: dict[str, list[str]] = {}
    for s in specs:
        if not s.reranker:
            continue
        if registry is None:
            raise InvalidInput("reranking is not available here")
        registry.family(s.reranker)  # NotFound for an unknown name
        inst = registry.get(s.reranker, dict(s.options))  # InvalidInput for bad options
        parts = [inst]
        if s.reranker == "cascade":
            parts = [registry.get(st["reranker"], st["options"]) for st in getattr(inst, "stages", [])]
        models = getattr(registry.context, "models", None)
        for part in parts:
            if part.family == "auto":
                continue
            ref = part.required_model()
            if ref is not None and models is not None and not models.present(ref):
                missing.setdefault(ref.command, []).append(s.name)
    if missing and not allow_stand_in:
        raise InvalidInput(
            "a pipeline names a reranker whose model is not on this machine, so another reranker would stand in "
            "and its figures would be credited to it: " + "; ".join(
                f"{', '.join(dict.fromkeys(names))}: fetch it with `{cmd}`" for cmd, names in missing.items())
            + " (or allow stand-ins explicitly; the results then name what ran)"
        )
    return specs


def _queries(n: int) -> str:
    return f"{n} query" if n == 1 else f"{n} queries"


def compare(dataset: str, runs: Mapping[str, PipelineRun], tolerance: float = 0.0) -> list[Finding]:
    """Where a reranker lowers quality vs its first stage; where hybrid is below its better arm;
    each only when the paired randomization test (seeded) gives p < 0.05."""
    out: list[Finding] = []

    def wl(a: str, b: str) -> tuple[int, int]:
        pa, pb = runs[a].per_query_ndcg, runs[b].per_query_ndcg
        wins = sum(1 for q in pa if pa[q] > pb.get(q, 0.0) + 1e-12)
        losses = sum(1 for q in pa if pa[q] < pb.get(q, 0.0) - 1e-12)
        return wins, losses

    for name, r in runs.items():
        p = parse_pipeline(name)
        base = None
        if p.reranker and p.first_stage in runs:
            base, kind = p.first_stage, "rerank_below_first_stage"
        elif not p.reranker and p.mode == "hybrid" and "bm25" in runs and "dense" in runs:
            base = max(("bm25", "dense"), key=lambda n: runs[n].metrics.ndcg_at_10)
            kind = "hybrid_below_best_arm"
        if base is None:
            continue
        a, b = r.metrics.ndcg_at_10, runs[base].metrics.ndcg_at_10
        if a < b - tolerance:
            pa, pb = runs[name].per_query_ndcg, runs[base].per_query_ndcg
            qs = sorted(set(pa) | set(pb))
            pv = paired_randomization_p([pa.get(q, 0.0) for q in qs], [pb.get(q, 0.0) for q in qs])
            if pv >= SIGNIFICANCE_P:
                continue  # a drop the paired test cannot tell from chance is no finding
            wins, losses = wl(name, base)
            ranker = r.metrics.ran or p.reranker
            what = (f"reranking with {ranker} lowers nDCG@10" if kind == "rerank_below_first_stage"
                    else "hybrid is below its better arm")
            if r.metrics.ran and kind == "rerank_below_first_stage":
                what += f" ({ranker} ranked for {p.reranker})"
            out.append(Finding(
                kind=kind, dataset=dataset, pipeline=name, baseline=base, ndcg_at_10=a, baseline_ndcg_at_10=b,
                delta=round(a - b, 4), wins=wins, losses=losses, p_value=round(pv, 4),
                message=f"{dataset}: {name} {a:.4f} < {base} {b:.4f} ({a - b:+.4f}, p = {pv:.4f}; {what}; "
                        f"better on {_queries(wins)}, worse on {losses})",
            ))
    return out


# --------------------------------------------------------------------------- existing collections
def _judgments(judgments: Any) -> list[Judgment]:
    if not isinstance(judgments, (list, tuple)) or not judgments:
        raise InvalidInput("judgments must be a non-empty list of {query_id?, query, relevant}")
    out = []
    for i, j in enumerate(judgments):
        try:
            jj = j if isinstance(j, Judgment) else Judgment.model_validate(j)
        except Exception as exc:
            errs = getattr(exc, "errors", None)
            msg = str(exc).splitlines()[0]
            if callable(errs):
                e = errs()[0]
                msg = f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}"
            raise InvalidInput(f"judgments[{i}]: {msg}") from None
        if not jj.query.strip():
            raise InvalidInput(f"judgments[{i}]: query is empty")
        if not jj.relevant:
            raise InvalidInput(f"judgments[{i}]: relevant is empty: name at least one relevant document id")
        if isinstance(jj.relevant, dict) and any(g < 0 for g in jj.relevant.values()):
            raise InvalidInput(f"judgments[{i}]: grades must be non-negative integers")
        out.append(jj)
    return out


def evaluate_collection(
    engine: Any,
    registry: Any,
    collection: str,
    judgments: Sequence[Judgment | dict],
    pipelines: Sequence[str] = ("bm25", "dense", "hybrid"),
    *,
    k: int = DEFAULT_K,
    candidates: int = DEFAULT_CANDIDATES,
    limits: Any = None,
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
    allow_stand_in: bool = False,
) -> CollectionEvalResult:
    """Evaluate pipelines on an existing collection against agent-supplied judgments.

    ``cancelled`` (default: the thread's check) is asked between queries, and by rerankers
    between their scoring batches; once it says stop, :class:`Cancelled` is raised."""
    js = _judgments(judgments)
    if isinstance(pipelines, str):
        pipelines = split_pipelines(pipelines)
    if not pipelines:
        raise InvalidInput("pipelines is empty: name at least one, e.g. ['bm25', 'dense', 'hybrid']")
    specs = check_pipelines(registry, pipelines, allow_stand_in)
    engine.require_collection(collection)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for i, j in enumerate(js):
        qid = j.query_id or f"q{i + 1}"
        if qid in queries:
            raise InvalidInput(f"judgments[{i}]: duplicate query_id {qid!r}")
        queries[qid] = j.query
        qrels[qid] = dict.fromkeys(j.relevant, 1) if isinstance(j.relevant, list) else dict(j.relevant)
    wanted = sorted({d for rel in qrels.values() for d in rel})
    have = engine.doc_hashes(collection, wanted)
    unknown = [d for d in wanted if d not in have]
    if unknown:
        raise InvalidInput(
            f"judgments name document id(s) not in collection {collection!r}: "
            + ", ".join(map(repr, unknown[:10])) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        )
    names = [s.name for s in specs]
    all_names = with_baselines(names)
    runs: dict[str, PipelineRun] = {}
    with cancellable(cancelled):
        for n, name in enumerate(all_names):
            runs[name] = run_pipeline(engine, registry, collection, queries, qrels, name, k=k, candidates=candidates,
                                      limits=limits, label=f"[{n + 1}/{len(all_names)}] ",
                                      # one scale for the call: the queries of every pipeline
                                      progress=(lambda d, t, m, n=n: progress(n * t + d, len(all_names) * t, m))
                                      if progress else None)
    findings = compare(collection, runs)
    per_query = [
        QueryOutcome(
            query_id=q, query=queries[q],
            ndcg_at_10={n: round(runs[n].per_query_ndcg.get(q, 0.0), 4) for n in all_names},
            top_docs={n: runs[n].rankings.get(q, [])[:10] for n in all_names},
        )
        for q in queries
    ]
    return CollectionEvalResult(
        collection=collection, queries=len(queries), pipelines=[runs[n].metrics for n in all_names],
        findings=findings, per_query=per_query,
    )
