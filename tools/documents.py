"""A stored document's text, rebuilt from its chunks, and line ranges of it (for citations).

The full text is not stored apart from the chunks: chunks overlap, and each records the text
between the previous chunk's end and its own start (``gap``), so chunk texts and gaps give back
the document's text from its start to the end of its last chunk (trailing blank lines aside).
Documents ingested before gaps were recorded cannot be rebuilt where chunks do not touch; the
error says to re-ingest them.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.contract import Index, StoredChunk
from rerank_mcp.index.lines import LineIndex, parse_line_range


class DocumentLines(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    source: str | None = None
    start_line: int = Field(description="first line returned, 1-based")
    end_line: int = Field(description="last line returned, inclusive")
    total_lines: int
    start: int = Field(description="character offset of start_line in the document")
    end: int
    text: str = Field(description="the lines, without the last one's line break")


def rebuild_text(chunks: Sequence[StoredChunk], doc_id: str = "") -> str:
    """The document's text up to the end of its last chunk, from its chunks in order."""
    text: list[str] = []
    pos = 0
    for c in sorted(chunks, key=lambda c: c.ord):
        start, end, body = c.start, c.end, c.text
        if start > pos:
            gap = c.gap
            if not isinstance(gap, str) or len(gap) != start - pos:
                raise InvalidInput(
                    f"document {doc_id!r} was stored before line ranges were recorded; ingest it again to read lines"
                )
            text.append(gap)
            pos = start
        if end > pos:
            text.append(body[pos - start:])
            pos = end
    return "".join(text)


def read_lines(index: Index, collection: str, doc_id: str, lines: str) -> DocumentLines:
    """Lines ``lines`` (``"10-20"``, ``"10"``, ``"10-"``, ``"L10-L20"``) of a stored document."""
    doc = index.document(collection, doc_id)
    text = rebuild_text(doc.chunks, doc_id)
    idx = LineIndex(text)
    first, last = parse_line_range(lines, idx.lines)
    if first > idx.lines:
        raise InvalidInput(f"document {doc_id!r} has {idx.lines} lines; line {first} is past its end")
    last = min(last, idx.lines)
    start, end = idx.offsets(first, last)
    body = text[start:end]
    for brk in ("\r\n", "\n", "\r"):
        if body.endswith(brk) and last < idx.lines:
            body = body[: -len(brk)]
            end -= len(brk)
            break
    src = doc.source or (doc.metadata or {}).get("source")
    return DocumentLines(id=doc_id, source=src if isinstance(src, str) else None, start_line=first, end_line=last,
                         total_lines=idx.lines, start=start, end=end, text=body)
