"""Shared, generic fixtures: offline switches, one real embedder per session, a fresh engine,
and a small SciFact slice read in place from ../shared/datasets (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

# Model caches (ONNX exports under platformdirs' user cache folder, the Hugging Face cache, FlashRank's
# and the default data folder) go to a folder of the test runs, never to the user's: set before
# anything reads them (huggingface_hub reads HF_HOME at import). One folder shared by the xdist
# workers (they inherit the variable) and kept between runs, so the default model's ONNX export is
# made once, not per test; RERANK_MCP_TEST_CACHE chooses another. tests/unit/test_model_caches.py
# checks it.
TEST_CACHE = Path(os.environ.setdefault(
    "RERANK_MCP_TEST_CACHE", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "model-cache")))
os.environ.update(XDG_CACHE_HOME=str(TEST_CACHE / "cache"), XDG_DATA_HOME=str(TEST_CACHE / "data"),
                  HF_HOME=str(TEST_CACHE / "huggingface"))
for _var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "SENTENCE_TRANSFORMERS_HOME",
             "RERANK_MCP_ONNX_CACHE_DIR", "RERANK_MCP_FLASHRANK_CACHE_DIR", "RERANK_MCP_DATA_DIR"):
    os.environ.pop(_var, None)

# Before anything imports transformers / onnxruntime: the CLI's quiet defaults, and offline.
from rerank_mcp.index.environment import apply as _environment  # noqa: E402

_environment(offline=True)

import sys
import threading
from dataclasses import dataclass

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def embedder():
    """The default embedding model on the default backend, as a server with default settings
    loads it (no torch import: a fraction of a second), shared with the servers tests build."""
    from rerank_mcp.server.settings import Settings

    return shared_embedder(Settings())()


_LOADED: dict[tuple, object] = {}
_LOADING = threading.Lock()


def shared_embedder(settings):
    """An ``embedder_factory`` for the embedding model ``settings`` configure, to inject into the
    servers and states tests build in this process (``build_server(settings, embedder_factory=...)``,
    ``build_state``): one loaded model per test process and (model, backend, settings), the same
    the server would load, so the vectors are the same; loading it again for every test only costs
    time. Servers started as subprocesses load their own, as in use."""
    from rerank_mcp.index.embedding import load_embedder
    from rerank_mcp.index.model_names import onnx_cache_dir

    key = (settings.embedding_model, settings.embedding_backend, settings.device, settings.embedding_batch_size,
           onnx_cache_dir(settings.onnx_cache_dir))

    def factory():
        with _LOADING:
            if key not in _LOADED:
                _LOADED[key] = load_embedder(*key)
            return _LOADED[key]

    return factory


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


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def settings(tmp_path):
    """Server settings on a fresh data folder, with one allowed root (``tmp_path / "files"``)."""
    from rerank_mcp.server.settings import Settings

    files = tmp_path / "files"
    files.mkdir()
    return Settings(data_dir=tmp_path / "data", allowed_roots=[files], log_level="WARNING")
