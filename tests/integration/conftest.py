"""One SciFact slice ingested once per session (real embedder, SQLite, FAISS, tantivy).

Tests that change or damage the index work on a copy of the built data folder, so the
expensive embedding happens once."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from rerank_mcp.index.engine import EmbeddedIndex, IndexConfig
from rerank_mcp.tools.ingest import ingest
from rerank_mcp.tools.models import IngestResult, SearchResult
from rerank_mcp.tools.search import search

COLLECTION = "scifact"
MODES = ("dense", "bm25", "hybrid")


@dataclass
class Built:
    data_dir: Path
    result: IngestResult
    baseline: dict[tuple[str, str], SearchResult]  # (mode, query id) -> result on the fresh index
    docs: list[dict]
    queries: dict[str, str]
    qrels: dict[str, set[str]]
    meta: dict[str, dict]


def doc_metadata(i: int, doc_id: str, judged: set[str]) -> dict:
    return {"n": i, "parity": "even" if i % 2 == 0 else "odd", "judged": doc_id in judged}


@pytest.fixture(scope="session")
def built(tmp_path_factory, embedder, scifact) -> Built:
    data = tmp_path_factory.mktemp("scifact-index") / "data"
    eng = EmbeddedIndex(IndexConfig(data_dir=data, embedder_factory=lambda: embedder))
    judged = set().union(*scifact.qrels.values())
    meta = {d["id"]: doc_metadata(i, d["id"], judged) for i, d in enumerate(scifact.docs)}
    docs = [{"id": d["id"], "text": d["text"], "metadata": meta[d["id"]]} for d in scifact.docs]
    result = ingest(eng, COLLECTION, docs)
    baseline = {
        (mode, qid): search(eng, None, q, COLLECTION, k=10, mode=mode)
        for qid, q in scifact.queries.items()
        for mode in MODES
    }
    eng.close()
    return Built(data, result, baseline, docs, scifact.queries, scifact.qrels, meta)


@pytest.fixture
def open_copy(built, tmp_path, embedder):
    """Open engines on a private copy of the built index; closes them afterwards."""
    target = tmp_path / "copy"
    shutil.copytree(built.data_dir, target)
    engines: list[EmbeddedIndex] = []

    def _open() -> EmbeddedIndex:
        eng = EmbeddedIndex(IndexConfig(data_dir=target, embedder_factory=lambda: embedder))
        engines.append(eng)
        return eng

    _open.data_dir = target  # type: ignore[attr-defined]
    yield _open
    for e in engines:
        try:
            e.close()
        except Exception:
            pass
