"""MCP progress notifications increase strictly within a call (the spec's MUST), with one total
and never past it, over real in-memory MCP client sessions:

- an ingest of files that waits for the embedding model (reading, waiting, embedding, storing);
- a folder sync that deletes documents whose files are gone (its ingest, then the deletions);
- an evaluate over several pipelines (each pipeline's queries);
- the same over stdio, from a real ``rerank-mcp serve`` (whose first ingest loads its model).

The slow model is a fake (a hashing embedder that takes 3 s to build, standing for the ONNX export
that tests/e2e/test_first_run.py runs for real); the server, session and index are real.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from rerank_mcp.server.app import build_server
from rerank_mcp.server.state import build_state
from tests.conftest import shared_embedder
from tests.fixtures.env import model_caches
from tests.fixtures.fakes import HashEmbedder

pytestmark = pytest.mark.anyio

TOPICS = ["vitamin D and bone fractures", "BM25 term weighting", "dense vector search", "sourdough fermentation",
          "foxes by the river", "tide tables", "jazz harmony", "glacier retreat"]


def _slow_embedder():
    time.sleep(3.0)
    return HashEmbedder()


class Notes:
    def __init__(self) -> None:
        self.seen: list[tuple[float, float | None, str]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message or ""))

    def assert_well_formed(self) -> None:
        values = [p for p, _t, _m in self.seen]
        assert values, "no progress notifications"
        assert all(b > a for a, b in zip(values, values[1:])), self.seen  # strictly increasing
        totals = {t for _p, t, _m in self.seen}
        assert len(totals) == 1, totals  # one total for the call
        total = totals.pop()
        assert total is not None and all(p <= total for p in values), self.seen

    def messages(self) -> list[str]:
        return [m for _p, _t, m in self.seen]


def _files(root: Path, n: int) -> Path:
    folder = root / "notes"
    folder.mkdir()
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        (folder / f"note{i:03}.md").write_text(f"Note {i} is about {topic}, with detail {i} on {topic}.\n")
    return folder


@pytest.mark.slow  # the slow model load waited for
async def test_an_ingest_that_waits_for_the_model(settings):
    folder = _files(Path(settings.allowed_roots[0]), 150)  # 8 reading notes, 3 write batches
    state = build_state(settings, warm=True, embedder_factory=_slow_embedder)
    try:
        notes = Notes()
        async with Client(build_server(settings, state)) as c:
            r = await c.call_tool("ingest", {"collection": "kb", "paths": [str(folder)]}, progress_callback=notes)
            assert not r.is_error and r.structured_content["added"] == 150
        notes.assert_well_formed()
        said = notes.messages()
        kinds = [m.split(" ")[0] for m in said]
        assert {"reading", "waiting", "embedding", "stored"} <= set(kinds), said
        # the wait is said while files are read, and over before anything is embedded
        assert max(i for i, k in enumerate(kinds) if k == "waiting") < kinds.index("embedding"), said
        assert said[-1] == "stored 150 of 150 documents" and notes.seen[-1][0] == 1.0
    finally:
        state.close()


async def test_a_sync_that_deletes(settings):
    folder = _files(Path(settings.allowed_roots[0]), 30)
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "kb", "paths": [str(folder)], "sync": True})
        assert not r.is_error, r.content
        for f in sorted(folder.iterdir())[:10]:
            f.unlink()
        (folder / "new.md").write_text("A new note on tide tables.\n")
        notes = Notes()
        r = await c.call_tool("ingest", {"collection": "kb", "paths": [str(folder)], "sync": True},
                              progress_callback=notes)
        assert not r.is_error and r.structured_content["deleted"] == 10
    notes.assert_well_formed()
    said = notes.messages()
    assert said[-1].startswith("deleted 10 of 10 documents") and any(m.startswith("stored") for m in said), said


async def test_an_evaluate_over_several_pipelines(settings):
    docs = [{"id": f"d{i}", "text": f"Document {i} is about {t}, and {t} again."} for i, t in enumerate(TOPICS)]
    judgments = [{"query": t, "relevant": [f"d{i}"]} for i, t in enumerate(TOPICS)]
    notes = Notes()
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "kb", "documents": docs})
        assert not r.is_error, r.content
        r = await c.call_tool("evaluate", {"collection": "kb", "judgments": judgments,
                                           "pipelines": ["bm25", "dense", "hybrid"]}, progress_callback=notes)
        assert not r.is_error, r.content
    notes.assert_well_formed()
    said = notes.messages()
    assert [m for m in said if m.startswith("[1/3]")] and [m for m in said if m.startswith("[3/3]")], said
    assert notes.seen[-1][0] == 1.0  # the last query of the last pipeline


@pytest.mark.slow  # a stdio server subprocess
async def test_over_stdio(tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    folder = _files(root, 45)
    env = {**model_caches(), "RERANK_MCP_DATA_DIR": str(tmp_path / "data"),
           "RERANK_MCP_ALLOWED_ROOTS": json.dumps([str(root)]), "HF_HUB_OFFLINE": "1",
           "HOME": os.environ.get("HOME", "/tmp"), "PATH": os.environ.get("PATH", "")}
    exe = str(Path(sys.executable).with_name("rerank-mcp"))
    ingest, evaluate = Notes(), Notes()
    async with Client(StdioServerParameters(command=exe, args=["serve"], env=env)) as c:
        r = await c.call_tool("ingest", {"collection": "kb", "paths": [str(folder)]}, progress_callback=ingest)
        assert not r.is_error and r.structured_content["added"] == 45, r.content
        judgments = [{"query": t, "relevant": [str(folder / f"note{i:03}.md")]} for i, t in enumerate(TOPICS)]
        r = await c.call_tool("evaluate", {"collection": "kb", "judgments": judgments, "pipelines": ["bm25", "dense"]},
                              progress_callback=evaluate)
        assert not r.is_error, r.content
    ingest.assert_well_formed()
    evaluate.assert_well_formed()
    assert ingest.messages()[-1] == "stored 45 of 45 documents"
