"""Export a collection to a JSONL file and import it again, into either engine, without re-embedding.

The file is the backup format and the way to move between engines (embedded <-> Qdrant). Its
first line is a header::

    {"format": "rerank-mcp-export", "version": 1, "collection": "notes",
     "embedding_model": "sentence-transformers/all-MiniLM-L6-v2", "dim": 384, "documents": 120}

then one line per document: its id, content hash, metadata, source, length and chunks, each
chunk with its text, character offsets, token count and vector (base64 of little-endian
float32, so vectors come back bit for bit).

An import reads and checks the whole file before it writes anything: a malformed line, a
vector of the wrong size or a different embedding model stores nothing.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from rerank_mcp.errors import InvalidInput, NotFound
from rerank_mcp.index.contract import DocumentWrite, Index, NewChunk, Progress, check_collection_name

FORMAT = "rerank-mcp-export"
VERSION = 1
WRITE_BATCH = 64


class TransferResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    collection: str
    file: str
    documents: int
    chunks: int
    embedding_model: str
    dim: int
    elapsed_ms: float


def _vec(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def export_collection(index: Index, collection: str, path: str | Path, progress: Progress | None = None) -> TransferResult:
    """Write every document of ``collection`` with its chunks and vectors to ``path`` (JSONL)."""
    t0 = time.perf_counter()
    check_collection_name(collection)
    info = index.require_collection(collection)
    total = next((c.documents for c in index.collections() if c.name == collection), 0)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp-export")
    n_docs = n_chunks = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            header = {"format": FORMAT, "version": VERSION, "collection": collection,
                      "embedding_model": info.embedding_model, "dim": info.dim, "documents": total,
                      "analyzer": info.analyzer_name,
                      "engine": index.backend}
            fh.write(json.dumps(header, ensure_ascii=False) + "\n")
            for doc in index.export_documents(collection):
                fh.write(json.dumps({
                    "id": doc.doc_id, "content_hash": doc.content_hash, "metadata": doc.metadata,
                    "source": doc.source, "chars": doc.chars,
                    "chunks": [{"text": c.text, "start": c.start, "end": c.end, "tokens": c.tokens, "vec": _vec(c.vec),
                                **({"line": c.line, "gap": c.gap} if c.line is not None else {})}
                               for c in doc.chunks],
                }, ensure_ascii=False) + "\n")
                n_docs += 1
                n_chunks += len(doc.chunks)
                if progress and n_docs % 100 == 0:
                    progress(n_docs, max(total, n_docs), f"exported {n_docs} of {total} documents")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return TransferResult(collection=collection, file=str(path), documents=n_docs, chunks=n_chunks,
                          embedding_model=info.embedding_model, dim=info.dim,
                          elapsed_ms=(time.perf_counter() - t0) * 1000)


def _lines(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"no export file {str(path)!r}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {str(path)!r}: {exc.strerror}") from None
    with fh:
        try:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInput(f"{path.name} line {n}: not valid JSON ({exc.msg})") from None
        except UnicodeDecodeError:
            raise InvalidInput(f"{path.name} is not UTF-8 text: not an export file") from None


def _document(n: int, j: Any, dim: int, where: str) -> DocumentWrite:
    here = f"{where} line {n}"
    if not isinstance(j, dict):
        raise InvalidInput(f"{here}: expected a JSON object")
    try:
        doc_id, h, meta, chunks = j["id"], j["content_hash"], j.get("metadata") or {}, j["chunks"]
    except KeyError as exc:
        raise InvalidInput(f"{here}: missing field {exc.args[0]!r}") from None
    if not isinstance(doc_id, str) or not doc_id or not isinstance(h, str) or not isinstance(meta, dict):
        raise InvalidInput(f"{here}: id and content_hash must be strings, metadata an object")
    if not isinstance(chunks, list):
        raise InvalidInput(f"{here}: chunks must be a list")
    out = []
    for i, c in enumerate(chunks):
        try:
            vec = np.frombuffer(base64.b64decode(c["vec"], validate=True), dtype="<f4").astype(np.float32)
            text, start, end, tokens = c["text"], int(c["start"]), int(c["end"]), int(c.get("tokens", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{here}: chunk {i} is malformed ({type(exc).__name__}: {exc})") from None
        if vec.shape != (dim,) or not np.isfinite(vec).all():
            raise InvalidInput(f"{here}: chunk {i} has a vector of {vec.size} values, the file says dimension {dim}")
        if not isinstance(text, str):
            raise InvalidInput(f"{here}: chunk {i} text must be a string")
        line, gap = c.get("line"), c.get("gap")
        ok = isinstance(line, int) and not isinstance(line, bool) and line >= 1 and isinstance(gap, str)
        out.append(NewChunk(text, start, end, tokens, vec, line if ok else None, gap if ok else None))
    chars = j.get("chars")
    return DocumentWrite(doc_id, h, meta, j.get("source"), int(chars) if isinstance(chars, int) else 0, out)


def import_collection(index: Index, path: str | Path, collection: str | None = None,
                      progress: Progress | None = None) -> TransferResult:
    """Load an export file into ``collection`` (default: the name in the file) of the configured
    engine. Documents that exist are replaced; the embedding model must match."""
    t0 = time.perf_counter()
    path = Path(path)
    where = path.name
    lines = _lines(path)
    first = next(lines, None)
    if first is None:
        raise InvalidInput(f"{where} is empty: not an export file")
    _, header = first
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidInput(f"{where} is not a rerank-mcp export (its first line has no \"format\": \"{FORMAT}\")")
    if header.get("version") != VERSION:
        raise InvalidInput(f"{where} is export version {header.get('version')!r}; this version reads {VERSION}")
    model, dim = header.get("embedding_model"), header.get("dim")
    if not isinstance(model, str) or not isinstance(dim, int) or dim <= 0:
        raise InvalidInput(f"{where}: the header must name the embedding_model and its dim")
    name = check_collection_name(collection or header.get("collection"))
    if not index.embedding.serves(model):
        raise InvalidInput(
            f"{where} holds vectors of embedding model {model!r}, but this server uses {index.model_name!r}: "
            f"import with RERANK_MCP_EMBEDDING_MODEL={model} (then `rerank-mcp reindex {name}` to re-embed if you wish)"
        )
    existing = index.collection_info(name)
    if existing is not None:
        index.check_model(existing)
    # read and check everything before writing anything
    docs: list[DocumentWrite] = []
    seen: set[str] = set()
    for n, j in lines:
        d = _document(n, j, dim, where)
        if d.doc_id in seen:
            raise InvalidInput(f"{where} line {n}: document {d.doc_id!r} appears twice")
        seen.add(d.doc_id)
        docs.append(d)
    analyzer = header.get("analyzer") or "legacy"  # files written before analyzers were recorded: legacy
    if existing is None:
        index.create_collection(name, model, dim, analyzer)
    else:
        index.open_collection(name)
    chunks = 0
    for b in range(0, len(docs), WRITE_BATCH):
        batch = docs[b : b + WRITE_BATCH]
        index.upsert(name, batch)
        chunks += sum(len(d.chunks) for d in batch)
        if progress:
            progress(min(b + WRITE_BATCH, len(docs)), len(docs), f"imported {min(b + WRITE_BATCH, len(docs))} documents")
    return TransferResult(collection=name, file=str(path), documents=len(docs), chunks=chunks,
                          embedding_model=model, dim=dim, elapsed_ms=(time.perf_counter() - t0) * 1000)
