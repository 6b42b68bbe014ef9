"""The engines behind the index contract, by name (``RERANK_MCP_BACKEND``).

An engine is a module or package with a class implementing :class:`~rerank_mcp.index.contract.Index`
(its settings in its ``Config``); adding one is one line in :data:`ENGINES`. Engines are imported
on first use, so the embedded default never imports an extra's client library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rerank_mcp.errors import InvalidInput

if TYPE_CHECKING:  # importing the contract takes a while; the settings read BACKENDS at start
    from rerank_mcp.index.contract import Index, IndexConfig

# name -> "module:class" (the server's RERANK_MCP_BACKEND accepts these names)
ENGINES = {
    "embedded": "rerank_mcp.index.engine:EmbeddedIndex",  # SQLite + FAISS + tantivy in the data folder
    "qdrant": "rerank_mcp.index.qdrant:QdrantIndex",  # a Qdrant server or cluster, or qdrant-client's local mode
}
BACKENDS = tuple(ENGINES)


def engine_class(backend: str) -> type[Index]:
    """The class of the engine named ``backend``."""
    where = ENGINES.get(backend)
    if where is None:
        raise InvalidInput(f"unknown index backend {backend!r}; use one of {', '.join(BACKENDS)} (RERANK_MCP_BACKEND)")
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)


def engine_config(backend: str, settings: Any) -> Any:
    """The engine's own settings object, read from the server's settings."""
    return engine_class(backend).Config.from_settings(settings)


def open_index(config: IndexConfig, backend: str = "embedded") -> Index:
    """Open the engine named ``backend``."""
    return engine_class(backend)(config)
