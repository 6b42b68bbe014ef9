"""Thread counts for the libraries that share one OpenMP runtime (FAISS, PyTorch).

OpenMP's thread count is a per-thread setting: ``faiss.omp_set_num_threads(1)`` in a worker
thread also caps every PyTorch forward pass that thread runs later (a worker thread serves a
search, then an ingest). So each library's count is set where it runs: FAISS single-query
searches run with one thread and restore the previous count afterwards (:func:`single_threaded_faiss`),
and the embedding model and cross-encoders ask for every core the process may use
(:func:`torch_threads`) before each forward pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def single_threaded_faiss(faiss) -> Iterator[None]:
    """One query at a time: more OpenMP threads only add synchronisation cost (2 threads
    measured 5-7x slower than 1 on a 2-core machine for single queries)."""
    prev = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(prev)


def torch_threads(n: int | None = None) -> int:
    """Let PyTorch use ``n`` threads (default: every available core) in the calling thread."""
    import torch

    n = n or available_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
