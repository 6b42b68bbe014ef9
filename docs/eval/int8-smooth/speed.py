"""Speed of ONNX files on 512 SciFact chunks, as the embedder runs them (two single-threaded
sessions, length-sorted batches of 4): best wall time of interleaved rounds, and the CPU time the
session runs took (thread time, less disturbed by other work on a shared machine).

    python docs/eval/int8-smooth/speed.py ../shared/datasets ROUNDS NAME=FILE.onnx ...
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import proxy  # noqa: E402


def run_all(sess, texts):
    enc = proxy.TOK.ids(texts, special=True)
    batches = proxy.onnx_embed.plan_batches([len(e) for e in enc], 4, 2)

    def run(idx):
        t = time.thread_time()
        width = max(len(enc[i]) for i in idx)
        ids = np.zeros((len(idx), width), np.int64)
        mask = np.zeros((len(idx), width), np.int64)
        for r, i in enumerate(idx):
            ids[r, : len(enc[i])] = enc[i]
            mask[r, : len(enc[i])] = 1
        sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        return time.thread_time() - t

    with ThreadPoolExecutor(2) as pool:
        t = time.perf_counter()
        cpu = sum(pool.map(run, batches))
        return time.perf_counter() - t, cpu


def main() -> None:
    root, rounds = Path(sys.argv[1]), int(sys.argv[2])
    files = dict(a.split("=", 1) for a in sys.argv[3:])
    texts = proxy.texts_of(root, "scifact", slice(2000, 2300), 0)[0][:512]
    sessions = {n: proxy.session(Path(f)) for n, f in files.items()}
    wall = {n: [] for n in files}
    cpu = {n: [] for n in files}
    for s in sessions.values():
        run_all(s, texts[:64])
    for _ in range(rounds):
        for n, s in sessions.items():
            w, c = run_all(s, texts)
            wall[n].append(w)
            cpu[n].append(c)
    for n in files:
        print(f"{n:18s} best wall {len(texts) / min(wall[n]):6.1f} chunks/s   "
              f"CPU {len(texts) / np.median(cpu[n]):6.1f} chunks per CPU-second (median)", flush=True)


if __name__ == "__main__":
    main()
