"""Every tool, declared once: its request model, its result type, its description and hints.

The MCP registration (input and output schemas, description, annotations: server/app.py), the
CLI verbs' options (server/cli.py) and the hostile-input tables (tests/reliability) are derived
from :data:`CATALOG`. A request model's fields are the tool's arguments, in order, with their
types, bounds, defaults and descriptions; a field named in ``setting_defaults`` takes its default
from the server's settings instead (the default collection, the default reranker).

A tool whose work needs nothing of the server layer (no client roots, no notifications) also
names ``run``: ``run(state, request) -> result``, called in a worker thread with the server's
state (``engine``, ``registry``, ``search_limits``, ``rerank_limits``, ``settings``...). The
server then registers it with no code of its own, and with ``cli`` set the command line gets a
verb for it too: adding such a tool is its declaration and one line in :data:`CATALOG`
(docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rerank_mcp.index import fusion as fusions
from rerank_mcp.tools.compare import CompareResult, RerankerSpec
from rerank_mcp.tools.evaluate import CollectionEvalResult, Judgment
from rerank_mcp.tools.models import (
    CollectionList,
    DeleteResult,
    DocumentIn,
    Fusion,
    IngestResult,
    RerankStep,
    SearchResult,
)
from rerank_mcp.tools.payload import Detail, rerankers_payload
from rerank_mcp.tools.rerank.base import Passage, RerankResult
from rerank_mcp.tools.rerank.registry import RerankerInfo


@dataclass(frozen=True)
class Hints:
    """What a tool does to the world (MCP's tool annotations, without importing ``mcp``)."""

    read_only: bool = True
    destructive: bool = False
    idempotent: bool = True
    open_world: bool = False


READ_ONLY = Hints()


class Request(BaseModel):
    """A tool's arguments. Only declarations: the server validates calls (strictly) against the
    model it derives from these fields; the CLI validates what it builds with it."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str | Callable[[Mapping[str, Any]], str]  # a function of the settings' defaults
    request: type[Request]
    result: Any  # a pydantic model, or a type such as list[Model] (published wrapped in {"result": ...})
    hints: Hints = READ_ONLY
    writes: bool = False  # left out of a read-only server
    setting_defaults: Mapping[str, str] = field(default_factory=dict)  # field -> Settings attribute
    run: Callable[[Any, Any], Any] | None = None  # (state, request) -> result, in a worker thread
    light: bool = False  # quick reads: the light worker threads
    payload: Callable[[Any, Any], Any] | None = None  # (result, request) -> the structured content sent as is
    cli: str | None = None  # a CLI verb derived from the declaration (with ``run``); hand-written verbs: server/cli.py

    def describe(self, defaults: Mapping[str, Any]) -> str:
        return self.description(defaults) if callable(self.description) else self.description

    def defaults(self, settings: Any) -> dict[str, Any]:
        """Every argument's default, with the settings' where ``setting_defaults`` says so (with no
        settings, the model's own)."""
        out = {n: f.get_default(call_default_factory=True) for n, f in self.request.model_fields.items()
               if not f.is_required()}
        if settings is not None:
            out.update({n: getattr(settings, attr) for n, attr in self.setting_defaults.items()})
        return out


# ---------------------------------------------------------------------------- search

class SearchRequest(Request):
    query: str = Field(description="what to look for")
    collection: str = Field("default", description="collection name")
    k: int | None = Field(None, description="hits to return; default 10, or with max_tokens as many as fit")
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    fusion: Annotated[Fusion, Field(  # type: ignore[valid-type]
        description="hybrid fusion; " + " / ".join(fusions.server_side()) + ": by the engine (qdrant)")
    ] = fusions.DEFAULT
    weights: dict[str, float] | None = Field(None, description="fusion weights, e.g. {\"dense\": 0.7, \"bm25\": 0.3}")
    filter: dict[str, Any] | None = Field(None, description="metadata filter")
    feedback: bool = Field(False, description="pseudo-relevance feedback: the query vector moved toward the top 5 "
                                              "chunks (hybrid, dense)")
    rerank: RerankStep | None = Field(None, description="optional rerank step")
    max_tokens: int | None = Field(None, description="token budget of the whole result")
    group_by: Literal["document"] | None = Field(None, description="'document': one entry per document, chunks "
                                                                   "merged")
    expand: int = Field(0, description="neighbouring chunks to add on each side of a hit (0-20)")
    dedupe: bool | None = Field(None, description="fold near-duplicates into one entry (default: on with "
                                                  "max_tokens, group_by or expand)")
    detail: Detail = Field("compact", description="'full' adds per-stage ranks and scores, offsets, timings")


SEARCH = ToolSpec(
    name="search",
    description=(
        "Search a collection for the chunks that best answer a query. mode: 'hybrid' (default: dense + BM25 "
        "fused), 'bm25' (exact terms, names, codes, rare words) or 'dense' (meaning, paraphrases). fusion for "
        f"hybrid: {fusions.describe()}; weights favour an arm. filter: metadata conditions, e.g. "
        "{\"year\": {\"$gte\": 2020}}. rerank: {reranker, options, candidates} reranks the top candidates "
        "(list_rerankers: the rerankers and their options). max_tokens bounds the whole result, in the embedding "
        "model's word-piece tokens, best hits first; near-duplicates in other documents "
        "are folded into one entry. A file's hits give the lines to cite "
        "(documents://{collection}/{doc_id}?lines=10-20 reads them). No hits is an empty list, not an error."
    ),
    request=SearchRequest,
    result=SearchResult,
    setting_defaults={"collection": "default_collection"},
)


# ---------------------------------------------------------------------------- rerank

class RerankRequest(Request):
    query: str = Field(description="the query to rank against")
    passages: list[str | Passage] = Field(description="passages to reorder")
    reranker: str = Field("auto", description="reranker family name")
    options: dict[str, Any] | None = Field(None, description="reranker options")
    top_n: int | None = Field(None, description="return only the best top_n")
    return_text: bool = Field(True, description="echo passage texts (false: index and id only)")
    ordered: bool = Field(False, description="the passages are already ranked, best first: a reranker may blend "
                                             "with that order")
    min_score: float | None = Field(None, description="drop passages scored below this, on the ranking family's "
                                                      "scale (list_rerankers' score)")


def _rerank_description(d: Mapping[str, Any]) -> str:
    return (
        "Reorder passages you already have (strings or {id, text, metadata}) by relevance to a query; nothing is "
        f"stored. reranker: a family from list_rerankers (default {d['reranker']!r}); options: its options, e.g. "
        "{\"blend\": 0.5} to blend with the input order when ordered is true. Returns each passage's input index, "
        "id and score; `used` names the reranker that ran when another stood in (auto's pick, or while a model "
        "downloads)."
    )


def _rerank(state: Any, r: RerankRequest) -> RerankResult:
    from rerank_mcp.tools.reranking import rerank

    return rerank(state.registry, r.query, r.passages, r.reranker, r.options, r.top_n, state.rerank_limits,
                  r.return_text, ordered=r.ordered, min_score=r.min_score)


RERANK = ToolSpec(
    name="rerank",
    description=_rerank_description,
    request=RerankRequest,
    result=RerankResult,
    hints=Hints(open_world=True),
    setting_defaults={"reranker": "reranker_default"},
    run=_rerank,
)


# ---------------------------------------------------------------------------- compare_rerankers

class CompareRequest(Request):
    query: str = Field(description="the query to rank against")
    passages: list[str | Passage] = Field(description="passages to rank")
    rerankers: list[str | RerankerSpec] = Field(description="rerankers to compare (at most 8)")
    judgments: dict[str, float] | list[float] | None = Field(None, description="relevance grades")
    k: int = Field(10, description="k of overlap@k and nDCG@k")


def _compare(state: Any, r: CompareRequest) -> CompareResult:
    from rerank_mcp.tools.compare import compare

    return compare(state.registry, r.query, r.passages, r.rerankers, r.judgments, r.k, state.rerank_limits)


COMPARE = ToolSpec(
    name="compare_rerankers",
    description=(
        "Run several rerankers on the same query and passages and compare them: each one's order, scores and "
        "latency, overlap@k and Kendall's tau between every pair and with the input order, and nDCG@k with "
        "judgments. rerankers: names, 'name(key=value)' or {reranker, options, label}. judgments: {passage id or "
        "input index: grade} or one grade per passage (0 = not relevant). Nothing is stored."
    ),
    request=CompareRequest,
    result=CompareResult,
    hints=Hints(open_world=True),
    run=_compare,
)


# ---------------------------------------------------------------------------- read-only helpers

class NoArguments(Request):
    pass


def _list_collections(state: Any, _r: NoArguments) -> CollectionList:
    from rerank_mcp.tools.collections import list_collections

    return list_collections(state.engine)


LIST_COLLECTIONS = ToolSpec(
    name="list_collections",
    description="List the collections with their document and chunk counts and embedding model.",
    request=NoArguments,
    result=CollectionList,
    run=_list_collections,
    light=True,
)

class ListRerankersRequest(Request):
    detail: Detail = Field("compact", description="'full' adds each family's options as a JSON schema and what its "
                                                  "scores mean")


LIST_RERANKERS = ToolSpec(
    name="list_rerankers",
    description="List every reranker family: its status here (ready, downloading, missing with the command that "
    "fetches its model, or unavailable and why), default model, languages ('en', 'zh,en', 'multilingual') and "
    "option names.",
    request=ListRerankersRequest,
    result=list[RerankerInfo],
    run=lambda state, _r: state.registry.describe(),
    payload=lambda infos, r: {"result": rerankers_payload(infos, r.detail)},
    light=True,
)


class EvaluateRequest(Request):
    collection: str = Field(description="collection to evaluate")
    judgments: list[Judgment] = Field(description="queries with their relevant document ids")
    pipelines: list[str] = Field(["bm25", "dense", "hybrid"], description="pipelines to compare")
    allow_stand_in: bool = Field(False, description="let another reranker stand in for one whose model is not "
                                                    "here (`ran` names it); default: an error with the command that "
                                                    "fetches the model")


EVALUATE = ToolSpec(
    name="evaluate",
    description=(
        "Measure retrieval quality on a collection against your own judgments, to choose a pipeline. judgments: "
        "[{query, relevant: [doc ids] or {doc_id: grade}}]. pipelines: e.g. ['bm25', 'dense', 'hybrid-rrf', "
        "'hybrid-zscore+embedding'] ('+name' reranks the top candidates). Returns nDCG@10, Recall@100, MRR@10 and "
        "latency per pipeline, the reranker that ran (`ran`), findings (a reranker that significantly lowers "
        "quality), per-query results."
    ),
    request=EvaluateRequest,
    result=CollectionEvalResult,
)


# ---------------------------------------------------------------------------- write tools

class IngestRequest(Request):
    collection: str = Field("default", description="collection name")
    documents: list[DocumentIn] | None = Field(None, description="documents to add")
    paths: list[str] | None = Field(None, description="files or folders to read")
    glob: str | None = Field(None, description="file name pattern for folders")
    chunk_size: int | None = Field(None, description="tokens per chunk")
    chunk_overlap: int | None = Field(None, description="tokens of overlap")
    skip_invalid: bool = Field(False, description="ingest the valid inputs, report the rest")
    sync: bool = Field(False, description="mirror the folders in paths: delete documents whose files are gone")
    analyzer: str | None = Field(None, description="BM25 analyzer of a new collection: auto (default), english, "
                                                   "german, ... or none")


INGEST = ToolSpec(
    name="ingest",
    description=(
        "Add documents and/or files to a collection (created on first use). documents: [{id?, text, metadata?}]; "
        "re-ingesting an id replaces it, unchanged content is skipped. paths: files (.txt .md .html .pdf .docx, "
        "config, code) or folders (recursive, .gitignore honoured, glob narrows; empty files skipped, other types "
        "listed in notes), under the allowed roots. sync: mirror the folders (changed files re-embedded, "
        "documents of deleted files removed). Any invalid input fails the call and stores nothing, unless "
        "skip_invalid."
    ),
    request=IngestRequest,
    result=IngestResult,
    hints=Hints(read_only=False),
    writes=True,
    setting_defaults={"collection": "default_collection"},
)


class DeleteRequest(Request):
    collection: str = Field(description="collection name")
    ids: list[str] | None = Field(None, description="document ids to delete")
    filter: dict[str, Any] | None = Field(None, description="delete documents matching this")
    drop_collection: bool = Field(False, description="delete the collection itself")


DELETE = ToolSpec(
    name="delete",
    description=(
        "Delete documents from a collection by id or metadata filter, or drop the whole collection "
        "with drop_collection=true. Irreversible."
    ),
    request=DeleteRequest,
    result=DeleteResult,
    hints=Hints(read_only=False, destructive=True),
    writes=True,
)


# The tools, in the order tools/list gives them.
CATALOG: dict[str, ToolSpec] = {t.name: t for t in (
    SEARCH, RERANK, COMPARE, LIST_COLLECTIONS, LIST_RERANKERS, EVALUATE, INGEST, DELETE,
)}
