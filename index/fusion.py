"""Fusing ranked lists: reciprocal rank fusion and normalised score fusion.

RRF (Cormack, Clarke and Buettcher, SIGIR 2009) needs only ranks, but can land below the
stronger arm when the other is weak; normalised score fusion (min-max or z-score per arm,
then a weighted sum) keeps score gaps. Both take per-arm weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Ranked = Sequence[tuple[int, float]]  # (id, score), best first

RRF_K = 60  # the constant of Cormack et al.; ranks count from 1
# How deep a hybrid search searches each arm by default, and how many of each arm's first entries the
# score normalisations (z-score mean and sd, min-max lo and hi) take their statistics from, however deep
# the arm: searching deeper (a larger k or rerank.candidates) then never reorders the first hits.
ARM_DEPTH = 100


def rrf_term(rank: int, weight: float = 1.0, k: int = RRF_K) -> float:
    """One list's share of a document's RRF score: ``weight / (k + rank)``, ``rank`` from 1."""
    return weight / (k + rank)


def rrf(arms: Mapping[str, Ranked], weights: Mapping[str, float] | None = None, k: int = RRF_K) -> dict[int, float]:
    """Weighted reciprocal rank fusion: sum over arms of ``w / (k + rank)``."""
    out: dict[int, float] = {}
    for name, ranked in arms.items():
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        for rank, (doc, _score) in enumerate(ranked, start=1):
            out[doc] = out.get(doc, 0.0) + rrf_term(rank, w, k)
    return out


def _stats(ranked: Ranked, how: str, depth: int | None) -> tuple[float, float] | None:
    """(shift, scale) from the arm's first ``depth`` entries (all of them when None): min-max's lo
    and span, z-score's mean and sd; None for an empty arm."""
    scores = [s for _, s in (ranked if depth is None else ranked[:depth])]
    if not scores:
        return None
    if how == "minmax":
        lo = min(scores)
        return lo, max(scores) - lo
    mean = sum(scores) / len(scores)
    return mean, math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))


def _normalise(ranked: Ranked, how: str, depth: int | None = None) -> dict[int, float]:
    stats = _stats(ranked, how, depth)
    if stats is None:
        return {}
    shift, scale = stats
    if how == "minmax":
        return {d: ((s - shift) / scale if scale > 0 else 1.0) for d, s in ranked}
    return {d: ((s - shift) / scale if scale > 0 else 0.0) for d, s in ranked}


def score_fusion(
    arms: Mapping[str, Ranked], weights: Mapping[str, float] | None = None, how: str = "minmax",
    depth: int | None = None,
) -> dict[int, float]:
    """Normalise each arm's scores (min-max or z-score), then a weighted sum.

    A document missing from an arm gets that arm's floor: its lowest normalised score (0 for
    min-max), i.e. it is treated as just below that arm's cut-off. With ``depth``, the statistics
    and the floor come from each arm's first ``depth`` entries, and an entry deeper than that counts
    as the floor too (it lies below the cut-off the statistics were taken at), so a deeper arm
    changes no document's score: it only adds documents, at the floor.
    """
    out: dict[int, float] = {}
    norms = {name: _normalise(r, how, depth) for name, r in arms.items()}
    all_ids = {d for n in norms.values() for d in n}
    for name, norm in norms.items():
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        head = arms[name] if depth is None else arms[name][:depth]
        # min-max: 0, even when an arm has one hit (or all equal scores, normalised to 1)
        floor = 0.0 if how == "minmax" or not norm else min(norm[d] for d, _ in head)
        for d in all_ids:
            out[d] = out.get(d, 0.0) + w * max(norm.get(d, floor), floor)
    return out


@dataclass(frozen=True)
class FusionMethod:
    """One way of fusing a hybrid search's arms: declared once, in :data:`METHODS`; the ``search``
    tool's schema and description, the CLI's ``--fusion`` choices and ``evaluate``'s pipeline
    names all come from that table."""

    name: str
    summary: str = ""  # for the search tool's description; "" says nothing more than the name
    fuse: Callable[..., dict[int, float]] | None = None  # (arms, weights, rrf_k[, depth]) -> fused scores
    server: str | None = None  # fused by the engine itself, under this name (Index.fused_search)
    deep: bool = False  # fuse takes a fourth argument: the depth its statistics come from (see fuse())


METHODS: dict[str, FusionMethod] = {m.name: m for m in (
    FusionMethod("rrf", "ranks only", fuse=lambda arms, w, k: rrf(arms, w, k)),
    FusionMethod("minmax", fuse=lambda arms, w, k, depth: score_fusion(arms, w, "minmax", depth), deep=True),
    FusionMethod("zscore", "z-normalised scores summed; highest on our BEIR evals, though not significantly above "
                 "the others", fuse=lambda arms, w, k, depth: score_fusion(arms, w, "zscore", depth), deep=True),
    FusionMethod("server-rrf", server="rrf"),
    FusionMethod("server-dbsf", server="dbsf"),
)}
DEFAULT = "zscore"  # docs/adr/0003


def client_side() -> tuple[str, ...]:
    """The methods fused here, on any engine."""
    return tuple(n for n, m in METHODS.items() if m.server is None)


def server_side() -> tuple[str, ...]:
    """The methods an engine performs itself (where it offers them)."""
    return tuple(n for n, m in METHODS.items() if m.server is not None)


def describe() -> str:
    """The fusion methods in words, for the search tool's description: the default first, then
    the others fused here in alphabetical order."""
    def one(name: str) -> str:
        m = METHODS[name]
        return f"'{name}'" + (f" ({m.summary})" if m.summary else "")

    rest = sorted(n for n in client_side() if n != DEFAULT)
    head = f"'{DEFAULT}' (default: {METHODS[DEFAULT].summary})" if METHODS[DEFAULT].summary else f"'{DEFAULT}' (default)"
    return ", ".join([head, *map(one, rest[:-1])]) + (f", or {one(rest[-1])}" if rest else "")


def fuse(
    arms: Mapping[str, Ranked],
    method: str = "rrf",
    weights: Mapping[str, float] | None = None,
    rrf_k: int = RRF_K,
    depth: int | None = ARM_DEPTH,
) -> list[tuple[int, float]]:
    """Fuse the arms and return (id, fused score), best first.

    ``depth``: score fusions (``deep`` methods) take their normalisation statistics from each arm's
    first ``depth`` entries (None: all of them; RRF ignores it), so the order of the first hits does not depend on
    how deep the arms were searched. Ties are broken by id, except that a document found only beyond
    ``depth`` in every arm (all of its shares at the floor) follows the tied documents found within
    it, in order of its best rank in any arm: the same order at any depth."""
    m = METHODS.get(method)
    if m is None or m.fuse is None:
        raise ValueError(f"unknown fusion method {method!r}")
    fused = m.fuse(arms, weights, rrf_k, depth) if m.deep else m.fuse(arms, weights, rrf_k)
    deep: dict[int, int] = {}  # best rank of a document found only beyond depth in every arm
    if depth is not None and m.deep:
        near = {d for r in arms.values() for d, _ in r[:depth]}
        for r in arms.values():
            for rank, (d, _) in enumerate(r[depth:], start=depth + 1):
                if d not in near and rank < deep.get(d, rank + 1):
                    deep[d] = rank
    return sorted(fused.items(), key=lambda kv: (-kv[1], deep.get(kv[0], 0), kv[0]))
