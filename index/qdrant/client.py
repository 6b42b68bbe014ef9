"""qdrant-client behind the project's errors: bounded retries (:mod:`rerank_mcp.index.retry`),
a local-mode lock, and messages that name the server and never the API key."""

from __future__ import annotations

import logging
import math
import re
import threading
from pathlib import Path
from typing import Any

from rerank_mcp.errors import DependencyMissing, NotFound, RerankMCPError, UpstreamError
from rerank_mcp.index.install import install_command
from rerank_mcp.index.qdrant.config import QdrantConfig
from rerank_mcp.index.retry import Backoff, GaveUp, Retry, with_retries

log = logging.getLogger(__name__)

BACKOFF = Backoff(base_s=0.2, max_s=5.0, jitter=True)


def missing_client() -> DependencyMissing:
    return DependencyMissing("the qdrant backend needs qdrant-client: " + install_command(extra="qdrant"))


def models() -> Any:
    """``qdrant_client.models``."""
    try:
        from qdrant_client import models
    except ImportError:
        raise missing_client() from None
    return models


def client_installed() -> bool:
    """Whether qdrant-client can be imported, without importing it (which takes a while)."""
    import importlib.util
    import sys

    if "qdrant_client" in sys.modules:
        return sys.modules["qdrant_client"] is not None
    try:
        return importlib.util.find_spec("qdrant_client") is not None
    except (ImportError, ValueError):
        return False


class Connection:
    """A qdrant-client with bounded retries and errors mapped to the project's."""

    def __init__(self, config: QdrantConfig, data_dir: Path) -> None:
        try:
            from qdrant_client import QdrantClient
        except ImportError:
            raise missing_client() from None
        self.local = not config.url
        self.retries = max(0, int(config.retries))
        self._secret = config.api_key or None
        # local mode is a Python object over SQLite, not safe to share between threads unguarded
        self.lock: threading.RLock | None = threading.RLock() if self.local else None
        if self.local:
            path = config.path or str(data_dir / "qdrant")
            self.where = "local Qdrant (in memory)" if path == ":memory:" else f"local Qdrant storage {path}"
            if not config.path:
                log.info("qdrant engine: no RERANK_MCP_QDRANT_URL or RERANK_MCP_QDRANT_PATH set, so the data is kept "
                         "in local mode (one process at a time) in %s", path)
            try:
                if path == ":memory:":
                    self.client = QdrantClient(location=":memory:")
                else:
                    self.client = QdrantClient(path=path, force_disable_check_same_thread=True)
            except RuntimeError as exc:
                raise RerankMCPError(
                    f"{self.where} is in use by another client ({exc}); local mode allows one client per "
                    "folder: use a Qdrant server (a qdrant URL instead of a path) for shared access"
                ) from None
        else:
            self.url = str(config.url)
            self.where = f"Qdrant at {self.url}"
            try:
                self.client = QdrantClient(
                    url=self.url, api_key=self._secret, timeout=max(1, math.ceil(config.timeout_s)),
                    check_compatibility=False,
                )
            except Exception as exc:
                raise UpstreamError(f"cannot set up a client for {self.where}: {self._scrub(exc)}") from None
    def _scrub(self, exc: BaseException | str) -> str:
        text = str(exc) if not isinstance(exc, BaseException) else (str(exc) or type(exc).__name__)
        if self._secret:
            text = text.replace(self._secret, "***")
        return text.strip().replace("\n", " ")[:500]

    def _classify(self, exc: Exception) -> tuple[str, str]:
        """('retry' | 'notfound' | 'fatal', message)."""
        try:
            from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
        except ImportError:  # pragma: no cover
            ResponseHandlingException = UnexpectedResponse = ()  # type: ignore[assignment]
        if self.local:
            if isinstance(exc, ValueError) and re.match(r"Collection .* not found", str(exc)):
                return "notfound", self._scrub(exc)
            return "fatal", self._scrub(exc)
        if isinstance(exc, UnexpectedResponse):
            detail = exc.content.decode("utf-8", "replace") if isinstance(exc.content, bytes) else str(exc.content)
            msg = f"HTTP {exc.status_code} {self._scrub(detail)}"
            if exc.status_code == 404:
                return "notfound", msg
            if exc.status_code in (408, 429) or (exc.status_code or 0) >= 500:
                return "retry", msg
            if exc.status_code in (401, 403):
                return "fatal", f"{msg} (refused: check the Qdrant API key)"
            return "fatal", msg
        if isinstance(exc, ResponseHandlingException):
            src = exc.source
            if type(src).__name__ == "ValidationError":
                return "fatal", f"unexpected answer ({self._scrub(src)})"
            return "retry", f"{type(src).__name__}: {self._scrub(src)}"
        try:
            import httpx

            if isinstance(exc, httpx.HTTPError):
                return "retry", f"{type(exc).__name__}: {self._scrub(exc)}"
        except ImportError:  # pragma: no cover
            pass
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return "retry", f"{type(exc).__name__}: {self._scrub(exc)}"
        return "fatal", f"{type(exc).__name__}: {self._scrub(exc)}"

    def call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client.<method>(*args, **kwargs)``; ``what`` names the operation in errors and logs."""
        fn = getattr(self.client, method)

        def attempt() -> Any:
            try:
                if self.lock is not None:
                    with self.lock:
                        return fn(*args, **kwargs)
                return fn(*args, **kwargs)
            except RerankMCPError:
                raise
            except Exception as exc:
                kind, msg = self._classify(exc)
                if kind == "notfound":
                    raise NotFound(f"{self.where}: {what}: {msg}") from None
                if kind == "retry":
                    raise Retry(msg) from None
                raise UpstreamError(f"{self.where}: {what} failed: {msg}") from None

        def said(_n: int, msg: str, delay: float | None) -> None:
            if delay is not None:
                log.warning("%s: %s failed (%s); retrying in %.1fs", self.where, what, msg, delay)

        try:
            return with_retries(attempt, self.retries + 1, BACKOFF, said)
        except GaveUp as exc:
            raise UpstreamError(
                f"{self.where} is unreachable or failing: {what} gave up after {exc.attempts} attempt(s): {exc.reason}"
            ) from None

    def close(self) -> None:
        try:
            if self.lock is not None:
                with self.lock:
                    self.client.close()
            else:
                self.client.close()
        except Exception as exc:  # pragma: no cover - best effort at shutdown
            log.warning("closing %s: %s", self.where, self._scrub(exc))

