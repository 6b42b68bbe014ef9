"""Fuse arms from several collections of the same dataset (different chunkings) at document level:
each arm collapsed to its documents' best chunk score, z-score fused (index/fusion.py), nDCG@10 by tools/metrics.
Compares with the chunk-level default hybrid of the first collection (eval's figure). Usage:
python multi_chunking.py DATA_DIR DATASET_DIR COLLECTION,COLLECTION[,...]"""
import os
import sys

os.environ.setdefault("RERANK_MCP_EMBEDDING_BACKEND", "onnx-mixed-l0")
from pathlib import Path

from rerank_mcp.bench.beir import load_beir
from rerank_mcp.index.fusion import fuse
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import build_state
from rerank_mcp.tools.metrics import mean, paired_randomization_p, ranking_metrics

data_dir, dspath = sys.argv[1], sys.argv[2]
colls = sys.argv[3].split(",")
state = build_state(Settings(data_dir=Path(data_dir)), warm=False, cache_queries=True)
eng = state.engine
ds = load_beir(dspath)
infos = {c: eng.open_collection(c) for c in colls}
c2d = {c: {} for c in colls}
def to_docs(c, ranked):
    miss = [i for i, _ in ranked if i not in c2d[c]]
    if miss:
        for cid, row in eng.fetch_chunks(c, miss).items():
            c2d[c][cid] = row.doc_id.rsplit("::", 1)[0]
    out = {}
    for i, s in ranked:
        d = c2d[c].get(i)
        if d is not None and d not in out:
            out[d] = s
    return list(out.items())
def chunk_docs(c, ranked):
    _ = to_docs(c, ranked)
    out = {}
    for i, _s in ranked:
        d = c2d[c].get(i)
        if d is not None:
            out.setdefault(d, None)
    return list(out)[:100]
A = {}
for qid, q in ds.queries.items():
    arms = {}
    for c in colls:
        qv = eng.embedding.query(q, infos[c])
        a = eng.search_arms(c, q, qv, 100, None, ("dense", "bm25"))
        arms[c] = a
    A[qid] = arms
a0 = colls[0]
V = {
    "default hybrid (chunk-level, first collection)": lambda ar: chunk_docs(a0, fuse(ar[a0], "zscore")),
    "doc-level hybrid, first collection": lambda ar: [d for d, _ in fuse({"d": to_docs(a0, ar[a0]["dense"]), "b": to_docs(a0, ar[a0]["bm25"])}, "zscore")][:100],
}
def _doc_hybrid(c):
    return lambda ar: [d for d, _ in fuse({"d": to_docs(c, ar[c]["dense"]), "b": to_docs(c, ar[c]["bm25"])},
                                          "zscore")][:100]


for name in colls[1:]:
    V[f"doc-level hybrid, {name}"] = _doc_hybrid(name)
V["doc-level, dense of all + bm25 of first (dense split evenly)"] = lambda ar: [d for d, _ in fuse(
    {**{f"d{c}": to_docs(c, ar[c]["dense"]) for c in colls}, "b": to_docs(a0, ar[a0]["bm25"])}, "zscore",
    {**{f"d{c}": 1 / len(colls) for c in colls}, "b": 1})][:100]
V["doc-level, all arms (each kind split evenly)"] = lambda ar: [d for d, _ in fuse(
    {**{f"d{c}": to_docs(c, ar[c]["dense"]) for c in colls}, **{f"b{c}": to_docs(c, ar[c]["bm25"]) for c in colls}}, "zscore",
    {**{f"d{c}": 1 / len(colls) for c in colls}, **{f"b{c}": 1 / len(colls) for c in colls}})][:100]
res = {}
for v, f in V.items():
    runs = {q: f(A[q]) for q in ds.queries}
    res[v] = ranking_metrics(ds.qrels, runs, ("ndcg@10",))["ndcg@10"]
qs = sorted(ds.qrels)
base = res["default hybrid (chunk-level, first collection)"]
for v in V:
    x = [res[v].get(q, 0) for q in qs]; y = [base.get(q, 0) for q in qs]
    print(f"{ds.name} {v}: {mean(x):.4f} delta {mean(x)-mean(y):+.4f} p={paired_randomization_p(x, y):.3f}")
state.close()
