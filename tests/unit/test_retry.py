"""The one retry loop (index/retry.py) every network call uses: how many attempts, how long it
waits between them, what ends it early."""

from __future__ import annotations

import pytest

from rerank_mcp.errors import UpstreamError
from rerank_mcp.index.retry import Backoff, GaveUp, Retry, with_retries


def failing(times: int, after: float | None = None):
    calls = []

    def attempt() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise Retry(f"failure {len(calls)}", after)
        return "ok"

    return attempt, calls


def test_retries_until_an_attempt_succeeds_with_exponential_waits():
    attempt, calls = failing(3)
    waits: list[float] = []
    heard = []
    got = with_retries(attempt, 5, Backoff(0.5, 3.0), lambda n, why, d: heard.append((n, why, d)), waits.append)
    assert got == "ok" and len(calls) == 4
    assert waits == [0.5, 1.0, 2.0]
    assert heard == [(1, "failure 1", 0.5), (2, "failure 2", 1.0), (3, "failure 3", 2.0)]


def test_gives_up_after_the_last_attempt_without_waiting_after_it():
    attempt, calls = failing(10)
    waits: list[float] = []
    heard = []
    with pytest.raises(GaveUp) as err:
        with_retries(attempt, 3, Backoff(1.0, 1.5), lambda n, why, d: heard.append(d), waits.append)
    assert len(calls) == 3 and err.value.attempts == 3 and err.value.reason == "failure 3"
    assert waits == [1.0, 1.5] and heard == [1.0, 1.5, None]  # capped; nothing after the last


def test_a_server_asking_to_wait_longer_is_heard_up_to_the_cap():
    attempt, _ = failing(2, after=2.5)
    waits: list[float] = []
    with_retries(attempt, 3, Backoff(0.1, 2.0), sleep=waits.append)
    assert waits == [2.0, 2.0]


def test_another_error_ends_the_retries_at_once():
    calls = []

    def attempt():
        calls.append(1)
        raise UpstreamError("refused")

    with pytest.raises(UpstreamError, match="refused"):
        with_retries(attempt, 5, sleep=lambda s: pytest.fail("no wait before giving up on a fatal error"))
    assert len(calls) == 1


def test_jitter_stays_within_half_and_one_and_a_half_times():
    delays = {Backoff(1.0, 100.0, jitter=True).delay(2) for _ in range(200)}
    assert all(2.0 <= d < 6.0 for d in delays) and len(delays) > 1
