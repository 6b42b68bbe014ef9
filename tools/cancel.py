"""Cooperative cancellation of tool work running in a worker thread.

A thread cannot be stopped from outside, so long work asks, at its batch boundaries, whether
it should stop: ``check(cancelled)`` raises :class:`Cancelled` when the caller gave up (an MCP
``notifications/cancelled``, the per-call timeout, server shutdown). Between two checks the
work is never interrupted: an ingest's write batch is one transaction, so a cancelled ingest
keeps every batch committed before the cancel and nothing of the batch in hand.

A tool function takes ``cancelled`` (a callable returning True once the work should stop) as
a parameter; code deep inside a call (a reranker's scoring loop) reads the current thread's
check, set with :func:`cancellable` for the duration of the call, so that every family need
not thread the parameter through.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

CancelCheck = Callable[[], bool]


class Cancelled(BaseException):
    """The caller no longer wants the result; raised at a batch boundary.

    A ``BaseException``, like ``asyncio.CancelledError``: the ``except Exception`` of best-effort
    code (an evaluation scoring a failed query as empty, a reranker falling back to another)
    must not swallow it and carry on."""


class CancelToken:
    """A ``threading.Event``-backed cancel flag. Calling it answers "should the work stop?",
    so a token is itself a :data:`CancelCheck`."""

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


_local = threading.local()


@contextmanager
def cancellable(cancelled: CancelCheck | None) -> Iterator[None]:
    """Make ``cancelled`` the current thread's check while the block runs (``None`` keeps the
    one already set)."""
    if cancelled is None:
        yield
        return
    previous = getattr(_local, "check", None)
    _local.check = cancelled
    try:
        yield
    finally:
        _local.check = previous


def check(cancelled: CancelCheck | None = None) -> None:
    """Raise :class:`Cancelled` if ``cancelled`` (or, when None, the current thread's check) says
    the work should stop. Cheap: call it at every batch boundary."""
    fn = cancelled if cancelled is not None else getattr(_local, "check", None)
    if fn is not None and fn():
        raise Cancelled(getattr(fn, "reason", "cancelled"))
