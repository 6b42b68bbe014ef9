"""Folders kept in sync with a collection: one call adds, updates, skips and deletes.

``sync_folders`` walks each folder (the same walk as ``ingest``: supported types or ``glob``,
hidden files and ``.gitignore`` / ``.rerankignore`` matches left out, symlinks that leave the
allowed roots skipped), ingests what it finds (a file whose content and settings are unchanged
is skipped without re-embedding, a changed one replaced, one that holds no text ``skipped``),
then deletes every document whose ``source`` lies under one of the folders (and matches
``glob``, when one is given) that the walk no longer yields and whose file is gone (removed or
renamed), is now ignored (an ignore file matches it or a folder above it), or now holds no
text. A document whose file is still there but that the walk does not select (a type or a
hidden name a walk leaves out: it was ingested by naming the file) is kept. A file that fails
to load keeps its previous version (with ``skip_invalid``; without it the call fails and changes
nothing). Unreadable is not absent: a subfolder the walk cannot read (permissions) or a file it
cannot take fails the call without ``skip_invalid``; with it, it is reported as failed and
nothing under it is deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.chunking import CHUNK_OVERLAP, CHUNK_SIZE
from rerank_mcp.index.contract import Index, Progress, check_collection_name
from rerank_mcp.index.loaders import WalkProblem, WalkReport, expand_paths, ignored_by_rules, resolve_allowed, selected
from rerank_mcp.tools.ingest import IngestLimits, ingest, walk_notes, walk_outcome
from rerank_mcp.tools.models import DocOutcome, IngestResult

log = logging.getLogger(__name__)

DELETE_BATCH = 500
INGEST_SHARE = 90  # percent of a sync's progress scale for its ingest; the deletions take the rest


def sync_folders(
    index: Index,
    collection: str,
    paths: Sequence[str],
    *,
    roots: Sequence[Path] = (),
    glob: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    chunk_overlap: int = CHUNK_OVERLAP,
    skip_invalid: bool = False,
    analyzer: str | None = None,
    limits: IngestLimits = IngestLimits(),
    progress: Progress | None = None,
) -> IngestResult:
    """Make ``collection`` mirror the files under ``paths`` (folders); see the module docstring."""
    t0 = time.perf_counter()
    check_collection_name(collection)
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise InvalidInput("sync needs one or more folders in paths")
    folders: list[Path] = []
    for p in paths:
        real = resolve_allowed(p, roots)
        if not real.is_dir():
            raise InvalidInput(f"{p} is not a folder: sync keeps folders in sync (ingest a single file without sync)")
        folders.append(real)
    problems: list[WalkProblem] | None = [] if skip_invalid else None
    report = WalkReport()
    files = expand_paths([str(f) for f in folders], roots, glob, problems, report)
    notes = walk_notes(report, glob, found_any=bool(files or problems))
    # Unreadable is not absent: nothing is deleted under a folder the walk could not read, nor a
    # file it could not take (without skip_invalid the walk's first problem failed the call).
    unread = [wp.path for wp in problems or [] if wp.folder]
    kept = {str(wp.path) for wp in problems or [] if not wp.folder}
    walk_failed = [walk_outcome(wp) for wp in problems or []]

    # 1. what is there now: added, updated or unchanged
    if files:
        res = ingest(index, collection, paths=[str(f) for f in files], roots=roots, chunk_size=chunk_size,
                     chunk_overlap=chunk_overlap, skip_invalid=skip_invalid, analyzer=analyzer, limits=limits,
                     progress=(lambda d, t, m: progress(INGEST_SHARE * d / t, 100, m)) if progress else None,
                     walked=True)
        outcomes = list(res.documents) + walk_failed
        written = res.chunks_written
    else:
        index.open_collection(collection, create=True, analyzer=analyzer)
        outcomes, written = list(walk_failed), 0

    # 2. what is gone: documents read from under these folders that the walk no longer yields,
    # whose files are gone, now ignored, or hold no text now. A file that still exists but that
    # the walk does not select (its type, a hidden name: it was ingested by naming it) is kept.
    empty = {o.id for o in outcomes if o.status == "skipped" and o.id}
    present = ({str(f) for f in files} | {o.id for o in outcomes if o.id} | kept) - empty
    known = index.sources(collection)
    candidates = {
        doc_id: Path(source) for doc_id, source in known.items()
        if doc_id not in present and source not in kept and _under(source, folders) and not _under(source, unread)
        and (glob is None or selected(Path(source).name, glob))
    }
    ignored: set[Path] = set()
    for top in folders:
        ignored |= ignored_by_rules([p for p in candidates.values() if top in p.parents], top, roots)
    doomed = sorted(doc_id for doc_id, p in candidates.items()
                    if doc_id in empty or p in ignored or not _is_file(p))
    if unread:
        log.warning("sync %s: kept every document under %d folder(s) that could not be read: %s", collection,
                    len(unread), ", ".join(map(str, unread)))
    deleted: list[str] = []
    for i in range(0, len(doomed), DELETE_BATCH):
        deleted += index.delete(collection, ids=doomed[i : i + DELETE_BATCH])
        if progress:  # one scale for the call, in percent: the ingest's share, then the deletions
            progress(INGEST_SHARE + (100 - INGEST_SHARE) * min(i + DELETE_BATCH, len(doomed)) / len(doomed), 100,
                     f"deleted {min(i + DELETE_BATCH, len(doomed))} of {len(doomed)} documents whose files are gone")
    gone_empty = empty & set(deleted)
    outcomes = [o for o in outcomes if not (o.status == "skipped" and o.id in gone_empty)]
    outcomes += [DocOutcome(id=d, source=known.get(d), status="deleted",
                            reason="the file holds no text now" if d in gone_empty else None) for d in deleted]
    if deleted:
        log.info("sync %s: deleted %d document(s) whose files are gone", collection, len(deleted))
    elapsed = time.perf_counter() - t0
    return IngestResult(
        collection=collection, documents=outcomes,
        added=sum(o.status == "added" for o in outcomes), updated=sum(o.status == "updated" for o in outcomes),
        unchanged=sum(o.status == "unchanged" for o in outcomes), failed=sum(o.status == "failed" for o in outcomes),
        skipped=sum(o.status == "skipped" for o in outcomes), notes=notes, deleted=len(deleted), chunks_written=written, elapsed_ms=elapsed * 1000,
        chunks_per_s=(written / elapsed) if written and elapsed > 0 else None, synced=[str(f) for f in folders],
        analyzer=index.require_collection(collection).analyzer_name,
    )


def _is_file(path: Path) -> bool:
    """Whether a regular file is still at ``path`` (an unreadable one counts as there)."""
    try:
        return path.is_file()
    except PermissionError:
        return True
    except OSError:
        return False


def _under(source: Any, folders: Sequence[Path]) -> bool:
    if not isinstance(source, str):
        return False
    p = Path(source)
    return any(p == f or f in p.parents for f in folders)
