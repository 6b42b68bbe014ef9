"""Listing and deleting collections and documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.contract import Index, check_collection_name
from rerank_mcp.index.filters import parse_filter
from rerank_mcp.tools.models import CollectionList, CollectionSummary, DeleteResult


def list_collections(index: Index) -> CollectionList:
    out = []
    for c in index.collections():
        kind = index.dense_index_kind(c.name)
        out.append(CollectionSummary(name=c.name, documents=c.documents, chunks=c.chunks,
                                     embedding_model=c.embedding_model, dim=c.dim, dense_index=kind,
                                     analyzer=c.analyzer_name))
    return CollectionList(collections=out)


def delete(
    index: Index,
    collection: str,
    ids: Sequence[str] | None = None,
    filter: Any = None,
    drop_collection: bool = False,
) -> DeleteResult:
    """Delete documents by id or metadata filter, or the whole collection."""
    check_collection_name(collection)
    index.require_collection(collection)
    if drop_collection:
        if ids or filter:
            raise InvalidInput("give either drop_collection or ids/filter, not both")
        index.drop(collection)
        return DeleteResult(collection=collection, deleted_documents=[], collection_dropped=True)
    if not ids and not filter:
        raise InvalidInput("nothing to delete: give document ids, a metadata filter, or drop_collection=true")
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
    flt = parse_filter(filter)
    deleted = index.delete(collection, list(ids) if ids else None, flt)
    return DeleteResult(collection=collection, deleted_documents=deleted)
