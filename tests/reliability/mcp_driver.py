"""One in-memory MCP client session on a real server, driven from synchronous test code
(hypothesis tests are synchronous). Shared by the limits and hostile-input tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from anyio.from_thread import start_blocking_portal
from mcp import Client

from rerank_mcp.server.app import build_server
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import build_state
from tests.conftest import shared_embedder


class Mcp:
    def __init__(self, portal, client, state) -> None:
        self.portal, self.client, self.state = portal, client, state

    def call(self, tool: str, args: Any, timeout: float = 120.0):
        async def go():
            with anyio.fail_after(timeout):
                return await self.client.call_tool(tool, args)

        return self.portal.call(go)

    def seq(self) -> tuple:
        """A fingerprint of everything stored, read through the index contract: equal before and
        after a call that must store nothing (documents, content hashes, update times, chunk counts)."""
        eng = self.state.engine
        out = []
        for c in eng.collections():
            docs = eng.documents(c.name, limit=1_000_000)
            out.append((c.name, c.documents, c.chunks,
                        tuple((d.id, d.content_hash, d.updated_at, d.chunks) for d in docs)))
        return tuple(out)

    def collections(self) -> list[dict]:
        r = self.call("list_collections", {})
        assert not r.is_error, f"the server stopped answering: {r.content}"
        return r.structured_content["collections"]


@contextmanager
def serve(settings: Settings, cls: type[Mcp] = Mcp, **extra: Any) -> Iterator[Mcp]:
    """A server on ``settings`` with one client session; the state is closed afterwards."""
    state = build_state(settings, warm=False, embedder_factory=shared_embedder(settings))
    try:
        with start_blocking_portal() as portal:
            with portal.wrap_async_context_manager(Client(build_server(settings, state))) as client:
                yield cls(portal, client, state, **extra)
    finally:
        state.close()
