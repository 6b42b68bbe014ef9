"""The reranker base class: one abstract method, everything else done once here.

Every family implements ``_score(query, texts) -> Scored`` (one score per text, higher is
better, plus which texts were truncated to fit the model). The public :meth:`Reranker.rerank`
validates input, calls ``_score``, sorts stably, applies ``top_n`` and reports truncation and
latency in the shared result shape.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field

from rerank_mcp.errors import DependencyMissing, InvalidInput, UpstreamError
from rerank_mcp.tools.cancel import check
from rerank_mcp.tools.schema import compact_nullable

log = logging.getLogger(__name__)


class Passage(BaseModel):
    """A passage handed to a reranker: its text, an optional id and metadata."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class RankedPassage(BaseModel):
    """One passage in a reranked list."""

    model_config = ConfigDict(frozen=True, json_schema_extra=compact_nullable)

    rank: int = Field(description="1-based position in the reranked list")
    index: int = Field(description="position of the passage in the input list (0-based)")
    id: str | None = None
    text: str | None = Field(None, description="the passage text (omitted when return_text is false)")
    score: float
    truncated: bool = Field(False, description="the passage was cut to fit the model's input")
    metadata: dict[str, Any] = Field(default_factory=dict)


class RerankResult(BaseModel):
    """The shared result shape of every reranker family."""

    model_config = ConfigDict(frozen=True, json_schema_extra=compact_nullable)

    reranker: str = Field(description="family name, e.g. 'cross-encoder'")
    model: str | None = None
    passages: list[RankedPassage]
    truncated: list[int] = Field(default_factory=list, description="input indices of truncated passages")
    latency_ms: float
    fallback: str | None = Field(
        None, description="set when the requested reranker failed and another ordering was used; says why"
    )
    notes: list[str] = Field(default_factory=list)


@dataclass
class Scored:
    """What ``_score`` returns: a score per text, and per-text truncation flags."""

    scores: list[float]
    truncated: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fallback: str | None = None


class Reranker(ABC):
    """Base class of all reranker families."""

    family: str = "base"

    def __init__(self, model: str | None = None, **options: Any) -> None:
        self.model = model
        self.options = options

    @abstractmethod
    def _score(self, query: str, texts: Sequence[str]) -> Scored:
        """Return one score per text (higher is more relevant)."""

    def _score_many(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[Scored]:
        """Score several ``(query, texts)`` requests at once (dynamic batching of concurrent
        callers). Families that can score the pairs of different queries in one model call
        override this; the default scores the requests in turn."""
        return [self._score(query, texts) for query, texts in requests]

    def rerank(
        self,
        query: str,
        passages: Sequence[Passage | str],
        top_n: int | None = None,
    ) -> RerankResult:
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput("query is empty: give the text to rank the passages against")
        items = [p if isinstance(p, Passage) else Passage(text=p) for p in passages]
        if top_n is not None and top_n <= 0:
            raise InvalidInput(f"top_n must be a positive integer, got {top_n}")
        start = time.perf_counter()
        if not items:
            return RerankResult(reranker=self.family, model=self.model, passages=[], latency_ms=0.0)
        check()  # the thread's cancel check; families also ask it between their scoring batches
        scored = self._score(query, [p.text for p in items])
        if len(scored.scores) != len(items):
            raise RuntimeError(
                f"{self.family} returned {len(scored.scores)} scores for {len(items)} passages"
            )
        truncated = list(scored.truncated) or [False] * len(items)
        # Stable sort: equal scores keep their input order.
        order = sorted(range(len(items)), key=lambda i: -float(scored.scores[i]))
        if top_n is not None:
            order = order[:top_n]
        ranked = [
            RankedPassage(
                rank=r + 1,
                index=i,
                id=items[i].id,
                text=items[i].text,
                score=float(scored.scores[i]),
                truncated=bool(truncated[i]),
                metadata=items[i].metadata,
            )
            for r, i in enumerate(order)
        ]
        return RerankResult(
            reranker=self.family,
            model=self.model,
            passages=ranked,
            truncated=[i for i, t in enumerate(truncated) if t],
            latency_ms=(time.perf_counter() - start) * 1000.0,
            fallback=scored.fallback,
            notes=scored.notes,
        )


class RemoteReranker(Reranker):
    """A reranker backed by a network service, with an optional local ``fallback`` reranker.

    Subclasses set ``self.fallback`` (a family name or None) and ``self.registry``, and
    implement ``_unavailable()`` (why the service cannot be called at all, or None) and
    ``_score_remote``. A service failure (:class:`UpstreamError`) uses the fallback when one is
    named, and the result says so; otherwise it is raised.
    """

    fallback: str | None = None
    registry: Any = None

    def _unavailable(self) -> str | None:
        return None

    @abstractmethod
    def _score_remote(self, query: str, texts: Sequence[str]) -> Scored:
        """Score ``texts`` by calling the service."""

    def _score(self, query: str, texts: Sequence[str]) -> Scored:
        why = self._unavailable()
        if why is not None:
            return self._fall_back(query, texts, why)
        try:
            return self._score_remote(query, texts)
        except UpstreamError as exc:
            if self.fallback is None:
                raise
            return self._fall_back(query, texts, str(exc))

    def _fall_back(self, query: str, texts: Sequence[str], why: str) -> Scored:
        if self.fallback is None:
            raise DependencyMissing(why)
        log.warning("%s failed, using fallback reranker %s: %s", self.family, self.fallback, why)
        scored = self.registry.get(self.fallback)._score(query, texts)
        scored.fallback = f"{self.family} failed ({why}); ranked by {self.fallback} instead"
        return scored
