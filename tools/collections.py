"""Listing and deleting collections and documents."""

from __future__ import annotations

from typing import Any, Sequence

from rerank_mcp.index.engine import Engine
from rerank_mcp.index.filters import compile_filter, parse_filter
from rerank_mcp.index.store import check_collection_name
from rerank_mcp.errors import InvalidInput
from rerank_mcp.tools.models import CollectionList, CollectionSummary, DeleteResult


def list_collections(engine: Engine) -> CollectionList:
    out = []
    for c in engine.store.collections():
        kind = None
        col = engine.loaded(c.name)
        if col is not None:
            kind = col.dense.kind
        out.append(CollectionSummary(name=c.name, documents=c.documents, chunks=c.chunks,
                                     embedding_model=c.embedding_model, dim=c.dim, dense_index=kind))
    return CollectionList(collections=out)


def delete(
    engine: Engine,
    collection: str,
    ids: Sequence[str] | None = None,
    filter: Any = None,
    drop_collection: bool = False,
) -> DeleteResult:
    """Delete documents by id or metadata filter, or the whole collection."""
    check_collection_name(collection)
    engine.store.require_collection(collection)
    if drop_collection:
        if ids or filter:
            raise InvalidInput("give either drop_collection or ids/filter, not both")
        engine.drop(collection)
        return DeleteResult(collection=collection, deleted_documents=[], collection_dropped=True)
    if not ids and not filter:
        raise InvalidInput("nothing to delete: give document ids, a metadata filter, or drop_collection=true")
    clauses, params = [], []
    if ids:
        if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) for i in ids):
            raise InvalidInput("ids must be a list of document id strings")
        for i in ids:
            try:
                i.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput(f"document id {i!r} contains unpaired surrogates (invalid Unicode)") from None
        if len(ids) > 10_000:
            raise InvalidInput("at most 10000 ids per delete call")
        clauses.append(f"doc_id IN ({','.join('?' * len(ids))})")
        params.extend(ids)
    flt = parse_filter(filter)
    if flt:
        sql, p = compile_filter(flt, "metadata")
        clauses.append(sql)
        params.extend(p)
    col = engine.collection(collection)
    with col.write_lock:
        deleted = engine.store.delete_documents(collection, " AND ".join(clauses), params)
    col.catch_up()
    col.save()
    return DeleteResult(collection=collection, deleted_documents=deleted)
