"""Rerank: reorder passages the agent already holds, with any registered reranker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rerank_mcp.errors import InvalidInput, LimitExceeded
from rerank_mcp.tools.cancel import CancelCheck, cancellable, check
from rerank_mcp.tools.rerank.base import Passage, RerankResult
from rerank_mcp.tools.rerank.registry import RerankerRegistry
from rerank_mcp.tools.search import check_options, check_query, check_scores, check_unicode


@dataclass(frozen=True)
class RerankLimits:
    max_passages: int = 1000
    max_passage_chars: int = 100_000
    max_query_chars: int = 10_000


def to_passages(passages: Any, limits: RerankLimits) -> list[Passage]:
    if not isinstance(passages, (list, tuple)):
        raise InvalidInput("passages must be a list of strings or {id, text, metadata} objects")
    if len(passages) > limits.max_passages:
        raise LimitExceeded(
            f"{len(passages)} passages, over the limit of {limits.max_passages} per rerank (RERANK_MCP_MAX_PASSAGES)"
        )
    out = []
    for i, p in enumerate(passages):
        if isinstance(p, Passage):
            item = p
        elif isinstance(p, str):
            item = Passage(text=p)
        elif isinstance(p, dict):
            try:
                item = Passage.model_validate(p)
            except Exception as exc:
                raise InvalidInput(f"passages[{i}] is malformed: give {{id?, text, metadata?}} ({str(exc).splitlines()[0]})") from None
        else:
            raise InvalidInput(f"passages[{i}] must be a string or an object with a text field, got {type(p).__name__}")
        if len(item.text) > limits.max_passage_chars:
            raise LimitExceeded(
                f"passages[{i}] is {len(item.text)} characters, over the limit of {limits.max_passage_chars} "
                "(RERANK_MCP_MAX_PASSAGE_CHARS)"
            )
        check_unicode(item.text, f"passages[{i}].text")
        if item.id is not None:
            check_unicode(item.id, f"passages[{i}].id")
        out.append(item)
    return out


def rerank(
    registry: RerankerRegistry,
    query: str,
    passages: Sequence[Passage | str | dict],
    reranker: str,
    options: dict[str, Any] | None = None,
    top_n: int | None = None,
    limits: RerankLimits = RerankLimits(),
    return_text: bool = True,
    cancelled: CancelCheck | None = None,
    ordered: bool = False,
    min_score: float | None = None,
) -> RerankResult:
    """``ordered``: the passages arrive ranked (best first), so a reranker may fuse with that
    order (``blend``); by default their order means nothing and no reranker uses it.
    ``min_score``: drop passages scored below it by the reranker that ranked, on its family's
    own scale (``list_rerankers``' ``score``).
    ``cancelled`` (default: the thread's check) is asked before scoring and by the reranker
    between its scoring batches; once it says stop, :class:`Cancelled` is raised."""
    check_query(query, limits.max_query_chars)
    if options is not None and not isinstance(options, dict):
        raise InvalidInput("options must be a JSON object")
    check_options(options)
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n <= 0):
        raise InvalidInput(f"top_n must be a positive integer, got {top_n!r}")
    items = to_passages(passages, limits)
    if not isinstance(ordered, bool):
        raise InvalidInput(f"ordered must be true or false, got {ordered!r}")
    registry.family(reranker)
    check(cancelled)
    with cancellable(cancelled):
        result = check_scores(registry.get(reranker, options or {}).rerank(query, items, top_n, ordered=ordered, min_score=min_score),
                              reranker)
    if not return_text:
        result = result.model_copy(update={"passages": [p.model_copy(update={"text": None}) for p in result.passages]})
    return result
