"""The CLI verbs: each builds the state, calls the same tool function the MCP server calls,
and prints the result."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from rerank_mcp.server.output import Output, short
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import AppState, build_state


def _json(value: str | None, what: str) -> Any:
    from rerank_mcp.errors import InvalidInput

    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None


@contextmanager
def _opened(settings: Settings, open_collections: bool = False) -> Iterator[AppState]:
    """The server's state for one CLI verb. Collections open lazily, when the verb touches one."""
    state = build_state(settings, warm=False, open_collections=open_collections)
    try:
        yield state
    finally:
        state.close()


def add_extra_parsers(sub: argparse._SubParsersAction) -> None:
    """Verbs beyond the tools: evaluation and benchmarks."""
    import importlib

    for module in ("rerank_mcp.server.eval_command", "rerank_mcp.server.bench_command"):
        try:
            mod = importlib.import_module(module)
        except ImportError:  # pragma: no cover - a partial checkout
            continue
        mod.add_parser(sub)


def ingest(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.ingest import ingest as do_ingest

    docs: list[dict] = []
    meta = _json(args.metadata, "--metadata") or {}
    ids = args.ids or []
    for i, t in enumerate(args.text or []):
        docs.append({"id": ids[i] if i < len(ids) else None, "text": t, "metadata": meta})
    if args.jsonl:
        with open(args.jsonl, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        docs.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        from rerank_mcp.errors import InvalidInput

                        raise InvalidInput(f"{args.jsonl} line {n}: not valid JSON ({exc.msg})") from None
    with _opened(settings) as state:
        with out.progress("ingesting") as progress:
            res = do_ingest(
                state.engine, args.collection or settings.default_collection, docs, args.paths,
                roots=settings.roots(), glob=args.glob,
                chunk_size=args.chunk_size or settings.chunk_size,
                chunk_overlap=args.chunk_overlap if args.chunk_overlap is not None else settings.chunk_overlap,
                skip_invalid=args.skip_invalid, limits=state.ingest_limits, progress=progress,
            )
    if out.as_json:
        out.json(res)
    else:
        out.table(f"ingest into {res.collection}", ["id", "status", "chunks", "reason"],
                  [[d.id, d.status, d.chunks, d.reason] for d in res.documents[:50]])
        more = f" (first 50 of {len(res.documents)} shown)" if len(res.documents) > 50 else ""
        out.line(f"added {res.added}, updated {res.updated}, unchanged {res.unchanged}, failed {res.failed}; "
                 f"{res.chunks_written} chunks in {res.elapsed_ms / 1000:.1f} s{more}")
    return 1 if res.failed else 0


def search(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.search import search as do_search

    step = None
    if args.rerank:
        step = {"reranker": args.rerank, "options": _json(args.rerank_options, "--rerank-options") or {},
                "candidates": args.candidates}
    with _opened(settings) as state:
        res = do_search(state.engine, state.registry, args.query, args.collection or settings.default_collection,
                        k=args.k, mode=args.mode, fusion=args.fusion, weights=_json(args.weights, "--weights"),
                        filter=_json(args.filter, "--filter"), rerank=step, limits=state.search_limits)
    if out.as_json:
        out.json(res)
    else:
        out.table(f"{res.mode} search in {res.collection}" + (f", reranked by {res.reranker}" if res.reranker else ""),
                  ["#", "score", "document", "text"],
                  [[h.rank, f"{h.score:.4f}", h.doc_id, short(h.text)] for h in res.hits])
        out.line(f"{len(res.hits)} hits in {res.timings_ms.get('total_ms', 0):.1f} ms")
    return 0


def rerank(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.reranking import rerank as do_rerank

    passages = list(args.passages)
    if passages == ["-"] or not passages:
        passages = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    with _opened(settings) as state:
        res = do_rerank(state.registry, args.query, passages, args.reranker or settings.reranker_default,
                        _json(args.options, "--options"), args.top_n, state.rerank_limits)
    if out.as_json:
        out.json(res)
    else:
        out.table(f"reranked by {res.reranker}" + (f" ({res.model})" if res.model else ""),
                  ["#", "score", "input", "text", "truncated"],
                  [[p.rank, f"{p.score:.4f}", p.index, short(p.text), "yes" if p.truncated else ""] for p in res.passages])
        if res.fallback:
            out.line(f"fallback: {res.fallback}")
    return 0


def collections(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.collections import list_collections

    with _opened(settings, open_collections=True) as state:  # shows each collection's dense index
        res = list_collections(state.engine)
    if out.as_json:
        out.json(res)
    else:
        out.table("collections", ["name", "documents", "chunks", "embedding model", "dense index"],
                  [[c.name, c.documents, c.chunks, c.embedding_model, c.dense_index] for c in res.collections])
    return 0


def rerankers(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    with _opened(settings) as state:
        infos = state.registry.describe()
    if out.as_json:
        out.json(infos)
    else:
        out.table("rerankers", ["name", "available", "default model", "why not / summary"],
                  [[i.name, "yes" if i.available else "no", i.default_model, i.reason or i.summary] for i in infos])
    return 0


def delete(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.collections import delete as do_delete

    with _opened(settings) as state:
        res = do_delete(state.engine, args.collection, args.ids, _json(args.filter, "--filter"), args.all)
    if out.as_json:
        out.json(res)
    elif res.collection_dropped:
        out.line(f"dropped collection {res.collection}")
    else:
        out.line(f"deleted {len(res.deleted_documents)} document(s) from {res.collection}")
    return 0


def reindex(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    with _opened(settings) as state:
        with out.progress("re-embedding") as progress:
            n = state.engine.reindex(args.collection, lambda d, t: progress(d, t, "re-embedding"))
    if out.as_json:
        out.json({"collection": args.collection, "chunks": n})
    else:
        out.line(f"re-embedded {n} chunks of {args.collection} with {state.engine.model_name}")
    return 0
