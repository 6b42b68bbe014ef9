"""The MCP server: lifespan, tools, resources. The only layer that imports ``mcp``."""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin
from urllib.parse import unquote, urlparse

import anyio
from mcp.server.mcpserver import Context, ListRoots, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.resources.templates import ResourceSecurity
from mcp.types import CallToolResult, ListRootsResult, TextContent, ToolAnnotations
from pydantic import ConfigDict, Field, ValidationError

from rerank_mcp.errors import NotFound, PathNotAllowed, RerankMCPError
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import AppState, build_state
from rerank_mcp.tools import collections as coll_tools
from rerank_mcp.tools.arguments import problems
from rerank_mcp.tools.cancel import Cancelled
from rerank_mcp.tools.catalog import CATALOG, DeleteRequest, EvaluateRequest, IngestRequest, SearchRequest, ToolSpec
from rerank_mcp.tools.documents import read_lines
from rerank_mcp.tools.evaluate import CollectionEvalResult, evaluate_collection
from rerank_mcp.tools.ingest import ingest as do_ingest
from rerank_mcp.tools.models import DeleteResult, IngestResult, SearchResult
from rerank_mcp.tools.payload import search_payload, to_json
from rerank_mcp.tools.schema import slim_schema
from rerank_mcp.tools.shaping import shaped_search as do_search
from rerank_mcp.tools.sync import sync_folders as do_sync

log = logging.getLogger("rerank_mcp")
T = TypeVar("T")

INSTRUCTIONS = """\
rerank-mcp: a local knowledge base with retrieve-then-rerank search.
1. `ingest` documents or files into a collection (chunked, embedded, stored durably).
2. `search` it: mode "hybrid" (default, best overall), "bm25" (exact names, codes, rare words),
   or "dense" (paraphrases, questions). Add `rerank` to reorder the top results with a reranker.
3. `rerank` reorders passages you already have (web results, file snippets) without storing them.
Use `list_collections` to see what is stored and `list_rerankers` to see which rerankers work here.
"""


class Unconfigured:
    """The lifespan state of a server started with invalid settings: every tool answers with
    ``message`` (which variable, what it accepts, an example) instead of working."""

    def __init__(self, message: str) -> None:
        self.message = message


def _state(ctx: Context) -> AppState:
    st = ctx.request_context.lifespan_context
    if isinstance(st, Unconfigured):
        raise ToolError(st.message)
    return st


def _client(ctx: Context) -> Any:
    """Who is calling, for the per-client bound on heavy calls: over HTTP the MCP session
    (``Mcp-Session-Id``, sent by clients that made the initialize handshake); ``None`` over
    stdio (one client) and for sessionless HTTP requests, which only the overall bound limits."""
    try:
        headers = getattr(ctx.request_context.request, "headers", None)
    except Exception:
        return None
    session = headers.get("mcp-session-id") if headers is not None else None
    return ("session", session) if session else None


async def _run(ctx: Context, fn: Callable[..., T], *args: Any, light: bool = False, embeds: bool = False,
               reports: bool = False, **kwargs: Any) -> T:
    """Run blocking work in a worker thread with the per-call timeout; map errors for the client.

    A call the client cancels, or that times out, is told to stop (server/workers.py): its
    thread ends at the next batch boundary; every batch it wrote is one atomic transaction.
    ``embeds``: the call needs the embedding model; while that is still being prepared, the
    client gets progress notifications saying so (:func:`_model_wait_notes`). ``reports``: ``fn``
    takes a ``progress`` callback. Both send through one :class:`_Progress` for the call."""
    st = _state(ctx)
    notes = _Progress(ctx)
    if reports:
        kwargs["progress"] = notes.from_thread
    if embeds and not st.engine.embedding.loaded:
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_model_wait_notes, ctx, st, notes)
            try:
                result = await _work(ctx, st, fn, *args, light=light, **kwargs)
            except Exception as exc:  # raised below, outside the task group (which would wrap it in a group)
                error = exc
            finally:
                tg.cancel_scope.cancel()
        if error is not None:
            raise error
        return result
    return await _work(ctx, st, fn, *args, light=light, **kwargs)


MODEL_NOTE_S = 0.5  # how often a call waiting for the embedding model says so (at most 2 s apart)


async def _model_wait_notes(ctx: Context, st: AppState, notes: _Progress) -> None:
    """Progress notifications while the embedding model is prepared (the one-time ONNX export)
    or loaded, until it is ready: what the call waits for and for how long already."""
    emb = st.engine.embedding
    cfg = emb.config

    def what() -> str:
        from rerank_mcp.index.model_names import model_folder, onnx_cache_dir
        from rerank_mcp.index.prepare import needs_export

        try:
            if cfg.embedder_factory is None:
                model_folder(cfg.embedding_model)
        except Exception:  # not on this machine: the call's model load downloads it (models_store.embedding_fetcher)
            return ("downloading it from the Hugging Face hub (once; `rerank-mcp models pull` fetches it ahead of "
                    "time)")
        if cfg.embedder_factory is None and needs_export(cfg.embedding_model, cfg.embedding_backend,
                                                         onnx_cache_dir(cfg.onnx_cache_dir)):
            return (f"its one-time export to ONNX for the {cfg.embedding_backend} backend (about half a minute; "
                    "`rerank-mcp models pull` makes it ahead of time)")
        return "loading"

    start = anyio.current_time()
    while not emb.loaded:
        try:
            doing = await anyio.to_thread.run_sync(what)
        except Exception:
            doing = "loading"
        if emb.loaded:
            break
        waited = anyio.current_time() - start
        await notes.send(None, f"waiting for the embedding model {emb.model_name}: {doing} ({waited:.0f} s so far)")
        await anyio.sleep(MODEL_NOTE_S)


async def _work(ctx: Context, st: AppState, fn: Callable[..., T], *args: Any, light: bool = False,
                **kwargs: Any) -> T:
    try:
        return await st.workers.run(fn, *args, timeout_s=st.settings.tool_timeout_s, client=_client(ctx),
                                    light=light, **kwargs)
    except TimeoutError:
        raise ToolError(
            f"timed out after {st.settings.tool_timeout_s:g} s (RERANK_MCP_TOOL_TIMEOUT_S); "
            "work already committed stays committed"
        ) from None
    except Cancelled as exc:  # the server is shutting down
        raise ToolError(f"cancelled: {exc}; work already committed stays committed") from None
    except RerankMCPError as exc:
        raise ToolError(str(exc)) from None
    except ToolError:
        raise
    except Exception as exc:  # never leak a traceback to the client; log it on stderr
        log.exception("internal error")
        raise ToolError(f"internal error ({type(exc).__name__}); see the server log") from None


class _Progress:
    """One call's MCP progress notifications (best effort: none without a progress token).

    MCP requires a request's progress to increase with every notification. What is sent is the
    fraction of the call done, ``total`` 1 in every notification: the work reports ``(done, total,
    message)`` on one scale for the whole call (tools/ingest.py, sync.py, evaluate.py), sent as
    ``done / total``; a note with no measure (waiting for the embedding model) moves a small step past
    the last value, and a value that would not increase (a report after such notes) is sent just past
    the last one. One that cannot increase any more (past 1) is not sent."""

    STEP = 1e-4  # of what is left, per note without a measure: a 10-minute wait takes a twentieth of it

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.last: float | None = None

    async def send(self, fraction: float | None, message: str) -> None:
        # On the event loop: the value is chosen and kept with no await in between, so notes sent at
        # the same moment (the model wait's, the worker's) still get increasing values. (No lock: a
        # call cancelled while a worker waited on one left the worker blocked.)
        last = self.last
        if fraction is None:
            value = 0.0 if last is None else last + (1.0 - last) * self.STEP
        else:
            value = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0
        if last is not None and value <= last:
            value = math.nextafter(last, math.inf)
        if value > 1.0:
            return
        self.last = value
        try:
            await self.ctx.report_progress(value, 1.0, message)
        except Exception:  # no progress token, or the client went away
            pass

    def from_thread(self, done: float, total: float | None, message: str) -> None:
        """The ``progress`` callback of work in a worker thread."""
        try:
            anyio.from_thread.run(self.send, done / total if total else None, message)
        except Exception:  # the call is over, or the event loop is shutting down
            pass


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


def _common_roots(server: list[Path], client: list[Path]) -> list[Path]:
    """The folders inside both a server root and a client root, client order first (a relative
    path is taken from the first)."""
    out: list[Path] = []
    for c in client:
        for r in server:
            deeper = c if (c == r or r in c.parents) else r if c in r.parents else None
            if deeper is not None and deeper not in out:
                out.append(deeper)
    return out


def build_server(settings: Settings, state: AppState | None = None, config_error: str | None = None,
                 **config: object) -> MCPServer:
    """The MCP server. ``state`` lets tests share one already-built state. ``config_error``: the
    settings did not validate (``settings`` are then the defaults in their place); the server
    starts, opens nothing, says so in its instructions and answers every tool call with it.
    ``config`` overrides fields of the index configuration of the state it builds, as for
    :func:`build_state` (tests inject an embedder with ``embedder_factory``)."""

    live: dict[str, AppState] = {}  # for static resources, which get no Context

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[AppState | Unconfigured]:
        if config_error is not None:
            yield Unconfigured(config_error)
            return
        st = state or await anyio.to_thread.run_sync(lambda: build_state(settings, **config))
        live["state"] = st
        try:
            yield st
        finally:
            live.pop("state", None)
            if state is None:
                with anyio.CancelScope(shield=True):  # a cancelled session still closes the index
                    await anyio.to_thread.run_sync(st.close)

    instructions = INSTRUCTIONS
    if config_error is not None:
        instructions = (f"THIS SERVER IS NOT CONFIGURED CORRECTLY: every tool answers with this error until the "
                        f"setting is fixed and the server restarted.\n{config_error}\n\n{INSTRUCTIONS}")
    server = MCPServer("rerank-mcp", instructions=instructions, lifespan=lifespan, version=_version())
    server.live_state = live  # type: ignore[attr-defined]  # the running state, for the HTTP rerank API
    _announce_resource_changes(server)

    # ------------------------------------------------------------------ tools (declared in tools/catalog.py)
    async def search(r: SearchRequest, ctx: Context) -> SearchResult | CallToolResult:
        st = _state(ctx)
        if r.collection == st.settings.default_collection and not await _exists(st, r.collection):
            # a fresh install: nothing ingested yet is no error, and says what to do
            return _structured(search_payload(SearchResult(
                query=r.query, collection=r.collection, mode=r.mode, hits=[], notes=[
                    f"collection {r.collection!r} is empty: nothing has been ingested into it yet. Add documents or "
                    "files with the ingest tool (or `rerank-mcp ingest`), then search again; list_collections shows "
                    "what is stored."]), r.detail))
        res = await _run(
            ctx, do_search, st.engine, st.registry, r.query, r.collection, k=r.k, mode=r.mode, fusion=r.fusion,
            weights=r.weights, filter=r.filter, feedback=r.feedback, rerank=r.rerank, limits=st.search_limits,
            max_tokens=r.max_tokens, group_by=r.group_by, expand=r.expand, dedupe=r.dedupe, detail=r.detail,
            embeds=r.mode != "bm25",
        )
        return _structured(search_payload(res, r.detail))

    async def evaluate(r: EvaluateRequest, ctx: Context) -> CollectionEvalResult:
        st = _state(ctx)
        return await _run(ctx, evaluate_collection, st.engine, st.registry, r.collection, r.judgments, r.pipelines,
                          limits=st.search_limits, allow_stand_in=r.allow_stand_in, embeds=True, reports=True)

    async def ingest(r: IngestRequest, ctx: Context,
                     roots: Annotated[ListRootsResult, Resolve(_client_roots)]) -> IngestResult:
        st = _state(ctx)
        paths = r.paths
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
            # Read against what was checked: the walk and every file opened stay inside both the
            # client's roots and the server's (symlinks included), and a relative path means the
            # same file to both checks.
            paths = [p if Path(p).expanduser().is_absolute() else str(client_roots[0] / p) for p in paths]
            common = _common_roots(allowed, client_roots)
            if allowed and not common:  # (with no server roots at all, file ingest is off: said below)
                raise ToolError("the client's roots lie outside the server's allowed roots (RERANK_MCP_ALLOWED_ROOTS): "
                                "no file may be read")
            allowed = common
        if r.sync and r.documents:
            raise ToolError("sync mirrors folders: give them in paths, and documents in a separate call")
        if r.sync and not paths:
            raise ToolError("sync needs one or more folders in paths")
        existed = await _exists(st, r.collection)
        res = await _run(
            ctx, do_sync if r.sync else do_ingest, st.engine, r.collection, *(() if r.sync else (r.documents or [],)),
            paths or [], roots=allowed, glob=r.glob, chunk_size=r.chunk_size or st.settings.chunk_size,
            chunk_overlap=r.chunk_overlap if r.chunk_overlap is not None else st.settings.chunk_overlap,
            skip_invalid=r.skip_invalid, analyzer=r.analyzer, limits=st.ingest_limits, embeds=True, reports=True,
        )
        if not existed:
            await _resources_changed(ctx)  # a new collection: a new collections:// resource
        return res

    async def delete(r: DeleteRequest, ctx: Context) -> DeleteResult:
        res = await _run(ctx, coll_tools.delete, _state(ctx).engine, r.collection, r.ids, r.filter, r.drop_collection)
        if res.collection_dropped:
            await _resources_changed(ctx)
        return res

    handlers: dict[str, Callable[..., Any]] = {"search": search, "evaluate": evaluate, "ingest": ingest,
                                               "delete": delete}
    for spec in CATALOG.values():
        if spec.writes and settings.read_only:
            continue
        _register(server, spec, handlers.get(spec.name) or _generic(spec), settings)

    # ------------------------------------------------------------------ resources
    @server.resource("collections://list", description="All collections as JSON", mime_type="application/json")
    async def collections_resource() -> str:
        if config_error is not None:
            raise ResourceError(config_error)
        res = await _resource(live["state"], coll_tools.list_collections, live["state"].engine)
        return res.model_dump_json(indent=1)

    @server.resource(
        "collections://{name}", description="A collection: its summary and first 100 documents",
        mime_type="application/json",
    )
    async def collection_resource(name: str, ctx: Context) -> str:
        st = _state(ctx)

        def read() -> dict:
            info = st.engine.require_collection(name)
            return {
                "name": info.name, "embedding_model": info.embedding_model, "dim": info.dim,
                "documents": [d.as_dict() for d in st.engine.documents(name, limit=100)],
            }

        return json.dumps(await _resource(st, read), indent=1, ensure_ascii=False)

    # doc_id is a key in the index, never opened as a path: file ids are absolute paths, so the
    # SDK's path checks do not apply to it. ?lines=10-20 (1-based, inclusive; 10 or 10- too) returns
    # those lines of the document's text, e.g. documents://kb//home/me/notes/a.md?lines=10-20
    @server.resource(
        "documents://{collection}/{+doc_id}{?lines}",
        description="One document with its chunks; with ?lines=10-20, those lines of its text (1-based, inclusive)",
        mime_type="application/json", security=ResourceSecurity(exempt_params={"doc_id"}),
    )
    async def document_resource(collection: str, doc_id: str, ctx: Context, lines: str | None = None) -> str:
        st = _state(ctx)
        if lines is not None:
            part = await _resource(st, read_lines, st.engine, collection, doc_id, lines)
            return part.model_dump_json(indent=1)
        doc = await _resource(st, st.engine.document, collection, doc_id)
        return json.dumps(doc.as_dict(), indent=1, ensure_ascii=False)

    _strict_tool_arguments(server)
    return server


def _structured(payload: Any) -> CallToolResult:
    """A result whose structured content is ``payload`` as it is (tools/payload.py), and its JSON
    as the text content; the SDK still checks it against the tool's output schema."""
    return CallToolResult(content=[TextContent(type="text", text=to_json(payload))], structured_content=payload)


def _generic(spec: ToolSpec) -> Callable[..., Any]:
    """The handler of a tool that declares its work (``spec.run``): run it in a worker thread."""
    if spec.run is None:
        raise TypeError(f"tool {spec.name!r} declares no run function and the server has no handler for it")

    async def handler(r: Any, ctx: Context) -> Any:
        res = await _run(ctx, spec.run, _state(ctx), r, light=spec.light)
        return res if spec.payload is None else _structured(spec.payload(res, r))

    return handler


def _register(server: MCPServer, spec: ToolSpec, handler: Callable[..., Any], settings: Settings) -> None:
    """Register one catalog tool. The SDK derives a tool's schemas from a function's signature, so
    the function registered has one keyword parameter per field of the request model (its type,
    bounds and description; its default, or the setting's), the handler's own server-side
    parameters (the Context, resolved client roots), and the result type as its return type. A call
    hands the handler the request model built from the validated arguments."""
    defaults = spec.defaults(settings)
    params = []
    for name, f in spec.request.model_fields.items():
        info = Field(description=f.description)
        ann = Annotated[(f.annotation, *f.metadata, info)] if f.metadata else Annotated[f.annotation, info]
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=ann,
                                        default=defaults.get(name, inspect.Parameter.empty)))
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
           for p in list(inspect.signature(handler, eval_str=True).parameters.values())[1:]]
    own_names = {p.name for p in own}

    async def tool(**kwargs: Any) -> Any:
        mine = {n: kwargs.pop(n) for n in own_names if n in kwargs}
        return await handler(spec.request.model_construct(**kwargs), **mine)

    tool.__name__ = tool.__qualname__ = spec.name
    tool.__signature__ = inspect.Signature([*params, *own], return_annotation=spec.result)  # type: ignore[attr-defined]
    tool.__annotations__ = {**{p.name: p.annotation for p in (*params, *own)}, "return": spec.result}
    h = spec.hints
    server.add_tool(tool, name=spec.name, description=spec.describe(defaults), annotations=ToolAnnotations(
        read_only_hint=h.read_only, destructive_hint=h.destructive, idempotent_hint=h.idempotent,
        open_world_hint=h.open_world))
    registered = server._tool_manager._tools[spec.name]  # the SDK offers no hook for the published schemas
    slim_schema(registered.parameters)
    if registered.fn_metadata.output_schema is not None:
        slim_schema(registered.fn_metadata.output_schema, output=True)


_INTEGER = re.compile(r"-?[0-9]{1,18}")


def _integer_field(annotation: Any) -> bool:
    """``int`` or ``int | None``."""
    return annotation is int or (get_origin(annotation) in (Union, UnionType)
                                 and set(get_args(annotation)) == {int, type(None)})


class _StrictArguments:
    """Mixed into a tool's argument model: validation in pydantic's strict mode, unknown
    arguments refused (``extra="forbid"``, published as ``additionalProperties: false``), with one
    exception: a top-level integer argument may come as the decimal string of an integer
    (``"3"``), which is how command-line clients (the MCP Inspector's ``--tool-arg k=3``) send
    every value. ``true``, ``3.0``, ``"3.5"`` or ``"three"`` stay type errors."""

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
        if isinstance(obj, dict):
            fields = cls.model_fields  # type: ignore[attr-defined]
            obj = {k: int(v) if isinstance(v, str) and k in fields and _integer_field(fields[k].annotation)
                   and _INTEGER.fullmatch(v) else v for k, v in obj.items()}
        return super().model_validate(obj, **{**kwargs, "strict": True})  # type: ignore[misc]


def _strict_tool_arguments(server: MCPServer) -> None:
    """Validate tool arguments in pydantic's strict mode: ``k: true`` or ``k: 3.5`` is a type
    error naming ``k``, not 1 or 3 (the SDK validates in lax mode), and an unknown argument
    (``top_k``) is an error naming it, not ignored. Nested objects (``rerank``, ``documents``...)
    are strict too. The published input schemas say ``additionalProperties: false``. A call whose
    arguments fail gets one readable line per problem (tools/arguments.py), not pydantic's text."""
    manager = server._tool_manager  # the SDK exposes no hook for its validation
    for tool in manager._tools.values():
        lax = tool.fn_metadata.arg_model
        tool.fn_metadata.arg_model = type(lax.__name__, (_StrictArguments, lax), {
            "__module__": lax.__module__, "model_config": ConfigDict(extra="forbid")})
        tool.parameters["additionalProperties"] = False
    call = manager.call_tool

    async def call_tool(name: str, arguments: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await call(name, arguments, *args, **kwargs)
        except ToolError as exc:
            cause = exc.__cause__
            tool = manager.get_tool(name)
            if not isinstance(cause, ValidationError) or tool is None:
                raise
            lines = problems(cause, tool.fn_metadata.arg_model)
            said = f"invalid arguments: {lines[0]}" if len(lines) == 1 else "invalid arguments:\n" + "\n".join(lines)
            raise ToolError(f"Error executing tool {name}: {said}") from cause  # the SDK logs the cause's fields

    manager.call_tool = call_tool  # type: ignore[method-assign]


def _version() -> str:
    from rerank_mcp.index.install import package_version

    return package_version()


def _announce_resource_changes(server: MCPServer) -> None:
    """Declare ``resources.listChanged`` to clients of the handshake era (the SDK derives it from
    notification options that its run paths never pass); later protocol versions learn it from
    ``subscriptions/listen``."""
    from mcp.server.lowlevel.server import NotificationOptions

    low = server._lowlevel_server  # the SDK exposes no setter for these options
    init = low.create_initialization_options

    def options(notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any):
        return init(notification_options or NotificationOptions(resources_changed=True), *args, **kwargs)

    low.create_initialization_options = options  # type: ignore[method-assign]


async def _exists(st: AppState, collection: str) -> bool:
    try:
        return await anyio.to_thread.run_sync(lambda: st.engine.collection_info(collection) is not None)
    except RerankMCPError:
        return True  # an invalid name: the tool call reports it


async def _resources_changed(ctx: Context) -> None:
    """Tell the client the resource list changed (a collection was created or dropped): as a
    ``notifications/resources/list_changed`` on a session of the handshake era, and as an event
    for ``subscriptions/listen`` streams on later protocol versions. Best effort."""
    try:
        await ctx.session.send_resource_list_changed()
    except Exception:  # no channel for it on this connection
        log.debug("resource list change not sent on the session", exc_info=True)
    try:
        await ctx.notify_resources_changed()
    except Exception:
        log.debug("resource list change not published", exc_info=True)


async def _resource(st: AppState, fn: Callable[..., T], *args: Any) -> T:
    """A resource read, on the light threads (server/workers.py)."""
    try:
        return await st.workers.light(fn, *args)
    except NotFound as exc:  # an unknown collection or document: the SDK's not-found answer (-32602)
        raise ResourceNotFoundError(str(exc)) from None
    except RerankMCPError as exc:
        raise ResourceError(str(exc)) from None
