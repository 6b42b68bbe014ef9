"""The heavy state the server owns for its lifetime: the index engine and the reranker registry.

Built from the settings in the MCP lifespan (or by the CLI), closed when it ends. Nothing here
is a module-level cache.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from rerank_mcp.index.contract import Index, IndexConfig
from rerank_mcp.index.engines import engine_config, open_index
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.workers import Workers
from rerank_mcp.tools.ingest import IngestLimits
from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry
from rerank_mcp.tools.reranking import RerankLimits
from rerank_mcp.tools.search import SearchLimits

log = logging.getLogger(__name__)

# How long closing waits for running tool calls to reach a batch boundary and stop: a batch
# is seconds at most, and a signalled server exits within 10 s.
SHUTDOWN_GRACE_S = 6.0
WARM_JOIN_S = 3.0  # the longest closing waits for the background model load to finish


@dataclass
class AppState:
    settings: Settings
    engine: Index
    registry: RerankerRegistry
    ingest_limits: IngestLimits
    search_limits: SearchLimits
    rerank_limits: RerankLimits
    repairs: list[str]
    workers: Workers = field(default_factory=Workers)
    warming: threading.Thread | None = None

    def close(self) -> None:
        """Tell the running tool calls to stop, wait for them to leave the tool code (each
        finishes or drops the batch in hand), let a model load in progress end (a native
        runtime torn down mid-load can abort the process), then close the index: no worker
        writes to a closed engine."""
        self.workers.stop()
        self.workers.wait(SHUTDOWN_GRACE_S)
        if self.warming is not None:
            self.warming.join(WARM_JOIN_S)
        self.engine.close()


def _secret(v) -> str | None:
    return v.get_secret_value() if v is not None else None


def index_config(settings: Settings, **extra) -> IndexConfig:
    return IndexConfig(
        data_dir=settings.data_dir,
        embedding_model=settings.embedding_model,
        embedding_backend=settings.embedding_backend,
        device=settings.device,
        embedding_batch_size=settings.embedding_batch_size,
        onnx_cache_dir=settings.onnx_cache_dir,
        analyzer=settings.analyzer,
        engine=engine_config(settings.backend, settings),
        **{"model_fetcher": _embedding_fetcher(settings), **extra},
    )


def _embedding_fetcher(settings: Settings):
    """The embedding model from the model store: downloaded on first use like the rerankers' models."""
    from rerank_mcp.tools.models_store import embedding_fetcher

    return embedding_fetcher(model_store(settings))


def flashrank_dir(settings: Settings) -> str:
    return str(settings.flashrank_cache_dir or settings.data_dir / "flashrank")


def model_store(settings: Settings):
    """Where the rerankers' models live, and their downloads (tools/models_store.py)."""
    from rerank_mcp.tools.models_store import ModelStore, hub_offline

    off = getattr(settings, "_downloads_off_reason", None) or (
        None if settings.download_models else "RERANK_MCP_DOWNLOAD_MODELS is false")
    return ModelStore(flashrank_dir(settings), settings.flashrank_base_url,
                      downloads=settings.download_models and not hub_offline(), timeout_s=settings.reranker_timeout_s,
                      off_reason=off)


def model_dirs(settings: Settings) -> tuple[str, ...]:
    """The folders a client's options may name as a local model: the model caches (Hugging Face,
    FlashRank, ONNX exports), the configured models when they are folders, and
    ``allowed_model_dirs``."""
    from rerank_mcp.index.model_names import onnx_cache_dir
    from rerank_mcp.tools.rerank.client_options import looks_like_path

    dirs = [flashrank_dir(settings), str(settings.data_dir / "onnx"), str(onnx_cache_dir(settings.onnx_cache_dir))]
    try:
        from huggingface_hub import constants

        dirs.append(str(constants.HF_HUB_CACHE))
    except Exception:  # pragma: no cover - a dependency of sentence-transformers
        pass
    for model in (settings.embedding_model, settings.cross_encoder_model):
        if looks_like_path(model):
            dirs.append(model)
    dirs.extend(str(d) for d in settings.allowed_model_dirs)
    return tuple(dirs)


def build_state(settings: Settings, warm: bool = True, open_collections: bool = True, **config: object) -> AppState:
    """``open_collections`` opens (and repairs) every collection now, as the server does on start;
    otherwise each opens on first use. ``config`` overrides fields of the index configuration."""
    engine = open_index(index_config(settings, **config), settings.backend)
    repairs: list[str] = []

    def report(notes: list[str]) -> None:
        repairs.extend(notes)
        for note in notes:
            log.warning("repaired on start: %s", note)

    opener = getattr(engine, "open_in_background", None)
    if open_collections and warm and opener is not None:
        opener(report)  # a server: its calls wait for the repair, its initialize does not (index/qdrant/engine.py)
    elif open_collections:
        report(engine.open_all())

    from rerank_mcp.index.embedding import CacheReadingEncoder

    reading = CacheReadingEncoder(lambda: engine.embedding.embedder, engine.embedding.cache)

    def embedder_for(model: str | None):
        from rerank_mcp.index.embedding import canonical_name, load_embedder

        if model is None or canonical_name(model) == engine.model_name:
            return reading
        from rerank_mcp.index.model_names import onnx_cache_dir

        return load_embedder(model, settings.embedding_backend, settings.device, settings.embedding_batch_size,
                             onnx_cache_dir(settings.onnx_cache_dir))

    registry = RerankerRegistry(
        RerankContext(
            settings=settings,  # each family takes its own settings from here (its Config)
            configs={"flashrank": {"cache_dir": flashrank_dir(settings)}},
            models=model_store(settings),
            fallback_when_missing=True,
            family_options=dict(settings.reranker_options),
            check_client_options=True,
            allowed_endpoints=tuple(settings.allowed_endpoints),
            model_dirs=model_dirs(settings),
            timeout_s=settings.reranker_timeout_s,
            device=settings.device,
            onnx_cache_dir=str(settings.data_dir / "onnx"),
            embedder=embedder_for,
            embedding_model=settings.embedding_model,
        )
    )
    warming = None
    if warm:
        # Load the embedding model in the background so the first search does not pay for it.
        preparing = _start_preparing(engine)
        warming = threading.Thread(target=lambda: _warm(engine, preparing), name="warm-embedder", daemon=True)
        warming.start()
    return AppState(
        settings=settings,
        engine=engine,
        registry=registry,
        ingest_limits=IngestLimits(
            max_documents=settings.max_documents_per_ingest,
            max_chars=settings.max_request_bytes,
            max_request_bytes=settings.max_request_bytes,
            max_file_bytes=settings.max_file_bytes,
        ),
        search_limits=SearchLimits(max_k=settings.max_k, max_query_chars=settings.max_query_chars),
        rerank_limits=RerankLimits(
            max_passages=settings.max_passages,
            max_passage_chars=settings.max_passage_chars,
            max_query_chars=settings.max_query_chars,
        ),
        repairs=repairs,
        warming=warming,
        workers=Workers(heavy=settings.max_concurrent_calls, per_client=settings.max_calls_per_client),
    )


def _start_preparing(engine: Index):
    """Start the configured model's one-time ONNX export in a process of its own (index/prepare.py),
    when it is missing; returns once that process holds the export's lock, so that no tool call
    can race it and export in this process instead (an export that would end with the session)."""
    cfg = engine.embedding.config
    if cfg.embedder_factory is not None:
        return None
    from rerank_mcp.index.model_names import onnx_cache_dir
    from rerank_mcp.index.prepare import start_detached

    try:
        return start_detached(cfg.embedding_model, cfg.embedding_backend, onnx_cache_dir(cfg.onnx_cache_dir))
    except Exception as exc:  # the load reports it again, clearly, on first use
        log.warning("could not start preparing the embedding model: %s", exc)
        return None


def _warm(engine: Index, preparing=None) -> None:
    """Load the configured embedder, then those of collections built with another backend of the
    same model (their queries and new documents are embedded with it)."""
    try:
        if preparing is not None:
            preparing.wait()  # the model load below waits for the export's lock in any case
        engine.embedding.embedder.encode(["warm up"])
        others = {c.embedding_model for c in engine.collections()} - {engine.embedding.identity}
        for ident in sorted(others):
            if engine.embedding.serves(ident):
                engine.embedding.embedder_for(ident).encode(["warm up"])
    except Exception as exc:  # reported again, clearly, on first real use
        log.warning("could not load the embedding model: %s", exc)
