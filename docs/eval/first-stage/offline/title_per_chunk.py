"""Emulate 'title prepended to every chunk': pre-chunk each document with the project's chunker
(model tokenizer, SIZE/OVERLAP), then ingest every chunk as its own document 'doc::i' whose text is
title + blank line + chunk (the first chunk already starts with the title). Score bm25/dense/hybrid
with eval's fusion, doc aggregation (best chunk) and metrics; compare per query with a base results.json. Usage:
python title_per_chunk.py DATA_DIR DATASET_DIR NEW_COLLECTION BASE_RESULTS_JSON SIZE OVERLAP"""
import json
import os
import sys

os.environ.setdefault("RERANK_MCP_EMBEDDING_BACKEND", "onnx-mixed-l0")
from pathlib import Path

from rerank_mcp.bench.beir import BeirDataset, load_beir, read_corpus
from rerank_mcp.bench.evaluate import ingest_dataset
from rerank_mcp.index.chunking import chunk_document
from rerank_mcp.index.fusion import fuse
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import build_state
from rerank_mcp.tools.metrics import mean, paired_randomization_p, ranking_metrics

data_dir, dspath, coll, base_json, size, overlap = sys.argv[1:7]
size, overlap = int(size), int(overlap)
settings = Settings(data_dir=Path(data_dir))
state = build_state(settings, warm=False, cache_queries=True)
eng = state.engine
ds = load_beir(dspath)
titles = {d.id: d.title.strip() for d in read_corpus(dspath)}
if eng.collection_info(coll) is None:
    docs = {}
    for did, body in ds.documents.items():
        chunks = chunk_document(body, size, overlap, eng.embedding.count_tokens)
        t = titles.get(did, "")
        for i, c in enumerate(chunks):
            txt = c.text if (i == 0 or not t or c.text.startswith(t)) else f"{t}\n\n{c.text}"
            docs[f"{did}::{i}"] = txt
    pseudo = BeirDataset(ds.name, ds.path, ds.split, docs, ds.queries, ds.qrels)
    n = ingest_dataset(eng, coll, pseudo, 1000, 0)
    print("ingested", len(docs), "pseudo documents ->", n, "chunks", flush=True)
info = eng.open_collection(coll)
chunk_doc = {}
def docs_of(ranked):
    ids = [c for c, _ in ranked[:100]]
    miss = [c for c in ids if c not in chunk_doc]
    if miss:
        for cid, row in eng.fetch_chunks(coll, miss).items():
            chunk_doc[cid] = row.doc_id.rsplit("::", 1)[0]
    out = {}
    for c in ids:
        if c in chunk_doc:
            out.setdefault(chunk_doc[c], None)
    return list(out)
runs = {"bm25": {}, "dense": {}, "hybrid": {}}
for qid, q in ds.queries.items():
    qv = eng.embedding.query(q, info)
    A = eng.search_arms(info.name, q, qv, 100, None, ("dense", "bm25"))
    runs["bm25"][qid] = docs_of(A["bm25"])
    runs["dense"][qid] = docs_of(A["dense"])
    runs["hybrid"][qid] = docs_of(fuse(A, "zscore"))
base = json.load(open(base_json))
bds = [d for d in base["datasets"] if d["dataset"] == ds.name][0]["per_query_ndcg"]
qs = sorted(ds.qrels)
out = {}
for v in runs:
    per = ranking_metrics(ds.qrels, runs[v], ("ndcg@10",))["ndcg@10"]
    out[v] = per
    a = [per.get(q, 0) for q in qs]; b = [bds[v].get(q, 0) for q in qs]
    print(f"{ds.name} title-per-chunk {v}: {mean(a):.4f} vs base {mean(b):.4f} delta {mean(a)-mean(b):+.4f} p={paired_randomization_p(a, b):.3f} wins/losses {sum(x>y for x,y in zip(a,b))}/{sum(x<y for x,y in zip(a,b))}")
state.close()
