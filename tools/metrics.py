"""Figures over measurements and rankings, one definition each.

:func:`percentile` is the one percentile of the project (the ``evaluate`` tool's latencies,
``rerank-mcp eval`` and ``bench``): ``q`` on the 0-100 scale, linear interpolation between the
closest ranks (numpy's default method).

:func:`ranking_metrics` scores document rankings against graded judgments the way ranx does
(nDCG with linear gains and log2 discounts as in trec_eval / BEIR, Recall, reciprocal rank; a
grade of 1 or more is relevant; a query without a ranking or without a relevant document scores
0), in plain Python: the server's ``evaluate`` tool needs no numba kernels, and several calls can
run at once. ``tests/eval/test_metrics.py`` checks it against ranx.

:func:`paired_randomization_p` is the paired significance test of the project's findings and of
``rerank-mcp eval``'s report: Fisher's randomization test, seeded and single-threaded, so the
same per-query scores always give the same p-value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def percentile(values: Iterable[float], q: float, *, empty: float = float("nan")) -> float:
    """The ``q``-th percentile (0-100) of ``values``; ``empty`` when there are none."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be from 0 to 100, got {q}")
    v = sorted(float(x) for x in values)
    if not v:
        return empty
    pos = (len(v) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def median(values: Iterable[float], *, empty: float = float("nan")) -> float:
    return percentile(values, 50, empty=empty)


def _relevant(grades: Mapping[str, int]) -> dict[str, int]:
    return {d: int(g) for d, g in grades.items() if g >= 1}


def ndcg(ranking: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    rel = _relevant(grades)
    if not rel:
        return 0.0
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted(rel.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg


def recall(ranking: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    rel = _relevant(grades)
    if not rel:
        return 0.0
    return sum(1 for d in ranking[:k] if d in rel) / len(rel)


def reciprocal_rank(ranking: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    rel = _relevant(grades)
    for i, d in enumerate(ranking[:k]):
        if d in rel:
            return 1.0 / (i + 1)
    return 0.0


MEASURES = {"ndcg": ndcg, "recall": recall, "mrr": reciprocal_rank}


def ranking_metrics(qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Sequence[str]],
                    metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """{metric: {query id: score}} for every judged query, ``metrics`` named like ``ndcg@10``,
    ``recall@100``, ``mrr@10``. ``runs`` maps a query id to its ranked document ids (best first,
    no repeats); queries missing from ``runs`` score 0, runs of unjudged queries are ignored."""
    out: dict[str, dict[str, float]] = {}
    for m in metrics:
        name, _, k = m.partition("@")
        if name not in MEASURES or not k.isdigit() or int(k) < 1:
            raise ValueError(f"unknown metric {m!r}: use {', '.join(f'{n}@k' for n in MEASURES)}")
        f = MEASURES[name]
        out[m] = {q: f(runs.get(q, ()), grades, int(k)) for q, grades in qrels.items()}
    return out


def mean(values: Iterable[float]) -> float:
    v = list(values)
    return math.fsum(v) / len(v) if v else 0.0


PERMUTATIONS = 10_000
SEED = 0


def paired_randomization_p(a: Sequence[float], b: Sequence[float], permutations: int = PERMUTATIONS,
                           seed: int = SEED) -> float:
    """Two-sided p-value of Fisher's paired randomization test on per-query scores ``a`` and ``b``
    (the same queries, in the same order): the share of ``permutations`` random swaps of each
    query's pair whose mean difference is at least as far from 0 as the observed one. Seeded, in
    one thread: identical inputs always give the identical p-value."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError("paired scores must have the same length")
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size == 0 or not np.any(d):
        return 1.0
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    hits = 0
    done = 0
    while done < permutations:  # in slices: bounded memory for long query lists
        n = min(1000, permutations - done)
        signs = rng.integers(0, 2, size=(n, d.size), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs((signs * d).mean(axis=1)) >= observed - 1e-12))
        done += n
    return hits / permutations
