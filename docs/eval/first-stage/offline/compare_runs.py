"""Paired randomization test (tools.metrics, 10,000 permutations, seeded) between two eval runs' per-query nDCG@10. Usage:
python compare_runs.py A/results.json B/results.json [PIPELINES]"""
import json
import sys

from rerank_mcp.tools.metrics import mean, paired_randomization_p

a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
pipes = sys.argv[3].split(",") if len(sys.argv) > 3 else ["bm25", "dense", "hybrid"]
bb = {d["dataset"]: d for d in b["datasets"]}
for d in a["datasets"]:
    o = bb.get(d["dataset"])
    if not o:
        continue
    for p in pipes:
        pa, pb = d["per_query_ndcg"].get(p), o["per_query_ndcg"].get(p)
        if pa is None or pb is None:
            continue
        qs = sorted(pb)
        x = [pa.get(q, 0) for q in qs]; y = [pb.get(q, 0) for q in qs]
        print(f"{d['dataset']:10s} {p:8s} {mean(x):.4f} vs {mean(y):.4f} delta {mean(x)-mean(y):+.4f} "
              f"p={paired_randomization_p(x, y):.3f} w/l {sum(u>v for u,v in zip(x,y))}/{sum(u<v for u,v in zip(x,y))} chunks {d['chunks']} vs {o['chunks']}")
