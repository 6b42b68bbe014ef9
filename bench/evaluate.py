"""Evaluation on BEIR-format datasets: ingest, every pipeline's metrics, paired significance.

The pipelines run through :func:`rerank_mcp.tools.evaluate.run_pipeline`, the code behind the
server's ``evaluate`` tool (the same search path, the same metrics); this module adds what only
``rerank-mcp eval`` needs: ingesting a dataset (:mod:`.beir`), paired tests between pipelines
(ranx ``compare``, in the ``eval`` extra), the report models and quality floors.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from rerank_mcp.bench.beir import BeirDataset
from rerank_mcp.bench.extra import require
from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.contract import Progress
from rerank_mcp.tools.evaluate import (
    DEFAULT_CANDIDATES,
    DEFAULT_K,
    Finding,
    PipelineMetrics,
    PipelineRun,
    compare,
    run_pipeline,
    with_baselines,
)
from rerank_mcp.tools.metrics import paired_randomization_p
from rerank_mcp.tools.schema import Frozen

INGEST_BATCH = 1000

# ranx computes in numba kernels with parallel=True; numba's default threading layer aborts the
# whole process when two threads enter such a kernel at once, so one thread at a time runs them.
_RANX_LOCK = threading.Lock()


# --------------------------------------------------------------------------- report models
class Significance(Frozen):
    """A paired test of two pipelines' per-query nDCG@10 on one dataset (ranx ``compare``)."""

    a: str
    b: str
    a_ndcg_at_10: float
    b_ndcg_at_10: float
    delta: float = Field(description="a - b")
    p_value: float
    test: str = Field(description="'student' (paired t-test) or 'fisher' (randomization test)")
    significant: bool = Field(description="p < 0.05")
    wins: int = Field(description="queries where a's nDCG@10 is higher")
    losses: int


class DatasetReport(Frozen):
    dataset: str
    path: str | None = None
    split: str | None = None
    collection: str
    documents: int
    skipped_empty_documents: int = 0
    queries: int
    judgments: int
    chunks: int
    chunk_size: int | None = None
    chunk_overlap: int | None = None
    ingest_s: float | None = None
    pipelines: list[PipelineMetrics]
    per_query_ndcg: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="nDCG@10 of every pipeline on every query: {pipeline: {query id: score}}")
    significance: list[Significance] = Field(default_factory=list, description="paired tests between pipelines")


class EvalReport(Frozen):
    command: str | None = None
    embedding_model: str
    datasets: list[DatasetReport]
    findings: list[Finding]
    floors: dict[str, float] = Field(default_factory=dict)
    floor_failures: list[str] = Field(default_factory=list)
    environment: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------- running
def ingest_dataset(engine: Any, collection: str, ds: BeirDataset, chunk_size: int, chunk_overlap: int,
                   progress: Progress | None = None, batch: int = INGEST_BATCH) -> int:
    """Ingest the dataset's documents (upsert by id); returns the number of chunks written."""
    from rerank_mcp.tools.ingest import IngestLimits, ingest

    items = list(ds.documents.items())
    total = len(items)
    written = 0
    for b in range(0, total, batch):
        part = [{"id": d, "text": t} for d, t in items[b : b + batch]]

        def sub(done: float, of: float, _msg: str, b: int = b, n: int = len(part)) -> None:
            if progress:  # the ingest's own scale is the share of its part done
                progress(b + n * done / of, total, f"{ds.name}: ingesting documents")

        res = ingest(engine, collection, part, chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                     limits=IngestLimits(max_documents=max(batch, 1)), progress=sub)
        written += res.chunks_written
        if progress:
            progress(min(b + batch, total), total, f"{ds.name}: ingesting documents")
    return written


SIGNIFICANCE_P = 0.05
STAT_TESTS = ("student", "fisher")


def paired_significance(qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, PipelineRun],
                        stat_test: str = "fisher") -> list[Significance]:
    """Every pair of pipelines compared on per-query nDCG@10: Fisher's paired randomization test
    (``fisher``: :func:`tools.metrics.paired_randomization_p`, 10,000 permutations, seeded and
    single-threaded, so identical per-query scores give identical p-values) or ranx's paired
    t-test (``student``); wins and losses from ranx's ``compare``."""
    require("ranx")
    from ranx import Qrels, Run
    from ranx import compare as ranx_compare

    if stat_test not in STAT_TESTS:
        raise InvalidInput(f"unknown statistical test {stat_test!r}; use {' or '.join(STAT_TESTS)}")
    names = list(runs)
    if len(names) < 2:
        return []
    qr = Qrels({q: {d: int(g) for d, g in rel.items()} for q, rel in qrels.items()})
    ranx_runs = []
    for n in names:
        rd = {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in runs[n].rankings.items() if docs}
        if not rd:  # ranx needs at least one ranked query per run
            rd = {next(iter(qrels)): {"\x00none": 0.0}}
        r = Run(rd, name=n)
        ranx_runs.append(r)
    with _RANX_LOCK:
        rep = ranx_compare(qr, ranx_runs, ["ndcg@10"], stat_test=stat_test, max_p=SIGNIFICANCE_P,
                           n_permutations=1, make_comparable=True)
    out = []
    qs = sorted(qrels)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if stat_test == "fisher":  # seeded, single-threaded (ranx's runs in parallel threads, unseeded)
                pa, pb = runs[a].per_query_ndcg, runs[b].per_query_ndcg
                p = paired_randomization_p([pa.get(q, 0.0) for q in qs], [pb.get(q, 0.0) for q in qs])
            else:
                p = float(rep.comparisons[frozenset((a, b))]["ndcg@10"]["p_value"])
            wtl = rep.win_tie_loss[(a, b)]["ndcg@10"]
            sa, sb = float(rep.results[a]["ndcg@10"]), float(rep.results[b]["ndcg@10"])
            out.append(Significance(a=a, b=b, a_ndcg_at_10=round(sa, 4), b_ndcg_at_10=round(sb, 4),
                                    delta=round(sa - sb, 4), p_value=round(p, 6) if math.isfinite(p) else 1.0,
                                    test=stat_test, significant=bool(p < SIGNIFICANCE_P), wins=int(wtl["W"]),
                                    losses=int(wtl["L"])))
    return out


def evaluate_dataset(
    engine: Any,
    registry: Any,
    ds: BeirDataset,
    collection: str,
    pipelines: Sequence[str],
    *,
    chunk_size: int,
    chunk_overlap: int,
    k: int = DEFAULT_K,
    candidates: int = DEFAULT_CANDIDATES,
    limits: Any = None,
    progress: Progress | None = None,
    stat_test: str = "fisher",
    shuffle_candidates: int | None = None,
) -> tuple[DatasetReport, list[Finding]]:
    """Ingest a BEIR dataset into ``collection`` (upsert) and evaluate the pipelines on it;
    the report keeps every query's nDCG@10 and paired tests between every two pipelines."""
    t0 = time.perf_counter()
    ingest_dataset(engine, collection, ds, chunk_size, chunk_overlap, progress)
    ingest_s = time.perf_counter() - t0
    all_names = with_baselines(pipelines)
    runs: dict[str, PipelineRun] = {}
    for n, name in enumerate(all_names):
        runs[name] = run_pipeline(engine, registry, collection, ds.queries, ds.qrels, name, k=k,
                                  candidates=candidates, limits=limits, progress=progress,
                                  label=f"{ds.name} [{n + 1}/{len(all_names)}] ",
                                  shuffle_candidates=shuffle_candidates)
    report = DatasetReport(
        dataset=ds.name, path=ds.path, split=ds.split, collection=collection, documents=len(ds.documents),
        skipped_empty_documents=ds.skipped_empty, queries=len(ds.queries), judgments=ds.judgments,
        chunks=engine.count_chunks(collection), chunk_size=chunk_size, chunk_overlap=chunk_overlap,
        ingest_s=round(ingest_s, 2), pipelines=[runs[n].metrics for n in all_names],
        per_query_ndcg={n: {q: round(v, 4) for q, v in runs[n].per_query_ndcg.items()} for n in all_names},
        significance=paired_significance(ds.qrels, runs, stat_test),
    )
    return report, compare(ds.name, runs)


def check_floors(datasets: Sequence[DatasetReport], floors: Mapping[str, float]) -> list[str]:
    """Messages for every (dataset, pipeline) whose nDCG@10 is below its floor."""
    out = []
    for ds in datasets:
        by = {p.pipeline: p for p in ds.pipelines}
        for name, floor in floors.items():
            m = by.get(name)
            if m is None:
                out.append(f"{ds.dataset}: pipeline {name} was not evaluated (floor {floor})")
            elif m.ndcg_at_10 < floor:
                out.append(f"{ds.dataset}: {name} nDCG@10 {m.ndcg_at_10:.4f} is below the floor {floor:.4f}")
    return out
