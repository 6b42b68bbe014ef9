"""The CLI verbs: each builds the state, calls the same tool function the MCP server calls,
and prints the result."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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


def ingest(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.ingest import ingest as do_ingest
    from rerank_mcp.tools.sync import sync_folders

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
    if getattr(args, "sync", False) and (docs or not args.paths):
        from rerank_mcp.errors import InvalidInput

        raise InvalidInput("--sync mirrors folders: give folders as paths (and no --text or --jsonl)")
    with _opened(settings) as state:
        with out.progress("syncing" if getattr(args, "sync", False) else "ingesting") as progress:
            res = (sync_folders if getattr(args, "sync", False) else do_ingest)(
                state.engine, args.collection or settings.default_collection,
                *(() if getattr(args, "sync", False) else (docs,)), args.paths,
                roots=settings.roots(), glob=args.glob,
                chunk_size=args.chunk_size or settings.chunk_size,
                chunk_overlap=args.chunk_overlap if args.chunk_overlap is not None else settings.chunk_overlap,
                skip_invalid=args.skip_invalid, analyzer=getattr(args, "analyzer", None), limits=state.ingest_limits,
                progress=progress,
            )
    if out.as_json:
        out.json(res)
    else:
        out.table(f"ingest into {res.collection}", ["id", "status", "chunks", "reason"],
                  [[d.id, d.status, d.chunks, d.reason] for d in res.documents[:50]])
        more = f" (first 50 of {len(res.documents)} shown)" if len(res.documents) > 50 else ""
        out.line(f"added {res.added}, updated {res.updated}, unchanged {res.unchanged}, "
                 + (f"deleted {res.deleted}, " if res.synced is not None else "")
                 + (f"skipped {res.skipped}, " if res.skipped else "") + f"failed {res.failed}; "
                 f"{res.chunks_written} chunks in {res.elapsed_ms / 1000:.1f} s{more}")
        for note in res.notes:
            out.line(f"note: {note}")
    return 1 if res.failed else 0


def search(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.shaping import shaped_search as do_search

    step = None
    if args.rerank:
        step = {"reranker": args.rerank, "options": _json(args.rerank_options, "--rerank-options") or {},
                "candidates": args.candidates}
        if getattr(args, "min_score", None) is not None:
            step["min_score"] = args.min_score
    with _opened(settings) as state:
        res = do_search(state.engine, state.registry, args.query, args.collection or settings.default_collection,
                        k=args.k, mode=args.mode, fusion=args.fusion, weights=_json(args.weights, "--weights"),
                        filter=_json(args.filter, "--filter"), feedback=args.feedback, rerank=step,
                        limits=state.search_limits,
                        max_tokens=args.max_tokens, group_by=args.group_by, expand=args.expand, dedupe=args.dedupe)
    if out.as_json:
        out.json(res)
    else:
        out.table(f"{res.mode} search in {res.collection}" + (f", reranked by {res.reranker}" if res.reranker else "")
                  + (f" (ranked by {res.rerank_used})" if res.rerank_used and res.rerank_used != res.reranker else ""),
                  ["#", "score", "document", "lines", "text"],
                  [[h.rank, f"{h.score:.4f}", h.doc_id,
                    f"{h.start_line}-{h.end_line}" if h.start_line is not None else "", short(h.text)]
                   for h in res.hits])
        out.line(f"{len(res.hits)} hits in {res.timings_ms.get('total_ms', 0):.1f} ms"
                 + (f"; {res.tokens} tokens" if res.tokens is not None else "")
                 + (f" of {res.max_tokens}" if res.max_tokens is not None else ""))
        if res.rerank_fallback:
            out.line(f"fallback: {res.rerank_fallback}")
        for note in res.notes:
            out.line(f"note: {note}")
    return 0


def rerank(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.reranking import rerank as do_rerank

    passages = list(args.passages)
    if passages == ["-"] or not passages:
        passages = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    with _opened(settings) as state:
        res = do_rerank(state.registry, args.query, passages, args.reranker or settings.reranker_default,
                        _json(args.options, "--options"), args.top_n, state.rerank_limits,
                        ordered=bool(getattr(args, "ordered", False)), min_score=getattr(args, "min_score", None))
    if out.as_json:
        out.json(res)
    else:
        out.table(f"reranked by {ranked_by(res)}",
                  ["#", "score", "input", "text", "truncated"],
                  [[p.rank, f"{p.score:.4f}", p.index, short(p.text), "yes" if p.truncated else ""] for p in res.passages])
        if res.fallback:
            out.line(f"fallback: {res.fallback}")
        for note in res.notes:
            out.line(f"note: {note}")
    return 0


def ranked_by(res: Any) -> str:
    """Which reranker actually ranked a rerank result: the one named, or what stood in for it."""
    ran = res.used or res.reranker
    if ran == "none":
        return f"none: {res.reranker} kept the input order (a ranking)"
    text = ran + (f" ({res.model})" if res.model and ran == res.reranker else "")
    if res.used and res.used != res.reranker:
        text += f", standing in for {res.reranker}" if res.fallback else f", picked by {res.reranker}"
    if res.blend is not None:
        text += ", blended with the input order"
    return text


def compare(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.compare import compare as do_compare

    passages = list(args.passages)
    if passages == ["-"] or not passages:
        passages = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    with _opened(settings) as state:
        res = do_compare(state.registry, args.query, passages, args.rerankers, _json(args.judgments, "--judgments"),
                         args.k, state.rerank_limits)
    if out.as_json:
        out.json(res)
        return 0
    ok = [r for r in res.rerankers if r.error is None]
    out.table(f"rerankers on {len(res.passages)} passages (k={res.k})",
              ["reranker", "model", "latency ms", "load ms", f"nDCG@{res.k}", f"top {res.k} (input indices)", "error / fallback"],
              [[r.label, r.model, f"{r.latency_ms:.1f}" if r.latency_ms is not None else "",
                f"{r.load_ms:.0f}" if r.load_ms is not None else "",
                f"{r.ndcg_at_k:.3f}" if r.ndcg_at_k is not None else "", " ".join(map(str, r.order[: res.k])),
                short(r.error or r.fallback or "", 90)] for r in res.rerankers])
    if ok:
        first = {i: n for n, i in enumerate(ok[0].order)}
        rows = sorted(res.passages, key=lambda p: first[p.index])[:50]
        out.table("side by side: rank (score), in the first reranker's order", ["input", "id", "text", "rel"]
                  + [r.label for r in ok],
                  [[p.index, p.id, short(p.text, 60), "" if p.relevance is None else f"{p.relevance:g}"]
                   + [f"{p.ranks[r.label]} ({p.scores[r.label]:.4g})" for r in ok] for p in rows])
        out.table("agreement", ["a", "b", f"overlap@{res.k}", "Kendall tau"],
                  [[a.a, a.b, f"{a.overlap_at_k:.2f}", "" if a.kendall_tau is None else f"{a.kendall_tau:.3f}"]
                   for a in res.agreement])
    if res.input_ndcg_at_k is not None:
        out.line(f"input order nDCG@{res.k}: {res.input_ndcg_at_k:.3f}")
    for r in res.rerankers:  # each reranker's own advice (blend not applied, what auto picked); the model is in the table
        for note in r.notes:
            if not note.startswith("bi-encoder: "):
                out.line(f"{r.label}: {note}")
    for note in res.notes:
        out.line(note)
    return 0 if ok else 1


def collections(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.collections import list_collections

    with _opened(settings, open_collections=True) as state:  # shows each collection's dense index
        res = list_collections(state.engine)
    if out.as_json:
        out.json(res)
    else:
        out.table("collections", ["name", "documents", "chunks", "embedding model", "dense index", "analyzer"],
                  [[c.name, c.documents, c.chunks, c.embedding_model, c.dense_index, c.analyzer]
                   for c in res.collections])
    return 0


def rerankers(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    with _opened(settings) as state:
        infos = state.registry.describe()
    if out.as_json:
        out.json(infos)
    else:
        out.table("rerankers", ["name", "status", "default model", "why not / summary"],
                  [[i.name, i.status, i.default_model,
                    "; ".join(x.rstrip(".") for x in (i.reason or i.summary, i.note, i.download and
                                                      i.download.state != "downloading" and i.download.command) if x)]
                   for i in infos])
    return 0


def delete(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.collections import delete as do_delete

    with _opened(settings) as state:
        res = do_delete(state.engine, args.collection, args.ids, _json(args.filter, "--filter"), args.drop_collection)
    if out.as_json:
        out.json(res)
    elif res.collection_dropped:
        out.line(f"dropped collection {res.collection}")
    else:
        out.line(f"deleted {len(res.deleted_documents)} document(s) from {res.collection}")
    return 0


def reindex(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    analyzer = getattr(args, "analyzer", None)
    verb = "re-analyzing" if analyzer else "re-embedding"
    with _opened(settings) as state:
        with out.progress(verb) as progress:
            n = state.engine.reindex(args.collection, progress, analyzer=analyzer)
        now = state.engine.collection_info(args.collection)
    if out.as_json:
        out.json({"collection": args.collection, "chunks": n, **({"analyzer": now.analyzer} if analyzer else {})})
    elif analyzer:
        out.line(f"re-analyzed {n} chunks of {args.collection} for BM25 with the {now.analyzer} analyzer"
                 if n else f"{args.collection} already uses the {now.analyzer} analyzer: nothing to do")
    else:
        out.line(f"re-embedded {n} chunks of {args.collection} with {state.engine.model_name}")
    return 0


def export(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.transfer import export_collection

    with _opened(settings) as state:
        with out.progress("exporting") as progress:
            res = export_collection(state.engine, args.collection, args.file, progress)
    if out.as_json:
        out.json(res)
    else:
        out.line(f"exported {res.documents} documents ({res.chunks} chunks) of {res.collection} to {res.file}")
    return 0


def import_(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.transfer import import_collection

    with _opened(settings) as state:
        with out.progress("importing") as progress:
            res = import_collection(state.engine, args.file, args.collection, progress)
        engine = state.engine.backend
    if out.as_json:
        out.json(res)
    else:
        out.line(f"imported {res.documents} documents ({res.chunks} chunks) into {res.collection} ({engine} engine)")
    return 0


def tool_verb(spec: Any) -> Callable[[argparse.Namespace, Settings, Output], int]:
    """The CLI verb of a catalog tool that declares ``run`` and ``cli`` (tools/catalog.py): its
    options were added from the request model (cli.options_from); this builds the request from
    them, runs the tool as the server would, and prints the result as JSON."""

    def verb(args: argparse.Namespace, settings: Settings, out: Output) -> int:
        from pydantic import ValidationError

        from rerank_mcp.errors import InvalidInput
        from rerank_mcp.tools.arguments import problems

        given: dict[str, Any] = {}
        for name in spec.request.model_fields:
            value = getattr(args, name, None)
            if value is not None and name in getattr(args, "json_fields", ()):
                value = _json(value, "--" + name.replace("_", "-"))
            if value is None:
                value = getattr(settings, spec.setting_defaults[name]) if name in spec.setting_defaults else None
            if value is not None:
                given[name] = value
        try:
            request = spec.request.model_validate(given)
        except ValidationError as exc:
            raise InvalidInput(f"{spec.cli}: {'; '.join(problems(exc, spec.request))}") from None
        with _opened(settings) as state:
            res = spec.run(state, request)
        out.json(res)
        return 0

    return verb
