"""Search: dense, BM25 or hybrid first-stage retrieval, optionally reranked in the same call."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rerank_mcp.errors import InvalidInput, LimitExceeded
from rerank_mcp.index import fusion as fusions
from rerank_mcp.index.contract import Index
from rerank_mcp.index.filters import Cond, FilterCompiler, parse_filter
from rerank_mcp.index.fusion import fuse
from rerank_mcp.index.lines import end_line
from rerank_mcp.index.model_names import split_identity
from rerank_mcp.tools.feedback import FEEDBACK_CHUNKS, feedback_vector, rescore
from rerank_mcp.tools.models import Hit, Provenance, RerankStep, SearchResult
from rerank_mcp.tools.rerank.base import CorpusStats, Passage, RerankResult
from rerank_mcp.tools.rerank.evidence import below_first_stage_note
from rerank_mcp.tools.rerank.registry import RerankerRegistry

MODES = ("dense", "bm25", "hybrid")
MAX_WEIGHT = 1e6
FUSIONS = tuple(fusions.METHODS)  # declared in index/fusion.py
DEFAULT_FUSION = fusions.DEFAULT
# Hybrid weights when the collection's embedding model was not trained on the query's script (an
# English-only model and a Chinese, Japanese or Korean query): its dense arm is far weaker than a
# CJK-aware BM25 there, and equal weights drag hybrid below BM25 alone (docs/eval/languages).
UNCOVERED_WEIGHTS = {"dense": 0.0, "bm25": 1.0}
UNCOVERED = "was not trained on this query's language (Chinese, Japanese or Korean)"  # notes say this


@dataclass(frozen=True)
class SearchLimits:
    max_k: int = 1000
    max_query_chars: int = 10_000


def check_query(query: Any, limit: int) -> str:
    if not isinstance(query, str):
        raise InvalidInput(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise InvalidInput("query is empty: give the words or question to search for")
    if len(query) > limit:
        raise LimitExceeded(f"query is {len(query)} characters, over the limit of {limit} (RERANK_MCP_MAX_QUERY_CHARS)")
    if "\x00" in query:
        raise InvalidInput("query contains NUL characters")
    check_unicode(query, "query")
    return query


def check_options(options: Any, where: str = "options") -> Any:
    """Reranker options must be plain, finite JSON: NaN and infinity (``1e400`` in JSON) are refused
    here, before they turn into scores that no JSON result can carry."""

    def walk(v: Any, depth: int) -> None:
        if depth > 32:
            raise InvalidInput(f"{where} are nested too deeply")
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidInput(f"{where} contain a non-finite number ({v}); use finite numbers")
        if isinstance(v, dict):
            for x in v.values():
                walk(x, depth + 1)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x, depth + 1)

    walk(options, 0)
    return options


def check_scores(result: RerankResult, reranker: str) -> RerankResult:
    """A reranker whose options drove its scores to NaN or infinity is an error, not a ranking."""
    if any(not math.isfinite(p.score) for p in result.passages):
        raise InvalidInput(
            f"reranker {reranker!r} produced non-finite scores with these options; use smaller, finite option values"
        )
    return result


def check_unicode(text: str, where: str) -> str:
    """Refuse strings that are not valid Unicode (lone surrogates): no transport or index can carry them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{where} contains unpaired surrogates (invalid Unicode)") from None
    return text


def _kind(v: Any) -> str | None:
    if isinstance(v, bool) or v is None:
        return None
    return "number" if isinstance(v, (int, float)) else "string" if isinstance(v, str) else None


class _Conditions(FilterCompiler[list[Cond]]):
    """Every condition of a filter tree, in order (the engines' walk, collecting)."""

    def all_of(self, items: Sequence[list[Cond]]) -> list[Cond]:
        return [c for item in items for c in item]

    any_of = all_of

    def negate(self, item: list[Cond]) -> list[Cond]:
        return item

    def cond(self, c: Cond) -> list[Cond]:
        return [c]


def filter_type_note(index: Index, collection: str, flt: Any, sample: int = 200) -> str | None:
    """Why a filtered search found nothing, when the filter compares a field to a string and the
    collection's documents (the first ``sample``) hold numbers there, or the other way round
    (``{"year": "2024"}`` against ``"year": 2024``); None when no such mismatch shows."""
    conds = [c for c in _Conditions().compile(flt) if c.op != "$exists"]
    if not conds:
        return None
    docs = index.documents(collection, limit=sample)

    def held(field: str) -> set[str]:
        kinds: set[str] = set()
        for d in docs:
            v: Any = d.metadata
            for part in field.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            for x in v if isinstance(v, list) else [v]:
                if _kind(x):
                    kinds.add(_kind(x))  # type: ignore[arg-type]
        return kinds

    for c in conds:
        given = {_kind(v) for v in (c.value if isinstance(c.value, tuple) else (c.value,))} - {None}
        have = held(c.field)
        if len(given) == 1 and len(have) == 1 and given != have:
            (g,), (h,) = given, have
            example = "a number, without quotes" if h == "number" else "a string, in quotes"
            return (f"no hits: the filter compares {c.field!r} to a {g}, but the collection's documents hold "
                    f"{h}s in {c.field!r}; give {example}")
    return None


def citation(row: Any) -> dict[str, Any]:
    """Where a chunk comes from: its file (``source``) and its first and last lines."""
    src = row.metadata.get("source") if isinstance(row.metadata, dict) else None
    out: dict[str, Any] = {"source": src if isinstance(src, str) else None}
    if row.line is not None:
        out["start_line"] = row.line
        out["end_line"] = end_line(row.line, row.text)
    return out


def search(
    index: Index,
    registry: RerankerRegistry | None,
    query: str,
    collection: str,
    k: int = 10,
    mode: str = "hybrid",
    fusion: str = DEFAULT_FUSION,
    weights: Mapping[str, float] | None = None,
    filter: Any = None,
    rerank: RerankStep | dict | None = None,
    depth: int | None = None,
    limits: SearchLimits = SearchLimits(),
    feedback: bool = False,
    shuffle_candidates: int | None = None,
) -> SearchResult:
    """First-stage retrieval, reranked when ``rerank`` is given. The reranker sees the candidates
    in the first stage's order, a real ranking (``ordered``), unless ``shuffle_candidates`` (a
    seed; evaluation only) shuffles them first: then they are reranked as unordered passages."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    check_query(query, limits.max_query_chars)
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise InvalidInput(f"k must be a positive integer, got {k!r}")
    if k > limits.max_k:
        raise LimitExceeded(f"k={k} is over the limit of {limits.max_k} (RERANK_MCP_MAX_K)")
    if mode not in MODES:
        raise InvalidInput(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if fusion not in fusions.METHODS:
        raise InvalidInput(f"unknown fusion {fusion!r}; use one of {', '.join(fusions.METHODS)}")
    if weights is not None:
        bad = [n for n in weights if n not in ("dense", "bm25")]
        if bad or any(not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= MAX_WEIGHT
                      for v in weights.values()):  # NaN and infinity fail the range test too
            raise InvalidInput(
                f"weights must map 'dense' and/or 'bm25' to numbers from 0 to {MAX_WEIGHT:g} (they are relative, "
                "e.g. {\"dense\": 0.7, \"bm25\": 0.3})"
            )
        if not any(weights.get(arm, 1.0) > 0 for arm in ("dense", "bm25")):  # an arm not named weighs 1
            raise InvalidInput("weights: at least one arm must have a positive weight (both are 0 here); "
                               "e.g. {\"dense\": 0.7, \"bm25\": 0.3}, or mode 'dense' or 'bm25' for one arm alone")
    step = None
    if rerank is not None:
        step = rerank if isinstance(rerank, RerankStep) else RerankStep.model_validate(rerank)
        check_options(step.options, "rerank.options")
        if registry is None:
            raise InvalidInput("reranking is not available here")
        registry.family(step.reranker)  # unknown name -> NotFound before any work
        if step.candidates > limits.max_k:
            raise LimitExceeded(
                f"rerank.candidates={step.candidates} is over the limit of {limits.max_k} (RERANK_MCP_MAX_K)"
            )
    on_server = fusions.METHODS[fusion].server  # the engine's name for a fusion it does itself
    if on_server is not None and mode == "hybrid" and on_server not in index.server_fusions:
        raise InvalidInput(
            f"fusion {fusion!r} needs an engine that fuses on the server (RERANK_MCP_BACKEND=qdrant); the "
            f"{index.backend} engine offers {', '.join(fusions.client_side())}"
        )
    if not isinstance(feedback, bool):
        raise InvalidInput(f"feedback must be true or false, got {feedback!r}")
    if feedback and mode == "bm25":
        raise InvalidInput("feedback moves the dense query vector: use it with mode 'hybrid' or 'dense'")
    flt = parse_filter(filter)
    info = index.open_collection(collection)  # NotFound, or ModelMismatch with the way out

    n_first = max(k, step.candidates if step else 0)
    arm_depth = depth or max(n_first, fusions.ARM_DEPTH if mode == "hybrid" else n_first)
    arm_depth = min(arm_depth, limits.max_k * 2)

    notes: list[str] = []
    if mode == "hybrid" and weights is None and not index.embedding_covers(info, query):
        weights = dict(UNCOVERED_WEIGHTS)
        notes.append(
            f"the embedding model {split_identity(info.embedding_model)[0]} {UNCOVERED}: "
            f"hybrid weighted dense {weights['dense']:g}, bm25 {weights['bm25']:g}. "
            "Pass weights to choose, or build the collection with a multilingual embedding model"
        )
    elif mode == "dense" and not index.embedding_covers(info, query):
        notes.append(
            f"the embedding model {split_identity(info.embedding_model)[0]} {UNCOVERED}: dense results may be poor. "
            "Use mode 'hybrid' or 'bm25' (CJK-aware), or build the collection with a multilingual embedding model"
        )

    qv = None
    dense_off = mode == "hybrid" and bool(weights) and weights.get("dense", 1.0) == 0  # a zero-weighted arm
    if mode in ("dense", "hybrid") and not dense_off:
        t = time.perf_counter()
        qv = index.embedding.query(query, info)  # with the backend the collection was built with
        timings["embed_ms"] = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    server_fused = None
    if mode == "hybrid" and on_server is not None and qv is not None:
        server_fused = index.fused_search(info.name, query, qv, arm_depth, flt, on_server,
                                          weights=dict(weights) if weights else None)
        arms = {}
    else:
        wanted = ("dense", "bm25") if mode == "hybrid" else (mode,)
        if qv is None:  # a zero-weighted dense arm is not searched
            wanted = tuple(a for a in wanted if a != "dense")
        arms = index.search_arms(info.name, query, qv, arm_depth, flt, wanted)
    timings[f"{mode}_ms" if mode != "hybrid" else "arms_ms"] = (time.perf_counter() - t) * 1000
    if feedback and qv is not None:  # dense pseudo-relevance feedback (tools/feedback.py)
        t = time.perf_counter()
        top = server_fused if server_fused is not None else (
            fuse(arms, fusion, weights) if mode == "hybrid" else arms["dense"])  # type: ignore[arg-type]
        if server_fused is not None:  # no arms to score again: the engine searches and fuses with the moved vector
            nv = feedback_vector(qv, top, index.chunk_vectors(info.name, [c for c, _ in top[:FEEDBACK_CHUNKS]]))
            if nv is not None:
                server_fused = index.fused_search(info.name, query, nv, arm_depth, flt, on_server,
                                                  weights=dict(weights) if weights else None)
        else:  # every candidate of either arm scored again against the moved vector: the new dense arm
            vecs = index.chunk_vectors(info.name, list(dict.fromkeys(c for r in arms.values() for c, _ in r)))
            nv = feedback_vector(qv, top, vecs)
            if nv is not None:
                arms["dense"] = rescore(nv, vecs, arm_depth)
        timings["feedback_ms"] = (time.perf_counter() - t) * 1000
    elif feedback:
        notes.append("feedback skipped: the dense arm was not searched (weighted 0)")

    prov: dict[int, dict[str, Any]] = {}
    for name, ranked in arms.items():
        for r, (cid, s) in enumerate(ranked, start=1):
            prov.setdefault(cid, {})[f"{name}_rank"] = r
            prov[cid][f"{name}_score"] = s
    if mode == "hybrid":
        t = time.perf_counter()
        fused = server_fused if server_fused is not None else fuse(arms, fusion, weights)  # type: ignore[arg-type]
        timings["fuse_ms"] = (time.perf_counter() - t) * 1000
        for r, (cid, s) in enumerate(fused, start=1):
            prov.setdefault(cid, {})["fused_rank"] = r
            prov[cid]["fused_score"] = s
        first = fused
    else:
        first = arms[mode]

    # keep only chunks the store still holds (the derived indexes may briefly lag a delete)
    t = time.perf_counter()
    rows = index.fetch_chunks(collection, [cid for cid, _ in first[: n_first + 50]])
    first = [(cid, s) for cid, s in first if cid in rows][:n_first]
    timings["fetch_ms"] = (time.perf_counter() - t) * 1000

    final = first
    rr = None
    if step is not None and first:
        t = time.perf_counter()
        reranker = registry.get(step.reranker, step.options)
        passages = [Passage(text=rows[cid].text, id=str(cid)) for cid, _ in first[: step.candidates]]
        if shuffle_candidates is not None:
            import random

            random.Random(f"{shuffle_candidates}:{query}").shuffle(passages)
        # the collection's BM25 statistics, for rerankers that score with them (bm25), asked lazily
        corpus = CorpusStats(lambda terms: index.bm25_stats(info.name, terms), index.analyzer(info))
        rr = check_scores(reranker.rerank(query, passages, corpus=corpus, ordered=shuffle_candidates is None,
                                          min_score=step.min_score), step.reranker)
        timings["rerank_ms"] = (time.perf_counter() - t) * 1000
        final = []
        for p in rr.passages:
            cid = int(p.id)
            prov[cid]["rerank_rank"] = p.rank
            prov[cid]["rerank_score"] = p.score
            final.append((cid, p.score))
        if step.min_score is None:
            final += first[step.candidates :]  # beyond the reranked candidates: first-stage order
    hits = []
    for rank, (cid, s) in enumerate(final[:k], start=1):
        row = rows[cid]
        hits.append(
            Hit(rank=rank, chunk_id=cid, doc_id=row.doc_id, text=row.text, score=float(s), metadata=row.metadata,
                start=row.start, end=row.end, provenance=Provenance(**prov.get(cid, {})), **citation(row))
        )
    below = below_first_stage_note(mode, step.reranker, step.options, rr.used, rr.blend,
                                   rr.blend_by_position) if step is not None and rr else None
    if below:  # a configuration the evaluations show ranking below its first stage (tools/rerank/evidence.py)
        notes.append(below)
    if rr is not None and step is not None and step.reranker == "auto" and rr.notes:
        notes.append(rr.notes[0])  # what auto picked, and why
    if rr is not None:
        notes.extend(n for n in rr.notes if (n.startswith("min_score ") or UNCOVERED in n) and n not in notes)
    if not hits and flt is not None:
        mismatch = filter_type_note(index, collection, flt)
        if mismatch:
            notes.append(mismatch)
    timings["total_ms"] = (time.perf_counter() - t0) * 1000
    return SearchResult(
        query=query, collection=collection, mode=mode, fusion=fusion if mode == "hybrid" else None,  # type: ignore[arg-type]
        hits=hits, reranker=step.reranker if step else None, rerank_model=rr.model if rr else None,
        rerank_fallback=rr.fallback if rr else None, rerank_used=rr.used if rr else None,
        truncated=[int(p.id) for p in rr.passages if p.truncated] if rr else [],
        notes=notes,
        timings_ms={k_: round(v, 3) for k_, v in timings.items()},
    )
