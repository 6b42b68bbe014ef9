"""Results as an agent receives them: the structured content of a tool call, sized for a context
window.

``detail: "compact"`` (the default of the search tool) keeps what an agent reads and cites:
each hit's rank, text, score (4 significant digits), document, metadata, and its lines in a
file (else its character offsets), and the budget figures. It leaves out what is empty or null,
repeats no path (a file's ``source`` and ``metadata.source`` are its ``doc_id``), leaves out each
passage's copy of text already in its hit's text, and gives provenance (each stage's rank and
score), merged chunk ids, a file hit's character offsets, the tokenizer's name and timings only
with ``detail: "full"``,
which is the whole result model, every field included.

``list_rerankers`` is compact the same way: its full detail adds each family's options as a
JSON schema and what its scores mean.

The payload's size is counted over its JSON as the client gets it (:func:`to_json`), with the
embedding model's word-piece tokenizer: :mod:`tools.shaping` packs hits so that this count
stays within ``max_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel

Detail = Literal["compact", "full"]
DETAILS = ("compact", "full")
FULL_ONLY = {"timings_ms", "tokenizer"}  # result fields left out of compact results
HIT_FULL_ONLY = {"provenance", "chunk_ids"}  # hit fields left out of compact hits
SCORE_DIGITS = 4  # significant digits of a compact hit's score


def to_json(payload: Any) -> str:
    """The JSON a client receives (compact separators, Unicode as is)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def count(payload: Any, count_tokens: Callable[[Sequence[str]], list[int]]) -> int:
    """Tokens of ``payload``'s JSON under ``count_tokens`` (the embedding model's tokenizer)."""
    return count_tokens([to_json(payload)])[0]


def _empty(v: Any) -> bool:
    return v is None or v == [] or v == {}


def _said_by_path(h: dict[str, Any]) -> dict[str, Any]:
    """The metadata a file's hit need not repeat: what its path's name gives (index.loaders.kind_of),
    where the hit is a file's (its source is its path)."""
    meta = h.get("metadata") or {}
    path = meta.get("source") or h.get("source")
    if not isinstance(path, str) or path != h.get("doc_id") or "type" not in meta:
        return {}
    from rerank_mcp.index.loaders import kind_of

    kind, language = kind_of(path)
    return {"type": kind, "language": language}


def compact_hit(h: dict[str, Any]) -> dict[str, Any]:
    doc = h.get("doc_id")
    lines = h.get("start_line") is not None and h.get("end_line") is not None
    out: dict[str, Any] = {}
    for k, v in h.items():
        if k in HIT_FULL_ONLY or _empty(v) or (k == "truncated" and v is False):
            continue
        if (k == "source" and v == doc) or (k in ("start", "end") and lines):  # a file's hit: cited by lines
            continue
        if k == "score" and isinstance(v, float):
            v = float(f"{v:.{SCORE_DIGITS}g}")
        if k == "metadata":
            said = _said_by_path(h)  # a file's type and language: its name's suffix says them
            v = {mk: mv for mk, mv in v.items()
                 if not (mk == "source" and mv in (doc, h.get("source"))) and said.get(mk, ...) != mv}
            if not v:
                continue
        elif k == "passages":  # their texts are the hit's text, joined
            v = [{pk: pv for pk, pv in p.items() if pk not in ("text", "chunk_ids") and pv is not None} for p in v]
        elif k == "duplicates":
            v = [{dk: dv for dk, dv in d.items() if dv is not None and not (dk == "source" and dv == d.get("doc_id"))}
                 for d in v]
        out[k] = v
    return out


def hit_payload(hit: BaseModel, detail: str = "compact") -> dict[str, Any]:
    d = hit.model_dump(mode="json")
    return d if detail == "full" else compact_hit(d)


def search_payload(result: BaseModel | dict[str, Any], detail: str = "compact") -> dict[str, Any]:
    """A search result as the tool returns it (see the module docstring)."""
    d = result.model_dump(mode="json") if isinstance(result, BaseModel) else dict(result)
    if detail == "full":
        return d
    out = {k: v for k, v in d.items() if k not in FULL_ONLY and k != "hits" and not _empty(v)}
    out["hits"] = [compact_hit(h) for h in d.get("hits", [])]
    return out


RERANKER_FULL_ONLY = {"options_schema", "score", "needs_network"}


def rerankers_payload(infos: Sequence[BaseModel], detail: str = "compact") -> list[dict[str, Any]]:
    """``list_rerankers``' result: compact, each family's status, summary, default model, languages,
    what is missing and its option names; ``full``, every field with the options' JSON schemas."""
    out = []
    for info in infos:
        d = info.model_dump(mode="json")
        if detail != "full":
            names = list((d.get("options_schema") or {}).get("properties", {}))
            d = {k: v for k, v in compact(d).items() if k not in RERANKER_FULL_ONLY}
            if names:
                d["options"] = names
        out.append(d)
    return out


def compact(payload: Any) -> Any:
    """Nulls and empty lists or objects left out, at every depth (for results other than search's)."""
    if isinstance(payload, dict):
        return {k: compact(v) for k, v in payload.items() if not _empty(v)}
    if isinstance(payload, list):
        return [compact(v) for v in payload]
    return payload
