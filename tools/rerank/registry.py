"""An explicit registry from reranker family names to import paths, resolved lazily.

Importing this module imports no model library (no torch): a family's module is imported
the first time the family is used. Instances are cached by (family, model, options), so a
second call with the same configuration loads nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from rerank_mcp.errors import DependencyMissing, InvalidInput, NotFound
from rerank_mcp.tools.rerank.base import Reranker


@dataclass(frozen=True)
class RerankContext:
    """What rerankers may need from the server's configuration. Secrets stay in here."""

    default_cross_encoder_model: str = "cross-encoder/ms-marco-MiniLM-L-6-v2"
    default_flashrank_model: str = "ms-marco-TinyBERT-L-2-v2"
    flashrank_cache_dir: str | None = None
    cohere_api_key: str | None = field(default=None, repr=False)
    cohere_base_url: str | None = None
    cohere_model: str = "rerank-v3.5"
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    device: str = "cpu"
    onnx_cache_dir: str | None = None  # where ONNX int8 exports of local models are cached
    # Returns a bi-encoder for the ``embedding`` reranker: ``embedder(model_name_or_None)``.
    embedder: Callable[[str | None], Any] | None = None


@dataclass(frozen=True)
class Family:
    name: str
    target: str  # "module:Class"
    requires: tuple[str, ...]  # importable modules the family needs
    extra: str | None  # pip extra (or package) that provides them
    summary: str
    local: bool = True  # runs without any network peer


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            "bm25",
            "rerank_mcp.tools.rerank.bm25:BM25Reranker",
            ("rank_bm25",),
            "rank-bm25",
            "rank-bm25 (BM25Okapi, BM25L, BM25Plus) over the candidates only; lexical, instant, no model.",
        ),
        Family(
            "embedding",
            "rerank_mcp.tools.rerank.embedding:EmbeddingReranker",
            ("sentence_transformers",),
            "sentence-transformers",
            "cosine similarity under a bi-encoder (the collection's by default); fully offline.",
        ),
        Family(
            "cross-encoder",
            "rerank_mcp.tools.rerank.cross_encoder:CrossEncoderReranker",
            ("sentence_transformers",),
            "sentence-transformers",
            "sentence-transformers CrossEncoder (ms-marco-MiniLM-L-6-v2, BAAI/bge-reranker-base, ...); "
            "best local quality, ~1-2 s per 100 passages on CPU.",
        ),
        Family(
            "flashrank",
            "rerank_mcp.tools.rerank.flashrank:FlashRankReranker",
            ("flashrank", "onnxruntime"),
            "flashrank",
            "FlashRank ONNX cross-encoders (TinyBERT-L-2 default); fastest on CPU, good for many candidates.",
        ),
        Family(
            "cohere",
            "rerank_mcp.tools.rerank.cohere:CohereReranker",
            ("cohere",),
            "cohere",
            "Cohere Rerank API (rerank-v3.5) or any Cohere-compatible endpoint; needs an API key.",
            local=False,
        ),
        Family(
            "rankllm",
            "rerank_mcp.tools.rerank.listwise_llm:ListwiseLLMReranker",
            ("httpx",),
            "httpx",
            "listwise LLM reranking (RankGPT / RankZephyr prompts, sliding window) over any "
            "OpenAI-compatible chat endpoint.",
            local=False,
        ),
        Family(
            "cascade",
            "rerank_mcp.tools.rerank.cascade:CascadeReranker",
            (),
            None,
            "a cheap reranker over many candidates, then an expensive one over the top few.",
        ),
    ]
}


class RerankerInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    available: bool
    reason: str | None = None
    summary: str
    default_model: str | None = None
    needs_network: bool = False


_FOUND: set[str] = set()


def _missing_modules(family: Family) -> list[str]:
    """Modules of ``family`` that cannot be imported. A module found once stays found (the
    file-system search is not repeated on every ``list_rerankers``); a missing one is looked
    for again, so installing it while the server runs is noticed."""
    missing = []
    for m in family.requires:
        if m in _FOUND:
            continue
        if importlib.util.find_spec(m) is None:
            missing.append(m)
        else:
            _FOUND.add(m)
    return missing


def _freeze(options: dict[str, Any]) -> str:
    try:
        return json.dumps(options, sort_keys=True, default=str)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"reranker options must be JSON values: {exc}") from None


class RerankerRegistry:
    """Creates and caches reranker instances by (family, model, options)."""

    def __init__(self, context: RerankContext | None = None) -> None:
        self.context = context or RerankContext()
        # Bounded LRU: every distinct options dict is its own instance (a cross-encoder holds a model).
        from collections import OrderedDict

        self._cache: OrderedDict[tuple[str, str], Reranker] = OrderedDict()
        self.max_cached = 16
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(FAMILIES)

    def family(self, name: str) -> Family:
        fam = FAMILIES.get(name)
        if fam is None:
            raise NotFound(f"unknown reranker {name!r}; known rerankers: {', '.join(FAMILIES)}")
        return fam

    def resolve_class(self, name: str) -> type[Reranker]:
        fam = self.family(name)
        missing = _missing_modules(fam)
        if missing:
            raise DependencyMissing(
                f"reranker {name!r} needs the Python module(s) {', '.join(missing)}: "
                f"install them with `pip install {fam.extra}`"
            )
        module_name, cls_name = fam.target.split(":")
        module = importlib.import_module(module_name)
        return getattr(module, cls_name)

    def get(self, name: str, options: dict[str, Any] | None = None) -> Reranker:
        """The reranker ``name`` configured by ``options`` (``model`` among them), cached."""
        options = dict(options or {})
        if not isinstance(name, str) or not name:
            raise InvalidInput("reranker name must be a non-empty string")
        key = (name, _freeze(options))
        with self._lock:
            inst = self._cache.get(key)
            if inst is not None:
                self._cache.move_to_end(key)
        if inst is not None:
            return inst
        cls = self.resolve_class(name)
        model = options.pop("model", None)
        try:
            inst = cls(model, context=self.context, registry=self, **options)
        except TypeError as exc:
            raise InvalidInput(f"bad options for reranker {name!r}: {exc}") from None
        with self._lock:
            inst = self._cache.setdefault(key, inst)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
            return inst

    def describe(self) -> list[RerankerInfo]:
        out = []
        for fam in FAMILIES.values():
            missing = _missing_modules(fam)
            reason = None
            if missing:
                reason = f"missing module(s) {', '.join(missing)}; pip install {fam.extra}"
            else:
                try:
                    cls = self.resolve_class(fam.name)
                    check = getattr(cls, "availability", None)
                    reason = check(self.context) if check else None
                except Exception as exc:  # an import that fails is reported, not raised
                    reason = f"import failed: {type(exc).__name__}: {exc}"
            out.append(
                RerankerInfo(
                    name=fam.name,
                    available=reason is None,
                    reason=reason,
                    summary=fam.summary,
                    default_model=_default_model(fam.name, self.context),
                    needs_network=not fam.local,
                )
            )
        return out


def _default_model(name: str, ctx: RerankContext) -> str | None:
    return {
        "cross-encoder": ctx.default_cross_encoder_model,
        "flashrank": ctx.default_flashrank_model,
        "cohere": ctx.cohere_model,
        "rankllm": ctx.llm_model,
    }.get(name)
