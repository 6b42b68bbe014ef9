"""The MCP server: lifespan, tools, resources. The only layer that imports ``mcp``."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, TypeVar
from urllib.parse import unquote, urlparse

import anyio
from mcp.server.mcpserver import Context, ListRoots, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ListRootsResult, ToolAnnotations
from pydantic import Field

from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import AppState, build_state
from rerank_mcp.tools import collections as coll_tools
from rerank_mcp.errors import PathNotAllowed, RerankMCPError
from rerank_mcp.tools.evaluate import CollectionEvalResult, Judgment, evaluate_collection
from rerank_mcp.tools.ingest import ingest as do_ingest
from rerank_mcp.tools.models import CollectionList, DeleteResult, DocumentIn, IngestResult, RerankStep, SearchResult
from rerank_mcp.tools.rerank.base import Passage, RerankResult
from rerank_mcp.tools.rerank.registry import RerankerInfo
from rerank_mcp.tools.reranking import rerank as do_rerank
from rerank_mcp.tools.search import search as do_search

log = logging.getLogger("rerank_mcp")
T = TypeVar("T")

INSTRUCTIONS = """\
rerank-mcp: a local knowledge base with retrieve-then-rerank search.
1. `ingest` documents or files into a collection (chunked, embedded, stored durably).
2. `search` it: mode "hybrid" (default, best overall), "bm25" (exact names, codes, rare words),
   or "dense" (paraphrases, questions). Add `rerank` for the best top results.
3. `rerank` reorders passages you already have (web results, file snippets) without storing them.
Use `list_collections` to see what is stored and `list_rerankers` to see which rerankers work here.
"""


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def _state(ctx: Context) -> AppState:
    return ctx.request_context.lifespan_context


async def _run(ctx: Context, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking work in a worker thread with the per-call timeout; map errors for the client."""
    st = _state(ctx)
    try:
        with anyio.fail_after(st.settings.tool_timeout_s):
            # On timeout the worker thread is abandoned, not killed: it finishes in the background;
            # every write it makes is still one atomic transaction per batch.
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), abandon_on_cancel=True)
    except TimeoutError:
        raise ToolError(
            f"timed out after {st.settings.tool_timeout_s:g} s (RERANK_MCP_TOOL_TIMEOUT_S); "
            "work already committed stays committed"
        ) from None
    except RerankMCPError as exc:
        raise ToolError(str(exc)) from None
    except ToolError:
        raise
    except Exception as exc:  # never leak a traceback to the client; log it on stderr
        log.exception("internal error")
        raise ToolError(f"internal error ({type(exc).__name__}); see the server log") from None


def _progress(ctx: Context) -> Callable[[float, float, str], None]:
    """A progress callback for worker threads: sends MCP progress notifications (best effort)."""

    def report(done: float, total: float, message: str) -> None:
        try:
            anyio.from_thread.run(ctx.report_progress, done, total, message)
        except Exception:  # the client went away or sent no progress token
            pass

    return report


def _client_roots(ctx: Context) -> ListRoots | ListRootsResult:
    caps = ctx.client_capabilities
    if caps is None or caps.roots is None:
        return ListRootsResult(roots=[])
    return ListRoots()


def _root_paths(roots: ListRootsResult) -> list[Path]:
    out = []
    for r in roots.roots:
        u = urlparse(str(r.uri))
        if u.scheme == "file":
            out.append(Path(unquote(u.path)).resolve())
    return out


def build_server(settings: Settings, state: AppState | None = None) -> MCPServer:
    """The MCP server. ``state`` lets tests share one already-built state."""

    live: dict[str, AppState] = {}  # for static resources, which get no Context

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[AppState]:
        st = state or await anyio.to_thread.run_sync(build_state, settings)
        live["state"] = st
        try:
            yield st
        finally:
            live.pop("state", None)
            if state is None:
                await anyio.to_thread.run_sync(st.close)

    server = MCPServer("rerank-mcp", instructions=INSTRUCTIONS, lifespan=lifespan, version="0.1.0")

    # ------------------------------------------------------------------ search
    @server.tool(
        name="search",
        description=(
            "Search a collection and return the best chunks with per-stage provenance. "
            "mode: 'hybrid' (default; dense + BM25 fused, best overall), 'bm25' (exact terms, names, "
            "identifiers, rare words), 'dense' (meaning, paraphrases, questions). fusion for hybrid: "
            "'zscore' (default: z-normalised scores summed, best on our BEIR evals), 'minmax', or 'rrf' (ranks only); "
            "weights favour an arm. "
            "filter: metadata conditions, e.g. {\"lang\": \"en\", \"year\": {\"$gte\": 2020}}. "
            "rerank: {reranker, options, candidates} reranks the first-stage candidates in the same call: "
            "'flashrank' fast, 'cross-encoder' best local quality, 'cascade' both, 'embedding' always "
            "offline, 'cohere'/'rankllm' remote. No hits is an empty list, not an error."
        ),
        annotations=READ_ONLY,
    )
    async def search(
        query: Annotated[str, Field(description="what to look for")],
        ctx: Context,
        collection: Annotated[str, Field(description="collection name")] = settings.default_collection,
        k: Annotated[int, Field(description="number of hits to return")] = 10,
        mode: Literal["dense", "bm25", "hybrid"] = "hybrid",
        fusion: Literal["rrf", "minmax", "zscore"] = "zscore",
        weights: Annotated[
            dict[str, float] | None, Field(description="fusion weights, e.g. {\"dense\": 0.7, \"bm25\": 0.3}")
        ] = None,
        filter: Annotated[dict[str, Any] | None, Field(description="metadata filter")] = None,
        rerank: Annotated[RerankStep | None, Field(description="optional rerank step")] = None,
    ) -> SearchResult:
        st = _state(ctx)
        return await _run(
            ctx, do_search, st.engine, st.registry, query, collection, k=k, mode=mode, fusion=fusion,
            weights=weights, filter=filter, rerank=rerank, limits=st.search_limits,
        )

    # ------------------------------------------------------------------ rerank
    @server.tool(
        name="rerank",
        description=(
            "Reorder passages you already have by relevance to a query (nothing is stored). "
            "passages: strings or {id, text, metadata}. reranker: 'cross-encoder' (best local quality), "
            "'flashrank' (fastest), 'bm25' (lexical, instant), 'embedding' (bi-encoder cosine, offline), "
            "'cascade' (cheap then expensive), 'cohere' (API), 'rankllm' (listwise LLM). options: family "
            "options such as {\"model\": ...}; see list_rerankers. Returns each passage with its input "
            "index, id, score and whether it was truncated to fit the model."
        ),
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True),
    )
    async def rerank(
        query: Annotated[str, Field(description="the query to rank against")],
        passages: Annotated[list[str | Passage], Field(description="passages to reorder")],
        ctx: Context,
        reranker: Annotated[str, Field(description="reranker family name")] = settings.reranker_default,
        options: Annotated[dict[str, Any] | None, Field(description="reranker options")] = None,
        top_n: Annotated[int | None, Field(description="return only the best top_n")] = None,
        return_text: Annotated[
            bool, Field(description="echo passage texts; false keeps large results small (index and id remain)")
        ] = True,
    ) -> RerankResult:
        st = _state(ctx)
        return await _run(ctx, do_rerank, st.registry, query, passages, reranker, options, top_n, st.rerank_limits,
                          return_text)

    # ------------------------------------------------------------------ read-only helpers
    @server.tool(
        name="list_collections",
        description="List the collections with their document and chunk counts and embedding model.",
        annotations=READ_ONLY,
    )
    async def list_collections(ctx: Context) -> CollectionList:
        return await _run(ctx, coll_tools.list_collections, _state(ctx).engine)

    @server.tool(
        name="list_rerankers",
        description="List every reranker family, whether it is available on this server and, if not, why.",
        annotations=READ_ONLY,
    )
    async def list_rerankers(ctx: Context) -> list[RerankerInfo]:
        return await _run(ctx, _state(ctx).registry.describe)

    @server.tool(
        name="evaluate",
        description=(
            "Measure retrieval quality on a collection against judgments you supply, to choose a pipeline "
            "on the user's own data. judgments: [{query, relevant: [doc ids] or {doc_id: grade}, query_id?}]. "
            "pipelines: e.g. ['bm25', 'dense', 'hybrid-rrf', 'hybrid-zscore', 'hybrid-rrf+embedding'] "
            "('+name' reranks the first stage's top candidates). Returns nDCG@10, Recall@100, MRR@10 and "
            "latency per pipeline, findings (e.g. a reranker that lowers quality), and per-query results."
        ),
        annotations=READ_ONLY,
    )
    async def evaluate(
        collection: Annotated[str, Field(description="collection to evaluate")],
        judgments: Annotated[list[Judgment], Field(description="queries with their relevant document ids")],
        ctx: Context,
        pipelines: Annotated[list[str], Field(description="pipelines to compare")] = ["bm25", "dense", "hybrid"],  # noqa: B006
    ) -> CollectionEvalResult:
        st = _state(ctx)
        return await _run(ctx, evaluate_collection, st.engine, st.registry, collection, judgments, pipelines,
                          limits=st.search_limits, progress=_progress(ctx))

    # ------------------------------------------------------------------ write tools
    if not settings.read_only:

        @server.tool(
            name="ingest",
            description=(
                "Add documents and/or files to a collection (created on first use). documents: "
                "[{id?, text, metadata?}]; re-ingesting an id replaces it, identical content is skipped. "
                "paths: files (.txt .md .html .pdf) or folders (recursive; narrow with glob, e.g. '*.md'), "
                "only under the server's allowed roots. Returns a per-document outcome (added / updated / "
                "unchanged / failed) and chunk counts. Any invalid input fails the whole call and stores "
                "nothing, unless skip_invalid is true."
            ),
            annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
        )
        async def ingest(
            ctx: Context,
            roots: Annotated[ListRootsResult, Resolve(_client_roots)],
            collection: Annotated[str, Field(description="collection name")] = settings.default_collection,
            documents: Annotated[list[DocumentIn] | None, Field(description="documents to add")] = None,
            paths: Annotated[list[str] | None, Field(description="files or folders to read")] = None,
            glob: Annotated[str | None, Field(description="file name pattern for folders")] = None,
            chunk_size: Annotated[int | None, Field(description="tokens per chunk")] = None,
            chunk_overlap: Annotated[int | None, Field(description="tokens of overlap")] = None,
            skip_invalid: Annotated[bool, Field(description="ingest the valid inputs, report the rest")] = False,
        ) -> IngestResult:
            st = _state(ctx)
            allowed = st.settings.roots()
            client_roots = _root_paths(roots)
            if paths and client_roots:
                from rerank_mcp.index.loaders import resolve_allowed

                for p in paths:
                    try:
                        resolve_allowed(p, client_roots)
                    except PathNotAllowed:
                        raise ToolError(f"path {p} is outside the client's roots ({', '.join(map(str, client_roots))})") from None
                    except RerankMCPError as exc:
                        raise ToolError(str(exc)) from None
            return await _run(
                ctx, do_ingest, st.engine, collection, documents or [], paths or [], roots=allowed, glob=glob,
                chunk_size=chunk_size or st.settings.chunk_size,
                chunk_overlap=chunk_overlap if chunk_overlap is not None else st.settings.chunk_overlap,
                skip_invalid=skip_invalid, limits=st.ingest_limits, progress=_progress(ctx),
            )

        @server.tool(
            name="delete",
            description=(
                "Delete documents from a collection by id or metadata filter, or drop the whole collection "
                "with drop_collection=true. Irreversible."
            ),
            annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False),
        )
        async def delete(
            collection: Annotated[str, Field(description="collection name")],
            ctx: Context,
            ids: Annotated[list[str] | None, Field(description="document ids to delete")] = None,
            filter: Annotated[dict[str, Any] | None, Field(description="delete documents matching this")] = None,
            drop_collection: Annotated[bool, Field(description="delete the collection itself")] = False,
        ) -> DeleteResult:
            return await _run(ctx, coll_tools.delete, _state(ctx).engine, collection, ids, filter, drop_collection)

    # ------------------------------------------------------------------ resources
    @server.resource("collections://list", description="All collections as JSON", mime_type="application/json")
    async def collections_resource() -> str:
        res = await _resource(coll_tools.list_collections, live["state"].engine)
        return res.model_dump_json(indent=1)

    @server.resource(
        "collections://{name}", description="A collection: its summary and first 100 documents",
        mime_type="application/json",
    )
    async def collection_resource(name: str, ctx: Context) -> str:
        st = _state(ctx)

        def read() -> dict:
            info = st.engine.store.require_collection(name)
            return {
                "name": info.name, "embedding_model": info.embedding_model, "dim": info.dim,
                "documents": st.engine.store.documents(name, limit=100),
            }

        return json.dumps(await _resource(read), indent=1, ensure_ascii=False)

    @server.resource(
        "documents://{collection}/{+doc_id}", description="One document with its chunks",
        mime_type="application/json",
    )
    async def document_resource(collection: str, doc_id: str, ctx: Context) -> str:
        st = _state(ctx)
        doc = await _resource(st.engine.store.document, collection, doc_id)
        return json.dumps(doc, indent=1, ensure_ascii=False)

    return server


async def _resource(fn: Callable[..., T], *args: Any) -> T:
    try:
        return await anyio.to_thread.run_sync(lambda: fn(*args))
    except RerankMCPError as exc:
        raise ResourceError(str(exc)) from None
