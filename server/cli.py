"""The command line: the same verbs as the MCP tools, for people and scripts.

Tables and progress bars go to the terminal (stderr for progress); ``--json`` prints the
structured result on stdout. ``serve`` runs the MCP server (stdio by default).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rerank_mcp.errors import RerankMCPError

log = logging.getLogger("rerank_mcp")


def _setup_logging(level: str) -> None:
    # stdout is the MCP stream in stdio mode: logs always go to stderr.
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "sentence_transformers", "transformers", "mcp", "faiss", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _offline_env() -> None:
    # ONNX Runtime must not write telemetry, libraries must not chatter (index/environment.py).
    from rerank_mcp.index.environment import apply

    apply()


# A verb added from outside this layer: it adds its sub-parser, with ``handler`` set to a function
# ``(args, settings, out) -> exit status``, to the ``rerank-mcp`` sub-parsers.
AddVerb = Callable[[argparse._SubParsersAction], None]


def _global_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    """The options every verb accepts, before or after it. On the verbs' parsers their defaults are
    suppressed, so a value given before the verb is not reset by the verb's parser."""
    d = {"default": argparse.SUPPRESS} if suppress else {}
    p.add_argument("--data-dir", help="where the index lives (RERANK_MCP_DATA_DIR)", **d)
    p.add_argument("--embedding-model", help="sentence-transformers name or path (RERANK_MCP_EMBEDDING_MODEL)", **d)
    p.add_argument("--allowed-root", action="append", dest="roots_after_verb" if suppress else "allowed_roots",
                   metavar="FOLDER",
                   help="folder file ingest may read (repeatable; RERANK_MCP_ALLOWED_ROOTS: a JSON list, one "
                        "folder, or folders separated by the path separator)", **d)
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING (RERANK_MCP_LOG_LEVEL)", **d)
    p.add_argument("--json", action="store_true", help="print results as JSON on stdout", **d)


def build_parser(extra_verbs: Sequence[AddVerb] = ()) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rerank-mcp", description="Retrieve-then-rerank MCP server and CLI.")
    from rerank_mcp.index.install import package_version

    p.add_argument("--version", action="version", version=f"rerank-mcp {package_version()}")
    _global_options(p, suppress=False)
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("serve", help="run the MCP server (stdio by default)")
    s.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    s.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="HTTP port (default 8765)")
    s.add_argument("--read-only", action="store_true", default=None, help="remove the write tools")
    s.add_argument("--allowed-roots", nargs="*", dest="roots_list", metavar="FOLDER",
                   help="folders file ingest may read, as one list (for launchers that expand a list of folders "
                        "into arguments, like the Claude Desktop extension's allowed folders)")

    s = sub.add_parser("ingest", help="ingest files, folders or text")
    s.add_argument("paths", nargs="*", help="files or folders")
    s.add_argument("-c", "--collection")
    s.add_argument("--glob", help="file name pattern inside folders, e.g. '*.md'")
    s.add_argument("--text", action="append", help="a document's text (repeatable)")
    s.add_argument("--id", action="append", dest="ids", help="id for each --text, in order")
    s.add_argument("--metadata", help="JSON metadata for every --text document")
    s.add_argument("--jsonl", help="a JSON-lines file of {id, text, metadata} documents")
    s.add_argument("--chunk-size", type=int)
    s.add_argument("--chunk-overlap", type=int)
    s.add_argument("--skip-invalid", action="store_true")
    s.add_argument("--analyzer", help="BM25 analyzer of a new collection (default: auto, chosen from its text; "
                   "english, german, ..., none; +bigram or +jieba for CJK text)")
    s.add_argument("--sync", action="store_true",
                   help="the paths are folders to mirror: also delete documents whose files are gone")

    s = sub.add_parser("search", help="search a collection")
    s.add_argument("query")
    s.add_argument("-c", "--collection")
    s.add_argument("-k", type=int, help="hits to return (default 10; with --max-tokens, as many as fit)")
    s.add_argument("--mode", default="hybrid", choices=["dense", "bm25", "hybrid"])
    s.add_argument("--fusion", default="zscore", choices=["rrf", "minmax", "zscore", "server-rrf", "server-dbsf"])
    s.add_argument("--weights", help='JSON, e.g. {"dense": 0.7, "bm25": 0.3}')
    s.add_argument("--filter", help="JSON metadata filter")
    s.add_argument("--feedback", action="store_true",
                   help="dense pseudo-relevance feedback: the query vector moved toward the top 5 chunks, the "
                        "candidates' dense scores recomputed with it (hybrid and dense modes)")
    s.add_argument("--rerank", help="reranker family for a rerank step")
    s.add_argument("--rerank-options", help="JSON options of the reranker")
    s.add_argument("--candidates", type=int, default=50, help="first-stage hits to rerank")
    s.add_argument("--min-score", type=float, help="keep only reranked hits scored at least this by the reranker")
    s.add_argument("--max-tokens", type=int, help="token budget for the returned texts (embedding model's tokenizer)")
    s.add_argument("--group-by", choices=["document"], help="one entry per document, its chunks merged")
    s.add_argument("--expand", type=int, default=0, help="neighbouring chunks to add on each side of a hit")
    s.add_argument("--dedupe", action=argparse.BooleanOptionalAction, default=None,
                   help="fold near-duplicate texts of other documents into one entry (default: on with "
                        "--max-tokens, --group-by or --expand)")

    s = sub.add_parser("rerank", help="rerank passages (arguments, or one per line on stdin with -)")
    s.add_argument("query")
    s.add_argument("passages", nargs="*")
    s.add_argument("-r", "--reranker")
    s.add_argument("--options", help="JSON options")
    s.add_argument("--top-n", type=int)
    s.add_argument("--min-score", type=float,
                   help="drop passages scored below this by the reranker that ranked (its family's own scale)")
    s.add_argument("--ordered", action="store_true",
                   help="the passages are already ranked, best first: a reranker may blend with their order")

    s = sub.add_parser("compare", help="compare rerankers on one query (passages as arguments, or one per line on stdin with -)")
    s.add_argument("query")
    s.add_argument("passages", nargs="*")
    s.add_argument("-r", "--reranker", action="append", dest="rerankers", required=True,
                   help="a reranker: name, 'name(key=value,...)' or 'name={json options}' (repeatable)")
    s.add_argument("--judgments", help='JSON grades: {"passage index or id": grade} or a list, one per passage')
    s.add_argument("-k", type=int, default=10, help="k of overlap@k and nDCG@k")

    sub.add_parser("collections", help="list collections")
    sub.add_parser("rerankers", help="list reranker families and their availability")

    s = sub.add_parser("delete", help="delete documents or a collection")
    s.add_argument("collection")
    s.add_argument("--id", action="append", dest="ids")
    s.add_argument("--filter", help="JSON metadata filter")
    s.add_argument("--all", action="store_true", help="drop the whole collection")

    s = sub.add_parser("reindex", help="re-embed a collection with the current embedding model, or with "
                       "--analyzer re-analyze its BM25 index")
    s.add_argument("collection")
    s.add_argument("--analyzer", help="re-analyze the BM25 index with this analyzer (auto, english, german, ..., "
                   "none; +bigram or +jieba for CJK text) instead of re-embedding")

    s = sub.add_parser("export", help="write a collection (text, metadata, vectors) to a JSONL file: backup, or "
                       "moving to another engine")
    s.add_argument("collection")
    s.add_argument("file")

    s = sub.add_parser("import", help="load an export file into the configured engine (no re-embedding)")
    s.add_argument("file")
    s.add_argument("-c", "--collection", help="collection name (default: the one in the file)")

    from rerank_mcp.server import models_command, watch_command

    for add in (watch_command.add_parser, models_command.add_parser, *extra_verbs):
        add(sub)
    _add_globals_below(p)
    return p


def _add_globals_below(parser: argparse.ArgumentParser) -> None:
    """The global options on every verb's parser, nested verbs (``models pull``) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for verb in action.choices.values():
                _global_options(verb, suppress=True)
                _add_globals_below(verb)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    over: dict[str, Any] = {
        "data_dir": args.data_dir,
        "embedding_model": args.embedding_model,
        "log_level": args.log_level,
        "allowed_roots": args.allowed_roots,
    }
    if args.command == "serve":
        over.update(http_host=args.host, http_port=args.port, read_only=args.read_only)
    return over


def run(argv: list[str], extra_verbs: Sequence[AddVerb] = ()) -> int:
    """Run one command line. ``extra_verbs`` adds verbs from above this layer (the console entry
    point, ``rerank_mcp.main``, passes ``eval``, ``eval-budget`` and ``bench`` this way)."""
    parser = build_parser(extra_verbs)
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["serve", *argv])
    after = [*(getattr(args, "roots_after_verb", None) or []), *(getattr(args, "roots_list", None) or [])]
    if after:  # --allowed-root before and after the verb, and serve's --allowed-roots: all of them
        args.allowed_roots = [*(args.allowed_roots or []), *after]
    _offline_env()
    from rerank_mcp.server.settings import load_settings

    try:
        settings = load_settings(**_overrides(args))
    except Exception as exc:
        from rerank_mcp.server.config_help import explain, fallback_settings

        message = explain(exc)
        sys.stderr.write(f"error: {message}" + "\n")
        if args.command != "serve" or args.http:
            return 2
        # A stdio server still starts: its client shows this message (instructions and every
        # tool's answer) rather than a server that disconnected for no visible reason.
        settings = fallback_settings(exc, **_overrides(args))
        _setup_logging(settings.log_level)
        return _serve(args, settings, config_error=message)
    _setup_logging(settings.log_level)
    if args.command == "serve":
        return _serve(args, settings)
    # A one-shot command never starts a background download: it would outlive the result (or be
    # cut off by the exit); a missing model is named with its `rerank-mcp models pull` command.
    settings = settings.model_copy(update={"download_models": False})
    from rerank_mcp.server.output import Output

    out = Output(as_json=args.json)
    try:
        handler = getattr(args, "handler", None)
        if handler is not None:
            return handler(args, settings, out)
        return _commands()[args.command](args, settings, out)
    except RerankMCPError as exc:
        sys.stderr.write(f"error: {exc}" + "\n")
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace, settings, config_error: str | None = None) -> int:
    """Serve until the session ends. A failure (a data dir that cannot be opened, say) is one
    line on stderr and exit status 1; the traceback is logged at DEBUG."""
    from rerank_mcp.server.app import build_server

    try:
        if args.http:
            from rerank_mcp.server.http import serve_http
            from rerank_mcp.server.state import build_state

            # opened before uvicorn starts: a data dir that cannot be opened is reported here,
            # not as uvicorn's lifespan traceback
            state = build_state(settings)
            try:
                serve_http(build_server(settings, state, config_error=config_error), settings)
            finally:
                state.close()
        else:
            server = build_server(settings, config_error=config_error)
            import anyio

            from rerank_mcp.server.stdio import run_stdio

            anyio.run(run_stdio, server, settings.stdio_transport)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        import logging

        logging.getLogger("rerank_mcp").debug("the server stopped on an error", exc_info=exc)
        sys.stderr.write(f"error: the server stopped: {_first_cause(exc)}" + "\n")
        return 1
    return 0


def _first_cause(exc: BaseException) -> str:
    """The message of the error underneath the task groups' ExceptionGroups; the type name is
    added where the error is not one of ours."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, RerankMCPError):
        return str(exc)
    text = str(exc) or repr(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    return f"{type(exc).__name__}: {text} (RERANK_MCP_LOG_LEVEL=DEBUG logs the traceback)"


def _commands():
    from rerank_mcp.server import commands

    return {
        "ingest": commands.ingest,
        "search": commands.search,
        "rerank": commands.rerank,
        "compare": commands.compare,
        "collections": commands.collections,
        "rerankers": commands.rerankers,
        "delete": commands.delete,
        "reindex": commands.reindex,
        "export": commands.export,
        "import": commands.import_,
    }
