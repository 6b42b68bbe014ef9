"""Search results shaped for an agent's context: token budgets, whole passages, no repeats.

:func:`shaped_search` runs :func:`rerank_mcp.tools.search.search` for a pool of candidate
chunks and :func:`shape` turns its hits, still in rank order, into entries:

- ``dedupe``: a hit whose text is a near-duplicate of a better hit's in another document (the
  same words after case and punctuation are dropped, or word-trigram Jaccard similarity of at
  least 0.9) is folded into that entry and listed under its ``duplicates``;
- ``expand: N``: each hit gains the N chunks before and after it in its document; overlapping
  or adjacent spans of one document are merged into one contiguous passage;
- ``group_by: "document"``: one entry per document at the rank of its best hit, its matching
  (and expanded) chunks merged into passages; passages that do not touch are joined in the
  entry's text by :data:`SEPARATOR`;
- ``max_tokens``: entries are taken in rank order while they fit in the budget; one that does
  not fit is left out (counted in ``omitted``) and the next is tried, and if not even the best
  one fits it is cut at a word boundary (``truncated``), so an answer is never empty for want
  of room.

Tokens are counted with the embedding model's own tokenizer (for the default
all-MiniLM-L6-v2: BERT's uncased WordPiece), special tokens left out, over each entry's
``text``; the result reports the total in ``tokens`` and the tokenizer in ``tokenizer``.

Passage text is rebuilt from the stored chunks: chunks overlap, and each chunk records the
text between the previous chunk's end and its start (``gap``), so a passage's text is exactly
the document's text between its ``start`` and ``end`` offsets.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rerank_mcp.errors import InvalidInput, LimitExceeded, NotFound
from rerank_mcp.index.analyzers import CJK_CHARS
from rerank_mcp.index.contract import ChunkRow, Index, StoredChunk
from rerank_mcp.index.lines import end_line
from rerank_mcp.tools import payload
from rerank_mcp.tools.models import DuplicateHit, Hit, HitPassage, SearchResult
from rerank_mcp.tools.rerank.registry import RerankerRegistry
from rerank_mcp.tools.search import SearchLimits, search

GROUP_BY = ("document",)
SEPARATOR = "\n\n[…]\n\n"  # between the passages of one document entry that do not touch
POOL = 100  # candidate chunks fetched when a budget or grouping decides how many entries fit
MAX_EXPAND = 20
MAX_TOKENS = 1_000_000
DUP_JACCARD = 0.9

_WORD_RE = re.compile(r"\w+")


def check_options(max_tokens: Any = None, group_by: Any = None, expand: Any = 0, dedupe: Any = None,
                  k: Any = None) -> None:
    """Refuse bad shaping options with a message that says what is allowed."""
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
            raise InvalidInput(f"max_tokens must be a positive integer (a token budget, e.g. 2000), got {max_tokens!r}")
        if max_tokens > MAX_TOKENS:
            raise LimitExceeded(f"max_tokens={max_tokens} is over the limit of {MAX_TOKENS}")
    if group_by is not None and group_by not in GROUP_BY:
        raise InvalidInput(f"unknown group_by {group_by!r}; use 'document' (or leave it out for one entry per chunk)")
    if isinstance(expand, bool) or not isinstance(expand, int) or not 0 <= expand <= MAX_EXPAND:
        raise InvalidInput(f"expand must be an integer from 0 to {MAX_EXPAND} (neighbouring chunks on each side), "
                           f"got {expand!r}")
    if dedupe is not None and not isinstance(dedupe, bool):
        raise InvalidInput(f"dedupe must be true or false, got {dedupe!r}")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k <= 0):
        raise InvalidInput(f"k must be a positive integer, got {k!r}")


def shaping_requested(max_tokens: Any = None, group_by: Any = None, expand: Any = 0, dedupe: Any = None) -> bool:
    return max_tokens is not None or group_by is not None or bool(expand) or bool(dedupe)


def tokenizer_name(index: Index) -> str:
    return f"{index.embedding.model_name} tokenizer (word pieces, no special tokens)"


def shaped_search(
    index: Index,
    registry: RerankerRegistry | None,
    query: str,
    collection: str,
    k: int | None = None,
    *,
    max_tokens: int | None = None,
    group_by: str | None = None,
    expand: int = 0,
    dedupe: bool | None = None,
    limits: SearchLimits = SearchLimits(),
    detail: str | None = None,
    **search_options: Any,
) -> SearchResult:
    """``search`` with the shaping options; without any, exactly ``search`` (k defaults to 10).

    ``k`` caps the number of entries; with ``max_tokens`` and no ``k`` the budget alone decides
    (out of up to :data:`POOL` candidate chunks, or ``limits.max_k`` if smaller). ``detail``
    ('compact' or 'full', as the tool returns it: tools/payload.py): ``max_tokens`` bounds that
    whole payload; None: it bounds the hits' texts (the library's and the CLI's budget)."""
    check_options(max_tokens, group_by, expand, dedupe, k)
    if not shaping_requested(max_tokens, group_by, expand, dedupe):
        return search(index, registry, query, collection, k=k or 10, limits=limits, **search_options)
    want = k or 10
    if max_tokens is not None or group_by is not None:
        pool = max(k or 0, min(POOL, limits.max_k), want)
    else:  # expand and/or dedupe alone: a few spare hits for the ones folded away
        pool = min(max(want * 2, want + 10), limits.max_k)
    pool = min(pool, limits.max_k)
    res = search(index, registry, query, collection, k=pool, limits=limits, **search_options)
    return shape(index, res, k=k if (k is not None or max_tokens is not None) else want, max_tokens=max_tokens,
                 group_by=group_by, expand=expand, dedupe=dedupe, detail=detail)


# --------------------------------------------------------------------------- building blocks
@dataclass
class _Piece:
    """One stored chunk of a document, as much as shaping needs."""

    chunk_id: int
    ord: int
    text: str
    start: int
    end: int
    line: int | None
    gap: str | None


@dataclass
class _Entry:
    best: Hit  # the best-ranked hit the entry stands for
    doc_id: str
    pieces: dict[int, _Piece] = field(default_factory=dict)  # by ord
    duplicates: list[DuplicateHit] = field(default_factory=list)
    passages: list[HitPassage] = field(default_factory=list)
    text: str = ""
    tokens: int = 0
    truncated: bool = False
    cost: int = 0  # what it adds to the budget: its text's tokens, or (payload budgets) its JSON's


def _piece(row: ChunkRow | StoredChunk) -> _Piece:
    return _Piece(row.chunk_id, row.ord, row.text, row.start, row.end, row.line, row.gap)


def passages_of(pieces: Sequence[_Piece]) -> list[HitPassage]:
    """Merge chunks (any order) into contiguous passages: overlapping or touching chunks always,
    adjacent ones (consecutive ``ord``) across their recorded gap; the text is never repeated."""
    out: list[HitPassage] = []
    cur: dict[str, Any] | None = None
    for p in sorted(pieces, key=lambda x: (x.start, x.ord)):
        if cur is not None:
            joinable_gap = (p.ord == cur["last_ord"] + 1 and p.gap is not None and p.start > cur["end"]
                            and len(p.gap) == p.start - cur["end"])
            if p.start <= cur["end"] or joinable_gap:
                if p.start > cur["end"]:
                    cur["text"] += p.gap  # type: ignore[operator]
                    cur["end"] = p.start
                if p.end > cur["end"]:
                    cur["text"] += p.text[cur["end"] - p.start:]
                    cur["end"] = p.end
                    cur["last_line"] = end_line(p.line, p.text) if p.line is not None else None
                cur["last_ord"] = max(cur["last_ord"], p.ord)
                cur["ids"].append(p.chunk_id)
                continue
            out.append(_close(cur))
        cur = {"text": p.text, "start": p.start, "end": p.end, "line": p.line, "last_ord": p.ord,
               "last_line": end_line(p.line, p.text) if p.line is not None else None, "ids": [p.chunk_id]}
    if cur is not None:
        out.append(_close(cur))
    return out


def _close(cur: dict[str, Any]) -> HitPassage:
    return HitPassage(text=cur["text"], start=cur["start"], end=cur["end"], start_line=cur["line"],
                      end_line=cur["last_line"] if cur["line"] is not None else None, chunk_ids=cur["ids"])


def _signature(text: str) -> tuple[str, frozenset]:
    words = _WORD_RE.findall(text.lower())
    grams = frozenset(zip(words, words[1:], words[2:])) if len(words) >= 3 else frozenset((w,) for w in words)
    return " ".join(words), grams


def _near(a: tuple[str, frozenset], b: tuple[str, frozenset]) -> bool:
    if a[0] == b[0]:
        return True
    x, y = a[1], b[1]
    if not x or not y or min(len(x), len(y)) < DUP_JACCARD * max(len(x), len(y)):
        return False
    inter = len(x & y)
    return inter >= DUP_JACCARD * (len(x) + len(y) - inter)


def _duplicate(h: Hit, row: ChunkRow | None) -> DuplicateHit:
    line = row.line if row is not None else h.start_line
    return DuplicateHit(doc_id=h.doc_id, chunk_id=h.chunk_id, source=h.source, start=h.start, end=h.end,
                        start_line=line, end_line=end_line(line, h.text) if line is not None else None, score=h.score)


_WORD_END = re.compile(rf"[{CJK_CHARS}]|[^\s{CJK_CHARS}]+")


def _cut(text: str, budget: int, count) -> str:
    """The longest prefix of ``text`` ending at a word boundary with at most ``budget`` tokens
    (in Chinese, Japanese and Korean text, written without spaces, after any character)."""
    ends = [m.end() for m in _WORD_END.finditer(text)]
    lo, hi = 0, len(ends)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count([text[: ends[mid - 1]]])[0] <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text[: ends[lo - 1]] if lo else ""


# --------------------------------------------------------------------------- shaping
def shape(
    index: Index,
    result: SearchResult,
    *,
    k: int | None = None,
    max_tokens: int | None = None,
    group_by: str | None = None,
    expand: int = 0,
    dedupe: bool | None = None,
    detail: str | None = None,
) -> SearchResult:
    """Shape ``result``'s hits (see the module docstring). ``dedupe`` None: on whenever any other
    option is given. ``k`` caps the entries (None: no cap but the budget). ``detail``: with
    ``max_tokens``, the budget bounds the whole result as :func:`tools.payload.search_payload`
    renders it at that detail, counted over its JSON; None: the entries' texts only."""
    check_options(max_tokens, group_by, expand, dedupe, k)
    t0 = time.perf_counter()
    if dedupe is None:
        dedupe = max_tokens is not None or group_by is not None or expand > 0
    collection = result.collection
    hits = list(result.hits)
    rows = index.fetch_chunks(collection, [h.chunk_id for h in hits]) if hits else {}
    hits = [h for h in hits if h.chunk_id in rows]  # deleted since the search: gone

    # 1. near-duplicates across documents fold into the better hit
    folded: dict[int, list[DuplicateHit]] = {}
    kept: list[Hit] = []
    collapsed = 0
    if dedupe:
        reps: list[tuple[Hit, tuple[str, frozenset]]] = []
        for h in hits:
            sig = _signature(h.text)
            owner = next((r for r, rs in reps if r.doc_id != h.doc_id and _near(sig, rs)), None)
            if owner is not None:
                folded.setdefault(owner.chunk_id, []).append(_duplicate(h, rows.get(h.chunk_id)))
                collapsed += 1
                continue
            reps.append((h, sig))
            kept.append(h)
    else:
        kept = hits

    # 2. entries, filled in rank order: each hit (with its neighbours) joins the entry of its
    # document (group_by) or of the stretch it touches (expand), or opens a new one; it costs
    # the tokens it adds, so overlapping text is paid for once
    docs: dict[str, list[_Piece]] = {}

    def doc_pieces(doc_id: str) -> list[_Piece]:
        if doc_id not in docs:
            try:
                docs[doc_id] = [_piece(c) for c in index.document(collection, doc_id).chunks]
            except NotFound:  # deleted meanwhile: only the hit itself is known
                docs[doc_id] = []
        return docs[doc_id]

    shaped = group_by is not None or expand > 0
    count = index.embedding.count_tokens
    counting = max_tokens is not None or shaped
    chosen: list[_Entry] = []
    omitted = 0
    used = 0
    whole = max_tokens is not None and detail is not None
    budget = max_tokens
    budgeted = {"max_tokens": max_tokens, "tokenizer": tokenizer_name(index), "group_by": group_by,
                "expand": expand or None}

    def hit_of(e: _Entry, rank: int) -> Hit:
        return _hit(e, rank, shaped, max_tokens is not None or shaped, group_by)

    def priced(e: _Entry, rank: int) -> _Entry:
        e.cost = payload.count(payload.hit_payload(hit_of(e, rank), detail or "full"), count) + 1 if whole else e.tokens
        return e

    if whole:  # what the result costs without hits; the hits share the rest
        bare = result.model_copy(update={"hits": [], **budgeted, "tokens": max_tokens, "omitted": len(hits),
                                         "collapsed": len(hits) if dedupe else None})
        envelope = payload.count(payload.search_payload(bare, detail), count)
        budget = max_tokens - envelope  # (a budget too small for the best hit is an error saying what works)

    def touches(e: _Entry, pieces: Mapping[int, _Piece]) -> bool:
        return min(e.pieces) <= max(pieces) + 1 and min(pieces) <= max(e.pieces) + 1

    for h in kept:
        row = rows[h.chunk_id]
        pieces = {row.ord: _piece(row)}
        if expand:
            pieces.update({p.ord: p for p in doc_pieces(h.doc_id) if abs(p.ord - row.ord) <= expand})
        dups = folded.get(h.chunk_id, [])
        same = [e for e in chosen if e.doc_id == h.doc_id]
        if group_by == "document":
            targets = same[:1]
        elif expand:
            targets = [e for e in same if touches(e, pieces)]
        else:
            targets = []
        if targets and all(o in t.pieces for t in targets for o in pieces) and len(targets) == 1:
            targets[0].duplicates.extend(dups)  # nothing new: already inside an entry
            continue
        if not targets and k is not None and len(chosen) >= k:
            continue  # no room for another entry; later hits may still extend the chosen ones
        merged_pieces = dict(pieces)
        for t in targets:
            merged_pieces.update(t.pieces)
        passages = passages_of(list(merged_pieces.values()))
        text = SEPARATOR.join(p.text for p in passages)
        n = count([text])[0] if counting else 0
        new = priced(_Entry(best=targets[0].best if targets else h, doc_id=h.doc_id, pieces=merged_pieces,
                            duplicates=[d for t in targets for d in t.duplicates] + list(dups), passages=passages,
                            text=text, tokens=n), chosen.index(targets[0]) + 1 if targets else len(chosen) + 1)
        cost = new.cost - sum(t.cost for t in targets)
        if budget is not None and used + cost > budget:
            if not chosen:  # not even the best entry fits: cut it rather than answer nothing
                e = _fit(new, budget, count, priced) if whole else new
                if not whole:
                    _truncate(e, budget, count)
                if e is not None and e.text:
                    chosen.append(e)
                    used += e.cost
                    continue
                if whole and e is None and not omitted:
                    words = 1  # the least of the best hit that has a word in it
                    while not _cut_to(new, words, count).text and words < new.tokens:
                        words += 1
                    least = envelope + priced(_cut_to(new, words, count), 1).cost + 4  # (a number's digits)
                    raise InvalidInput(f"max_tokens={max_tokens} is too small for this result: its fields take "
                                       f"{envelope} tokens and its best hit at least {least - envelope} more; give "
                                       f"at least {least}")
            omitted += 1
            continue
        if targets:
            keep = targets[0]  # the best-ranked of them: entries are in rank order
            for t in targets[1:]:
                chosen.remove(t)
            keep.pieces, keep.passages, keep.text, keep.tokens = merged_pieces, passages, text, n
            keep.duplicates, keep.cost = new.duplicates, new.cost
        else:
            chosen.append(new)
        used += cost

    def finish(entries: list[_Entry], omitted: int) -> SearchResult:
        timings = dict(result.timings_ms)
        timings["shape_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        timings["total_ms"] = round(timings.get("total_ms", 0.0) + timings["shape_ms"], 3)
        sized = max_tokens is not None or shaped
        return result.model_copy(update={
            "hits": [hit_of(e, rank) for rank, e in enumerate(entries, start=1)], "timings_ms": timings,
            **budgeted, "tokens": sum(e.tokens for e in entries) if sized else None,
            "tokenizer": budgeted["tokenizer"] if sized else None,
            "omitted": omitted if max_tokens is not None else None, "collapsed": collapsed if dedupe else None,
        })

    res = finish(chosen, omitted)
    if not whole:
        return res
    # The whole payload, counted as the client gets it; ``tokens`` then reports that count. The
    # parts were priced one by one: where their sum is off (a number's digits), drop or cut the last.
    while True:
        n = payload.count(payload.search_payload(res, detail), count)
        res = res.model_copy(update={"tokens": n})
        n = payload.count(payload.search_payload(res, detail), count)
        if n <= max_tokens or not chosen:
            return res.model_copy(update={"tokens": n})
        if len(chosen) > 1:
            chosen.pop()
            omitted += 1
        else:
            _truncate(chosen[0], chosen[0].tokens - (n - max_tokens), count)
            if not chosen[0].text:
                chosen.pop()
        res = finish(chosen, omitted)


def _hit(e: _Entry, rank: int, shaped: bool, sized: bool, group_by: str | None) -> Hit:
    """The hit an entry stands for, at ``rank``."""
    h = e.best
    first, last = (e.passages[0], e.passages[-1]) if e.passages else (None, None)
    upd: dict[str, Any] = {"rank": rank}
    if shaped:
        upd.update(text=e.text, start=first.start if first else h.start, end=last.end if last else h.end,
                   start_line=first.start_line if first else h.start_line,
                   end_line=last.end_line if last else h.end_line,
                   chunk_ids=[c for p in e.passages for c in p.chunk_ids],
                   passages=e.passages if group_by is not None else None)
    if sized:
        upd["tokens"] = e.tokens
    if e.duplicates:
        upd["duplicates"] = e.duplicates
    if e.truncated:
        upd["truncated"] = True
        if not shaped:
            upd.update(text=e.text, end=last.end if last else h.end, end_line=last.end_line if last else h.end_line)
    return h.model_copy(update=upd)


def _cut_to(e: _Entry, budget: int, count) -> _Entry:
    """A copy of ``e`` cut to ``budget`` tokens of text."""
    c = copy.copy(e)
    _truncate(c, budget, count)
    return c


def _fit(e: _Entry, budget: int, count, priced) -> _Entry | None:
    """``e`` cut to the longest text whose whole entry (its JSON, every field) costs at most
    ``budget``; None when not even a word of it fits."""
    lo, hi, best = 1, max(1, e.tokens), None
    while lo <= hi:
        mid = (lo + hi) // 2
        c = priced(_cut_to(e, mid, count), 1)
        if c.text and c.cost <= budget:
            best, lo = c, mid + 1
        else:
            hi = mid - 1
    return best


def _truncate(e: _Entry, budget: int, count) -> None:
    """Cut ``e`` to ``budget`` tokens: whole passages while they fit, then a word-boundary prefix."""
    sep_tokens = count([SEPARATOR])[0]
    keep: list[HitPassage] = []
    used = 0
    for p in e.passages:
        room = budget - used - (sep_tokens if keep else 0)
        if room <= 0:
            break
        n = count([p.text])[0]
        if n <= room:
            keep.append(p)
            used += n + (sep_tokens if len(keep) > 1 else 0)
            continue
        cut = _cut(p.text, room, count)
        if cut:
            line_end = end_line(p.start_line, cut) if p.start_line is not None else None
            ids = [c for c in p.chunk_ids if e.pieces and any(x.chunk_id == c and x.start < p.start + len(cut)
                                                               for x in e.pieces.values())] or p.chunk_ids[:1]
            keep.append(HitPassage(text=cut, start=p.start, end=p.start + len(cut), start_line=p.start_line,
                                   end_line=line_end, chunk_ids=ids))
        break
    while True:
        e.passages = keep
        e.text = SEPARATOR.join(p.text for p in keep)
        e.tokens = count([e.text])[0] if e.text else 0
        if e.tokens <= budget or not keep:
            break
        keep = keep[:-1]  # word pieces across a joint can differ by one: never over the budget
    e.truncated = True
