"""Shared fixtures for the reranker tests.

Offline switches are set before anything imports transformers / onnxruntime. Fixture models
(see tests/fixtures/models.py) are built once per session under a temp dir.
"""

from __future__ import annotations

from rerank_mcp.index.environment import apply as _environment

_environment(offline=True)

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest

from tests.fixtures.models import build_cross_encoder, build_flashrank


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fixture-models")


@pytest.fixture(scope="session")
def ce_model(models_dir) -> str:
    """Local folder of the MiniLM-L-6 cross-encoder fixture."""
    return str(build_cross_encoder(models_dir / "ms-marco-MiniLM-L-6-v2"))


@pytest.fixture(scope="session")
def flashrank_cache(models_dir) -> str:
    """A FlashRank cache dir holding the TinyBERT-L-2 fixture."""
    cache = models_dir / "flashrank"
    build_flashrank(cache)
    return str(cache)


@pytest.fixture
def no_cohere_env(monkeypatch):
    monkeypatch.delenv("CO_API_KEY", raising=False)
    monkeypatch.delenv("RERANK_MCP_COHERE_API_KEY", raising=False)


@pytest.fixture
def online(monkeypatch):
    """This test may reach the local peers (the hub stand-in, file hosts on 127.0.0.1): huggingface_hub's
    offline switch off (it is read at import time, so the module constant is switched too)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
