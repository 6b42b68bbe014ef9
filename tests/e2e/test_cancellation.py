"""notifications/cancelled stops the work, not only the wait.

A real MCP client session (mcp.Client on the server in memory) calls ``ingest``, ``rerank``,
``search`` (with a rerank step) and ``evaluate`` on enough data to keep a worker thread busy,
then cancels the call the way an agent does: by cancelling the scope around ``call_tool``,
which sends ``notifications/cancelled``. Checked: the worker thread leaves the tool code
soon after (at its next batch boundary, counted by the server as a cancelled call), the
collection is consistent (every stored document whole, counts agree with what search finds),
a cancelled ingest kept whole write batches only, and the session goes on answering.

The embedder is the hash embedder slowed to a small model's pace (fake collaborator: the
timing of the cancel is what matters here); the cross-encoder is the MiniLM-L-6 fixture,
whose cost is real.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import build_state
from rerank_mcp.tools.ingest import WRITE_BATCH
from tests.fixtures.models import build_cross_encoder
from tests.reliability.consistency import check_collection
from tests.reliability.hash_embedder import HashEmbedder

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # slow: calls cancelled and timed out on timers

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega vector index search rerank store chunk cancel batch").split()
CHUNK, OVERLAP = 32, 8
STOPS_WITHIN_S = 20.0  # one batch of the slowest kind here (32 cross-encoder pairs) plus slack


class SlowHashEmbedder(HashEmbedder):
    """The hash embedder at about the pace of a small model on a small CPU."""

    def encode(self, texts):
        time.sleep(0.02 + 0.0005 * len(texts))
        return super().encode(texts)


def _docs(n: int, seed: int, prefix: str = "doc") -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"{prefix}-{i}", "text": "\n\n".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 40))) + "." for _ in range(rng.randint(1, 3)))}
        for i in range(n)]


@pytest.fixture(scope="module")
def ce_model(tmp_path_factory) -> str:
    return str(build_cross_encoder(tmp_path_factory.mktemp("models") / "ms-marco-MiniLM-L-6-v2"))


@pytest.fixture
def state(tmp_path, ce_model):
    settings = Settings(data_dir=tmp_path / "data", cross_encoder_model=ce_model, log_level="WARNING",
                        allowed_roots=[tmp_path])
    st = build_state(settings, warm=False, embedder_factory=SlowHashEmbedder)
    yield st
    st.close()


async def _call_then_cancel(c: Client, st, tool: str, args: dict, ready: Callable[[list[str]], bool]) -> float:
    """Call ``tool``; once ``ready(progress messages)``, cancel the call as a client does.
    Returns the seconds from the cancel until the worker thread left the tool code."""
    messages: list[str] = []
    done: list[Any] = []

    async def progress(_done: float, _total: float | None, message: str | None) -> None:
        messages.append(message or "")

    scope = anyio.CancelScope()

    async def call() -> None:
        with scope:
            done.append(await c.call_tool(tool, args, progress_callback=progress))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        with anyio.fail_after(120):
            while not ready(messages):
                assert not done, f"{tool} finished before it could be cancelled: {done[0].content}"
                await anyio.sleep(0.01)
        scope.cancel()  # the client sends notifications/cancelled for the request
    t = time.monotonic()
    with anyio.fail_after(60):
        while st.workers.active():
            await anyio.sleep(0.02)
    assert not done, "the cancelled call returned a result"
    return time.monotonic() - t


def _busy_for(st, seconds: float) -> Callable[[list[str]], bool]:
    """Ready once a worker has been inside tool code for ``seconds``."""
    since: list[float] = []

    def ready(_messages: list[str]) -> bool:
        if not since and st.workers.active():
            since.append(time.monotonic())
        return bool(since) and time.monotonic() - since[0] >= seconds

    return ready


async def _stored(c: Client, collection: str) -> dict:
    r = await c.call_tool("list_collections", {})
    assert not r.is_error, r.content
    return {x["name"]: x for x in r.structured_content["collections"]}.get(collection, {"documents": 0, "chunks": 0})


async def test_cancelled_ingest_keeps_whole_batches_and_stops(state):
    docs = _docs(4000, seed=1)
    texts = {d["id"]: d["text"] for d in docs}
    args = {"collection": "big", "documents": docs, "chunk_size": CHUNK, "chunk_overlap": OVERLAP}
    async with Client(build_server(state.settings, state)) as c:
        # cancel once two write batches have committed
        stopped_in = await _call_then_cancel(
            c, state, "ingest", args,
            lambda msgs: any(m.startswith("stored") and int(m.split()[1]) >= 2 * WRITE_BATCH for m in msgs))
        assert stopped_in < STOPS_WITHIN_S
        assert state.workers.cancelled_calls == 1
        counts = check_collection(state.engine, "big", texts, CHUNK, OVERLAP)
        # whole transactions only: a multiple of the write batch, never the whole input
        assert counts["documents"] % WRITE_BATCH == 0, counts
        assert 2 * WRITE_BATCH <= counts["documents"] < len(docs), counts
        seen = await _stored(c, "big")
        assert (seen["documents"], seen["chunks"]) == (counts["documents"], counts["chunks"])
        r = await c.call_tool("search", {"collection": "big", "query": "alpha omega", "mode": "bm25", "k": 5})
        assert not r.is_error and r.structured_content["hits"], r.content
        # a later ingest sees the committed documents as they are and completes the rest
        head = docs[: counts["documents"] + 100]
        r = await c.call_tool("ingest", {**args, "documents": head})
        assert not r.is_error, r.content
        assert (r.structured_content["unchanged"], r.structured_content["added"]) == (counts["documents"], 100)
    check_collection(state.engine, "big", texts, CHUNK, OVERLAP)


async def test_cancelled_rerank_frees_its_worker(state):
    rng = random.Random(2)
    passages = [" ".join(rng.choice(WORDS) for _ in range(120)) for _ in range(1000)]
    async with Client(build_server(state.settings, state)) as c:
        r = await c.call_tool("rerank", {"query": "warm", "passages": ["a", "b"], "reranker": "cross-encoder"})
        assert not r.is_error, r.content  # the model is loaded: the big call below is all scoring
        stopped_in = await _call_then_cancel(
            c, state, "rerank", {"query": "alpha omega", "passages": passages, "reranker": "cross-encoder"},
            _busy_for(state, 1.0))
        assert stopped_in < STOPS_WITHIN_S
        assert state.workers.cancelled_calls == 1
        r = await c.call_tool("rerank", {"query": "alpha", "passages": passages[:3], "reranker": "cross-encoder"})
        assert not r.is_error and len(r.structured_content["passages"]) == 3


async def test_cancelled_search_stops_in_its_rerank_step(state):
    docs = _docs(700, seed=3)
    texts = {d["id"]: d["text"] for d in docs}
    async with Client(build_server(state.settings, state)) as c:
        r = await c.call_tool("ingest", {"collection": "s", "documents": docs, "chunk_size": CHUNK,
                                         "chunk_overlap": OVERLAP})
        assert not r.is_error, r.content
        r = await c.call_tool("rerank", {"query": "warm", "passages": ["a", "b"], "reranker": "cross-encoder"})
        assert not r.is_error, r.content
        stopped_in = await _call_then_cancel(
            c, state, "search", {"collection": "s", "query": "alpha omega", "k": 10, "mode": "hybrid",
                                 "rerank": {"reranker": "cross-encoder", "candidates": 1000}},
            _busy_for(state, 1.0))
        assert stopped_in < STOPS_WITHIN_S
        assert state.workers.cancelled_calls == 1
        r = await c.call_tool("search", {"collection": "s", "query": "alpha omega", "mode": "bm25", "k": 3})
        assert not r.is_error and len(r.structured_content["hits"]) == 3
    check_collection(state.engine, "s", texts, CHUNK, OVERLAP)


async def test_cancelled_evaluate_stops_between_queries(state):
    docs = _docs(200, seed=4)
    rng = random.Random(5)
    judgments = [{"query": " ".join(rng.choice(WORDS) for _ in range(4)), "relevant": [rng.choice(docs)["id"]]}
                 for _ in range(400)]
    async with Client(build_server(state.settings, state)) as c:
        r = await c.call_tool("ingest", {"collection": "e", "documents": docs, "chunk_size": CHUNK,
                                         "chunk_overlap": OVERLAP})
        assert not r.is_error, r.content
        stopped_in = await _call_then_cancel(
            c, state, "evaluate", {"collection": "e", "judgments": judgments, "pipelines": ["dense", "hybrid"]},
            lambda msgs: len(msgs) >= 3)
        assert stopped_in < STOPS_WITHIN_S
        assert state.workers.cancelled_calls == 1
        r = await c.call_tool("evaluate", {"collection": "e", "judgments": judgments[:5], "pipelines": ["bm25"]})
        assert not r.is_error, r.content


async def test_timed_out_call_is_told_to_stop(tmp_path, ce_model):
    """RERANK_MCP_TOOL_TIMEOUT_S: the client gets the timeout error, and the abandoned worker
    stops at its next batch instead of scoring on unseen."""
    settings = Settings(data_dir=tmp_path / "data", cross_encoder_model=ce_model, log_level="WARNING",
                        allowed_roots=[tmp_path], tool_timeout_s=2.0)
    st = build_state(settings, warm=False, embedder_factory=SlowHashEmbedder)
    try:
        st.registry.get("cross-encoder").rerank("warm", ["a", "b"])  # load the model outside the timeout
        rng = random.Random(6)
        passages = [" ".join(rng.choice(WORDS) for _ in range(120)) for _ in range(1000)]
        async with Client(build_server(settings, st)) as c:
            r = await c.call_tool("rerank", {"query": "alpha", "passages": passages, "reranker": "cross-encoder"})
            assert r.is_error and "timed out" in r.content[0].text, r.content
            t = time.monotonic()
            with anyio.fail_after(60):
                while st.workers.active():
                    await anyio.sleep(0.02)
            assert time.monotonic() - t < STOPS_WITHIN_S
            assert st.workers.cancelled_calls == 1
    finally:
        st.close()
