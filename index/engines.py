"""The engines behind the index contract, by name (``RERANK_MCP_BACKEND``)."""

from __future__ import annotations

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.contract import Index, IndexConfig

BACKENDS = ("embedded", "qdrant")


def open_index(config: IndexConfig, backend: str = "embedded") -> Index:
    """Open the engine named ``backend``: ``embedded`` (SQLite + FAISS + tantivy) or ``qdrant``."""
    if backend == "embedded":
        from rerank_mcp.index.engine import EmbeddedIndex

        return EmbeddedIndex(config)
    if backend == "qdrant":
        from rerank_mcp.index.qdrant import QdrantIndex

        return QdrantIndex(config)
    raise InvalidInput(f"unknown index backend {backend!r}; use one of {', '.join(BACKENDS)} (RERANK_MCP_BACKEND)")
