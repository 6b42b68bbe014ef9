"""Rerankers: one module per family, resolved lazily by :mod:`tools.rerank.registry`.

Importing this package imports no model library (no torch, no onnxruntime, no cohere):
each family's module is imported the first time the family is used.

Families: ``bm25`` (bm25.py), ``embedding`` (embedding.py), ``cross-encoder``
(cross_encoder.py), ``flashrank`` (flashrank.py), ``cohere`` (cohere.py), ``rankllm``
(listwise_llm.py), ``cascade`` (cascade.py).
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
