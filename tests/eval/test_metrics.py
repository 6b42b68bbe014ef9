"""The metrics behind the ``evaluate`` tool and ``rerank-mcp eval`` (tools/metrics.py): ranx's
definitions without ranx, and one percentile for every figure.

The server once computed them with ranx, whose numba kernels (``parallel=True``) abort the whole
process when two threads run them at once (two ``evaluate`` calls); now the server imports
neither ranx nor numba, and several threads can score at once.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rerank_mcp.tools.evaluate import METRICS, _metrics
from rerank_mcp.tools.metrics import median, percentile, ranking_metrics

ROOT = Path(__file__).resolve().parents[2]


def _ranx(qrels, runs):
    from ranx import Qrels, Run, evaluate

    run = Run({q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in runs.items() if docs})
    qr = Qrels(qrels)
    means = evaluate(qr, run, list(METRICS), make_comparable=True)
    per = evaluate(qr, run, "ndcg@10", return_mean=False, make_comparable=True)
    return {m: float(means[m]) for m in METRICS}, dict(zip(Qrels(qrels).keys(), map(float, per)))


@pytest.mark.slow  # ranx over many runs; threads
def test_the_same_figures_as_ranx():
    pytest.importorskip("ranx")
    rng = random.Random(7)
    for _ in range(60):
        n_docs = rng.randint(5, 200)
        qrels = {f"q{i}": {f"d{rng.randrange(n_docs)}": rng.choice([0, 1, 1, 2, 3]) for _ in range(rng.randint(1, 8))}
                 for i in range(rng.randint(1, 20))}
        runs = {q: rng.sample([f"d{j}" for j in range(n_docs)], rng.randint(0, min(n_docs, 150)))
                for q in qrels if rng.random() > 0.1}  # some queries unranked, some ranked empty
        runs["unjudged"] = ["d1"]
        want_means, want_per = _ranx(qrels, runs)
        means, per = _metrics(qrels, runs)
        assert means == pytest.approx(want_means, abs=1e-12)
        assert per == pytest.approx(want_per, abs=1e-12)


def test_graded_example_by_hand():
    qrels = {"q": {"a": 2, "b": 1, "z": 0}}
    m = ranking_metrics(qrels, {"q": ["x", "b", "a"]}, ["ndcg@10", "recall@2", "mrr@10"])
    ideal = 2 + 1 / np.log2(3)
    assert m["ndcg@10"]["q"] == pytest.approx((1 / np.log2(3) + 2 / 2) / ideal)
    assert m["recall@2"]["q"] == 0.5 and m["mrr@10"]["q"] == 0.5
    with pytest.raises(ValueError, match="unknown metric"):
        ranking_metrics(qrels, {}, ["map@10"])


def test_percentile_on_the_0_100_scale_like_numpy():
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 101):
        v = rng.exponential(10, n).tolist()
        for q in (0, 1, 25, 50, 95, 99, 100):
            assert percentile(v, q) == pytest.approx(float(np.percentile(v, q)), rel=1e-12)
        assert median(v) == pytest.approx(float(np.median(v)), rel=1e-12)
    assert np.isnan(percentile([], 50)) and percentile([], 95, empty=0.0) == 0.0
    with pytest.raises(ValueError):
        percentile([1.0], 0.95 * 1000)


CODE = r'''
import random, sys, threading
import rerank_mcp.main, rerank_mcp.server.app, rerank_mcp.server.cli
from rerank_mcp.tools.evaluate import _metrics
rng = random.Random(1)
qrels = {f"q{i}": {f"d{i}": 1} for i in range(50)}
runs = {q: [f"d{j}" for j in rng.sample(range(60), 10)] for q in qrels}
first = _metrics(qrels, runs)
bad = []
def work():
    for _ in range(100):
        if _metrics(qrels, runs) != first:
            bad.append(1)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
heavy = sorted(m for m in ("ranx", "numba", "matplotlib") if m in sys.modules)
print("ok" if not bad and not heavy else f"bad={len(bad)} heavy={heavy}")
'''


@pytest.mark.slow  # ranx over many runs; threads
def test_the_server_scores_from_several_threads_without_ranx():
    proc = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.stdout, proc.stderr[-2000:])


# ----------------------------------------------------------------------------- paired significance


def _run(name, per_query):
    from rerank_mcp.tools.evaluate import PipelineMetrics, PipelineRun

    m = sum(per_query.values()) / len(per_query)
    return PipelineRun(PipelineMetrics(pipeline=name, ndcg_at_10=round(m, 4), recall_at_100=0.0, mrr_at_10=0.0,
                                       latency_p50_ms=0.0, latency_p95_ms=0.0, queries=len(per_query)),
                       dict(per_query), {q: [] for q in per_query})


def test_paired_randomization_p_is_seeded_and_sane():
    import random

    from rerank_mcp.tools.metrics import paired_randomization_p

    rng = random.Random(7)
    a = [rng.random() for _ in range(300)]
    b = [x + rng.gauss(0, 0.2) for x in a]
    ps = {paired_randomization_p(a, b) for _ in range(3)}
    assert len(ps) == 1  # identical inputs, identical p-value
    assert paired_randomization_p(a, a) == 1.0
    assert paired_randomization_p([x + 0.05 for x in a], a) < 0.001  # the same gain on every query


@pytest.mark.slow
def test_eval_significance_is_reproducible():
    import random

    from rerank_mcp.bench.evaluate import paired_significance

    rng = random.Random(3)
    qrels = {f"q{i}": {"d": 1} for i in range(120)}
    runs = {n: _run(n, {q: rng.random() for q in qrels}) for n in ("a", "b", "c")}
    first = [(s.a, s.b, s.p_value) for s in paired_significance(qrels, runs, "fisher")]
    again = [(s.a, s.b, s.p_value) for s in paired_significance(qrels, runs, "fisher")]
    assert first == again and len(first) == 3


def test_findings_fire_only_when_the_drop_is_significant():
    from rerank_mcp.tools.evaluate import compare

    qs = [f"q{i}" for i in range(100)]
    base = {q: 0.5 + 0.4 * ((i * 37) % 11) / 10 for i, q in enumerate(qs)}
    # a tiny, noisy drop (mean -0.002): not a finding
    noisy = {q: base[q] + (0.3 if i % 2 else -0.304) for i, q in enumerate(qs)}
    got = compare("ds", {"hybrid": _run("hybrid", base), "hybrid+embedding": _run("hybrid+embedding", noisy)})
    assert got == []
    # the same drop on every query: a finding, with its p-value in the message
    lower = {q: base[q] - 0.05 for q in qs}
    got = compare("ds", {"hybrid": _run("hybrid", base), "hybrid+embedding": _run("hybrid+embedding", lower)})
    assert len(got) == 1 and got[0].p_value is not None and got[0].p_value < 0.05
    assert "p = 0.0000" in got[0].message and "reranking with embedding lowers nDCG@10" in got[0].message
