"""End-to-end fixtures: a real server state on a temporary data dir, and MCP clients."""

from __future__ import annotations

import pytest

# (the offline environment: tests/conftest.py)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def settings(tmp_path):
    from rerank_mcp.server.settings import Settings

    files = tmp_path / "files"
    files.mkdir()
    return Settings(data_dir=tmp_path / "data", allowed_roots=[files], log_level="WARNING")
