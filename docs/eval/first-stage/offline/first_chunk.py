"""The first chunk's weight: after the default z-score fusion of the arms (index/fusion.py), a
document's first chunk (the one holding its title and opening) gains ``bonus`` on its fused score;
documents then take their best chunk's rank, as in eval. Usage:
python first_chunk.py DATA_DIR COLLECTION DATASET_DIR"""

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
BONUSES = (0.0, 0.1, 0.25, 0.5, 1.0)
state = build_state(Settings(data_dir=Path(data_dir)), warm=False, cache_queries=True)
eng = state.engine
ds = load_beir(dspath)
info = eng.open_collection(coll)
rows: dict[int, tuple[str, bool]] = {}
runs: dict[float, dict[str, list[str]]] = {b: {} for b in BONUSES}
for qid, q in ds.queries.items():
    qv = eng.embedding.query(q, info)
    fused = fuse(eng.search_arms(coll, q, qv, 100, None, ("dense", "bm25")), "zscore")
    miss = [c for c, _ in fused if c not in rows]
    for cid, row in eng.fetch_chunks(coll, miss).items():
        rows[cid] = (row.doc_id, row.start == 0)
    for b in BONUSES:
        ranked = sorted(((c, s + (b if rows[c][1] else 0.0)) for c, s in fused if c in rows), key=lambda x: -x[1])
        docs: dict[str, None] = {}
        for c, _ in ranked:
            docs.setdefault(rows[c][0], None)
        runs[b][qid] = list(docs)[:100]
qs = sorted(ds.qrels)
per = {b: ranking_metrics(ds.qrels, runs[b], ("ndcg@10",))["ndcg@10"] for b in BONUSES}
base = [per[0.0].get(q, 0) for q in qs]
for b in BONUSES:
    x = [per[b].get(q, 0) for q in qs]
    print(f"{ds.name} first-chunk bonus {b}: {mean(x):.4f} delta {mean(x) - mean(base):+.4f} "
          f"p={paired_randomization_p(x, base):.3f}")
state.close()
