"""The tool calls running in worker threads, so that they can be told to stop and waited for.

Every blocking tool call runs through :meth:`Workers.run`: in an anyio worker thread, with a
:class:`~rerank_mcp.tools.cancel.CancelToken` as the thread's cancel check. When the caller
stops waiting (the client's ``notifications/cancelled``, the per-call timeout, the session
ending) the await is abandoned at once and the token is cancelled, so the thread stops at its
next batch boundary instead of running on unseen.

On shutdown :meth:`Workers.stop` cancels every token and refuses new calls, and
:meth:`Workers.wait` blocks until the threads have left the tool code: only then may the index
be closed, so no worker writes to a closed engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from rerank_mcp.tools.cancel import Cancelled, CancelToken, cancellable

log = logging.getLogger(__name__)
T = TypeVar("T")

SHUTTING_DOWN = "the server is shutting down"


class Workers:
    """``heavy`` calls (the tools that do work) at once in all, ``per_client`` of them per client;
    light calls (listing, resources) have their own ``light`` threads, so a flood of heavy calls
    never makes them wait (before, all shared anyio's default pool of 40 threads)."""

    def __init__(self, heavy: int = 8, per_client: int = 4, light: int = 8) -> None:
        self._heavy = anyio.CapacityLimiter(heavy)
        self._light = anyio.CapacityLimiter(light)
        self._per_client = per_client
        self._clients: dict[Any, list] = {}  # client key -> [its semaphore, calls using it]
        self._cond = threading.Condition()
        self._live: dict[CancelToken, str] = {}  # token -> what runs under it (for the shutdown log)
        self._stopped_at: float | None = None  # when stop() was first called
        self.cancelled_calls = 0  # calls that ended at a cancel check rather than running to their end

    async def light(self, fn: Callable[..., T], *args: Any) -> T:
        """A quick read (listing, a resource) on the light threads."""
        return await anyio.to_thread.run_sync(lambda: fn(*args), limiter=self._light)

    @asynccontextmanager
    async def _client_slot(self, client: Any) -> AsyncIterator[None]:
        """One of ``client``'s ``per_client`` slots (none to take for ``client=None``)."""
        if client is None:
            yield
            return
        entry = self._clients.setdefault(client, [anyio.Semaphore(self._per_client), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._clients[client]

    async def run(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None, client: Any = None,
                  light: bool = False, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker thread; raises ``TimeoutError`` after ``timeout_s``
        and :class:`Cancelled` when the server stops the call. A heavy call (the default) waits
        for one of ``client``'s slots, then for a heavy thread; a ``light`` one for a light
        thread. The wait counts toward ``timeout_s``."""
        token = CancelToken()
        name = getattr(fn, "__qualname__", repr(fn))

        def work() -> T:
            # Registered in the thread itself: a call anyio never starts (cancelled while queued)
            # leaves nothing behind, and one that starts after stop() does no work at all.
            with self._cond:
                if self._stopped_at is not None:
                    raise Cancelled(SHUTTING_DOWN)
                self._live[token] = name
            try:
                with cancellable(token):
                    return fn(*args, **kwargs)
            except Cancelled as exc:
                log.info("%s stopped at a batch boundary: %s", name, exc)
                with self._cond:
                    self.cancelled_calls += 1
                raise
            finally:
                with self._cond:
                    del self._live[token]
                    self._cond.notify_all()

        try:
            with anyio.fail_after(timeout_s):
                if light:
                    return await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=self._light)
                async with self._client_slot(client):
                    return await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=self._heavy)
        except TimeoutError:
            token.cancel("timed out")
            raise
        except BaseException:  # the request was cancelled or the session ended: stop the thread too
            token.cancel()
            raise

    def active(self) -> int:
        """How many calls are still inside tool code."""
        with self._cond:
            return len(self._live)

    def stop(self) -> None:
        """Tell every running call to stop at its next batch boundary; refuse new ones."""
        with self._cond:
            if self._stopped_at is None:
                self._stopped_at = time.monotonic()
            for token in self._live:
                token.cancel(SHUTTING_DOWN)

    def wait(self, timeout_s: float) -> bool:
        """Wait until no call is inside tool code; False if some still are ``timeout_s`` after
        :meth:`stop` (the time a transport spent closing connections counts)."""
        with self._cond:
            deadline = (self._stopped_at or time.monotonic()) + timeout_s
            while self._live:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("%d tool call(s) still running after %.1f s: %s", len(self._live), timeout_s,
                                ", ".join(sorted(set(self._live.values()))))
                    return False
                self._cond.wait(left)
        return True
