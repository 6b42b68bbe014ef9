"""``documents()`` and ``document()`` give typed records on every engine, equal between the
engines for the same documents, and serialise to the JSON the resources have always shown."""

from __future__ import annotations

from rerank_mcp.index.contract import DocumentSummary, StoredChunk, StoredDocument
from rerank_mcp.tools.ingest import ingest

TEXT = "First line about volcanoes.\nSecond line about lava and ash.\n\nThird paragraph on basalt cooling."


def test_documents_are_typed_records_with_the_old_json_shape(any_engine):
    ingest(any_engine, "kb", [{"id": "v", "text": TEXT, "metadata": {"topic": "geo", "year": 2024}}],
           chunk_size=16, chunk_overlap=0)
    [summary] = any_engine.documents("kb")
    assert isinstance(summary, DocumentSummary)
    assert list(summary.as_dict()) == ["id", "metadata", "source", "chunks", "chars", "content_hash", "updated_at"]
    assert (summary.id, summary.metadata, summary.chars) == ("v", {"topic": "geo", "year": 2024}, len(TEXT))
    doc = any_engine.document("kb", "v")
    assert isinstance(doc, StoredDocument) and all(isinstance(c, StoredChunk) for c in doc.chunks)
    assert list(doc.as_dict()) == ["id", "metadata", "source", "content_hash", "chunks"]
    assert list(doc.as_dict()["chunks"][0]) == ["chunk_id", "ord", "text", "start", "end", "line", "gap"]
    assert summary.chunks == len(doc.chunks) > 1 and doc.content_hash == summary.content_hash
    assert [c.ord for c in doc.chunks] == list(range(len(doc.chunks))) and doc.chunks[0].line == 1
    assert "".join((c.gap or "") + c.text for c in doc.chunks).startswith("First line about volcanoes.")
