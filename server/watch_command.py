"""``rerank-mcp watch PATH... -c NAME``: keep a collection in sync with folders as files change.

One sync at start, then one after each burst of file system events (debounced). Each sync
prints a line (or, with ``--json``, one JSON object per line); logs go to stderr. Ctrl-C or
SIGTERM stops it after the sync in hand.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from rerank_mcp.server.output import Output
from rerank_mcp.server.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("watch", help="keep a collection in sync with folders as their files change",
                       description="Sync the folders into the collection now, then again whenever files change "
                       "(added, changed, removed, renamed; .gitignore and .rerankignore honoured).")
    s.add_argument("paths", nargs="+", metavar="PATH", help="folders to watch")
    s.add_argument("-c", "--collection")
    s.add_argument("--glob", help="file name pattern, e.g. '*.md' (default: every supported type)")
    s.add_argument("--debounce", type=float, default=1.0, help="seconds without events before a sync (default 1)")
    s.add_argument("--polling", action="store_true", help="poll the folders instead of OS events (network drives)")
    s.add_argument("--chunk-size", type=int)
    s.add_argument("--chunk-overlap", type=int)
    s.set_defaults(handler=run_watch)


def run_watch(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.errors import InvalidInput
    from rerank_mcp.server.commands import _opened
    from rerank_mcp.tools.sync import sync_folders
    from rerank_mcp.tools.watch import FolderWatcher

    if args.debounce < 0 or args.debounce > 3600:
        raise InvalidInput("--debounce must be from 0 to 3600 seconds")
    collection = args.collection or settings.default_collection
    with _opened(settings) as state:
        def sync():
            return sync_folders(
                state.engine, collection, args.paths, roots=settings.roots(), glob=args.glob,
                chunk_size=args.chunk_size or settings.chunk_size,
                chunk_overlap=args.chunk_overlap if args.chunk_overlap is not None else settings.chunk_overlap,
                skip_invalid=True, limits=state.ingest_limits,
            )

        first = sync()  # refuses bad paths and settings before watching anything
        report(first, out, notes=True)
        watcher = FolderWatcher([p for p in (first.synced or [])], sync, debounce_s=args.debounce, glob=args.glob,
                                on_result=lambda r: report(r, out),
                                on_error=lambda e: sys.stderr.write(f"error: {e}\n"), polling=args.polling)

        def stop(_sig, _frame):
            watcher.request_stop()

        old = signal.signal(signal.SIGTERM, stop)
        watcher.start(initial_sync=False)
        if not out.as_json:
            sys.stderr.write(f"watching {', '.join(first.synced or [])} for {collection}; Ctrl-C stops\n")
        try:
            watcher.wait()
        except KeyboardInterrupt:
            pass
        finally:
            watcher.stop()
            signal.signal(signal.SIGTERM, old)
    return 0


def report(res, out: Output, notes: bool = False) -> None:
    """One sync's outcome: a line (or a JSON object) of counts and what changed; with ``notes``
    (the first sync), what the walk left out too."""
    if out.as_json:
        sys.stdout.write(json.dumps({k: v for k, v in res.model_dump().items() if k != "documents"}
                                    | {"changed": [d for d in res.model_dump()["documents"]
                                                   if d["status"] not in ("unchanged", "skipped")]},
                                    ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    changed = [d for d in res.documents if d.status not in ("unchanged", "skipped")]
    out.line(f"{res.collection}: added {res.added}, updated {res.updated}, unchanged {res.unchanged}, "
             f"deleted {res.deleted}, " + (f"skipped {res.skipped}, " if res.skipped else "") + f"failed {res.failed}"
             + (": " + ", ".join(f"{d.status} {d.id}" for d in changed[:10]) if changed else ""))
    for note in res.notes if notes else ():
        out.line(f"note: {note}")
    sys.stdout.flush()
