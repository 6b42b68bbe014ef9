"""Rerankers: one module per family, resolved lazily by :mod:`tools.rerank.registry`.

Importing this package imports no model library (no torch, no onnxruntime, no cohere):
each family's module is imported the first time the family is used.

The families are listed once, in :data:`tools.rerank.registry.FAMILIES` (module, class, what
they need, and their place in ``auto``'s order); each module declares its options as a pydantic
model. ``auto`` (auto.py) is the default; tools/rerank/evidence.py holds what the evaluations
show about reranking a first stage.
"""

from rerank_mcp.tools.rerank.base import Passage, RankedPassage, Reranker, RerankResult, Scored
from rerank_mcp.tools.rerank.registry import FAMILIES, RerankContext, RerankerInfo, RerankerRegistry

__all__ = [
    "FAMILIES",
    "Passage",
    "RankedPassage",
    "RerankContext",
    "RerankResult",
    "Reranker",
    "RerankerInfo",
    "RerankerRegistry",
    "Scored",
]
