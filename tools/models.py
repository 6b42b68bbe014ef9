"""Request and response types shared by the library, the CLI and the MCP tools.

Frozen pydantic models end to end: the MCP tools return these very objects, so clients get
an ``outputSchema`` and structured content for free.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rerank_mcp.index.fusion import METHODS
from rerank_mcp.tools.rerank.base import Passage, RankedPassage, RerankResult  # noqa: F401  (re-exported)
from rerank_mcp.tools.schema import Frozen

Mode = Literal["dense", "bm25", "hybrid"]
Fusion = Literal[tuple(METHODS)]  # type: ignore[valid-type]  # the fusion methods, declared in index/fusion.py


class DocumentIn(BaseModel):
    """A document to ingest. Without an id, one is derived from its content."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str | None = Field(None, description="stable id; re-ingesting the same id replaces the document")
    text: str = Field(description="the document's text")
    metadata: dict[str, Any] = Field(default_factory=dict, description="JSON metadata, filterable in search")


class DocOutcome(Frozen):
    id: str | None
    source: str | None = None
    status: Literal["added", "updated", "unchanged", "deleted", "failed", "skipped"]
    chunks: int = 0
    reason: str | None = None


class IngestResult(Frozen):
    collection: str
    documents: list[DocOutcome]
    added: int
    updated: int
    unchanged: int
    failed: int
    chunks_written: int
    elapsed_ms: float
    chunks_per_s: float | None = None
    skipped: int = Field(0, description="files a folder walk found that hold no text (empty): not stored, not an error")
    notes: list[str] = Field(default_factory=list, description="what folder walks left out (files of unsupported "
                             "types) and, when nothing was read, why")
    deleted: int = Field(0, description="with sync: documents whose files are gone from the synced folders")
    synced: list[str] | None = Field(None, description="with sync: the folders kept in sync")
    analyzer: str | None = Field(None, description="the collection's BM25 analyzer ('legacy': re-analyze with "
                                 "`rerank-mcp reindex NAME --analyzer auto` for CJK text)")


class Provenance(Frozen):
    dense_rank: int | None = None
    dense_score: float | None = None
    bm25_rank: int | None = None
    bm25_score: float | None = None
    fused_rank: int | None = None
    fused_score: float | None = None
    rerank_rank: int | None = None
    rerank_score: float | None = None


class HitPassage(Frozen):
    """A contiguous span of a document: ``text`` is the document's text from ``start`` to ``end``."""

    text: str | None = Field(None, description="with detail 'full' (compact results: the hit's text holds it)")
    start: int
    end: int
    start_line: int | None = None
    end_line: int | None = None
    chunk_ids: list[int] = Field(default_factory=list)


class DuplicateHit(Frozen):
    """Where else the same (or nearly the same) text was found."""

    doc_id: str
    chunk_id: int
    source: str | None = None
    start: int
    end: int
    start_line: int | None = None
    end_line: int | None = None
    score: float


class Hit(Frozen):
    rank: int
    chunk_id: int
    doc_id: str
    text: str
    score: float = Field(description="the final score: rerank score if reranked, else fused or arm score")
    metadata: dict[str, Any] = Field(default_factory=dict)
    start: int | None = Field(None, description="character offset of the chunk in its document (a file's hit: "
                              "with detail 'full')")
    end: int | None = None
    provenance: Provenance | None = Field(None, description="each stage's rank and score (detail 'full')")
    source: str | None = Field(None, description="the file the document was read from")
    start_line: int | None = Field(None, description="1-based line of start in the document (a file: its lines)")
    end_line: int | None = Field(None, description="1-based line of the last character, inclusive")
    tokens: int | None = Field(None, description="tokens in text (with max_tokens, group_by or expand)")
    chunk_ids: list[int] | None = Field(None, description="every chunk merged into this entry (group_by, expand)")
    passages: list[HitPassage] | None = Field(
        None, description="group_by document: the contiguous passages joined in text, each with its offsets"
    )
    duplicates: list[DuplicateHit] | None = Field(
        None, description="near-duplicates of this text in other documents, collapsed into this entry"
    )
    truncated: bool | None = Field(None, description="text was cut to fit max_tokens")


class RerankStep(BaseModel):
    """An optional rerank step inside ``search``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reranker: str = Field("auto", description="reranker family, see list_rerankers; auto: the best one present")
    options: dict[str, Any] = Field(default_factory=dict, description="family options, e.g. {'model': ...}")
    candidates: int = Field(50, ge=1, le=1000, description="how many first-stage hits to rerank")
    min_score: float | None = Field(
        None, allow_inf_nan=False,
        description="keep only reranked hits scored at least this, on the family's scale (list_rerankers' score)")


class SearchResult(Frozen):
    query: str
    collection: str
    mode: Mode
    fusion: Fusion | None = None
    hits: list[Hit]
    reranker: str | None = None
    rerank_model: str | None = None
    rerank_fallback: str | None = None
    rerank_used: str | None = Field(None, description="the reranker that ranked, when not the one named (auto's "
                                    "pick, or a stand-in while the named one's model is missing)")
    truncated: list[int] = Field(default_factory=list, description="chunk ids truncated by the reranker")
    notes: list[str] = Field(default_factory=list, description="advice about this search's configuration")
    timings_ms: dict[str, float] = Field(default_factory=dict)
    max_tokens: int | None = Field(None, description="the token budget the hits were packed into")
    tokens: int | None = Field(None, description="tokens in the returned texts (see tokenizer)")
    tokenizer: str | None = Field(None, description="what counted the tokens")
    group_by: str | None = None
    expand: int | None = None
    omitted: int | None = Field(None, description="candidate hits left out to stay within max_tokens")
    collapsed: int | None = Field(None, description="near-duplicate hits folded into another entry")


class CollectionSummary(Frozen):
    name: str
    documents: int
    chunks: int
    embedding_model: str
    dim: int
    dense_index: str | None = None
    analyzer: str = Field("legacy", description="the BM25 analyzer ('legacy': made before analyzers were recorded)")


class CollectionList(Frozen):
    collections: list[CollectionSummary]


class DeleteResult(Frozen):
    collection: str
    deleted_documents: list[str]
    collection_dropped: bool = False
