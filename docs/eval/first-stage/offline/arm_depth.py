"""Arm depth: each arm searched DEPTH chunks deep (the default is 100) before the z-score fusion
(index/fusion.py), whose statistics then come from DEPTH chunks (depth=None; search itself takes them
from each arm's first 100 whatever the depth, so that a larger k never reorders the first hits); documents take their best chunk's
rank among the first 100 fused chunks, as in eval. Usage:
python arm_depth.py DATA_DIR COLLECTION DATASET_DIR"""

import os
import sys
from pathlib import Path

os.environ.setdefault("RERANK_MCP_EMBEDDING_BACKEND", "onnx-mixed-l0")

from rerank_mcp.bench.beir import load_beir
from rerank_mcp.index.fusion import fuse
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import build_state
from rerank_mcp.tools.metrics import mean, paired_randomization_p, ranking_metrics

data_dir, coll, dspath = sys.argv[1:4]
DEPTHS = (100, 30, 50, 200, 400)
state = build_state(Settings(data_dir=Path(data_dir)), warm=False, cache_queries=True)
eng = state.engine
ds = load_beir(dspath)
info = eng.open_collection(coll)
doc_of = {cid: doc for cid, doc in eng.store._q("SELECT chunk_id, doc_id FROM chunks WHERE collection=?", (coll,))}
runs: dict[int, dict[str, list[str]]] = {d: {} for d in DEPTHS}
for qid, q in ds.queries.items():
    qv = eng.embedding.query(q, info)
    arms = eng.search_arms(coll, q, qv, max(DEPTHS), None, ("dense", "bm25"))
    for d in DEPTHS:
        out: dict[str, None] = {}
        for c, _ in fuse({a: r[:d] for a, r in arms.items()}, "zscore", depth=None)[:100]:
            out.setdefault(doc_of[c], None)
        runs[d][qid] = list(out)
qs = sorted(ds.qrels)
per = {d: ranking_metrics(ds.qrels, runs[d], ("ndcg@10",))["ndcg@10"] for d in DEPTHS}
base = [per[100].get(q, 0) for q in qs]
for d in DEPTHS:
    x = [per[d].get(q, 0) for q in qs]
    print(f"{ds.name} arm depth {d}: {mean(x):.4f} delta {mean(x) - mean(base):+.4f} p={paired_randomization_p(x, base):.3f}")
state.close()
