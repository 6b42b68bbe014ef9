"""``cohere``: the Cohere Rerank API (or any Cohere-compatible endpoint) via the real SDK.

``cohere.ClientV2(api_key=..., base_url=..., timeout=...)`` posts to ``{base_url}/v2/rerank``.
The SDK's own retries are switched off (``max_retries=0`` on the client and per request) so
that retries are ours and deterministic: bounded, with exponential backoff (honouring
``Retry-After``), on 429 and 5xx and on connection failures. 400 / 401 / other 4xx and
timeouts are clear :class:`UpstreamError`s at once. The API key is never logged and never
appears in an error message.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from pydantic import Field, SecretStr

from rerank_mcp.errors import DependencyMissing, RerankMCPError, UpstreamError
from rerank_mcp.index.retry import Backoff, GaveUp, Retry, with_retries
from rerank_mcp.tools.rerank.base import (
    CorpusStats,
    FamilyConfig,
    Passage,
    RemoteReranker,
    RerankOptions,
    RerankResult,
    Scored,
    check_local_fallback,
)
from rerank_mcp.tools.rerank.defaults import COHERE_MODEL

log = logging.getLogger(__name__)

MAX_DOCS_PER_REQUEST = 1000
NO_KEY = "no API key: set RERANK_MCP_COHERE_API_KEY or CO_API_KEY"
COHERE_API = "https://api.cohere.com"  # the SDK's production endpoint, used when no base_url is set


class CohereConfig(FamilyConfig):
    """The operator's Cohere settings: RERANK_MCP_COHERE_API_KEY, _BASE_URL and _MODEL."""

    settings_prefix = "cohere_"

    api_key: SecretStr | None = None
    base_url: str | None = None
    model: str = COHERE_MODEL


def _api_key(config: CohereConfig) -> str | None:
    return config.secret(config.api_key) or os.environ.get("CO_API_KEY") or None


class CohereOptions(RerankOptions):
    model: str | None = Field(None, description=f"Cohere model; default: the cohere_model setting ({COHERE_MODEL})")
    base_url: str | None = Field(None, description="a Cohere-compatible endpoint: the configured one or one listed in "
                                 "RERANK_MCP_ALLOWED_ENDPOINTS; default: the setting, else Cohere's")
    timeout: float | None = Field(None, gt=0, description="seconds per request")
    max_retries: int = Field(3, ge=0, le=10, description="retries on 429, 5xx and connection failures")
    backoff: float = Field(0.5, ge=0, description="first retry delay in seconds, doubled per retry")
    max_backoff: float = Field(8.0, ge=0, description="longest retry delay in seconds")
    batch_size: int = Field(MAX_DOCS_PER_REQUEST, ge=1, le=MAX_DOCS_PER_REQUEST, description="documents per request")
    max_tokens_per_doc: int | None = Field(None, gt=0, description="Cohere truncates each document to this")
    fallback: str | None = Field(None, description="a local reranker used when Cohere fails")


class CohereReranker(RemoteReranker):
    """Options: see :class:`CohereOptions`; the operator's settings: :class:`CohereConfig`."""

    family = "cohere"
    Options = CohereOptions
    Config = CohereConfig
    url_options = ("base_url",)
    options: CohereOptions
    config: CohereConfig

    def __init__(self, options: CohereOptions | None = None, *, context: Any = None, registry: Any = None) -> None:
        super().__init__(options, context=context, registry=registry)
        o = self.options
        if o.fallback is not None:
            check_local_fallback(registry, "cohere", o.fallback)
        self.base_url = o.base_url or self.config.base_url
        self.timeout = float(o.timeout if o.timeout is not None else getattr(context, "timeout_s", 30.0))
        self.fallback = o.fallback
        self._local = threading.local()
        self.__key = _api_key(self.config)  # read at construction, never at import
        if self.__key is None and o.fallback is None:
            raise DependencyMissing(NO_KEY)
        self._client: Any = None

    def __repr__(self) -> str:  # never show the key
        return f"CohereReranker(model={self.model!r}, base_url={self.base_url!r})"

    @classmethod
    def availability(cls, context: Any) -> str | None:
        return None if _api_key(cls.family_config(context)) else NO_KEY

    @classmethod
    def default_model(cls, context: Any) -> str | None:
        return cls.family_config(context).model

    @classmethod
    def configured_endpoints(cls, context: Any) -> list[str]:
        return [cls.family_config(context).base_url or COHERE_API]

    def _get_client(self) -> Any:
        if self._client is None:
            import cohere

            self._client = cohere.ClientV2(
                api_key=self.__key,
                base_url=self.base_url,  # None: Cohere's production endpoint
                timeout=self.timeout,
                max_retries=0,
            )
        return self._client

    def _redact(self, text: str) -> str:
        return text.replace(self.__key, "***") if self.__key else text

    # top_n of the public call is passed on to the API (fewer results to send back).
    def rerank(self, query: str, passages: Sequence[Passage | str], top_n: int | None = None,
               corpus: CorpusStats | None = None, **kwargs: Any) -> RerankResult:
        self._local.top_n = top_n
        try:
            return super().rerank(query, passages, top_n=top_n, corpus=corpus, **kwargs)
        finally:
            self._local.top_n = None

    def _unavailable(self) -> str | None:
        if self.__key is None:
            return NO_KEY
        return None

    def _score_remote(self, query: str, texts: Sequence[str]) -> Scored:
        top_n = getattr(self._local, "top_n", None)
        scores: dict[int, float] = {}
        n_batches = 0
        for start in range(0, len(texts), self.options.batch_size):
            batch = list(texts[start : start + self.options.batch_size])
            k = min(top_n, len(batch)) if top_n else None
            for item in self._call(query, batch, k):
                idx = int(item.index)
                if not 0 <= idx < len(batch):
                    raise UpstreamError(f"Cohere answered with index {idx} for {len(batch)} documents")
                scores[start + idx] = float(item.relevance_score)
            n_batches += 1
        notes = []
        if n_batches > 1:
            notes.append(f"{len(texts)} documents sent in {n_batches} requests of at most {self.options.batch_size}; merged by relevance_score")
        missing = [i for i in range(len(texts)) if i not in scores]
        if missing:
            if not top_n:
                raise UpstreamError(f"Cohere returned no score for {len(missing)} of {len(texts)} documents")
            floor = min(scores.values(), default=0.0) - 1.0
            for i in missing:
                scores[i] = floor
            notes.append(f"{len(missing)} documents outside Cohere's top_n={top_n} were not scored")
        return Scored([scores[i] for i in range(len(texts))], notes=notes)

    def _call(self, query: str, documents: list[str], top_n: int | None) -> list[Any]:
        import httpx
        from cohere.core.api_error import ApiError

        client = self._get_client()
        kwargs: dict[str, Any] = {"model": self.model, "query": query, "documents": documents}
        if top_n:
            kwargs["top_n"] = top_n
        if self.options.max_tokens_per_doc:
            kwargs["max_tokens_per_doc"] = self.options.max_tokens_per_doc
        where = self.base_url or "api.cohere.com"
        attempts = self.options.max_retries + 1

        def attempt() -> list[Any]:
            try:
                resp = client.rerank(
                    **kwargs, request_options={"max_retries": 0, "timeout_in_seconds": self.timeout}
                )
                return list(resp.results)
            except ApiError as exc:
                status = exc.status_code or 0
                detail = self._redact(_message(exc.body))
                if status == 401:
                    raise UpstreamError(
                        f"Cohere rejected the API key (401 Unauthorized) at {where}: check "
                        f"RERANK_MCP_COHERE_API_KEY / CO_API_KEY"
                    ) from None
                if status == 429 or status >= 500:
                    raise Retry(f"HTTP {status}: {detail}" if detail else f"HTTP {status}",
                                after=_retry_after(exc.headers)) from None
                raise UpstreamError(f"Cohere rejected the request (HTTP {status}) at {where}: {detail or 'no detail'}") from None
            except httpx.TimeoutException:
                raise UpstreamError(f"Cohere did not answer within {self.timeout:g} s at {where} (timeout)") from None
            except httpx.HTTPError as exc:
                raise Retry(f"{type(exc).__name__}: {self._redact(str(exc))}") from None
            except RerankMCPError:
                raise
            except Exception as exc:  # an answer the SDK cannot parse
                raise UpstreamError(f"Cohere answered something unexpected at {where}: {type(exc).__name__}: {self._redact(str(exc))}") from None

        def said(n: int, last: str, delay: float | None) -> None:
            if delay is not None:
                log.info("cohere rerank attempt %d/%d failed (%s); retrying in %.2f s", n, attempts, last, delay)

        try:
            return with_retries(attempt, attempts, Backoff(self.options.backoff, self.options.max_backoff), said)
        except GaveUp as exc:
            raise UpstreamError(f"Cohere rerank failed after {attempts} attempt(s) at {where}: last error {exc.reason}") from None


def _message(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])[:500]
    return str(body)[:500] if body else ""


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    for k, v in dict(headers).items():
        if k.lower() == "retry-after":
            try:
                return max(0.0, float(v))
            except (TypeError, ValueError):
                return None
    return None
