"""Shared, generic fixtures: offline switches, one real embedder per session, a fresh engine,
and a small SciFact slice read in place from ../shared/datasets (never copied into the repo)."""

from __future__ import annotations

# Before anything imports transformers / onnxruntime: the CLI's quiet defaults, and offline.
from rerank_mcp.index.environment import apply as _environment

_environment(offline=True)

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def embedder():
    from rerank_mcp.index.embedding import Embedder

    return Embedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="session", autouse=True)
def _models_load_once_per_session():
    """Every engine built in this process without an injected embedder (the servers and CLI verbs
    tests run in-process) shares one loaded model per (model, backend, settings): the same model
    files give the same vectors, so what is tested does not change; loading it again for every
    test only costs time. Servers started as subprocesses load their own, as in use."""
    import threading

    from rerank_mcp.index import contract

    real = contract.load_embedder
    loaded: dict[tuple, object] = {}
    lock = threading.Lock()

    def shared(name, backend="torch", device="cpu", batch_size=None, cache_dir=None, folder=None):
        key = (name, backend, device, batch_size, str(cache_dir), str(folder))
        with lock:
            if key not in loaded:
                loaded[key] = real(name, backend, device, batch_size, cache_dir, folder=folder)
            return loaded[key]

    contract.load_embedder = shared
    yield
    contract.load_embedder = real


ENGINES = ("embedded", "qdrant")  # every engine behind the index contract


def open_engine(backend: str, data_dir: Path, embedder):
    """An engine of the index contract on ``data_dir`` (Qdrant in qdrant-client's local mode there)."""
    from rerank_mcp.index.contract import IndexConfig
    from rerank_mcp.index.engines import open_index
    from rerank_mcp.index.qdrant import QdrantConfig

    cfg = IndexConfig(data_dir=data_dir, embedder_factory=lambda: embedder,
                      engine=QdrantConfig(path=str(data_dir / "qdrant")) if backend == "qdrant" else None)
    return open_index(cfg, backend)


@pytest.fixture
def engine(tmp_path, embedder):
    """The embedded engine (its own tests reach into its parts)."""
    from rerank_mcp.index.engine import EmbeddedIndex, IndexConfig

    eng = EmbeddedIndex(IndexConfig(data_dir=tmp_path / "data", embedder_factory=lambda: embedder))
    yield eng
    eng.close()


@pytest.fixture(params=ENGINES)
def any_engine(request, tmp_path, embedder):
    """Each engine in turn, for tests of the tools that must hold on every engine."""
    eng = open_engine(request.param, tmp_path / "data", embedder)
    yield eng
    eng.close()


@dataclass(frozen=True)
class SciFactSlice:
    docs: list[dict]  # {"id", "text", "title"}
    queries: dict[str, str]  # query id -> text
    qrels: dict[str, set[str]]  # query id -> relevant doc ids (all inside ``docs``)


def load_scifact(n_queries: int = 20, n_docs: int = 300, max_chars: int = 300) -> SciFactSlice:
    """The first ``n_queries`` test queries, every doc judged for them, and distractors up to
    ``n_docs``. Abstracts are cut to about ``max_chars`` (at a word) to keep embedding cheap."""
    base = DATASETS / "scifact"
    needed = [base / "corpus.jsonl", base / "queries.jsonl", base / "qrels" / "test.tsv"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        pytest.skip(f"SciFact dataset not found (expected BEIR files at {', '.join(missing)})")
    from rerank_mcp.bench.beir import read_corpus, read_qrels, read_queries

    graded = read_qrels(base / "qrels" / "test.tsv")
    qrels = {q: {d for d, g in rel.items() if g > 0} for q, rel in graded.items()}
    qrels = {q: rel for q, rel in qrels.items() if rel}
    qids = sorted(qrels, key=int)[:n_queries]
    qrels = {q: qrels[q] for q in qids}
    judged = set().union(*qrels.values())
    queries = {qid: text for qid, text in read_queries(base) if qid in qrels}
    docs = []
    for d in read_corpus(base):
        if d.id in judged or len(docs) < n_docs - len(judged) + sum(x["id"] in judged for x in docs):
            body = d.text
            if len(body) > max_chars:
                body = body[:max_chars].rsplit(" ", 1)[0]
            docs.append({"id": d.id, "title": d.title, "text": f"{d.title}\n\n{body}"})
    assert judged <= {d["id"] for d in docs}
    return SciFactSlice(docs=docs, queries=queries, qrels=qrels)


@pytest.fixture(scope="session")
def scifact() -> SciFactSlice:
    return load_scifact()
