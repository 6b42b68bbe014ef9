"""The Qdrant engine (``RERANK_MCP_BACKEND=qdrant``): the index contract on a Qdrant server or
cluster, or qdrant-client's local mode.

- :mod:`.engine`: :class:`QdrantIndex` (the layout of points, writes without transactions);
- :mod:`.client`: qdrant-client behind bounded retries and the project's errors;
- :mod:`.filters`: the filter tree to Qdrant ``Filter`` objects;
- :mod:`.config`: :class:`QdrantConfig`, the engine's settings.

BM25 sparse vectors come from :mod:`rerank_mcp.index.bm25`, shared with the ``bm25`` reranker.
Importing this package does not import qdrant-client (an extra): the engine does on first use.
"""

from rerank_mcp.index.qdrant.config import QdrantConfig
from rerank_mcp.index.qdrant.engine import DENSE, SPARSE, QdrantIndex
from rerank_mcp.index.qdrant.filters import compile_filter

__all__ = ["DENSE", "SPARSE", "QdrantConfig", "QdrantIndex", "compile_filter"]
