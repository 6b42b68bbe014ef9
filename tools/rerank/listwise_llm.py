"""``rankllm``: listwise LLM reranking over any OpenAI-compatible chat endpoint.

RankGPT and RankZephyr prompt formats; a sliding window from the bottom of the list up
(``window_size`` 20, ``stride`` 10 by default), so the best ``window_size - stride``
candidates of the list are carried to the top. Each window is one ``POST
{base_url}/chat/completions`` over httpx (vLLM serving RankZephyr, Ollama, llama.cpp
server, OpenAI...). The ``rank-llm`` package is not used: it cannot import here (vllm,
transformers pins) and its OpenAI path sets global state.

Answers like ``[3] > [1] > [2]`` are parsed leniently: unknown, out-of-range and repeated
ids are dropped, and candidates the model did not mention keep their prior order after the
ranked ones, so every candidate comes back exactly once. A window whose calls all fail
keeps its input order and the result says so (``fallback``). Scores are ``1 / rank``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from rerank_mcp.errors import DependencyMissing, UpstreamError
from rerank_mcp.index.retry import Backoff, GaveUp, Retry, with_retries
from rerank_mcp.tools.cancel import check
from rerank_mcp.tools.rerank.base import FamilyConfig, RemoteReranker, RerankOptions, Scored, check_local_fallback

NO_BASE_URL = (
    "no LLM endpoint: set RERANK_MCP_LLM_BASE_URL (an OpenAI-compatible base URL such as "
    "http://localhost:8000/v1) or pass options.base_url"
)
_BRACKETED = re.compile(r"\[\s*(\d+)\s*\]")
_NUMBER = re.compile(r"\d+")


def parse_permutation(answer: str, n: int) -> list[int]:
    """0-based positions the model ranked, in its order: valid, de-duplicated, possibly partial."""
    ids = _BRACKETED.findall(answer) or _NUMBER.findall(answer)
    seen: set[int] = set()
    out = []
    for s in ids:
        k = int(s) - 1
        if 0 <= k < n and k not in seen:
            seen.add(k)
            out.append(k)
    return out


def complete_permutation(ranked: list[int], n: int) -> list[int]:
    """``ranked`` followed by every position it misses, in input order."""
    seen = set(ranked)
    return list(ranked) + [i for i in range(n) if i not in seen]


def _words(text: str, max_words: int) -> tuple[str, bool]:
    words = text.split()
    if len(words) <= max_words:
        return " ".join(words), False
    return " ".join(words[:max_words]), True


def build_messages(prompt: str, query: str, passages: list[str]) -> list[dict[str, str]]:
    num = len(passages)
    if prompt == "rankzephyr":
        body = "".join(f"[{i + 1}] {p}\n" for i, p in enumerate(passages))
        return [
            {
                "role": "system",
                "content": "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy to the query.",
            },
            {
                "role": "user",
                "content": (
                    f"I will provide you with {num} passages, each indicated by a numerical identifier []. "
                    f"Rank the passages based on their relevance to the search query: {query}.\n\n{body}\n"
                    f"Search Query: {query}.\nRank the {num} passages above based on their relevance to the "
                    "search query. All the passages should be included and listed using identifiers, in "
                    "descending order of relevance. The output format should be [] > [], e.g., [4] > [2]. "
                    "Only respond with the ranking results, do not say any word or explain."
                ),
            },
        ]
    # RankGPT (Sun et al., 2023): one turn per passage.
    messages = [
        {
            "role": "system",
            "content": "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query.",
        },
        {
            "role": "user",
            "content": f"I will provide you with {num} passages, each indicated by number identifier []. \n"
            f"Rank the passages based on their relevance to query: {query}.",
        },
        {"role": "assistant", "content": "Okay, please provide the passages."},
    ]
    for i, p in enumerate(passages):
        messages.append({"role": "user", "content": f"[{i + 1}] {p}"})
        messages.append({"role": "assistant", "content": f"Received passage [{i + 1}]."})
    messages.append(
        {
            "role": "user",
            "content": f"Search Query: {query}. \nRank the {num} passages above based on their relevance to the "
            "search query. The passages should be listed in descending order using identifiers. The most "
            "relevant passages should be listed first. The output format should be [] > [], e.g., [1] > [2]. "
            "Only response the ranking results, do not say any word or explain.",
        }
    )
    return messages


class _WindowFailed(Exception):
    pass


class ListwiseLLMConfig(FamilyConfig):
    """The operator's endpoint: RERANK_MCP_LLM_BASE_URL, _MODEL and _API_KEY."""

    settings_prefix = "llm_"

    base_url: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None


class ListwiseLLMOptions(RerankOptions):
    model: str | None = Field(None, description="model name sent to the endpoint; default: the llm_model setting")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL: the configured one or one listed in "
                                 "RERANK_MCP_ALLOWED_ENDPOINTS")
    api_key: str | None = Field(None, description="bearer token for the endpoint")
    prompt: Literal["rankgpt", "rankzephyr"] = Field("rankgpt", description="prompt format")
    window_size: int = Field(20, ge=2, description="passages per LLM call")
    stride: int = Field(10, ge=1, description="how far the window moves up (smaller than window_size)")
    max_words: int = Field(300, ge=1, description="words kept per passage")
    timeout: float | None = Field(None, gt=0, description="seconds per request")
    max_retries: int = Field(2, ge=0, le=10, description="retries per window")
    backoff: float = Field(0.5, ge=0, description="first retry delay in seconds, doubled per retry")
    temperature: float = Field(0.0, ge=0, description="sampling temperature")
    max_tokens: int | None = Field(None, gt=0, description="answer length limit (default from the window)")
    fallback: str | None = Field(None, description="a local reranker used when the endpoint fails")

    @model_validator(mode="after")
    def _window(self) -> ListwiseLLMOptions:
        if self.stride >= self.window_size:
            raise ValueError(f"rankllm option stride ({self.stride}) must be smaller than window_size ({self.window_size})")
        return self


class ListwiseLLMReranker(RemoteReranker):
    """Options: see :class:`ListwiseLLMOptions`; the operator's endpoint: :class:`ListwiseLLMConfig`."""

    family = "rankllm"
    Options = ListwiseLLMOptions
    Config = ListwiseLLMConfig
    url_options = ("base_url",)
    options: ListwiseLLMOptions
    config: ListwiseLLMConfig

    def __init__(self, options: ListwiseLLMOptions | None = None, *, context: Any = None,
                 registry: Any = None) -> None:
        super().__init__(options, context=context, registry=registry)
        o = self.options
        if o.fallback is not None:
            check_local_fallback(registry, "rankllm", o.fallback)
        self.model = self.model or "default"
        self.base_url = (o.base_url or self.config.base_url or "").rstrip("/") or None
        self.__key = o.api_key or self.config.secret(self.config.api_key)
        self.timeout = float(o.timeout if o.timeout is not None else getattr(context, "timeout_s", 30.0))
        self.fallback = o.fallback
        if self.base_url is None and o.fallback is None:
            raise DependencyMissing(NO_BASE_URL)
        self._http: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"ListwiseLLMReranker(model={self.model!r}, base_url={self.base_url!r})"

    @classmethod
    def availability(cls, context: Any) -> str | None:
        return None if cls.family_config(context).base_url else NO_BASE_URL

    @classmethod
    def default_model(cls, context: Any) -> str | None:
        return cls.family_config(context).model

    @classmethod
    def configured_endpoints(cls, context: Any) -> list[str]:
        url = cls.family_config(context).base_url
        return [url] if url else []

    def _client(self) -> Any:
        with self._lock:
            if self._http is None:
                import httpx

                headers = {"Authorization": f"Bearer {self.__key}"} if self.__key else {}
                self._http = httpx.Client(timeout=self.timeout, headers=headers)
            return self._http

    # -- one window ----------------------------------------------------------------------

    def _ask(self, query: str, passages: list[str]) -> tuple[list[int], str]:
        """One window: the model's (possibly partial) permutation, or _WindowFailed after retries."""
        import httpx

        n = len(passages)
        body = {
            "model": self.model,
            "messages": build_messages(self.options.prompt, query, passages),
            "temperature": self.options.temperature,
            "max_tokens": self.options.max_tokens or 8 * n + 16,
        }
        url = f"{self.base_url}/chat/completions"

        def attempt() -> tuple[list[int], str]:
            try:
                resp = self._client().post(url, json=body)
            except httpx.TimeoutException:
                raise Retry(f"timeout after {self.timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise Retry(f"{type(exc).__name__}") from None
            if resp.status_code in (401, 403):
                raise UpstreamError(f"the LLM endpoint {self.base_url} rejected the API key (HTTP {resp.status_code})")
            if resp.status_code in (400, 404, 422):
                raise UpstreamError(
                    f"the LLM endpoint {url} rejected the request (HTTP {resp.status_code}): {resp.text[:300]}"
                )
            if resp.status_code != 200:
                raise Retry(f"HTTP {resp.status_code}")
            try:
                answer = resp.json()["choices"][0]["message"]["content"] or ""
            except Exception:
                raise Retry("an answer that is not an OpenAI chat completion") from None
            ranked = parse_permutation(answer, n)
            if not ranked:
                raise Retry(f"no passage ids in the answer {answer[:80]!r}")
            return ranked, answer

        try:
            return with_retries(attempt, self.options.max_retries + 1, Backoff(self.options.backoff, 10.0))
        except GaveUp as exc:
            raise _WindowFailed(exc.reason or "no answer") from None

    # -- the sliding window --------------------------------------------------------------

    def _unavailable(self) -> str | None:
        return NO_BASE_URL if self.base_url is None else None

    def _score_remote(self, query: str, texts: Sequence[str]) -> Scored:
        n = len(texts)
        shown: list[str] = []
        truncated: list[bool] = []
        for t in texts:
            s, cut = _words(t, self.options.max_words)
            shown.append(s)
            truncated.append(cut)
        order = list(range(n))  # order[k] = input index at rank k
        windows = failed = partial = 0
        failures: list[str] = []
        end = n
        start = max(0, end - self.options.window_size)
        while True:
            check()  # a cancelled call stops between windows (one LLM call each)
            window = order[start:end]
            windows += 1
            try:
                ranked, _ = self._ask(query, [shown[i] for i in window])
                if len(ranked) < len(window):
                    partial += 1
                perm = complete_permutation(ranked, len(window))
                order[start:end] = [window[k] for k in perm]
            except _WindowFailed as exc:
                failed += 1
                failures.append(f"window {start + 1}-{end}: {exc}")
            if start == 0:
                break
            end -= self.options.stride
            start = max(0, end - self.options.window_size)

        notes = [f"{windows} window(s) of up to {self.options.window_size} (stride {self.options.stride}), prompt {self.options.prompt}"]
        if partial:
            notes.append(f"{partial} window answer(s) were partial; unranked passages kept their prior order after the ranked ones")
        if any(truncated):
            notes.append(f"{sum(truncated)} passage(s) cut to {self.options.max_words} words for the prompt")
        fallback = None
        if failed:
            if failed == windows and self.fallback is not None:
                return self._fall_back(query, texts, "; ".join(failures))
            notes.extend(failures)
            fallback = (
                f"the LLM failed on {failed} of {windows} window(s) after {self.options.max_retries + 1} attempt(s) each; "
                "those windows kept their input order"
            )
        scores = [0.0] * n
        for rank, i in enumerate(order, start=1):
            scores[i] = 1.0 / rank
        return Scored(scores, truncated=truncated, notes=notes, fallback=fallback)
