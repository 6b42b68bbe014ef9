"""A call that needs the embedding model while it is still being prepared says so: progress
notifications naming what it waits for, at most 2 s apart, and errors of that call reach the
client as themselves. The slow model is a fake (a hashing embedder that takes 4 s to build, standing
for the ONNX export, which tests/e2e/test_first_run.py runs for real); the server, session and
index are real."""

from __future__ import annotations

import time

import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from rerank_mcp.server.state import build_state
from tests.conftest import shared_embedder
from tests.fixtures.fakes import HashEmbedder

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # slow: slow embedder loads waited for

LOAD_S = 4.0


def _slow_embedder():
    time.sleep(LOAD_S)
    return HashEmbedder()


async def test_waiting_call_streams_progress_and_keeps_its_errors(settings):
    state = build_state(settings, warm=True, embedder_factory=_slow_embedder)
    try:
        notes: list[tuple[float, str]] = []

        async def progress(done, total, message):
            notes.append((time.monotonic(), message or ""))

        async with Client(build_server(settings, state)) as c:
            # an invalid call made while the model loads: its own error, not a wrapped one
            r = await c.call_tool("ingest", {"paths": ["/etc/hostname"]}, progress_callback=progress)
            assert r.is_error and "allowed roots" in r.content[0].text
            sent = time.monotonic()
            r = await c.call_tool("ingest", {"collection": "kb", "documents": [{"id": "a", "text": "alpha beta"}]},
                                  progress_callback=progress)
            assert not r.is_error and r.structured_content["added"] == 1
        waits = [t for t, m in notes if m.startswith("waiting for the embedding model") and t >= sent]
        assert len(waits) >= 2, notes
        gaps = [b - a for a, b in zip([sent, *waits], waits)]
        assert max(gaps) <= 2.0, gaps
        assert all("loading" in m for _, m in notes if "waiting" in m)
        # once loaded, no more notes: a second call is answered without any
        notes.clear()
        async with Client(build_server(settings, state)) as c:
            r = await c.call_tool("search", {"query": "alpha", "collection": "kb", "mode": "dense"},
                                  progress_callback=progress)
            assert not r.is_error and r.structured_content["hits"]
        assert not [m for _, m in notes if "waiting" in m]
    finally:
        state.close()


async def test_search_on_the_empty_default_collection_answers_what_to_do(settings):
    """A fresh install's first search (the README's Inspector example): no error, no hits, a note."""
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("search", {"query": "what is reciprocal rank fusion", "k": 3})
        assert not r.is_error, r.content
        assert r.structured_content["hits"] == [] and "ingest" in r.structured_content["notes"][0]
        r = await c.call_tool("search", {"query": "x", "collection": "elsewhere"})
        assert r.is_error and "elsewhere" in r.content[0].text  # a collection named by the caller stays an error


async def test_a_call_cancelled_while_it_waits_for_the_model_leaves_the_session_working(settings):
    import anyio

    state = build_state(settings, warm=True, embedder_factory=_slow_embedder)
    try:
        async with Client(build_server(settings, state)) as c:
            with anyio.move_on_after(1.0) as scope:
                await c.call_tool("ingest", {"collection": "kb", "documents": [{"id": "a", "text": "alpha"}]})
            assert scope.cancelled_caught
            r = await c.call_tool("list_collections", {})
            assert not r.is_error
            r = await c.call_tool("ingest", {"collection": "kb", "documents": [{"id": "b", "text": "beta"}]})
            assert not r.is_error and r.structured_content["added"] == 1
    finally:
        state.close()
