"""The title on one side only: arms taken from two collections of one dataset whose chunks
correspond one to one, the default collection (DEFAULT, title in the first chunk only) and the one
title_per_chunk.py builds (TITLED, document 'doc::i' = title + chunk i). Variants: BM25 from TITLED
and dense from DEFAULT, and the reverse; z-score fusion (index/fusion.py) over DEFAULT's chunk ids,
documents take their best chunk's rank, as in eval. Usage:
python title_arms.py DATA_DIR DEFAULT TITLED DATASET_DIR"""

import os
import sys
from pathlib import Path

os.environ.setdefault("RERANK_MCP_EMBEDDING_BACKEND", "onnx-mixed-l0")

from rerank_mcp.bench.beir import load_beir
from rerank_mcp.index.fusion import fuse
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import build_state
from rerank_mcp.tools.metrics import mean, paired_randomization_p, ranking_metrics

data_dir, default, titled, dspath = sys.argv[1:5]
state = build_state(Settings(data_dir=Path(data_dir)), warm=False, cache_queries=True)
eng = state.engine
ds = load_beir(dspath)
infos = {c: eng.open_collection(c) for c in (default, titled)}
# chunk id -> (document, ordinal) in both collections; (document, ordinal) -> DEFAULT's chunk id
key: dict[str, dict[int, tuple[str, int]]] = {
    default: {cid: (doc, o) for cid, doc, o in eng.store._q(
        "SELECT chunk_id, doc_id, ord FROM chunks WHERE collection=?", (default,))},
    titled: {cid: (doc.rpartition("::")[0], int(doc.rpartition("::")[2])) for cid, doc in eng.store._q(
        "SELECT chunk_id, doc_id FROM chunks WHERE collection=?", (titled,))},
}
by_key = {k: cid for cid, k in key[default].items()}


def mapped(c: str, ranked: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """An arm's (chunk id, score) in DEFAULT's chunk ids."""
    if c == default:
        return list(ranked)
    return [(by_key[key[c][i]], s) for i, s in ranked]


def docs(ranked: list[tuple[int, float]]) -> list[str]:
    out: dict[str, None] = {}
    for i, _ in ranked:
        out.setdefault(key[default][i][0], None)
    return list(out)[:100]


V = ("default hybrid", "bm25 titled + dense default", "bm25 default + dense titled")
runs: dict[str, dict[str, list[str]]] = {v: {} for v in V}
for qid, q in ds.queries.items():
    arms = {}
    for c in (default, titled):
        qv = eng.embedding.query(q, infos[c])
        arms[c] = eng.search_arms(c, q, qv, 100, None, ("dense", "bm25"))
    runs[V[0]][qid] = docs(fuse(arms[default], "zscore"))
    runs[V[1]][qid] = docs(fuse({"dense": arms[default]["dense"], "bm25": mapped(titled, arms[titled]["bm25"])},
                                "zscore"))
    runs[V[2]][qid] = docs(fuse({"dense": mapped(titled, arms[titled]["dense"]), "bm25": arms[default]["bm25"]},
                                "zscore"))
qs = sorted(ds.qrels)
per = {v: ranking_metrics(ds.qrels, runs[v], ("ndcg@10",))["ndcg@10"] for v in V}
base = [per[V[0]].get(q, 0) for q in qs]
for v in V:
    x = [per[v].get(q, 0) for q in qs]
    print(f"{ds.name} {v}: {mean(x):.4f} delta {mean(x) - mean(base):+.4f} p={paired_randomization_p(x, base):.3f}")
state.close()
