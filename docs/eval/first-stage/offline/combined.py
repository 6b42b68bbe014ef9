"""Combinations of the earlier rounds' best variants, and per-query arm weights, on the arms dump_arms.py
wrote. Baseline: the default hybrid (both arms 100 chunks deep, chunk-level z-score fusion, a document takes its
best chunk's rank), which reproduces eval's figures. Variants:
- document level: each arm collapsed to its documents (best chunk) before the z-score fusion, arms 100 or 200 deep;
- a document vector (normalised mean of the document's stored chunk vectors) as a third arm;
- search's `feedback` (tools/feedback.py): the query vector moved toward the fused top 5 chunks, every candidate
  chunk scored again with it (and the document vectors too);
- per-query weights from each arm's own score distribution (a query-performance predictor): the arm's top-1
  z-score, its top-5 mean z-score, or its top-1 to top-10 gap over its standard deviation, to the power gamma,
  the two weights scaled to sum to 2.
p: Fisher's paired randomization test (tools.metrics, 10,000 permutations) against the baseline.
Usage: python combined.py DUMP.pkl [DUMP.pkl ...]
       python combined.py --bm25 K1,B DUMP.pkl=DATASET_DIR [...]
The second form replaces every query's BM25 arm by tantivy's top 100 chunks (the dump's arm) rescored with BM25 at
(K1, B), as bm25_params.py's `--within 100` computes them, and measures the default fusion and the variants that
use arms 100 deep with it, all against the default hybrid."""

import pickle
import sys

import numpy as np

from rerank_mcp.index.fusion import fuse
from rerank_mcp.tools.feedback import feedback_vector, rescore
from rerank_mcp.tools.metrics import mean, paired_randomization_p, ranking_metrics


def load(path):
    with open(path, "rb") as f:
        d = pickle.load(f)
    chunks: dict[str, list[np.ndarray]] = {}
    for cid, doc in d["doc_of"].items():
        chunks.setdefault(doc, []).append(d["vec_of"][cid])
    d["doc_vec"] = {}
    for doc, vs in chunks.items():
        m = np.mean(vs, axis=0)
        d["doc_vec"][doc] = m / (np.linalg.norm(m) or 1.0)
    return d


def to_docs(doc_of, ranked):
    out: dict[str, float] = {}
    for cid, s in ranked:
        out.setdefault(doc_of[cid], s)
    return list(out.items())


def chunk_runs(d, weights_of=None, depth=100):
    runs = {}
    for qid, (_q, _qv, dense, bm25) in d["queries"].items():
        arms = {"dense": dense[:depth], "bm25": bm25[:depth]}
        out: dict[str, None] = {}
        for cid, _ in fuse(arms, "zscore", weights_of(arms) if weights_of else None, depth=None)[:200]:
            out.setdefault(d["doc_of"][cid], None)
        runs[qid] = list(out)[:100]
    return runs


def doc_runs(d, depth=100, dense_w=1.0, doc_vec_w=0.0, feedback=False):
    runs = {}
    for qid, (_q, qv, dense, bm25) in d["queries"].items():
        dense, bm25 = dense[:depth], bm25[:depth]
        vq = qv
        if feedback:
            cv = {c: d["vec_of"][c] for c in dict.fromkeys([c for c, _ in dense] + [c for c, _ in bm25])}
            moved = feedback_vector(qv, fuse({"dense": dense, "bm25": bm25}, "zscore", depth=None), cv)
            if moved is not None:
                vq, dense = moved, rescore(moved, cv, depth)
        arms = {"dense": to_docs(d["doc_of"], dense), "bm25": to_docs(d["doc_of"], bm25)}
        weights = {"dense": dense_w, "bm25": 1.0}
        if doc_vec_w:
            docs = list(dict.fromkeys([x for x, _ in arms["dense"]] + [x for x, _ in arms["bm25"]]))
            scores = np.stack([d["doc_vec"][x] for x in docs]) @ vq
            arms["doc_vec"] = sorted(zip(docs, scores.tolist()), key=lambda t: -t[1])[:depth]
            weights["doc_vec"] = doc_vec_w
        runs[qid] = [x for x, _ in fuse(arms, "zscore", weights, depth=None)][:100]
    return runs


def predictor(kind, gamma):
    def strength(ranked):
        s = np.array([x for _, x in ranked])
        sd = s.std()
        if len(s) < 2 or sd == 0:
            return 1e-3
        if kind == "top1":
            v = (s[0] - s.mean()) / sd
        elif kind == "top5":
            v = (s[:5].mean() - s.mean()) / sd
        else:  # gap
            v = (s[0] - s[min(9, len(s) - 1)]) / sd
        return max(float(v), 1e-3) ** gamma

    def weights_of(arms):
        w = {a: strength(r) for a, r in arms.items()}
        total = sum(w.values())
        return {a: 2 * v / total for a, v in w.items()}
    return weights_of


VARIANTS = {
    "document level, arms 100": lambda d: doc_runs(d),
    "document level, arms 200": lambda d: doc_runs(d, 200),
    "document level, dense 0.5 + document vector 0.5": lambda d: doc_runs(d, dense_w=0.5, doc_vec_w=0.5),
    "document level, arms 200, dense 0.5 + document vector 0.5": lambda d: doc_runs(d, 200, 0.5, 0.5),
    "document level, feedback": lambda d: doc_runs(d, feedback=True),
    "document level, arms 200, feedback": lambda d: doc_runs(d, 200, feedback=True),
    "document level, dense 0.5 + document vector 0.5, feedback": lambda d: doc_runs(d, 100, 0.5, 0.5, True),
    "document level, arms 200, dense 0.5 + document vector 0.5, feedback": lambda d: doc_runs(d, 200, 0.5, 0.5, True),
    **{f"per-query weights: {k}, gamma {g}": (lambda d, k=k, g=g: chunk_runs(d, predictor(k, g)))
       for k in ("top1", "top5", "gap") for g in (0.5, 1.0, 2.0)},
}


def per_query(d, runs):
    ndcg = ranking_metrics(d["qrels"], runs, ("ndcg@10",))["ndcg@10"]
    return [ndcg.get(q, 0.0) for q in sorted(d["qrels"])]


def rescored_bm25(d, dataset_dir, k1, b):
    """The dump's BM25 arms replaced by tantivy's top 100 rescored at (k1, b) (bm25_params.Corpus)."""
    from bm25_params import Corpus

    c = Corpus(dataset_dir)
    cid_of = {(doc, d["ord_of"][cid]): cid for cid, doc in d["doc_of"].items()}
    rows = [cid_of[key] for key in c.keys]  # raises if the index's chunks are not the script's
    queries = dict(d["queries"])
    for qid, arm in zip(c.qids, c.arms(k1, b, within=100)):
        q, qv, dense, _ = queries[qid]
        queries[qid] = (q, qv, dense, [(rows[r], s) for r, s in arm])
    return {**d, "queries": queries}


STACKED = {
    "chunk level (the default fusion)": lambda d: chunk_runs(d),
    "feedback": lambda d: chunk_runs_feedback(d),
    "document level, dense 0.5 + document vector 0.5": lambda d: doc_runs(d, dense_w=0.5, doc_vec_w=0.5),
    "document level, dense 0.5 + document vector 0.5, feedback": lambda d: doc_runs(d, 100, 0.5, 0.5, True),
}


def chunk_runs_feedback(d, depth=100):
    """search's hybrid(feedback): the dense arm scored again with the moved vector, chunk-level fusion."""
    runs = {}
    for qid, (_q, qv, dense, bm25) in d["queries"].items():
        dense, bm25 = dense[:depth], bm25[:depth]
        cv = {c: d["vec_of"][c] for c in dict.fromkeys([c for c, _ in dense] + [c for c, _ in bm25])}
        moved = feedback_vector(qv, fuse({"dense": dense, "bm25": bm25}, "zscore", depth=None), cv)
        if moved is not None:
            dense = rescore(moved, cv, depth)
        out: dict[str, None] = {}
        for cid, _ in fuse({"dense": dense, "bm25": bm25}, "zscore", depth=None)[:200]:
            out.setdefault(d["doc_of"][cid], None)
        runs[qid] = list(out)[:100]
    return runs


if __name__ == "__main__":
    args = sys.argv[1:]
    bm25 = None
    if args[:1] == ["--bm25"]:
        bm25, args = tuple(float(v) for v in args[1].split(",")), args[2:]
    for arg in args:
        path, _, dataset_dir = arg.partition("=")
        d = load(path)
        base = per_query(d, chunk_runs(d))
        print(f"{d['name']} default hybrid: {mean(base):.4f}", flush=True)
        variants = VARIANTS
        if bm25 is not None:
            d = rescored_bm25(d, dataset_dir, *bm25)
            variants = {f"BM25 at k1 {bm25[0]}, b {bm25[1]} (rescored), {k}": v for k, v in STACKED.items()}
        for name, make in variants.items():
            x = per_query(d, make(d))
            print(f"{d['name']} {name}: {mean(x):.4f} ({mean(x) - mean(base):+.4f}) "
                  f"p={paired_randomization_p(x, base):.3f}", flush=True)
