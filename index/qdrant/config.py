"""The Qdrant engine's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QdrantConfig:
    """Where the Qdrant engine keeps its data and how it talks to the server. Without ``url`` it
    runs qdrant-client's local mode in ``path`` (default: ``<data_dir>/qdrant``; ``:memory:`` keeps
    nothing)."""

    url: str | None = None  # a Qdrant server or cluster, e.g. http://127.0.0.1:6333
    api_key: str | None = field(default=None, repr=False)
    path: str | None = None  # local mode: a folder, or ":memory:"
    timeout_s: float = 30.0
    retries: int = 3  # further attempts of a request that failed in a way worth retrying
    # new collections' layout on a cluster (None: the server's default)
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> QdrantConfig:
        """From the server's settings (``RERANK_MCP_QDRANT_*``)."""
        key = settings.qdrant_api_key
        return cls(
            url=settings.qdrant_url,
            api_key=key.get_secret_value() if hasattr(key, "get_secret_value") else key,
            path=settings.qdrant_path,
            timeout_s=settings.qdrant_timeout_s,
            retries=settings.qdrant_retries,
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            write_consistency_factor=settings.qdrant_write_consistency_factor,
        )
