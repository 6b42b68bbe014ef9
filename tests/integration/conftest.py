"""One SciFact slice ingested once per session and engine (real embedder; SQLite, FAISS and
tantivy for the embedded engine, qdrant-client's local mode for Qdrant).

Tests that change or damage the index work on a copy of the built data folder, so the
expensive embedding happens once (the Qdrant build reads the embedded build's embedding cache).
Tests of what every engine must do take ``built``/``open_copy`` (parametrised over the
engines); tests of the embedded engine's own repair take ``built_embedded``/``open_embedded_copy``."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from rerank_mcp.tools.ingest import ingest
from rerank_mcp.tools.models import IngestResult, SearchResult
from rerank_mcp.tools.search import search
from tests.conftest import ENGINES, open_engine

COLLECTION = "scifact"
MODES = ("dense", "bm25", "hybrid")


@dataclass
class Built:
    backend: str
    data_dir: Path
    result: IngestResult
    baseline: dict[tuple[str, str], SearchResult]  # (mode, query id) -> result on the fresh index
    docs: list[dict]
    queries: dict[str, str]
    qrels: dict[str, set[str]]
    meta: dict[str, dict]


def doc_metadata(i: int, doc_id: str, judged: set[str]) -> dict:
    return {"n": i, "parity": "even" if i % 2 == 0 else "odd", "judged": doc_id in judged}


def _build(backend: str, data: Path, embedder, scifact, cache_from: Path | None = None) -> Built:
    if cache_from is not None:  # same texts, same model: reuse the vectors instead of embedding again
        data.mkdir(parents=True, exist_ok=True)
        shutil.copy(cache_from / "embedding-cache.sqlite", data / "embedding-cache.sqlite")
    eng = open_engine(backend, data, embedder)
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
    return Built(backend, data, result, baseline, docs, scifact.queries, scifact.qrels, meta)


@pytest.fixture(scope="session")
def built_embedded(tmp_path_factory, embedder, scifact) -> Built:
    return _build("embedded", tmp_path_factory.mktemp("scifact-embedded") / "data", embedder, scifact)


@pytest.fixture(scope="session")
def built_qdrant(tmp_path_factory, embedder, scifact, built_embedded) -> Built:
    return _build("qdrant", tmp_path_factory.mktemp("scifact-qdrant") / "data", embedder, scifact,
                  cache_from=built_embedded.data_dir)


@pytest.fixture(scope="session", params=ENGINES)
def built(request) -> Built:
    return request.getfixturevalue(f"built_{request.param}")


def _opener(built: Built, tmp_path: Path, embedder):
    target = tmp_path / "copy"
    shutil.copytree(built.data_dir, target)
    engines: list = []

    def _open():
        eng = open_engine(built.backend, target, embedder)
        engines.append(eng)
        return eng

    _open.data_dir = target  # type: ignore[attr-defined]
    _open.backend = built.backend  # type: ignore[attr-defined]
    return _open, engines


def _close(engines: list) -> None:
    for e in engines:
        try:
            e.close()
        except Exception:
            pass


@pytest.fixture
def open_copy(built, tmp_path, embedder):
    """Open engines on a private copy of the built index; closes them afterwards."""
    _open, engines = _opener(built, tmp_path, embedder)
    yield _open
    _close(engines)


@pytest.fixture
def open_embedded_copy(built_embedded, tmp_path, embedder):
    _open, engines = _opener(built_embedded, tmp_path, embedder)
    yield _open
    _close(engines)
