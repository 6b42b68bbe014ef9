"""Bounded retries with exponential backoff, for every call to something over the network (an
engine's server, a reranking API, an LLM endpoint, a model download).

An attempt raises :class:`Retry` when it failed in a way worth trying again (a timeout, HTTP 429
or 5xx, a dropped connection), with the reason and, where the server named one, how long to
wait; anything else it raises ends the retries at once. When every attempt failed,
:func:`with_retries` raises :class:`GaveUp` with the last reason and the count, which the caller turns
into its own error message.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class Retry(Exception):
    """An attempt failed in a way worth trying again."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after  # seconds the server asked to wait (Retry-After), if it did


class GaveUp(Exception):
    """Every attempt failed; ``reason`` is the last one's."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempt(s): {reason}")
        self.reason = reason
        self.attempts = attempts


@dataclass(frozen=True)
class Backoff:
    """The wait after failed attempt ``n`` (0-based): ``base_s * 2**n``, at most ``max_s``; with
    ``jitter``, times a random factor in [0.5, 1.5). A server's Retry-After lengthens it, up to
    ``max_s``."""

    base_s: float = 0.2
    max_s: float = 5.0
    jitter: bool = False

    def delay(self, failed: int, after: float | None = None) -> float:
        d = min(self.base_s * 2**failed, self.max_s)
        if self.jitter:
            d *= 0.5 + random.random()
        if after is not None:
            d = min(max(d, after), self.max_s)
        return d


def with_retries(
    attempt: Callable[[], T],
    attempts: int,
    backoff: Backoff = Backoff(),  # noqa: B008 - frozen
    on_failure: Callable[[int, str, float | None], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``attempt()`` up to ``attempts`` times (at least once) while it raises :class:`Retry`.
    ``on_failure(failed_so_far, reason, delay)`` hears of each failure before the wait (``delay``
    None after the last attempt)."""
    attempts = max(1, int(attempts))
    for n in range(attempts):
        try:
            return attempt()
        except Retry as r:
            last = r.reason
            delay = backoff.delay(n, r.after) if n + 1 < attempts else None
            if on_failure is not None:
                on_failure(n + 1, r.reason, delay)
            if delay is not None:
                sleep(delay)
    raise GaveUp(last, attempts)
