"""Proxy for the int8 embedding variants: cosine of each variant's vectors to fp32, and speed.

Not product code: a measurement script for docs/eval/int8-smooth/README.md. It writes the
default model's fp32 graph with ``index.bert_graph``, makes each quantised variant from it, embeds
chunks (the ingest chunker's default size) and queries of SciFact, Cranfield and NPL exactly as
``OnnxEmbedder`` does (length-sorted batches of 4, mean pooling, L2 norm) and prints, per variant,
the mean / 1st-percentile / min cosine to the fp32 graph's vectors, and chunks/s on 512 SciFact
chunks (two single-threaded sessions, a batch each, as the embedder runs them).

    python docs/eval/int8-smooth/proxy.py ../shared/datasets OUT_DIR [variant ...]
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rerank_mcp.index import bert_graph, onnx_embed
from rerank_mcp.index.chunking import CHUNK_OVERLAP, CHUNK_SIZE, chunk_text
from rerank_mcp.index.model_names import model_folder

MODEL = model_folder("sentence-transformers/all-MiniLM-L6-v2")
TOK = onnx_embed.WordPieces(MODEL, 256)


def texts_of(root: Path, name: str, docs: slice, queries: int) -> tuple[list[str], list[str]]:
    lines = (root / name / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[docs]
    chunks: list[str] = []
    count = lambda ts: [len(i) for i in TOK.ids(ts, special=False)]  # noqa: E731
    for line in lines:
        d = json.loads(line)
        text = "\n\n".join(t for t in (d.get("title"), d.get("text")) if t)
        chunks += [c.text for c in chunk_text(text, CHUNK_SIZE, CHUNK_OVERLAP, count)]
    qs = [json.loads(x)["text"] for x in (root / name / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    return chunks, qs[:queries]


def session(path: Path):
    return onnx_embed.ort_session(path, threads=1)


def encode(sess, texts: list[str], workers: int = 2, batch: int = 4) -> np.ndarray:
    enc = TOK.ids(texts, special=True)
    batches = onnx_embed.plan_batches([len(e) for e in enc], batch, workers)

    def run(idx):
        width = max(len(enc[i]) for i in idx)
        ids = np.zeros((len(idx), width), np.int64)
        mask = np.zeros((len(idx), width), np.int64)
        for r, i in enumerate(idx):
            ids[r, : len(enc[i])] = enc[i]
            mask[r, : len(enc[i])] = 1
        h = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[..., None].astype(np.float32)
        p = (h * m).sum(1) / m.sum(1)
        return p / np.linalg.norm(p, axis=1, keepdims=True)

    with ThreadPoolExecutor(workers) as pool:
        res = list(pool.map(run, batches))
    out = np.empty((len(texts), res[0].shape[1]), np.float32)
    for idx, r in zip(batches, res):
        out[idx] = r
    return out


def main() -> None:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    wanted = sys.argv[3:]
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "fp32.onnx"
    if not fp32.exists():
        bert_graph.write(MODEL, fp32)
    # evaluation texts: the first documents of each collection; calibration: later ones
    ev, cal = [], []
    for name, n_docs in (("scifact", 150), ("cranfield", 250), ("npl", 350)):
        c, q = texts_of(root, name, slice(0, n_docs), 100)
        per = int(os.environ.get("PROXY_TEXTS", "350"))
        ev += c[:per] + q[: per // 3]
        c2, q2 = texts_of(root, name, slice(1000, 1000 + n_docs // 2), 0)
        cal += c2[:120]
    speed_texts = texts_of(root, "scifact", slice(2000, 2300), 0)[0][:512]
    print(f"{len(ev)} evaluation texts, {len(cal)} calibration texts, {len(speed_texts)} speed chunks", flush=True)
    from importlib import import_module

    variants = import_module("variants")
    ref = encode(session(fp32), ev)
    sessions = {}
    for name in wanted:
        sess = sessions[name] = session(variants.build(name, fp32, out, cal, TOK))
        if os.environ.get("PROXY_COSINE", "1") == "1":
            cos = (encode(sess, ev) * ref).sum(1)
            print(f"{name:28s} mean {cos.mean():.5f}  p1 {np.percentile(cos, 1):.5f}  min {cos.min():.5f}", flush=True)
    if os.environ.get("PROXY_SPEED", "1") != "1":
        return
    # speed: the variants in turn, several rounds (the machine is shared), best round each
    query = _one(TOK.ids(["what causes lung cancer in non-smokers"], special=True)[0])
    best = {n: np.inf for n in sessions}
    lat = {n: np.inf for n in sessions}
    for sess in sessions.values():
        encode(sess, speed_texts[:64])
    for _ in range(int(os.environ.get("PROXY_ROUNDS", "3"))):
        for name, sess in sessions.items():
            best[name] = min(best[name], _timed(lambda s=sess: encode(s, speed_texts)))
            lat[name] = min([lat[name]] + [_timed(lambda s=sess: s.run(None, query)) for _ in range(10)])
    for name in sessions:
        print(f"{name:28s} {len(speed_texts) / best[name]:6.1f} chunks/s  query {lat[name] * 1000:.1f} ms", flush=True)


def _one(ids):
    a = np.array([ids], np.int64)
    return {"input_ids": a, "attention_mask": np.ones_like(a), "token_type_ids": np.zeros_like(a)}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
