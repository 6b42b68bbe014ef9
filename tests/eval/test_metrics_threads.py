"""Concurrent evaluate calls must not kill the server.

ranx computes metrics in numba kernels with ``parallel=True``; numba's default threading layer
aborts the process when two threads run such kernels at once, which is what two ``evaluate``
calls on the server do. Run in a subprocess: the failure is an abort, not an exception.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = r'''
import random, threading
from rerank_mcp.tools.evaluate import _metrics
rng = random.Random(1)
qrels = {f"q{i}": {f"d{i}": 1} for i in range(50)}
runs = {q: [f"d{j}" for j in rng.sample(range(60), 10)] for q in qrels}
_metrics(qrels, runs)
def work():
    for _ in range(100):
        _metrics(qrels, runs)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok")
'''


def test_metrics_from_several_threads_at_once():
    proc = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
