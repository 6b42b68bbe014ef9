"""Dynamic batching of concurrent rerank requests, one small queue per reranker instance.

Requests for the same reranker (same family and options) that arrive while it is busy, or
within ``wait_s`` of each other, are scored together: one worker thread, one call of the
reranker's ``score_many``, for the families that can mix queries in one model call (their
``scores_together``: flashrank, cross-encoder, whose pairs then share length-sorted, padded
model batches). The others (bm25, embedding, cascade) gain nothing from being gathered (run back to
back, they only lost the overlap of one request's HTTP work with the next one's scoring: bm25
lost ~30% of its throughput at 8 clients), so they are scored one request at a time, as with
batching off. Different rerankers never wait for each other.

Mechanism: each request appends its job to the queue and takes the queue's lock (anyio's
lock is FIFO). The holder of the lock, if its own job is still pending, waits ``wait_s`` for
company, takes its own job plus the oldest pending ones up to ``max_pairs`` (query, passage)
pairs, and scores them in one worker thread; a request whose job was scored by an earlier
holder finds it done and returns at once. With batching off every request is scored alone,
still one at a time per reranker (a model is never called from two threads at once).

The event loop never runs model code: scoring runs in ``anyio.to_thread``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from rerank_mcp.tools.rerank.base import Reranker, Scored

log = logging.getLogger(__name__)


@dataclass
class BatchStats:
    """Counters of one batcher: requests scored, and the model calls they took."""

    requests: int = 0
    batches: int = 0


@dataclass(eq=False)
class _Job:
    query: str
    texts: list[str]
    ordered: bool = False  # the texts arrive ranked (blend may use their order)
    scored: Scored | None = None
    error: BaseException | None = None
    done: bool = False
    batch_size: int = 0  # requests scored together with this one (itself included)
    pairs: int = field(init=False)

    def __post_init__(self) -> None:
        self.pairs = len(self.texts)


class RerankBatcher:
    """The queue of one reranker instance. ``await score(query, texts)`` -> :class:`Scored`."""

    def __init__(self, reranker: Reranker, *, enabled: bool = True, wait_s: float = 0.002,
                 max_pairs: int = 1024) -> None:
        self.reranker = reranker
        # gather only for rerankers that score several requests in one model call
        self.enabled = enabled and bool(getattr(reranker, "scores_together", False))
        self.wait_s = max(0.0, float(wait_s))
        self.max_pairs = max(1, int(max_pairs))
        self.stats = BatchStats()
        self._pending: list[_Job] = []
        self._lock = anyio.Lock()

    async def score(self, query: str, texts: Sequence[str], ordered: bool = False) -> Scored:
        return (await self.score_job(query, texts, ordered)).scored  # type: ignore[return-value]

    async def score_job(self, query: str, texts: Sequence[str], ordered: bool = False) -> _Job:
        """Like :meth:`score`, returning the finished job (its ``scored`` and ``batch_size``)."""
        job = _Job(query, list(texts), ordered)
        self._pending.append(job)
        idle = not self._lock.locked()
        try:
            async with self._lock:
                if not job.done:
                    # An idle reranker waits wait_s for company; a busy one has gathered a queue already.
                    if self.enabled and idle and self.wait_s > 0 and self._pending_pairs() < self.max_pairs:
                        await anyio.sleep(self.wait_s)  # let concurrent requests join this batch
                    batch = self._take(job)
                    await anyio.to_thread.run_sync(self._run, batch)
        finally:
            if not job.done and job in self._pending:  # cancelled before it was scored
                self._pending.remove(job)
        if job.error is not None:
            raise job.error
        assert job.scored is not None
        return job

    def _pending_pairs(self) -> int:
        return sum(j.pairs for j in self._pending)

    def _take(self, own: _Job) -> list[_Job]:
        """``own`` first, then the oldest pending jobs while they fit in ``max_pairs``."""
        batch = [own]
        self._pending.remove(own)
        if not self.enabled:
            return batch
        budget = self.max_pairs - own.pairs
        rest = []
        for j in self._pending:
            if j.pairs <= budget and j.ordered == own.ordered:
                batch.append(j)
                budget -= j.pairs
            else:
                rest.append(j)
        self._pending = rest
        return batch

    def _one(self, query: str, texts: Sequence[str], ordered: bool = False) -> Scored:
        """The reranker's ``score`` (its ``_score`` plus what the base class adds: blend, the stand-in
        while a model is missing)."""
        return self.reranker.score(query, texts, ordered=ordered)

    def _many(self, requests: list[tuple[str, Sequence[str]]], ordered: bool = False) -> list[Scored]:
        return self.reranker.score_many(requests, ordered=ordered)

    def _run(self, batch: list[_Job]) -> None:
        """In a worker thread: score the batch in one call; on failure score each job alone so
        that one bad request fails only itself."""
        self.stats.requests += len(batch)
        self.stats.batches += 1
        for j in batch:
            j.batch_size = len(batch)
        try:
            if len(batch) == 1:
                results = [self._one(batch[0].query, batch[0].texts, batch[0].ordered)]
            else:
                results = self._many([(j.query, j.texts) for j in batch], batch[0].ordered)
            if len(results) != len(batch):
                raise RuntimeError(f"{self.reranker.family} returned {len(results)} results for {len(batch)} requests")
            for j, r in zip(batch, results):
                j.scored = r
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request(s)
            if len(batch) == 1:
                batch[0].error = exc
            else:
                log.debug("batched scoring failed (%s); scoring the %d requests one by one", exc, len(batch))
                for j in batch:
                    try:
                        j.scored = self._one(j.query, j.texts, j.ordered)
                    except BaseException as one:  # noqa: BLE001
                        j.error = one
        finally:
            for j in batch:
                j.done = True


class BatcherPool:
    """One :class:`RerankBatcher` per reranker key, created on first use (bounded LRU, like the
    registry's instance cache)."""

    def __init__(self, *, enabled: bool = True, wait_s: float = 0.002, max_pairs: int = 1024,
                 max_entries: int = 32) -> None:
        self.enabled = enabled
        self.wait_s = wait_s
        self.max_pairs = max_pairs
        self.max_entries = max_entries
        self._batchers: OrderedDict[Any, RerankBatcher] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, reranker: Reranker) -> RerankBatcher:
        with self._lock:
            b = self._batchers.get(key)
            if b is None or b.reranker is not reranker:
                b = RerankBatcher(reranker, enabled=self.enabled, wait_s=self.wait_s, max_pairs=self.max_pairs)
                self._batchers[key] = b
            self._batchers.move_to_end(key)
            while len(self._batchers) > self.max_entries:
                self._batchers.popitem(last=False)
            return b
