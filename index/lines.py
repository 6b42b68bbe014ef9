"""Line numbers from character offsets.

A line ends at ``\\r\\n``, ``\\n`` or a lone ``\\r`` (Python's universal newlines, what editors
show), so a CRLF file gets the same line numbers as its LF twin. Lines are 1-based and an
offset on a line break belongs to the line the break ends.

At ingest every chunk records the line its first character is on (``line``); its last line is
that plus the line breaks inside its text (:func:`end_line`), so a hit cites ``start_line`` /
``end_line`` without the document's full text.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

_BREAK_RE = re.compile(r"\r\n|\n|\r")


def count_breaks(text: str) -> int:
    """How many line breaks ``text`` holds (``\\r\\n`` counts once)."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def end_line(start_line: int, text: str) -> int:
    """The line of the last character of ``text`` when its first character is on ``start_line``
    (a break at the very end of ``text`` does not open a new line)."""
    n = count_breaks(text)
    if text.endswith(("\n", "\r")):
        n -= 1
    return start_line + max(n, 0)


class LineIndex:
    """Line starts of one text, for offset -> line and line -> offset lookups."""

    def __init__(self, text: str) -> None:
        self.length = len(text)
        self.starts = [0] + [m.end() for m in _BREAK_RE.finditer(text)]
        # a final break opens no line of its own (the file's last line ends with it)
        if len(self.starts) > 1 and self.starts[-1] == self.length:
            self.starts.pop()

    @property
    def lines(self) -> int:
        return len(self.starts)

    def line_at(self, offset: int) -> int:
        """The 1-based line of character ``offset``."""
        return bisect.bisect_right(self.starts, max(0, offset)) if self.starts else 1

    def span(self, start: int, end: int) -> tuple[int, int]:
        """First and last line of the characters ``[start, end)``."""
        return self.line_at(start), self.line_at(max(start, end - 1))

    def offsets(self, first: int, last: int) -> tuple[int, int]:
        """Character range ``[start, end)`` of lines ``first..last`` (1-based, inclusive, clamped),
        the last line's break left out."""
        first = max(1, first)
        last = min(self.lines, last)
        if first > last:
            return self.length, self.length
        start = self.starts[first - 1]
        end = self.starts[last] if last < self.lines else self.length
        return start, end


def parse_line_range(spec: str, total: int | None = None) -> tuple[int, int]:
    """``"10-20"``, ``"10"``, ``"L10-L20"``, ``"10-"`` -> (first, last), 1-based inclusive."""
    from rerank_mcp.errors import InvalidInput

    m = re.fullmatch(r"\s*L?(\d+)\s*(?:(-)\s*(?:L?(\d+))?)?\s*", spec or "")
    if not m:
        raise InvalidInput(f"lines must look like 10-20, 10 or 10- (1-based, inclusive), got {spec!r}")
    first = int(m.group(1))
    last = int(m.group(3)) if m.group(3) else (total if m.group(2) and total else (10**9 if m.group(2) else first))
    if first < 1 or last < first:
        raise InvalidInput(f"lines {spec!r}: the first line must be >= 1 and not after the last")
    return first, last


def lines_of_chunks(chunks: Sequence[tuple[int, int, str]], text: str) -> list[tuple[int, str]]:
    """For each chunk ``(start, end, chunk_text)`` of ``text`` in order: its first line and the
    text between the previous chunk's end and its start (``''`` where they overlap or touch;
    for the first chunk, the text before it)."""
    idx = LineIndex(text)
    out = []
    prev_end = 0
    for s, e, _t in chunks:
        gap = text[prev_end:s] if s > prev_end else ""
        out.append((idx.line_at(s), gap))
        prev_end = max(prev_end, e)
    return out
