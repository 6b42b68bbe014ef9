"""Token-aware chunking with overlap that respects paragraph and sentence boundaries.

Prose is cut into units: paragraphs, then sentences inside paragraphs that are too long, then
word runs inside sentences that are still too long. Units are packed greedily into chunks of
at most ``size`` tokens (counted with the embedding model's tokenizer); each new chunk starts
with the trailing units of the previous one, up to ``overlap`` tokens. A chunk's text is the
exact span of the source it covers, so offsets point back into the document.

Source code (:func:`chunk_code`, chosen by :func:`chunk_document` for documents of kind
``code``) is cut into blocks instead: runs of lines separated by blank lines, with a new block
at every definition line (``def``, ``class``, ``function``, ``func``, ``fn``, ``struct``, ...),
the comments and decorators right above a definition kept with it. Blocks over the size are cut
at lines, lines over it at words; blocks are packed as paragraphs are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rerank_mcp.errors import InvalidInput

TokenCounter = Callable[[Sequence[str]], list[int]]

# the chunk_size / chunk_overlap settings' defaults, in tokens
CHUNK_SIZE = 200
CHUNK_OVERLAP = 40

_PARA_RE = re.compile(r"\n\s*\n")
# Sentence ends: Latin ones need the whitespace that follows them; Chinese and Japanese ones
# (。！？； and their full-width and half-width forms, with a closing quote or bracket after them)
# end a sentence with or without it, since those scripts put no space between sentences.
_CJK_END = "。！？；．｡"
_CJK_CLOSE = "」』”’）》〉】"
_SENT_RE = re.compile(
    rf"(?<=[.!?])[\"')\]]*\s+(?=\S)"
    rf"|(?:(?<=[{_CJK_END}])|(?<=[{_CJK_END}][{_CJK_CLOSE}]))(?![{_CJK_CLOSE}])\s*(?=\S)"
)
_WORD_RE = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int  # character offsets into the source text
    end: int
    tokens: int


def approx_token_counter(texts: Sequence[str]) -> list[int]:
    """A tokenizer-free estimate (word pieces ~ 1.3 per word), for tests and fallbacks."""
    return [max(1, round(len(re.findall(r"\w+|[^\w\s]", t)) * 1.3)) if t.strip() else 0 for t in texts]


def _spans(text: str, pattern: re.Pattern[str], start: int, end: int) -> list[tuple[int, int]]:
    """Split text[start:end] at ``pattern`` into non-blank (start, end) spans."""
    out, pos = [], start
    for m in pattern.finditer(text, start, end):
        if text[pos : m.start()].strip():
            out.append((pos, m.start()))
        pos = m.end()
    if text[pos:end].strip():
        out.append((pos, end))
    return [_strip(text, s, e) for s, e in out]


def _strip(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _words(text: str, s: int, e: int, size: int, count: TokenCounter) -> list[tuple[int, int]]:
    """Split an over-long sentence into runs of words of at most ``size`` tokens."""
    words = [(m.start(), m.end()) for m in _WORD_RE.finditer(text, s, e)]
    costs = count([text[a:b] for a, b in words])
    out: list[tuple[int, int]] = []
    run_start, run_cost, prev_end = None, 0, s
    for (a, b), c in zip(words, costs):
        if run_start is not None and run_cost + c > size:
            out.append((run_start, prev_end))
            run_start, run_cost = None, 0
        if c > size:  # one whitespace-free word over the size (a URL, a base64 blob): cut it
            out.extend(_split_word(text, a, b, size, count))
            continue
        if run_start is None:
            run_start = a
        run_cost += c
        prev_end = b
    if run_start is not None:
        out.append((run_start, prev_end))
    return out


def _split_word(text: str, a: int, b: int, size: int, count: TokenCounter) -> list[tuple[int, int]]:
    """Cut text[a:b] into the longest pieces of at most ``size`` tokens (binary search)."""
    out: list[tuple[int, int]] = []
    s = a
    while s < b:
        lo, hi = s + 1, b
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count([text[s:mid]])[0] <= size:
                lo = mid
            else:
                hi = mid - 1
        out.append((s, lo))
        s = lo
    return out


def chunk_text(text: str, size: int, overlap: int, count: TokenCounter = approx_token_counter) -> list[Chunk]:
    """Chunk ``text`` into pieces of at most ``size`` tokens with ``overlap`` tokens of overlap."""
    if size <= 0:
        raise InvalidInput(f"chunk_size must be positive, got {size}")
    if overlap < 0 or overlap >= size:
        raise InvalidInput(f"chunk_overlap must be >= 0 and smaller than chunk_size ({size}), got {overlap}")
    if not text.strip():
        return []
    # 1. units: paragraphs; paragraphs over size -> sentences; sentences over size -> word runs
    units: list[tuple[int, int]] = []
    paras = _spans(text, _PARA_RE, 0, len(text))
    para_cost = count([text[s:e] for s, e in paras])
    for (ps, pe), pc in zip(paras, para_cost):
        if pc <= size:
            units.append((ps, pe))
            continue
        sents = _spans(text, _SENT_RE, ps, pe)
        for (ss, se), sc in zip(sents, count([text[s:e] for s, e in sents])):
            units.extend([(ss, se)] if sc <= size else _words(text, ss, se, size, count))
    costs = count([text[s:e] for s, e in units])
    return _pack(text, units, costs, size, overlap)


def _pack(text: str, units: list[tuple[int, int]], costs: list[int], size: int, overlap: int) -> list[Chunk]:
    """Greedy packing of ``units`` (ordered spans) into chunks with unit-aligned overlap."""
    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        j, total = i, 0
        while j < len(units) and (j == i or total + costs[j] <= size):
            total += costs[j]
            j += 1
        s, e = units[i][0], units[j - 1][1]
        chunks.append(Chunk(text=text[s:e], start=s, end=e, tokens=total))
        if j >= len(units):
            break
        # next chunk starts with the trailing units of this one, up to `overlap` tokens
        back, k = 0, j
        while k - 1 > i and back + costs[k - 1] <= overlap:
            back += costs[k - 1]
            k -= 1
        # the overlap must leave room for the next unit, else the next chunk would only
        # repeat the tail of this one
        while k < j and back + costs[j] > size:
            back -= costs[k]
            k += 1
        i = k
    return chunks


# --------------------------------------------------------------------------- source code
_DEF_RE = re.compile(
    r"""^[ \t]*(?:
        (?:(?:export|default|pub(?:\([a-z]+\))?|public|private|protected|internal|static|final|abstract|async|
              override|virtual|inline|extern|unsafe|open|sealed|data|partial)\s+)*
        (?:def|class|function\*?|func|fn|impl|struct|enum|trait|interface|module|namespace|object|record|union|
           package|mod|sub|proc|fun|macro_rules!)\b
      | (?:export\s+)?(?:const|let|var)\s+\w+\s*=\s*(?:async\s*)?(?:function\b|\([^)]*\)\s*=>|\w+\s*=>)
      | (?:public|private|protected)\b
    )
    | ^[A-Za-z_][\w:<>*&, ]*[ *&]\**~?[A-Za-z_][\w:]*\s*\([^;]*$   # a C-like function at column 0
    """,
    re.VERBOSE,
)
_PREFIX_RE = re.compile(r"^[ \t]*(?:@|#(?!include|define|if|else|endif|pragma)|//|/\*|\*|--|;;|\"\"\"|\'\'\')")
_BLANK_RE = re.compile(r"^[ \t]*$")


def _line_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line's content, line breaks left out."""
    out, pos = [], 0
    for m in re.finditer(r"\r\n|\n|\r", text):
        out.append((pos, m.start()))
        pos = m.end()
    if pos < len(text):
        out.append((pos, len(text)))
    return out


def _rstrip(text: str, s: int, e: int) -> int:
    while e > s and text[e - 1].isspace():
        e -= 1
    return e


def code_blocks(text: str) -> list[tuple[int, int]]:
    """Blocks of source code as spans: each starts at its first line's start (indentation kept)
    and ends after its last non-blank character."""
    lines = _line_spans(text)
    blocks: list[list[int]] = []  # line indices of each block
    cur: list[int] = []
    for i, (a, b) in enumerate(lines):
        line = text[a:b]
        if _BLANK_RE.match(line):
            if cur:
                blocks.append(cur)
                cur = []
            continue
        if cur and _DEF_RE.match(line):
            # comments and decorators just above the definition go with it
            k = len(cur)
            while k > 0 and _PREFIX_RE.match(text[lines[cur[k - 1]][0] : lines[cur[k - 1]][1]]):
                k -= 1
            if k > 0:
                blocks.append(cur[:k])
                cur = cur[k:]
        cur.append(i)
    if cur:
        blocks.append(cur)
    return [(lines[blk[0]][0], _rstrip(text, lines[blk[0]][0], lines[blk[-1]][1])) for blk in blocks]


def chunk_code(text: str, size: int, overlap: int, count: TokenCounter = approx_token_counter) -> list[Chunk]:
    """Chunk source code at blank lines and definitions (see the module docstring)."""
    if size <= 0:
        raise InvalidInput(f"chunk_size must be positive, got {size}")
    if overlap < 0 or overlap >= size:
        raise InvalidInput(f"chunk_overlap must be >= 0 and smaller than chunk_size ({size}), got {overlap}")
    if not text.strip():
        return []
    blocks = code_blocks(text)
    all_lines = _line_spans(text)
    units: list[tuple[int, int]] = []
    for (bs, be), bc in zip(blocks, count([text[s:e] for s, e in blocks])):
        if bc <= size:
            units.append((bs, be))
            continue
        lines = [(a, _rstrip(text, a, min(b, be))) for a, b in all_lines if bs <= a < be and text[a:b].strip()]
        for (ls, le), lc in zip(lines, count([text[s:e] for s, e in lines])):
            units.extend([(ls, le)] if lc <= size else _words(text, ls, le, size, count))
    costs = count([text[s:e] for s, e in units])
    return _pack(text, units, costs, size, overlap)


def chunk_document(text: str, size: int, overlap: int, count: TokenCounter = approx_token_counter,
                   kind: str | None = None) -> list[Chunk]:
    """The chunker for a document of ``kind``: ``code`` by blocks, everything else as prose."""
    if kind == "code":
        return chunk_code(text, size, overlap, count)
    return chunk_text(text, size, overlap, count)
