"""The reranker base class: one abstract method, everything else done once here.

Every family implements ``_score(query, texts) -> Scored`` (one score per text, higher is
better, plus which texts were truncated to fit the model) and declares its options as a
pydantic model (``Options``, extending :class:`RerankOptions`). The base class

- validates options against that model (:meth:`Reranker.parse_options`): an unknown or
  ill-typed option is an :class:`InvalidInput` that lists the valid ones, and the model's JSON
  schema is what ``list_rerankers`` publishes. Rules between options are the model's validators;
  the constructor receives the validated model whole (``self.options``) and restates none of it;
- hands each family its own operator configuration (``Config``, a :class:`FamilyConfig` filled
  from the settings named ``<settings_prefix><field>``: :meth:`Reranker.family_config`), so
  a family's settings pass through no other module;
- applies ``blend`` for every family (:func:`weighted_rrf` of the reranker's order and the
  order the passages arrived in), and only when the caller says that order is a ranking
  (``ordered=True``: inside ``search``, or a caller's flag); passages an agent collected (web
  results, grep output) arrive in no meaningful order, and blending with it would let it win;
- answers with the best reranker present when the family's model is not on this machine yet
  (the server downloads it in the background; see :mod:`tools.models_store`), saying so;
- and in :meth:`Reranker.rerank` validates input, sorts stably, applies ``top_n`` and reports
  truncation and latency in the shared result shape.
"""

from __future__ import annotations

import logging
import math
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from rerank_mcp.errors import DependencyMissing, InvalidInput, NotFound, UpstreamError
from rerank_mcp.index.fusion import RRF_K, rrf_term
from rerank_mcp.tools.cancel import check
from rerank_mcp.tools.schema import compact_nullable

log = logging.getLogger(__name__)


class Passage(BaseModel):
    """A passage handed to a reranker: its text, an optional id and metadata."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class RankedPassage(BaseModel):
    """One passage in a reranked list."""

    model_config = ConfigDict(frozen=True, json_schema_extra=compact_nullable)

    rank: int = Field(description="1-based position in the reranked list")
    index: int = Field(description="position of the passage in the input list (0-based)")
    id: str | None = None
    text: str | None = Field(None, description="the passage text (omitted when return_text is false)")
    score: float
    truncated: bool = Field(False, description="the passage was cut to fit the model's input")
    metadata: dict[str, Any] = Field(default_factory=dict)


class RerankResult(BaseModel):
    """The shared result shape of every reranker family."""

    model_config = ConfigDict(frozen=True, json_schema_extra=compact_nullable)

    reranker: str = Field(description="family name, e.g. 'cross-encoder'")
    model: str | None = None
    passages: list[RankedPassage]
    truncated: list[int] = Field(default_factory=list, description="input indices of truncated passages")
    latency_ms: float
    fallback: str | None = Field(
        None, description="set when the requested reranker failed and another ordering was used; says why"
    )
    notes: list[str] = Field(default_factory=list)
    used: str | None = Field(
        None, description="the reranker that actually ranked, when not the one named (auto's pick, or a fallback)"
    )
    blend: float | None = Field(
        None, description="set when the scores are fused with the input order (a ranking: ordered=true): the "
        "input order's weight; scores are then fused RRF values, not the reranker's own"
    )
    blend_by_position: bool = Field(False, description="the blend was position-aware: the input order weighed "
                                    "0.75 at ranks 1-3, 0.6 at 4-10, 0.4 below (blend is then 0.75)")
    ordered: bool = Field(False, description="the input order was treated as a ranking")
    download: ModelDownload | None = Field(
        None, description="the model this reranker is waiting for: download progress, or the command to fetch it"
    )


class ModelDownload(BaseModel):
    """Where a missing model stands: being downloaded (with progress), missing, or failed."""

    model_config = ConfigDict(frozen=True, json_schema_extra=compact_nullable)

    model: str
    state: str = Field(description="'downloading', 'missing' (downloads are off) or 'failed'")
    done_bytes: int = 0
    total_bytes: int | None = None
    percent: float | None = None
    error: str | None = None
    command: str = Field(description="the command that fetches the model")


RerankResult.model_rebuild()


@dataclass
class Scored:
    """What ``_score`` returns: a score per text, and per-text truncation flags."""

    scores: list[float]
    truncated: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fallback: str | None = None
    used: str | None = None  # the family that ranked, when another than the one asked for
    download: ModelDownload | None = None
    blend: float | None = None  # the input order's weight when the scores were fused with it
    raw: list[float] | None = None  # the ranking reranker's own scores, kept when ``scores`` are fused
    unit: list[float] | None = None  # the ranking reranker's own scores mapped into [0, 1] (unit_scores)
    by_position: bool = False  # the blend was position-aware
    downloads: list[ModelDownload] = field(default_factory=list)  # every missing model awaited (cascade's stages)


# ------------------------------------------------------------------------------ options
class RerankOptions(BaseModel):
    """Options every family takes. Families extend this model with their own fields; the
    validation is strict (JSON types: no strings for numbers, no booleans for numbers)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    blend: float = Field(
        0.0, ge=0.0, le=1.0,
        description="fuse the reranker's order with the order the passages arrived in (the first stage's) by "
        "weighted reciprocal-rank fusion: 0 = the reranker alone, 1 = the input order; scores are then fused "
        "RRF scores. Applied only when that order is a ranking (inside search, or rerank with ordered=true)",
    )
    blend_by_position: bool = Field(
        False,
        description="position-aware blend in place of a single weight: the input order weighs 0.75 at its ranks "
        "1-3, 0.6 at 4-10 and 0.4 below (the reranker 0.25 / 0.4 / 0.6); like blend, only for a ranked input",
    )


class FamilyConfig(BaseModel):
    """What the operator configures for a family, handed to it whole (:meth:`Reranker.family_config`).

    A family extends this with its fields and names its ``settings_prefix``: the server's
    setting ``<prefix><field>`` (environment variable ``RERANK_MCP_<PREFIX><FIELD>``) fills each
    field, so adding a configured family touches the settings and the family, nothing between."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    settings_prefix: ClassVar[str | None] = None

    @classmethod
    def from_settings(cls, settings: Any) -> dict[str, Any]:
        """The fields the server's ``settings`` set for this family (none without a prefix)."""
        if settings is None or cls.settings_prefix is None:
            return {}
        return {name: getattr(settings, cls.settings_prefix + name) for name in cls.model_fields
                if hasattr(settings, cls.settings_prefix + name)}

    @staticmethod
    def secret(value: SecretStr | str | None) -> str | None:
        return value.get_secret_value() if isinstance(value, SecretStr) else value


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        parts = [_type_name(a) for a in args if a is not type(None)]
        return " | ".join(parts) + (" | null" if type(None) in args else "")
    if origin in (list, tuple):
        return f"list of {_type_name(args[0]) if args else 'values'}"
    if origin is dict:
        return "object"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(annotation, str(annotation))


def describe_options(model: type[BaseModel]) -> str:
    """``name (type, default X)`` for every option of ``model``, for error messages."""
    out = []
    for name, f in model.model_fields.items():
        default = f.get_default(call_default_factory=True)
        out.append(f"{name} ({_type_name(f.annotation)}" + (f", default {default!r})" if default is not None else ")"))
    return ", ".join(out)


def _literal_args(annotation: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    for a in typing.get_args(annotation):
        got = _literal_args(a)
        if got:
            return got
    return None


def options_error(family: str, model: type[BaseModel], exc: ValidationError) -> InvalidInput:
    """One readable :class:`InvalidInput` for a pydantic validation error of ``family``'s options."""
    valid = describe_options(model)
    problems = []
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ())]
        name = loc[0] if loc else "options"
        where = ".".join(loc) or "options"
        if e.get("type") == "extra_forbidden":
            problems.append(f"unknown option {where!r}")
            continue
        field_ = model.model_fields.get(name)
        lit = _literal_args(field_.annotation) if field_ is not None and len(loc) == 1 else None
        if e.get("type") == "value_error" and not loc:  # a rule between options (a model validator)
            problems.append(str(e.get("msg", "")).removeprefix("Value error, "))
            continue
        if e.get("type") == "literal_error" and lit:
            msg = f"must be one of {', '.join(map(str, lit))}"
        else:
            msg = str(e.get("msg", "is invalid")).replace("Input should be", "must be").removeprefix("Value error, ")
        got = repr(e.get("input"))
        problems.append(f"{family} option {where} {msg}, got {got if len(got) <= 80 else got[:77] + '...'}")
    return InvalidInput(f"bad options for reranker {family!r}: {'; '.join(problems)}. Valid options: {valid}")


class CorpusStats:
    """A collection's BM25 statistics, asked lazily: called with analyzed terms, it answers
    ``(N, avgdl, {term: df})``; ``analyzer`` is the collection's (its terms are what the index holds)."""

    def __init__(self, stats: Callable[[Sequence[str]], Any], analyzer: Any = None) -> None:
        self._stats = stats
        self.analyzer = analyzer

    def __call__(self, terms: Sequence[str]) -> Any:
        return self._stats(terms)


# ------------------------------------------------------------------------------ blend


POSITION_WEIGHTS = ((3, 0.75), (10, 0.6), (None, 0.4))  # input ranks up to N: the input order's weight


def position_weight(input_rank: int) -> float:
    """The input order's weight at a 1-based input rank in the position-aware blend."""
    for upto, w in POSITION_WEIGHTS:
        if upto is None or input_rank <= upto:
            return w
    return POSITION_WEIGHTS[-1][1]


def weighted_rrf(scores: Sequence[float], blend: float, k: int = RRF_K, by_position: bool = False) -> list[float]:
    """Weighted RRF of the input order (weight ``blend``) and the order of ``scores`` (``1 - blend``).

    Ranks are 1-based; ties in ``scores`` keep input order. Returns one fused score per passage::

        fused(p) = w / (k + input_rank(p)) + (1 - w) / (k + score_rank(p)),   k = 60

    with ``w = blend``, or with ``by_position`` the weight of :func:`position_weight` at the
    passage's input rank (0.75 for ranks 1-3, 0.6 for 4-10, 0.4 below).
    """
    n = len(scores)
    by_score = sorted(range(n), key=lambda i: -float(scores[i]))  # stable
    rank = [0] * n
    for r, i in enumerate(by_score, start=1):
        rank[i] = r
    ws = [position_weight(i + 1) if by_position else blend for i in range(n)]
    return [rrf_term(i + 1, ws[i], k) + rrf_term(rank[i], 1.0 - ws[i], k) for i in range(n)]


class Reranker(ABC):
    """Base class of all reranker families."""

    family: str = "base"
    Options: ClassVar[type[RerankOptions]] = RerankOptions
    Config: ClassVar[type[FamilyConfig]] = FamilyConfig
    # True for families whose ``_score`` takes ``corpus=`` (collection statistics; see bm25)
    corpus_aware: ClassVar[bool] = False
    blend: float = 0.0
    blend_by_position: bool = False
    context: Any = None
    registry: Any = None
    # Options naming a network endpoint, and options naming a local folder (``model``: when it is
    # a path rather than an id). A caller's values are checked against what the operator allows
    # (tools/rerank/client_options.py).
    url_options: ClassVar[tuple[str, ...]] = ()
    path_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: RerankOptions | None = None, *, context: Any = None, registry: Any = None) -> None:
        """``options``: the family's validated ``Options`` (its defaults when None); ``context``:
        the server's :class:`~tools.rerank.registry.RerankContext`. The model is ``options.model``,
        else the family's default (:meth:`default_model`)."""
        self.options = options if options is not None else self.Options()
        self.context = context
        self.registry = registry
        self.config = self.family_config(context)
        self.blend = float(self.options.blend)
        self.blend_by_position = bool(self.options.blend_by_position)
        self.model: str | None = getattr(self.options, "model", None) or self.default_model(context)

    @classmethod
    def family_config(cls, context: Any) -> FamilyConfig:
        """The family's ``Config``: the settings' fields for it, under the context's own entry for
        the family (``RerankContext.configs``: a ``Config`` or a dict of its fields)."""
        given = (getattr(context, "configs", None) or {}).get(cls.family)
        if isinstance(given, cls.Config):
            return given
        fields = cls.Config.from_settings(getattr(context, "settings", None))
        try:
            return cls.Config.model_validate({**fields, **(given or {})})
        except ValidationError as exc:
            raise InvalidInput(f"bad configuration of reranker {cls.family!r}: {exc}") from None

    # -- what the registry, list_rerankers and the HTTP API ask of every family -----------
    @classmethod
    def availability(cls, context: Any) -> str | None:
        """Why the family cannot run here with its default configuration, or None."""
        return None

    @classmethod
    def default_model_ref(cls, context: Any) -> Any:
        """The downloadable model (a :class:`tools.models_store.ModelRef`) the family uses by
        default, or None (no model, or one this server does not fetch)."""
        return None

    @classmethod
    def status_note(cls, context: Any, registry: Any) -> str | None:
        """A note for ``list_rerankers`` on what the family runs now, or None."""
        return None

    @classmethod
    def known_models(cls) -> tuple[str, ...]:
        """Model names that mean this family when named alone (the HTTP API's ``model``)."""
        return ()

    @property
    def scores_together(self) -> bool:
        """Whether :meth:`score_many` scores several requests in one model run (worth batching)."""
        return type(self)._score_many is not Reranker._score_many

    # -- options -------------------------------------------------------------------------
    @classmethod
    def parse_options(cls, options: dict[str, Any] | None) -> RerankOptions:
        """``options`` validated against the family's ``Options`` model, or :class:`InvalidInput`
        naming what is wrong and listing the valid options."""
        options = dict(options or {})
        if "model" in options and "model" not in cls.Options.model_fields:
            raise InvalidInput(
                f"the {cls.family} reranker has no model; leave 'model' unset. Valid options: "
                f"{describe_options(cls.Options)}"
            )
        try:
            return cls.Options.model_validate(options)
        except ValidationError as exc:
            raise options_error(cls.family, cls.Options, exc) from None

    @classmethod
    def configured_endpoints(cls, context: Any) -> list[str]:
        """The endpoints the operator configured for this family (its ``url_options`` may name them)."""
        return []

    @classmethod
    def options_schema(cls) -> dict[str, Any]:
        """The JSON schema of the family's options (what ``list_rerankers`` publishes)."""
        return cls.Options.model_json_schema()

    @classmethod
    def default_model(cls, context: Any) -> str | None:
        """The model the family uses when ``options.model`` is not given (None: no model)."""
        return None

    # -- models --------------------------------------------------------------------------
    def required_model(self) -> Any:
        """The downloadable model this instance loads (a :class:`tools.models_store.ModelRef`),
        or None (no model, a local folder, or one this server does not manage)."""
        return None

    def _substitute(self, ordered: bool = False) -> tuple[Reranker, str, ModelDownload | None, str] | None:
        """When this family's model is missing and the server answers with another reranker
        meanwhile: ``(that reranker, why, download state, its name)``; None to run as asked."""
        ref = self.required_model()
        ctx = self.context
        models = getattr(ctx, "models", None)
        if ref is None or models is None or not getattr(ctx, "fallback_when_missing", False) or self.registry is None:
            return None
        if models.present(ref):
            return None
        download = models.ensure(ref)  # starts a background download where downloads are allowed
        name, options = self.registry.best_present(exclude={self.family}, ordered=ordered)
        sub = self.registry.get(name, options, trusted=True)
        how = download_text(download, models, ref)
        why = (f"{self.family} model {ref.name!r} is not on this machine yet: {how}; "
               f"ranked by {name} instead until it is")
        return sub, why, download, name

    # -- scoring ---------------------------------------------------------------------------
    #: what the family's score is, for list_rerankers, the docs and ``min_score``
    score_meaning: ClassVar[str] = "the family's relevance score (higher is more relevant)"

    def unit_scores(self, scores: Sequence[float]) -> list[float]:
        """The family's own scores mapped monotonically into [0, 1] (what the HTTP API returns as
        ``relevance_score``). Default: the scores clamped to [0, 1], for families whose scores are
        already there (flashrank, cascade's 1/rank, cohere)."""
        return [min(1.0, max(0.0, float(x))) for x in scores]

    @abstractmethod
    def _score(self, query: str, texts: Sequence[str]) -> Scored:
        """Return one score per text (higher is more relevant)."""

    def _score_many(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[Scored]:
        """Score several ``(query, texts)`` requests at once (dynamic batching of concurrent
        callers). Families that can score the pairs of different queries in one model call
        override this; the default scores the requests in turn."""
        return [self._score(query, texts) for query, texts in requests]

    def _raw(self, query: str, texts: Sequence[str], corpus: CorpusStats | None = None,
             ordered: bool = False) -> Scored:
        if corpus is not None and self.corpus_aware:
            return self._score(query, texts, corpus=corpus)  # type: ignore[call-arg]
        return self._score(query, texts)

    def score(self, query: str, texts: Sequence[str], corpus: CorpusStats | None = None,
              ordered: bool = False) -> Scored:
        """``_score`` with everything the base class adds: the stand-in while the family's model
        is missing, and ``blend`` (only when ``ordered``: the input order is a ranking). ``corpus``
        gives collection statistics to families that use them."""
        sub = self._substitute(ordered)
        if sub is not None:
            other, why, download, name = sub
            try:
                scored = other.score(query, texts, corpus, ordered)
            except (DependencyMissing, UpstreamError, NotFound) as exc:
                if name == "bm25" or self.registry is None:
                    raise
                # the stand-in's own model cannot be loaded either (the embedding model missing
                # and not downloadable, say): BM25 needs none
                log.warning("%s stand-in %s could not rank (%s); bm25 ranks instead", self.family, name, exc)
                why = why.removesuffix(f"ranked by {name} instead until it is") + (
                    f"{name} could not load its model ({exc}), so bm25 ranked instead until it is")
                name = "bm25"
                scored = self.registry.get(name, {}, trusted=True).score(query, texts, corpus, ordered)
            scored.fallback = why if not scored.fallback else f"{why}; {scored.fallback}"
            scored.used = scored.used or name
            scored.download = download
            return self._blended(scored, len(texts), ordered)
        return self._blended(self._with_unit(self._raw(query, texts, corpus, ordered), len(texts)), len(texts), ordered)

    def _with_unit(self, scored: Scored, n: int) -> Scored:
        if scored.unit is None and len(scored.scores) == n:
            scored.unit = self.unit_scores(scored.scores)
        return scored

    def score_many(self, requests: Sequence[tuple[str, Sequence[str]]], ordered: bool = False) -> list[Scored]:
        """:meth:`score` for several requests at once (one model call where the family can)."""
        if len(requests) < 2 or self._substitute(ordered) is not None:
            return [self.score(q, t, ordered=ordered) for q, t in requests]
        return [self._blended(self._with_unit(s, len(t)), len(t), ordered)
                for s, (_, t) in zip(self._score_many(requests), requests)]

    def _blended(self, scored: Scored, n: int, ordered: bool = False) -> Scored:
        if (self.blend <= 0.0 and not self.blend_by_position) or len(scored.scores) != n or scored.blend is not None:
            return scored
        what = "blend_by_position" if self.blend_by_position else f"blend {self.blend:g}"
        if not ordered:
            scored.notes = list(scored.notes) + [
                f"{what} not applied: the passages' order is not a ranking (pass ordered=true when it is); "
                "scores are the reranker's own"
            ]
            return scored
        scored.raw = list(scored.scores)
        scored.scores = weighted_rrf(scored.scores, self.blend, by_position=self.blend_by_position)
        ranked_by = scored.used or self.family
        if self.blend_by_position:
            scored.blend = position_weight(1)
            scored.by_position = True
            weights = "weight 0.75 at its ranks 1-3, 0.6 at 4-10, 0.4 below; the rest to the " + ranked_by + " order"
        else:
            scored.blend = self.blend
            weights = f"weight {self.blend:g}) and the {ranked_by} order (weight {1 - self.blend:g}"
        scored.notes = list(scored.notes) + [
            f"scores are weighted RRF (k={RRF_K}) of the input order ({weights})"
        ]
        return scored

    def rerank(
        self,
        query: str,
        passages: Sequence[Passage | str],
        top_n: int | None = None,
        corpus: CorpusStats | None = None,
        ordered: bool = False,
        min_score: float | None = None,
    ) -> RerankResult:
        """Rank ``passages`` by relevance to ``query``. ``ordered``: the passages arrive ranked (a
        first stage's order), so ``blend`` may fuse with that order; otherwise their order means
        nothing and no reranker uses it. ``min_score``: drop passages whose score from the reranker
        that ranked (its own score, before any blend; see each family's ``score_meaning``) is below it."""
        if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, (int, float))
                                      or not math.isfinite(min_score)):
            raise InvalidInput(f"min_score must be a finite number, got {min_score!r}")
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput("query is empty: give the text to rank the passages against")
        items = [p if isinstance(p, Passage) else Passage(text=p) for p in passages]
        if top_n is not None and top_n <= 0:
            raise InvalidInput(f"top_n must be a positive integer, got {top_n}")
        start = time.perf_counter()
        if not items:
            return RerankResult(reranker=self.family, model=self.model, passages=[], latency_ms=0.0, ordered=ordered)
        check()  # the thread's cancel check; families also ask it between their scoring batches
        scored = self.score(query, [p.text for p in items], corpus, ordered)
        if len(scored.scores) != len(items):
            raise RuntimeError(
                f"{self.family} returned {len(scored.scores)} scores for {len(items)} passages"
            )
        truncated = list(scored.truncated) or [False] * len(items)
        # Stable sort: equal scores keep their input order.
        order = sorted(range(len(items)), key=lambda i: -float(scored.scores[i]))
        notes = list(scored.notes)
        if min_score is not None:
            own = scored.raw if scored.raw is not None else scored.scores
            kept = [i for i in order if float(own[i]) >= min_score]
            if len(kept) < len(order):
                notes.append(f"min_score {min_score:g} dropped {len(order) - len(kept)} of {len(order)} passage(s) "
                             f"({scored.used or self.family} scores)")
            order = kept
        if top_n is not None:
            order = order[:top_n]
        ranked = [
            RankedPassage(
                rank=r + 1,
                index=i,
                id=items[i].id,
                text=items[i].text,
                score=float(scored.scores[i]),
                truncated=bool(truncated[i]),
                metadata=items[i].metadata,
            )
            for r, i in enumerate(order)
        ]
        return RerankResult(
            reranker=self.family,
            model=self.model,
            passages=ranked,
            truncated=[i for i, t in enumerate(truncated) if t],
            latency_ms=(time.perf_counter() - start) * 1000.0,
            fallback=scored.fallback,
            notes=notes,
            used=scored.used,
            blend=scored.blend,
            blend_by_position=scored.by_position,
            ordered=ordered,
            download=scored.download,
        )


def _progress_text(d: ModelDownload) -> str:
    mb = d.done_bytes / 1e6
    if d.total_bytes:
        return f"{d.percent or 0:.0f}%, {mb:.1f} of {d.total_bytes / 1e6:.1f} MB"
    if not d.done_bytes:
        return "started just now, nothing received yet"
    return f"{mb:.1f} MB so far"


def download_text(d: ModelDownload, models: Any = None, ref: Any = None) -> str:
    """Where a missing model's download stands, in words that stay true: in progress (how far),
    failed (why, and when it is tried again), or not started (why downloads are off, naming the
    setting); each with the command that fetches it. ``models``: the model store, ``ref`` the
    model (a ModelRef), for when a failed download is retried and why downloads are off."""
    if d.state == "downloading":
        return f"downloading in the background ({_progress_text(d)})"
    if d.state == "failed":
        retry = models.retry_in(ref) if models is not None and ref is not None else None
        when = (f"it is tried again in {retry:.0f} s (on the next call after that), or fetch it with `{d.command}`"
                if retry is not None else f"fetch it with `{d.command}`")
        return f"the download failed ({d.error}); {when}"
    off = models.off_reason() if models is not None else None
    return f"downloads are off here ({off}): fetch it with `{d.command}`" if off else \
        f"downloads are off here: fetch it with `{d.command}`"


def check_local_fallback(registry: Any, family: str, fallback: str) -> None:
    """``fallback`` must name a registered family that runs without a network peer."""
    if registry is None:
        raise InvalidInput(f"{family} option fallback needs a registry")
    fam = registry.family(fallback)  # NotFound for an unknown name
    if not fam.local or fallback in (family, "cascade"):
        raise InvalidInput(f"{family} option fallback must name a local reranker, got {fallback!r}")


class RemoteReranker(Reranker):
    """A reranker backed by a network service, with an optional local ``fallback`` reranker.

    Subclasses set ``self.fallback`` (a family name or None; the base class keeps the registry),
    and implement ``_unavailable()`` (why the service cannot be called at all, or None) and
    ``_score_remote``. A service failure (:class:`UpstreamError`) uses the fallback when one is
    named, and the result says so; otherwise it is raised.
    """

    fallback: str | None = None
    registry: Any = None

    def _unavailable(self) -> str | None:
        return None

    @abstractmethod
    def _score_remote(self, query: str, texts: Sequence[str]) -> Scored:
        """Score ``texts`` by calling the service."""

    def _score(self, query: str, texts: Sequence[str]) -> Scored:
        why = self._unavailable()
        if why is not None:
            return self._fall_back(query, texts, why)
        try:
            return self._score_remote(query, texts)
        except UpstreamError as exc:
            if self.fallback is None:
                raise
            return self._fall_back(query, texts, str(exc))

    def _fall_back(self, query: str, texts: Sequence[str], why: str) -> Scored:
        if self.fallback is None:
            raise DependencyMissing(why)
        log.warning("%s failed, using fallback reranker %s: %s", self.family, self.fallback, why)
        scored = self.registry.get(self.fallback).score(query, texts)
        scored.fallback = f"{self.family} failed ({why}); ranked by {self.fallback} instead"
        scored.used = scored.used or self.fallback
        return scored
