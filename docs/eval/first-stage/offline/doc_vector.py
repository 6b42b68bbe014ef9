"""A document vector from its chunks: every candidate document of either arm (the default arms,
100 chunks each) is scored against the query with the normalised mean of its chunks' stored
vectors, and that document-level dense score joins the fusion. Arms are collapsed to documents
(best chunk), z-score fused (index/fusion.py), as 'document-level fusion' in the README. Usage:
python doc_vector.py DATA_DIR COLLECTION DATASET_DIR [DEPTH]  (chunks per arm, default 100)"""

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("RERANK_MCP_EMBEDDING_BACKEND", "onnx-mixed-l0")

from rerank_mcp.bench.beir import load_beir
from rerank_mcp.index.fusion import fuse
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import build_state
from rerank_mcp.tools.feedback import feedback_vector, rescore
from rerank_mcp.tools.metrics import mean, paired_randomization_p, ranking_metrics

data_dir, coll, dspath = sys.argv[1:4]
DEPTH = int(sys.argv[4]) if len(sys.argv) > 4 else 100
state = build_state(Settings(data_dir=Path(data_dir)), warm=False, cache_queries=True)
eng = state.engine
ds = load_beir(dspath)
info = eng.open_collection(coll)
doc_of: dict[int, str] = {}
vecs: dict[str, list[np.ndarray]] = {}
for cid, doc, vec in eng.store._q("SELECT chunk_id, doc_id, vec FROM chunks WHERE collection=?", (coll,)):
    doc_of[cid] = doc
    vecs.setdefault(doc, []).append(np.frombuffer(vec, dtype=np.float32))
centroid = {}
for doc, vs in vecs.items():
    m = np.mean(vs, axis=0)
    centroid[doc] = m / (np.linalg.norm(m) or 1.0)


def to_docs(ranked):
    out: dict[str, float] = {}
    for i, s in ranked:
        if i in doc_of and doc_of[i] not in out:
            out[doc_of[i]] = s
    return list(out.items())


V = {
    "document-level hybrid": {"dense": 1, "bm25": 1},
    "document vector in place of best chunk (dense arm)": {"centroid": 1, "bm25": 1},
    "dense 0.5 + document vector 0.5 + bm25 1": {"dense": 0.5, "centroid": 0.5, "bm25": 1},
    "dense 1 + document vector 0.5 + bm25 1": {"dense": 1, "centroid": 0.5, "bm25": 1},
    "dense 1 + document vector 1 + bm25 1": {"dense": 1, "centroid": 1, "bm25": 1},
    "with feedback: dense 0.5 + document vector 0.5 + bm25 1": {"fdense": 0.5, "fcentroid": 0.5, "bm25": 1},
}
runs: dict[str, dict[str, list[str]]] = {v: {} for v in V}
chunk_level: dict[str, list[str]] = {}
for qid, q in ds.queries.items():
    qv = eng.embedding.query(q, info)
    arms = eng.search_arms(coll, q, qv, DEPTH, None, ("dense", "bm25"))
    d = {"dense": to_docs(arms["dense"]), "bm25": to_docs(arms["bm25"])}
    cands = list(dict.fromkeys([x for x, _ in d["dense"]] + [x for x, _ in d["bm25"]]))
    sc = np.stack([centroid[x] for x in cands]) @ np.asarray(qv, dtype=np.float32).ravel()
    d["centroid"] = sorted(zip(cands, sc.tolist()), key=lambda t: -t[1])[:100]
    # search's feedback (tools/feedback.py): the query vector moved toward the fused top 5 chunks,
    # every candidate chunk scored again; the document vectors scored with the moved vector too
    cv = eng.chunk_vectors(coll, list(dict.fromkeys(c for r in arms.values() for c, _ in r)))
    nv = feedback_vector(qv, fuse(arms, "zscore", depth=None), cv)
    nv = np.asarray(qv if nv is None else nv, dtype=np.float32).ravel()
    d["fdense"] = to_docs(rescore(nv, cv, DEPTH))
    d["fcentroid"] = sorted(zip(cands, (np.stack([centroid[x] for x in cands]) @ nv).tolist()),
                            key=lambda t: -t[1])[:100]
    for v, w in V.items():
        runs[v][qid] = [x for x, _ in fuse({a: d[a] for a in w}, "zscore", w, depth=None)][:100]
    out: dict[str, None] = {}
    for i, _ in fuse({a: r[:100] for a, r in arms.items()}, "zscore")[:100]:
        out.setdefault(doc_of[i], None)
    chunk_level[qid] = list(out)[:100]
qs = sorted(ds.qrels)
base = ranking_metrics(ds.qrels, chunk_level, ("ndcg@10",))["ndcg@10"]
b = [base.get(q, 0) for q in qs]
print(f"{ds.name} default hybrid: {mean(b):.4f}")
for v in V:
    per = ranking_metrics(ds.qrels, runs[v], ("ndcg@10",))["ndcg@10"]
    x = [per.get(q, 0) for q in qs]
    print(f"{ds.name} {v}: {mean(x):.4f} delta {mean(x) - mean(b):+.4f} p={paired_randomization_p(x, b):.3f}")
state.close()
