"""The command line: the same verbs as the MCP tools, for people and scripts.

Tables and progress bars go to the terminal (stderr for progress); ``--json`` prints the
structured result on stdout. ``serve`` runs the MCP server (stdio by default).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

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

    from rerank_mcp.tools.catalog import CATALOG
    from rerank_mcp.tools.models import RerankStep

    s = sub.add_parser("ingest", help="ingest files, folders or text")
    s.add_argument("paths", nargs="*", help="files or folders")
    s.add_argument("--text", action="append", help="a document's text (repeatable)")
    s.add_argument("--id", action="append", dest="ids", help="id for each --text, in order")
    s.add_argument("--metadata", help="JSON metadata for every --text document")
    s.add_argument("--jsonl", help="a JSON-lines file of {id, text, metadata} documents")
    options_from(s, CATALOG["ingest"], ["collection", "glob", "chunk_size", "chunk_overlap", "skip_invalid", "analyzer",
                                        "sync"], collection=["-c", "--collection"])

    s = sub.add_parser("search", help="search a collection")
    options_from(s, CATALOG["search"], ["query", "collection", "k", "mode", "fusion", "weights", "filter", "feedback",
                                        "max_tokens", "group_by", "expand", "dedupe"],
                 query=[], collection=["-c", "--collection"], k=["-k"])
    options_from(s, RerankStep, ["reranker", "options", "candidates", "min_score"],
                 reranker=["--rerank"], options=["--rerank-options"],
                 dests={"reranker": "rerank", "options": "rerank_options"}, no_default=["reranker"])

    s = sub.add_parser("rerank", help="rerank passages (arguments, or one per line on stdin with -)")
    options_from(s, CATALOG["rerank"], ["query"], query=[])
    s.add_argument("passages", nargs="*")
    options_from(s, CATALOG["rerank"], ["reranker", "options", "top_n", "min_score", "ordered"],
                 reranker=["-r", "--reranker"])

    s = sub.add_parser("compare", help="compare rerankers on one query (passages as arguments, or one per line on stdin with -)")
    options_from(s, CATALOG["compare_rerankers"], ["query"], query=[])
    s.add_argument("passages", nargs="*")
    s.add_argument("-r", "--reranker", action="append", dest="rerankers", required=True,
                   help="a reranker: name, 'name(key=value,...)' or 'name={json options}' (repeatable)")
    options_from(s, CATALOG["compare_rerankers"], ["judgments", "k"], k=["-k"])

    sub.add_parser("collections", help="list collections")
    sub.add_parser("rerankers", help="list reranker families and their availability")

    s = sub.add_parser("delete", help="delete documents or a collection")
    options_from(s, CATALOG["delete"], ["collection", "ids", "filter", "drop_collection"], collection=[],
                 ids=["--id"], drop_collection=["--all"])

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

    from rerank_mcp.server.commands import tool_verb

    for spec in CATALOG.values():  # tools that declare their own verb (tools/catalog.py)
        if spec.cli and spec.run is not None and spec.cli not in sub.choices:
            s = sub.add_parser(spec.cli, help=spec.describe(spec.defaults(None)).split(". ")[0])
            fields = spec.request.model_fields
            options_from(s, spec, list(fields), **{n: [] for n, f in fields.items()
                                                   if f.is_required() and f.annotation is str})
            s.set_defaults(handler=tool_verb(spec), json_fields=[
                a.dest for a in s._actions if a.metavar == "JSON"])

    from rerank_mcp.server import models_command, watch_command

    for add in (watch_command.add_parser, models_command.add_parser, *extra_verbs):
        add(sub)
    _add_globals_below(p)
    return p


def options_from(parser: argparse.ArgumentParser, spec: Any, names: Sequence[str], *,
                 dests: dict[str, str] | None = None, no_default: Sequence[str] = (), **flags: list[str]) -> None:
    """Add a CLI verb's options from a tool's declaration (a catalog entry, or a pydantic model):
    each named field's type, choices, default and help. ``flags`` renames a field's option (``k=["-k"]``;
    an empty list makes it positional); ``dests`` renames where argparse stores it. A field whose
    default comes from the settings defaults to None here (the verb fills it in), as do those named in
    ``no_default``. Objects and lists of objects are given as JSON text (the verb parses it, naming
    the option when it is not JSON); a list of strings is a repeatable option."""
    model = getattr(spec, "request", spec)
    from_settings = getattr(spec, "setting_defaults", {})
    for name in names:
        f = model.model_fields[name]
        base, nullable = _unwrap(f.annotation)
        given = flags.get(name, ["--" + name.replace("_", "-")])
        kw: dict[str, Any] = {"help": f.description}
        if not given:  # positional
            parser.add_argument(name, **kw)
            continue
        kw["dest"] = (dests or {}).get(name, name)
        default = (None if (name in from_settings or name in no_default or f.is_required())
                   else f.get_default(call_default_factory=True))
        if base is bool:
            if default is None:
                parser.add_argument(*given, action=argparse.BooleanOptionalAction, default=None, **kw)
            else:
                parser.add_argument(*given, action="store_true", **kw)
            continue
        if get_origin(base) is Literal:
            kw["choices"] = list(get_args(base))
        elif base in (int, float, str):
            kw["type"] = base
        elif get_origin(base) is list and get_args(base) == (str,):
            kw["action"], default = "append", None
        else:
            kw["metavar"], default = "JSON", None
        parser.add_argument(*given, default=default, **kw)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (it, False)."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


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
    if settings.download_models:
        settings = settings.model_copy(update={"download_models": False})
        settings._downloads_off_reason = (
            "a one-shot command downloads no model: `rerank-mcp serve` downloads on first use while "
            "RERANK_MCP_DOWNLOAD_MODELS is on, its default")
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
