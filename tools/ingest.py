"""Ingest: documents and files in; chunked, embedded, stored durably, indexed.

Everything is validated before anything is written: one bad input fails the whole call and
stores nothing (unless ``skip_invalid`` asks to ingest the rest and report the failures).
Documents are written to the store in batches, one transaction each; a document's outcome
says ``added``/``updated`` only once its transaction has committed. A cancelled call (see
:mod:`rerank_mcp.tools.cancel`) stops at the next batch boundary: the batches committed before
stay, the batch in hand is dropped before its transaction. A batch the disk has no room for is
rolled back: on the first batch the call fails and stores nothing; on a later one the result
reports the stored documents and the rest as failed ("not stored: no space left ...").
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerank_mcp.errors import DataDirError, InvalidInput, LimitExceeded, NoText, RerankMCPError
from rerank_mcp.index.chunking import CHUNK_OVERLAP, CHUNK_SIZE, chunk_document
from rerank_mcp.index.contract import DocumentWrite, Index, NewChunk, Progress, check_collection_name
from rerank_mcp.index.lines import lines_of_chunks
from rerank_mcp.index.loaders import WalkProblem, WalkReport, expand_paths, load_file
from rerank_mcp.tools.cancel import CancelCheck, check
from rerank_mcp.tools.models import DocOutcome, DocumentIn, IngestResult

WRITE_BATCH = 64
# chunks per embedding call: a cancelled ingest stops between these (256 MiniLM chunks take
# about 2 s on 2 cores with the default backend). A write batch's chunks usually fit in one call,
# which the embedder sorts by length and spreads over its cores: calls of 64 padded more and left
# a core idle at each call's end (docs/performance.md)
EMBED_BATCH = 256


@dataclass(frozen=True)
class IngestLimits:
    max_documents: int = 10_000
    max_chars: int = 5_000_000
    max_file_bytes: int = 50_000_000
    max_metadata_bytes: int = 65_536
    # The documents' total UTF-8 size per call (ids, texts, metadata): what one request carries.
    # None (library callers such as the evaluator) checks only each document against max_chars.
    max_request_bytes: int | None = None


@dataclass
class _Pending:
    doc_id: str
    text: str
    metadata: dict[str, Any]
    source: str | None
    hash: str = ""
    kind: str | None = None  # a file's kind: "code" is chunked by blocks


def _check_metadata(meta: Any, where: str, limit: int) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise InvalidInput(f"{where}: metadata must be a JSON object")
    try:
        raw = json.dumps(meta, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{where}: metadata is not plain JSON ({exc})") from None
    if len(raw.encode()) > limit:
        raise LimitExceeded(f"{where}: metadata is {len(raw.encode())} bytes, over the limit of {limit}")
    return meta


def _check_text(text: Any, where: str, limit: int) -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"{where}: text must be a string")
    if not text.strip():
        raise InvalidInput(f"{where}: text is empty")
    if len(text) > limit:
        raise LimitExceeded(
            f"{where}: text is {len(text)} characters, over the limit of {limit} (RERANK_MCP_MAX_REQUEST_BYTES)"
        )
    if "\x00" in text:
        raise InvalidInput(f"{where}: text contains NUL characters (binary data?)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{where}: text contains unpaired surrogates (invalid Unicode)") from None
    return text


def _request_bytes(documents: Sequence[Any]) -> int:
    """The UTF-8 size of the documents' ids, texts and metadata: what the call carries."""
    total = 0
    for d in documents:
        if isinstance(d, DocumentIn):
            parts: tuple[Any, ...] = (d.id, d.text, d.metadata)
        elif isinstance(d, dict):
            parts = (d.get("id"), d.get("text"), d.get("metadata"))
        else:
            continue  # malformed: refused by validation
        for part in parts:
            if isinstance(part, str):
                total += len(part.encode("utf-8", "surrogatepass"))
            elif part:  # metadata; an empty one costs nothing
                try:
                    total += len(json.dumps(part, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))
                except (TypeError, ValueError, RecursionError):
                    pass  # malformed: refused by validation
    return total


def _content_hash(text: str, meta: dict[str, Any], size: int, overlap: int, model: str) -> str:
    h = hashlib.sha256()
    for part in (text, json.dumps(meta, sort_keys=True, ensure_ascii=False), f"{size}/{overlap}/{model}"):
        h.update(part.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


def ingest(
    index: Index,
    collection: str,
    documents: Sequence[DocumentIn | dict] = (),
    paths: Sequence[str] = (),
    *,
    roots: Sequence[Path] = (),
    glob: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    chunk_overlap: int = CHUNK_OVERLAP,
    skip_invalid: bool = False,
    analyzer: str | None = None,
    limits: IngestLimits = IngestLimits(),
    progress: Progress | None = None,
    on_commit: Callable[[list[str]], None] | None = None,
    cancelled: CancelCheck | None = None,
    walked: bool = False,
) -> IngestResult:
    """Ingest ``documents`` and files under ``paths`` into ``collection``.

    A file a folder walk found that holds no text (empty, only whitespace) is ``skipped`` and
    reported, not an error; one named in ``paths`` that holds none is an error (``walked``: the
    paths are files a walk found, as :func:`~rerank_mcp.tools.sync.sync_folders` passes them).
    Files a walk leaves out for their type are counted and named in ``notes``.

    ``on_commit`` is called with the ids of each batch right after its transaction commits:
    from then on those documents survive any crash. ``cancelled`` (default: the thread's check)
    is asked between files and batches; once it says stop, :class:`Cancelled` is raised.
    """
    t0 = time.perf_counter()
    check_collection_name(collection)
    if not documents and not paths:
        raise InvalidInput("nothing to ingest: give documents and/or paths")
    if not isinstance(chunk_size, int) or not 16 <= chunk_size <= 8192:
        raise InvalidInput(f"chunk_size must be an integer from 16 to 8192, got {chunk_size!r}")
    if not isinstance(chunk_overlap, int) or not 0 <= chunk_overlap < chunk_size:
        raise InvalidInput(f"chunk_overlap must be >= 0 and smaller than chunk_size, got {chunk_overlap!r}")
    if not isinstance(documents, (list, tuple)) or not isinstance(paths, (list, tuple, str)):
        raise InvalidInput("documents must be a list of {id?, text, metadata?} objects and paths a list of strings")
    if len(documents) > limits.max_documents:
        raise LimitExceeded(
            f"{len(documents)} documents in one call, over the limit of {limits.max_documents} "
            "(RERANK_MCP_MAX_DOCUMENTS_PER_INGEST)"
        )
    size = _request_bytes(documents) if limits.max_request_bytes is not None else 0
    if limits.max_request_bytes is not None and size > limits.max_request_bytes:
        raise LimitExceeded(
            f"the documents total {size} bytes of text and metadata, over the limit of {limits.max_request_bytes} "
            "bytes per call (RERANK_MCP_MAX_REQUEST_BYTES); split them over several calls"
        )

    failed: list[DocOutcome] = []
    skipped: list[DocOutcome] = []
    notes: list[str] = []
    pending: list[_Pending] = []
    units = [len(documents)]  # the call's work: a unit per document stored, and per file read too

    def report(done: float, message: str) -> None:
        """Progress on one scale for the whole call, in percent (it never goes back): reading the
        files takes the first units, embedding and storing the documents the rest."""
        if progress:
            progress(100 * done / max(1, units[0]), 100, message)

    def fail(doc_id: str | None, source: str | None, exc: Exception) -> None:
        if not skip_invalid:
            raise exc
        failed.append(DocOutcome(id=doc_id, source=source, status="failed", reason=str(exc)))

    # 1. validate and load everything
    for i, d in enumerate(documents):
        where = f"documents[{i}]"
        try:
            doc = d if isinstance(d, DocumentIn) else DocumentIn.model_validate(d)
            text = _check_text(doc.text, where, limits.max_chars)
            meta = _check_metadata(doc.metadata, where, limits.max_metadata_bytes)
            if doc.id is not None and (not doc.id.strip() or len(doc.id) > 512 or "\x00" in doc.id):
                raise InvalidInput(f"{where}: id must be 1-512 characters without NUL")
            if doc.id is not None:
                try:
                    doc.id.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidInput(f"{where}: id contains unpaired surrogates (invalid Unicode)") from None
            doc_id = doc.id if doc.id is not None else "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:24]
            pending.append(_Pending(doc_id, text, meta, None))
        except RerankMCPError as exc:
            fail(getattr(d, "id", None) if not isinstance(d, dict) else d.get("id"), None, exc)
        except Exception as exc:  # pydantic ValidationError and friends
            fail(None, None, InvalidInput(f"{where}: invalid document: {_first_error(exc)}"))
    if paths:
        if isinstance(paths, str):
            paths = [paths]
        problems: list[WalkProblem] | None = [] if skip_invalid else None
        walk = WalkReport()
        files = expand_paths(paths, list(roots), glob, problems, walk)
        for wp in problems or []:  # what the walk could not take: reported, the rest ingested
            failed.append(walk_outcome(wp))
        notes += walk_notes(walk, glob, found_any=bool(files or problems))
        if len(files) + len(pending) > limits.max_documents:
            raise LimitExceeded(
                f"{len(files) + len(pending)} documents in one call, over the limit of {limits.max_documents} "
                "(RERANK_MCP_MAX_DOCUMENTS_PER_INGEST); narrow the paths or the glob"
            )
        units[0] += 2 * len(files)
        for n, f in enumerate(files):
            check(cancelled)
            name = str(f)
            try:
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:  # a name in another encoding: it cannot be an id or a source
                    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    raise InvalidInput(
                        f"{name}: the file name is not valid UTF-8; rename the file to ingest it") from None
                text_limit = max(limits.max_chars, limits.max_file_bytes)  # files: size-capped
                lf = load_file(f, limits.max_file_bytes, list(roots), text_limit)  # re-checked once open
                _check_text(lf.text, str(f), text_limit)
                meta = {"source": str(f), "type": lf.kind}
                if lf.title:
                    meta["title"] = lf.title
                if lf.language:
                    meta["language"] = lf.language
                pending.append(_Pending(str(f), lf.text, meta, str(f), kind=lf.kind))
            except NoText as exc:
                if walked or f not in walk.named:  # found by a walk: an empty file is no error
                    skipped.append(DocOutcome(id=name, source=name, status="skipped",
                                              reason=f"{_printable(str(exc))}: skipped"))
                else:
                    fail(name, name, exc)
            except RerankMCPError as exc:
                fail(name, name, exc)
            if n % 20 == 0:
                report(n, f"reading files ({n}/{len(files)})")
    seen: dict[str, int] = {}
    for p in pending:
        seen[p.doc_id] = seen.get(p.doc_id, 0) + 1
    dups = [k for k, v in seen.items() if v > 1]
    if dups:
        raise InvalidInput(f"duplicate document id(s) in one call: {', '.join(map(repr, dups[:5]))}")

    # 2. skip unchanged content
    # ModelMismatch with the way out; a new collection's analyzer is chosen from these texts
    info = index.open_collection(collection, create=True, analyzer=analyzer, sample=[p.text for p in pending[:200]])
    model = info.embedding_model
    for p in pending:
        p.hash = _content_hash(p.text, p.metadata, chunk_size, chunk_overlap, model)
    stored = index.doc_hashes(collection, [p.doc_id for p in pending])
    outcomes: list[DocOutcome] = []
    todo: list[_Pending] = []
    for p in pending:
        if stored.get(p.doc_id) == p.hash:
            outcomes.append(DocOutcome(id=p.doc_id, source=p.source, status="unchanged"))
        else:
            todo.append(p)

    # 3. chunk, embed, write in batches
    emb = index.embedding
    total_docs = len(todo)
    base = units[0] - total_docs  # the files read, and the documents unchanged or failed
    chunks_written = 0
    for b in range(0, total_docs, WRITE_BATCH):
        batch = todo[b : b + WRITE_BATCH]
        chunked = [chunk_document(p.text, chunk_size, chunk_overlap, emb.count_tokens, p.kind) for p in batch]
        flat = [c.text for cs in chunked for c in cs]
        vecs = []
        for e in range(0, len(flat), EMBED_BATCH):
            check(cancelled)
            vecs.append(emb.documents(flat[e : e + EMBED_BATCH], info))  # the collection's own backend
            # up to 0.9 of the batch: storing it is the rest
            report(base + b + 0.9 * len(batch) * min(1.0, (e + EMBED_BATCH) / max(1, len(flat))),
                   f"embedding chunks of documents {b + 1}-{b + len(batch)} of {total_docs}")
        import numpy as np

        allv = np.concatenate(vecs) if vecs else np.zeros((0, info.dim), np.float32)
        rows, k = [], 0
        for p, cs in zip(batch, chunked):
            where = lines_of_chunks([(c.start, c.end, c.text) for c in cs], p.text)  # cited lines, joinable gaps
            news = [NewChunk(c.text, c.start, c.end, c.tokens, allv[k + j], line, gap)
                    for j, (c, (line, gap)) in enumerate(zip(cs, where))]
            k += len(cs)
            rows.append(DocumentWrite(p.doc_id, p.hash, p.metadata, p.source, len(p.text), news))
        check(cancelled)  # the last point to drop the batch: the transaction below runs to its end
        try:
            index.upsert(collection, rows)  # durable and searchable when it returns
        except DataDirError as exc:  # the disk is full: this batch was rolled back
            if b == 0:
                raise  # nothing of this call stored: the call fails
            # earlier batches are stored: report them as such, and the rest as not stored
            reason = f"not stored: {exc}"
            failed.extend(DocOutcome(id=p.doc_id, source=p.source, status="failed", reason=reason)
                          for p in todo[b:])
            break
        if on_commit:
            on_commit([p.doc_id for p in batch])
        for p, cs in zip(batch, chunked):
            outcomes.append(
                DocOutcome(id=p.doc_id, source=p.source, status="updated" if p.doc_id in stored else "added",
                           chunks=len(cs))
            )
            chunks_written += len(cs)
        report(base + min(b + WRITE_BATCH, total_docs), f"stored {min(b + WRITE_BATCH, total_docs)} of {total_docs} documents")
    outcomes.extend(failed)
    outcomes.extend(skipped)
    elapsed = time.perf_counter() - t0
    return IngestResult(
        collection=collection,
        documents=outcomes,
        added=sum(o.status == "added" for o in outcomes),
        updated=sum(o.status == "updated" for o in outcomes),
        unchanged=sum(o.status == "unchanged" for o in outcomes),
        failed=len(failed),
        skipped=len(skipped),
        notes=notes,
        chunks_written=chunks_written,
        elapsed_ms=elapsed * 1000,
        chunks_per_s=(chunks_written / elapsed) if chunks_written and elapsed > 0 else None,
        analyzer=info.analyzer_name,
    )


def walk_outcome(wp: WalkProblem) -> DocOutcome:
    """A folder walk's problem as a failed outcome (a folder has no document id)."""
    name, reason = _printable(str(wp.path)), _printable(wp.message)
    return DocOutcome(id=None if wp.folder else name, source=name, status="failed", reason=reason)


def walk_notes(report: WalkReport, glob: str | None, found_any: bool) -> list[str]:
    """What folder walks left out, for a result's ``notes``: files of unsupported types (counted,
    the first 10 named) and, when the walks found nothing to read (``found_any`` false), why."""
    notes = []
    n = len(report.unsupported)
    if n:
        names = ", ".join(_printable(report.shown(p)) for p in report.unsupported[:10])
        notes.append(f"skipped {n} file{'s' if n != 1 else ''} of unsupported types: {names}"
                     + (" (first 10)" if n > 10 else "")
                     + "; to read one as text, name it in paths or give a glob that matches it")
    if report.folders and not found_any:
        why = []
        if n:
            why.append(f"{n} file{'s are' if n != 1 else ' is'} of unsupported types")
        if report.not_matched:
            why.append(f"{report.not_matched} file(s) do not match the glob {glob!r}")
        if report.ignored:
            why.append(f"{report.ignored} file(s) or folder(s) are ignored by .gitignore / .rerankignore rules")
        if report.hidden:
            why.append(f"{report.hidden} hidden file(s) or folder(s) are left out")
        folders = ", ".join(_printable(str(f)) for f in report.folders)
        notes.append(f"no file to read was found in {folders}: "
                     + ("; ".join(why) if why else "the folder holds no files"))
    return notes


def _printable(s: str) -> str:
    """``s`` as valid UTF-8: bytes of another encoding and lone surrogates become U+FFFD."""
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            e = errors()[0]
            loc = ".".join(str(x) for x in e.get("loc", ()))
            return f"{loc}: {e.get('msg')}" if loc else str(e.get("msg"))
        except Exception:
            pass
    return str(exc).splitlines()[0]
