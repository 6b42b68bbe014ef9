"""An explicit registry from reranker family names to import paths, resolved lazily.

Importing this module imports no model library (no torch): a family's module is imported
the first time the family is used. Instances are cached by (family, model, options), so a
second call with the same configuration loads nothing.

Adding a family is one module (a :class:`~tools.rerank.base.Reranker` subclass with its
``Options`` model, and a ``Config`` model when the operator configures it) and one
:class:`Family` line below: its options schema, default model, availability, tool descriptions
and place in ``auto``'s order all come from there. What the operator configures is one setting
per value in server/settings.py, named ``<Config.settings_prefix><field>``; it reaches the family
whole, through no other module.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rerank_mcp.errors import DependencyMissing, InvalidInput, NotFound
from rerank_mcp.index.install import install_command
from rerank_mcp.tools.rerank import defaults
from rerank_mcp.tools.rerank.base import ModelDownload, Reranker


@dataclass(frozen=True)
class RerankContext:
    """What rerankers may need from the server. Each family's own configuration (its model, API
    key, endpoint...) comes whole from ``settings`` (the fields its ``Config`` names, see
    :class:`~tools.rerank.base.FamilyConfig`), with ``configs`` on top: per family name, a
    ``Config`` or a dict of its fields (what tests and tools without settings pass). Secrets stay
    in there."""

    settings: Any = field(default=None, repr=False)
    configs: dict[str, Any] = field(default_factory=dict, repr=False)
    timeout_s: float = 30.0  # per request to a network reranker
    device: str = "cpu"
    onnx_cache_dir: str | None = None  # where ONNX int8 exports of local models are cached
    # Returns a bi-encoder for the ``embedding`` reranker: ``embedder(model_name_or_None)``.
    embedder: Callable[[str | None], Any] | None = None
    embedding_model: str | None = None  # the configured embedding model (what the embedding reranker uses)
    # The models on this machine (tools.models_store.ModelStore): where downloadable models are,
    # and background downloads. With ``fallback_when_missing`` a family whose model is not here
    # yet answers with the best reranker present (and says so) instead of failing.
    models: Any = None
    fallback_when_missing: bool = False
    # Default options per family name (RERANK_MCP_RERANKER_OPTIONS), under a call's own options.
    family_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # With ``check_client_options`` (the server's registry), a call's options may name only the
    # configured endpoints and those in ``allowed_endpoints`` (RERANK_MCP_ALLOWED_ENDPOINTS), and
    # only local folders inside ``model_dirs`` (model caches, configured models,
    # RERANK_MCP_ALLOWED_MODEL_DIRS): see tools/rerank/client_options.py.
    check_client_options: bool = False
    allowed_endpoints: tuple[str, ...] = ()
    model_dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    name: str
    target: str  # "module:Class"
    requires: tuple[str, ...]  # importable modules the family needs
    extra: str | None  # pip extra (or package) that provides them
    summary: str
    local: bool = True  # runs without any network peer
    # place in ``auto``'s order (lower first; None: never picked by auto), and the options auto
    # and the stand-in for a missing model use with it
    auto_rank: int | None = None
    auto_options: tuple[tuple[str, Any], ...] = ()
    # False: over a ranked input auto keeps the input's order rather than run this family (it
    # measured below the first stages it reranked: docs/eval/auto/report.md)
    auto_over_ranked: bool = True


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            "auto",
            "rerank_mcp.tools.rerank.auto:AutoReranker",
            (),
            None,
            "the default: the best reranker present here: cross-encoder (if its model is here), flashrank "
            "(if its model is here), else for unordered passages embedding (then bm25), and for a ranking "
            "(inside search, or ordered) the input order kept; for text that is not English, a multilingual model "
            "present here (bge-reranker-v2-m3, bge-reranker-base, FlashRank MultiBERT) where that pick covers "
            "English only; the result names what ran (used).",
        ),
        Family(
            "bm25",
            "rerank_mcp.tools.rerank.bm25:BM25Reranker",
            ("rank_bm25",),
            "rank-bm25",
            "lexical BM25, instant, no model; inside search it scores with the collection's statistics "
            "(IDF, average length), elsewhere over the candidates only.",
            auto_rank=4,
            auto_over_ranked=False,
        ),
        Family(
            "embedding",
            "rerank_mcp.tools.rerank.embedding:EmbeddingReranker",
            (),  # the collection's embedder (ONNX Runtime by default); sentence-transformers only without one
            None,
            "cosine similarity under a bi-encoder (the collection's by default); fully offline.",
            auto_rank=3,
            auto_options=(("blend_by_position", True),),
            auto_over_ranked=False,
        ),
        Family(
            "cross-encoder",
            "rerank_mcp.tools.rerank.cross_encoder:CrossEncoderReranker",
            ("onnxruntime",),  # backend onnx; backend torch needs the torch extra
            "onnxruntime",
            "cross-encoders (ms-marco-MiniLM-L-6-v2, BAAI/bge-reranker-base, ...) on ONNX Runtime int8, or "
            "sentence-transformers with the torch extra; reads query and passage together, ~1-2 s per 100 "
            "passages on CPU.",
            auto_rank=1,
        ),
        Family(
            "flashrank",
            "rerank_mcp.tools.rerank.flashrank:FlashRankReranker",
            ("flashrank", "onnxruntime"),
            "flashrank",
            "FlashRank ONNX cross-encoders (TinyBERT-L-2 default); fastest on CPU, good for many candidates.",
            auto_rank=2,
        ),
        Family(
            "cohere",
            "rerank_mcp.tools.rerank.cohere:CohereReranker",
            ("cohere",),
            "cohere",
            f"Cohere Rerank API ({defaults.COHERE_MODEL}) or any Cohere-compatible endpoint; needs an API key.",
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


# Multilingual rerankers ``auto`` may take for text that is not English, best first
# (tools/rerank/auto.py: multilingual_pick).
MULTILINGUAL_RERANKERS = (("cross-encoder", "BAAI/bge-reranker-v2-m3"), ("cross-encoder", "BAAI/bge-reranker-base"),
                          ("flashrank", "ms-marco-MultiBERT-L-12"))


class RerankerInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    available: bool
    reason: str | None = None
    summary: str
    default_model: str | None = None
    needs_network: bool = False
    status: str = Field(
        "ready",
        description="'ready'; 'downloading' (its model is on its way: see download); 'missing' (its model is "
        "not here: see download.command; calls are answered by the best reranker present meanwhile); "
        "'unavailable' (see reason)",
    )
    download: ModelDownload | None = None
    note: str | None = None
    languages: str | None = Field(
        None, description="the languages its default model covers: 'en' (English only), 'zh,en' (Chinese and "
        "English), 'multilingual'; null when unknown or not a model's to say")
    score: str | None = Field(None, description="what the family's score is (the scale of min_score), and how the "
                              "HTTP API maps it into [0, 1]")
    options_schema: dict[str, Any] = Field(
        default_factory=dict, description="JSON schema of the family's options (the rerank tool's `options`)"
    )
    options: list[str] | None = Field(None, description="the option names (detail 'compact'; 'full': options_schema)")


def families_help(names: list[str] | None = None) -> str:
    """``'name' (summary), ...`` for tool descriptions, from the registry."""
    out = []
    for fam in FAMILIES.values():
        if names is None or fam.name in names:
            out.append(f"'{fam.name}' ({fam.summary.split(';')[0].rstrip('.')})")
    return ", ".join(out)


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


def _import_class(family: Family) -> type[Reranker]:
    module_name, cls_name = family.target.split(":")
    return getattr(importlib.import_module(module_name), cls_name)


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
                f"install them with `{install_command([fam.extra or ''])}`"
            )
        return _import_class(fam)

    def get(self, name: str, options: dict[str, Any] | None = None, *, trusted: bool = False) -> Reranker:
        """The reranker ``name`` configured by ``options`` (``model`` among them), cached.

        Options are validated against the family's ``Options`` model first (unknown or
        ill-typed ones are an :class:`InvalidInput` listing the valid ones), over the family's
        configured defaults (``RerankContext.family_options``). Unless ``trusted`` (options the
        operator configured, or ones already checked), options that name an endpoint or a local
        folder must be ones the operator allows (``RerankContext.check_client_options``)."""
        if not isinstance(name, str) or not name:
            raise InvalidInput("reranker name must be a non-empty string")
        if options is not None and not isinstance(options, dict):
            raise InvalidInput("reranker options must be a JSON object")
        if self.context.check_client_options and not trusted:
            from rerank_mcp.tools.rerank import client_options

            self.family(name)
            client_options.check(self, name, options)
        options = {**self.context.family_options.get(name, {}), **(options or {})}
        key = (name, _freeze(options))
        with self._lock:
            inst = self._cache.get(key)
            if inst is not None:
                self._cache.move_to_end(key)
        if inst is not None:
            return inst
        cls = self.resolve_class(name)
        inst = cls(cls.parse_options(options), context=self.context, registry=self)
        with self._lock:
            inst = self._cache.setdefault(key, inst)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
            return inst

    def family_of_model(self, model: str) -> str | None:
        """The local family that ``model``, named alone, means (its :meth:`Reranker.known_models`),
        or None. A family whose libraries are missing still claims its models (using it then says
        what to install)."""
        for fam in FAMILIES.values():
            if not fam.local:
                continue
            try:
                if model in _import_class(fam).known_models():
                    return fam.name
            except Exception:  # a module that fails to import claims no model
                continue
        return None

    def availability(self, name: str) -> str | None:
        """Why family ``name`` cannot run here with its default configuration, or None."""
        fam = self.family(name)
        missing = _missing_modules(fam)
        if missing:
            return f"missing module(s) {', '.join(missing)}; {install_command([fam.extra or ''])}"
        try:
            return self.resolve_class(fam.name).availability(self.context)
        except Exception as exc:  # an import that fails is reported, not raised
            return f"import failed: {type(exc).__name__}: {exc}"

    def auto_order(self, ordered: bool = True) -> list[tuple[str, dict[str, Any]]]:
        """The families ``auto`` considers, best first, with the options it uses them with.
        ``ordered``: the passages arrive ranked (inside search); otherwise no option that fuses
        with the input order (``blend``) is used."""
        ranked = sorted((f for f in FAMILIES.values() if f.auto_rank is not None), key=lambda f: f.auto_rank)
        return [(f.name, {k: v for k, v in f.auto_options if ordered or not k.startswith("blend")}) for f in ranked]

    def best_present(self, exclude: set[str] | frozenset[str] = frozenset(),
                     ordered: bool = True) -> tuple[str, dict[str, Any]]:
        """The first family of :meth:`auto_order` that runs here now (its model present), with
        its options; ``bm25`` when nothing else does."""
        for name, options in self.auto_order(ordered):
            if name not in exclude and self.availability(name) is None:
                return name, options
        return "bm25", {}

    def model_ref(self, name: str) -> Any:
        """The downloadable model family ``name`` uses by default (a ModelRef), or None."""
        try:
            return self.resolve_class(name).default_model_ref(self.context)
        except Exception:
            return None

    def _languages(self, family: str, model: str | None) -> str | None:
        from rerank_mcp.index.model_names import MULTILINGUAL, model_languages

        if family == "bm25":
            return MULTILINGUAL  # the collection's analyzer (CJK bigrams, Snowball languages)
        if family == "embedding":
            model = model or self.context.embedding_model
        return model_languages(model) if family not in ("auto", "cascade", "rankllm") else None

    def _multilingual_present(self) -> tuple[str, str] | None:
        """The multilingual reranker ``auto`` takes for text that is not English, if one is here."""
        from rerank_mcp.tools.models_store import ModelRef

        models = self.context.models
        if models is None:
            return None
        for fam, model in MULTILINGUAL_RERANKERS:
            ref = ModelRef(model, "flashrank" if fam == "flashrank" else "hf")
            if not _missing_modules(self.family(fam)) and models.present(ref):
                return fam, model
        return None

    def describe(self) -> list[RerankerInfo]:
        out = []
        models = self.context.models
        for fam in FAMILIES.values():
            reason = self.availability(fam.name)
            status, download, note, schema, default_model = "ready", None, None, {}, None
            try:
                cls = self.resolve_class(fam.name)
                schema = cls.options_schema()
                default_model = cls.default_model(self.context)
            except Exception:
                cls = None
            ref = self.model_ref(fam.name) if cls is not None and not _missing_modules(fam) else None
            if reason is not None:
                status = "unavailable"
                if ref is not None and models is not None and not models.present(ref):
                    d = models.state(ref)
                    if d is not None and d.state == "downloading":
                        status, download = "downloading", d
                    else:
                        status = "missing"
                        download = d if d is not None and d.state == "failed" else ModelDownload(
                            model=ref.name, state="missing", command=ref.command)
                    if self.context.fallback_when_missing:
                        stand_in, _ = self.best_present(exclude={fam.name})
                        note = f"calls are answered by {stand_in} until the model is here"
            languages = self._languages(fam.name, default_model)
            status_note = cls.status_note(self.context, self) if cls is not None and reason is None else None
            if status_note is not None:
                note = status_note
            if fam.name == "auto":
                pick, _ = self.best_present()
                note = f"picks {pick} now"
                if not self.family(pick).auto_over_ranked:
                    note += " for unordered passages, and keeps the order of ranked ones (inside search)"
                languages = self._languages(pick, self.resolve_class(pick).default_model(self.context))
                multi = self._multilingual_present()
                if multi is not None and languages in (None, "en"):
                    from rerank_mcp.index.model_names import model_languages

                    note += f"; {multi[0]} with {multi[1]} for text that is not English"
                    languages = model_languages(multi[1])
                top = self.auto_order()[0][0]
                if pick != top:
                    ref_top = self.model_ref(top)
                    if ref_top is not None and models is not None:
                        d = models.state(ref_top)
                        if d is not None and d.state == "downloading":
                            download = d
                            note += f"; {top} once {ref_top.name} is downloaded"
            out.append(
                RerankerInfo(
                    name=fam.name,
                    available=reason is None,
                    reason=reason,
                    summary=fam.summary,
                    default_model=default_model,
                    needs_network=not fam.local,
                    status=status,
                    download=download,
                    note=note,
                    languages=languages,
                    score=getattr(cls, "score_meaning", None) if cls is not None else None,
                    options_schema=schema,
                )
            )
        return out
