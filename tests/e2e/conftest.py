"""End-to-end fixtures: a real server state on a temporary data dir, and MCP clients."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def settings(tmp_path):
    from rerank_mcp.server.settings import Settings

    files = tmp_path / "files"
    files.mkdir()
    return Settings(data_dir=tmp_path / "data", allowed_roots=[files], log_level="WARNING")
