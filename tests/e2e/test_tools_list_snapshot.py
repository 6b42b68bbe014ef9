"""``tools/list`` as a client sees it, against a committed snapshot.

Every tool's name, description, input and output schemas and annotations, over a real
in-memory MCP client session, compared with ``tests/e2e/snapshots/tools_list.json``. A change
to what agents see is then always a reviewed diff of that file, never a side effect.

The snapshot is rewritten only on request: ``RERANK_MCP_UPDATE_SNAPSHOTS=1 scripts/test
tests/e2e/test_tools_list_snapshot.py`` (the test then fails once, saying it wrote the file).
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from tests.conftest import shared_embedder

pytestmark = pytest.mark.anyio

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools_list.json"
UPDATE = "RERANK_MCP_UPDATE_SNAPSHOTS"


async def listed(settings) -> list[dict]:
    """``tools/list`` as JSON, in the server's order."""
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        tools = (await c.list_tools()).tools
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]


def _text(value) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


async def test_tools_list_matches_the_snapshot(settings):
    now = _text(await listed(settings))
    if os.environ.get(UPDATE):
        SNAPSHOT.write_text(now, encoding="utf-8")
        pytest.fail(f"{SNAPSHOT.name} rewritten ({UPDATE} is set): review the diff and run again without it")
    assert SNAPSHOT.exists(), f"no snapshot: run once with {UPDATE}=1 to write {SNAPSHOT.name}"
    before = SNAPSHOT.read_text(encoding="utf-8")
    if now != before:
        diff = "".join(difflib.unified_diff(before.splitlines(True), now.splitlines(True), "snapshot", "now", n=2))
        pytest.fail(f"tools/list differs from {SNAPSHOT.name} (set {UPDATE}=1 to accept a deliberate change):\n"
                    + diff[:6000])


async def test_read_only_server_lists_the_snapshot_without_the_write_tools(settings):
    """The read-only server's tools are the snapshot's, less ingest and delete, unchanged."""
    ro = await listed(settings.model_copy(update={"read_only": True}))
    full = {t["name"]: t for t in json.loads(SNAPSHOT.read_text(encoding="utf-8"))}
    assert {t["name"] for t in ro} == set(full) - {"ingest", "delete"}
    for t in ro:
        assert t == full[t["name"]], t["name"]
