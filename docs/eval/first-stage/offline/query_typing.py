"""Query typing with sub-queries derived from the collection's own queries: the keyword sub-query is
the query's content words (English stopwords dropped), searched by the dense arm as well as the
question ('dense_kw'); BM25 needs no keyword sub-query, since the analyzer already drops stopwords.
Same z-score fusion (index/fusion.py), document aggregation (best chunk) and nDCG@10 as eval. Usage:
python query_typing.py DATA_DIR COLLECTION DATASET_DIR"""
import os
import re
import sys

os.environ.setdefault("RERANK_MCP_EMBEDDING_BACKEND", "onnx-mixed-l0")
from pathlib import Path

from rerank_mcp.bench.beir import load_beir
from rerank_mcp.index.fusion import fuse
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import build_state
from rerank_mcp.tools.metrics import mean, paired_randomization_p, ranking_metrics

data_dir, coll, dspath = sys.argv[1], sys.argv[2], sys.argv[3]
settings = Settings(data_dir=Path(data_dir))
state = build_state(settings, warm=False, cache_queries=True)
eng = state.engine
ds = load_beir(dspath)
info = eng.open_collection(coll)
an = eng.analyzer(info)
from stop_words import get_stop_words

STOP = set(get_stop_words("english"))

def content(q):
    ws = re.findall(r"\w+", q)
    kept = [w for w in ws if w.lower() not in STOP]
    return " ".join(kept) if kept else q

arms_cache = {}
def arms_for(qid):
    q = ds.queries[qid]
    kw = content(q)
    qv = eng.embedding.query(q, info)
    kv = eng.embedding.query(kw, info)
    a = eng.search_arms(info.name, q, qv, 100, None, ("dense", "bm25"))
    b = eng.search_arms(info.name, kw, kv, 100, None, ("dense",))
    return {"dense": a["dense"], "bm25": a["bm25"], "dense_kw": b["dense"]}

chunk_doc = {}
def docs(ranked, limit=100):
    ids = [c for c, _ in ranked[:100]]
    missing = [c for c in ids if c not in chunk_doc]
    if missing:
        for cid, row in eng.fetch_chunks(coll, missing).items():
            chunk_doc[cid] = row.doc_id
    out = {}
    for c in ids:
        if c in chunk_doc:
            out.setdefault(chunk_doc[c], None)
    return list(out)

variants = {
    "hybrid": lambda A: fuse({"dense": A["dense"], "bm25": A["bm25"]}, "zscore"),
    "dense_kw": lambda A: A["dense_kw"],
    "hybrid+dense_kw (0.5/0.5/1)": lambda A: fuse({"dense": A["dense"], "dense_kw": A["dense_kw"], "bm25": A["bm25"]}, "zscore", {"dense": .5, "dense_kw": .5, "bm25": 1}),
    "hybrid+dense_kw (1/0.5/1)": lambda A: fuse({"dense": A["dense"], "dense_kw": A["dense_kw"], "bm25": A["bm25"]}, "zscore", {"dense": 1, "dense_kw": .5, "bm25": 1}),
    "hybrid+dense_kw (1/1/1)": lambda A: fuse({"dense": A["dense"], "dense_kw": A["dense_kw"], "bm25": A["bm25"]}, "zscore"),
    "dense_kw+bm25": lambda A: fuse({"dense": A["dense_kw"], "bm25": A["bm25"]}, "zscore"),
}
runs = {v: {} for v in variants}
same = 0
for qid in ds.queries:
    A = arms_for(qid)
    same += content(ds.queries[qid]) == ds.queries[qid]
    for v, f in variants.items():
        runs[v][qid] = docs(f(A))
res = {}
for v in variants:
    per = ranking_metrics(ds.qrels, runs[v], ("ndcg@10",))["ndcg@10"]
    res[v] = per
qs = sorted(ds.qrels)
base = res["hybrid"]
print(f"{coll}: {len(qs)} queries, {same} with no stopword to drop")
for v in variants:
    p = paired_randomization_p([res[v].get(q, 0) for q in qs], [base.get(q, 0) for q in qs])
    print(f"{v:32s} {mean(res[v].get(q,0) for q in qs):.4f} p={p:.3f}")
state.close()
