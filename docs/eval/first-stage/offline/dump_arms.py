"""Dump what every query's first stage sees, for the offline combinations (combined.py): both arms 400 chunks
deep (dense, BM25), the query vector, and every chunk's document, ordinal and stored vector. Usage:
python dump_arms.py DATA_DIR COLLECTION DATASET_DIR OUT.pkl
(with the embedding backend and ONNX cache the collection was built with, e.g.
RERANK_MCP_EMBEDDING_BACKEND=onnx-mixed-l0 RERANK_MCP_ONNX_CACHE_DIR=DATA_DIR/onnx)"""

import os
import pickle
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("RERANK_MCP_EMBEDDING_BACKEND", "onnx-mixed-l0")

from rerank_mcp.bench.beir import load_beir
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import build_state

DEPTH = 400
data_dir, coll, dspath, out = sys.argv[1:5]
state = build_state(Settings(data_dir=Path(data_dir)), warm=False, cache_queries=True)
eng = state.engine
ds = load_beir(dspath)
info = eng.open_collection(coll)
doc_of, vec_of, ord_of = {}, {}, {}
for cid, doc, o, vec in eng.store._q("SELECT chunk_id, doc_id, ord, vec FROM chunks WHERE collection=?", (coll,)):
    doc_of[cid], ord_of[cid] = doc, o
    vec_of[cid] = np.frombuffer(vec, dtype=np.float32).copy()
queries = {}
for qid, q in ds.queries.items():
    qv = np.asarray(eng.embedding.query(q, info), dtype=np.float32).ravel()
    arms = eng.search_arms(coll, q, qv, DEPTH, None, ("dense", "bm25"))
    queries[qid] = (q, qv, arms["dense"], arms["bm25"])
with open(out, "wb") as f:
    pickle.dump(dict(name=ds.name, qrels=ds.qrels, doc_of=doc_of, vec_of=vec_of, ord_of=ord_of, queries=queries), f)
state.close()
print("dumped", ds.name, len(queries), "queries")
