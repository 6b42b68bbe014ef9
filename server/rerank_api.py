"""The rerank HTTP API served beside ``/mcp`` by ``rerank-mcp serve --http``.

Other applications use the server's rerankers through the APIs they already speak:

- ``POST /v2/rerank``: Cohere v2 (``model``, ``query``, ``documents``, ``top_n``,
  ``max_tokens_per_doc``) -> ``{id, results: [{index, relevance_score}], meta}``.
- ``POST /v1/rerank``: Cohere v1 and Jina (documents as strings or ``{text}`` objects,
  ``return_documents``, ``top_n``, ``rank_fields``) -> ``{id, model, results: [{index,
  relevance_score, document?}], usage: {total_tokens}, meta}``.
- ``POST /rerank``: Hugging Face TEI (``query``, ``texts``, ``raw_scores``, ``return_text``,
  ``truncate``) -> ``[{index, score, text?}]``.
- ``GET /v1/models``: what ``model`` may name, as an OpenAI-style list.

``model`` names a local reranker family (``bm25``, ``flashrank``, ``cross-encoder``,
``embedding``, ``cascade``), a FlashRank model name, a Hugging Face cross-encoder id (in the
local HF cache), ``family:model``, or a name configured in ``RERANK_MCP_HTTP_MODELS``; none ->
the server's default reranker. Local paths are refused (only the operator's settings may name
files), and so are the network families (cohere, rankllm): this API is not a proxy. Nor does it
download what a request names: a model that is neither the operator's (a configured default, an
alias of ``RERANK_MCP_HTTP_MODELS``, which download on first use) nor on this machine is a 404
naming ``rerank-mcp models pull``.

Scores: ``relevance_score`` (Cohere, Jina) and TEI's ``score`` without ``raw_scores`` are the
score of the reranker that actually ranked, mapped monotonically into [0, 1] as those APIs
promise (its family's ``unit_scores``: cross-encoder, the sigmoid of its logit; embedding,
(cosine + 1) / 2; bm25, s / (s + 5); FlashRank and cascade, as they are); never a blend's fused
value. TEI's ``raw_scores`` returns that score unmapped. ``min_score`` (an extension of every
shape) drops documents below a score on the ranking family's own scale (``list_rerankers``'
``score``). ``ordered`` (an extension too): the documents arrive ranked, best first; only then
may a reranker blend with their order (the order is then the fused one; scores stay the
reranker's own).

What ran is always said: every response carries ``x-rerank-used`` (the family that ranked:
``auto``'s pick, say) and, when the input order was blended in, ``x-rerank-blend``; Cohere and
Jina responses also list it in ``meta.warnings`` when another family than the one named ranked.
A configured model that is not on this machine yet (for ``cascade``, a stage's) is a 503 saying
whether it is downloading or failed, or how to fetch it (nothing is ranked); the default,
``auto``, answers with the best reranker present and names it.

Every request passes the same bearer token, Host / Origin checks and body-size limit as
``/mcp``; errors come in each API's own shape with its status codes, never a traceback.
Scoring runs in worker threads, through one dynamic-batching queue per reranker
(:mod:`tools.batching`).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio.to_thread
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from rerank_mcp.errors import (
    DependencyMissing,
    InvalidInput,
    LimitExceeded,
    NotFound,
    RerankMCPError,
    UpstreamError,
)
from rerank_mcp.server.host_check import StrictTransportSecurity
from rerank_mcp.server.settings import Settings
from rerank_mcp.tools.batching import BatcherPool
from rerank_mcp.tools.rerank.base import Scored

log = logging.getLogger("rerank_mcp.http.api")

API_PATHS = {"/v2/rerank": "cohere2", "/v1/rerank": "cohere1", "/rerank": "tei", "/v1/models": "models"}
OWNER = "rerank-mcp"
_HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_TEI_TYPES = {400: "Validation", 401: "Unauthorized", 403: "Forbidden", 404: "Validation", 405: "Validation",
              413: "Validation", 421: "Forbidden", 422: "Validation", 429: "Overloaded", 500: "Backend",
              502: "Backend", 503: "Unhealthy"}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Target:
    """A resolved ``model``: the name echoed back, the family and its options."""

    name: str
    family: str
    options: dict[str, Any]
    # the request named the model (not an alias of RERANK_MCP_HTTP_MODELS, not a configured default):
    # it must be on this machine already, since the API starts no download a client asks for
    client_model: bool = False


def _is_pathlike(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~")) or "\\" in name or ".." in name or os.path.isabs(name)
        or re.match(r"^[A-Za-z]:", name) is not None or os.path.exists(name)
    )


def resolve_model(name: str | None, settings: Settings, families: dict[str, Any],
                  family_of_model: Callable[[str], str | None] = lambda name: None) -> Target:
    """``model`` -> (family, options); :class:`NotFound` for what is not served over HTTP.
    ``family_of_model``: the family a model name alone means (the registry's, from each family's
    ``known_models``)."""
    if name is None or name == "":
        return _family_target(settings.reranker_default, settings.reranker_default, {}, families)
    alias = settings.http_models.get(name)
    if alias is not None:
        return _family_target(name, alias["reranker"], dict(alias.get("options") or {}), families)
    if name in families:
        return _family_target(name, name, {}, families)
    family, sep, model = name.partition(":")
    if sep and family in families and model:
        return _family_target(name, family, _model_option(family, model, settings), families, client=True)
    known = family_of_model(name)
    if known is not None:
        return _family_target(name, known, _model_option(known, name, settings), families, client=True)
    if name == settings.cross_encoder_model:  # the operator's default, whatever it names
        return _family_target(name, "cross-encoder", {}, families)
    return _family_target(name, "cross-encoder", _model_option("cross-encoder", name, settings), families,
                          client=True)


def _ref(model: str) -> Any:
    from rerank_mcp.tools.models_store import model_ref

    try:
        return model_ref(model)
    except Exception:
        return None


def _refuse_download(state: Any, target: Target, reranker: Any) -> None:
    """A model a request names (not the operator's) must be on this machine: the API starts no
    download for it (a client could otherwise fill the disk with any repository). 404 naming the
    command that fetches it."""
    ref = reranker.required_model()
    models = getattr(state.registry.context, "models", None)
    if ref is None or models is None or models.present(ref):
        return
    raise ApiError(404, f"model {target.name!r} is not on this machine, and the rerank API downloads no model a "
                        f"request names: the operator can fetch it with `{ref.command}`, or name it in "
                        "RERANK_MCP_HTTP_MODELS (configured models download on first use)")


def _model_option(family: str, model: str, settings: Settings) -> dict[str, Any]:
    """The options that make ``family`` use ``model``: none for the operator's configured model."""
    if family == "cross-encoder" and model == settings.cross_encoder_model:
        return {}
    if family == "flashrank" and model == settings.flashrank_model:
        return {}
    if family == "embedding" and model == settings.embedding_model:
        return {}
    if _is_pathlike(model):
        raise NotFound(f"model {model!r} looks like a local path: files are not served over HTTP; "
                       "name it in RERANK_MCP_HTTP_MODELS instead")
    if family in ("cross-encoder", "embedding") and not _HF_ID.match(model):
        raise NotFound(f"unknown model {model!r}: name a reranker (GET /v1/models) or a Hugging Face "
                       "cross-encoder id such as cross-encoder/ms-marco-MiniLM-L-6-v2")
    return {"model": model}


def _family_target(name: str, family: str, options: dict[str, Any], families: dict[str, Any],
                   client: bool = False) -> Target:
    fam = families.get(family)
    if fam is None:
        raise NotFound(f"unknown model {name!r}: name a reranker (GET /v1/models)")
    if not fam.local:
        raise NotFound(f"model {name!r} is the network reranker {family!r}, which is not served over HTTP")
    return Target(name, family, options, client_model=client and "model" in options)


# ----------------------------------------------------------------------------- request parsing


def _get(body: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str, required: bool = False) -> Any:
    v = body.get(key)
    if v is None:
        if required:
            raise ApiError(400, f"missing required field {key!r}")
        return None
    if isinstance(v, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ApiError(422, f"{key!r} must be {what}, got a boolean")
    if not isinstance(v, kind):
        raise ApiError(422, f"{key!r} must be {what}, got {type(v).__name__}")
    return v


def _ordered(body: dict[str, Any]) -> bool:
    """``ordered`` (an extension of every shape): the documents arrive ranked, best first. By
    default their order is not a ranking, and no reranker blends with it."""
    return bool(_get(body, "ordered", bool, "true or false"))


def _positive(body: dict[str, Any], key: str) -> int | None:
    v = _get(body, key, int, "a positive integer")
    if v is not None and v <= 0:
        raise ApiError(422, f"{key!r} must be a positive integer, got {v}")
    return v


def _doc_text(doc: Any, i: int, field: str, rank_fields: list[str] | None) -> str:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, dict):
        if rank_fields:
            parts = []
            for f in rank_fields:
                if f in doc:
                    try:
                        value = doc[f] if isinstance(doc[f], str) else json.dumps(doc[f], ensure_ascii=False)
                    except (RecursionError, ValueError):
                        raise ApiError(400, f"{field}[{i}].{f} nests too deeply to be ranked") from None
                    parts.append(f"{f}: {value}")
            if parts:
                return "\n".join(parts)
        text = doc.get("text")
        if isinstance(text, str):
            return text
        raise ApiError(422, f"{field}[{i}] must be a string or an object with a string 'text' field")
    raise ApiError(422, f"{field}[{i}] must be a string or an object with a 'text' field, got {type(doc).__name__}")


def _check_limits(query: str, texts: list[str], field: str, settings: Settings) -> None:
    if not query.strip():
        raise ApiError(400, "'query' is empty")
    if len(query) > settings.max_query_chars:
        raise ApiError(413, f"query is {len(query)} characters, over the limit of {settings.max_query_chars}")
    if "\x00" in query:
        raise ApiError(422, "query contains NUL characters")
    if len(texts) > settings.max_passages:
        raise ApiError(413, f"{len(texts)} {field}, over the limit of {settings.max_passages} per request")
    for i, t in enumerate(texts):
        if len(t) > settings.max_passage_chars:
            raise ApiError(413, f"{field}[{i}] is {len(t)} characters, over the limit of {settings.max_passage_chars}")
    for where, t in [("query", query), *((f"{field}[{i}]", t) for i, t in enumerate(texts))]:
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(422, f"{where} contains unpaired surrogates (invalid Unicode)") from None


def _cut_tokens(text: str, max_tokens: int | None) -> str:
    """Cohere's ``max_tokens_per_doc``, approximated by whitespace-separated words (a word is at
    least one token, so no document keeps more than ``max_tokens`` tokens' worth of words)."""
    if not max_tokens:
        return text
    words = text.split()
    return text if len(words) <= max_tokens else " ".join(words[:max_tokens])


@dataclass
class RerankCall:
    target: Target
    query: str
    texts: list[str]
    top_n: int | None
    normalized: bool  # the API wants [0, 1] scores from the cross-encoder
    ordered: bool = False  # the documents arrive ranked (best first): blend may use their order
    min_score: float | None = None  # drop documents below this score of the ranking reranker (its own scale)
    batch_size: int = 0  # requests scored in the same model call (set after scoring)
    used: str | None = None  # the family that actually ranked (set after scoring)
    scored: Scored | None = None


def _api_scores(scored: Scored, normalized: bool) -> list[float]:
    """The ranking reranker's own scores (never a blend's fused values): mapped into [0, 1] by
    its family's ``unit_scores`` (``normalized``), or unmapped (TEI's ``raw_scores``)."""
    if normalized and scored.unit is not None:
        return [float(x) for x in scored.unit]
    own = scored.raw if scored.raw is not None else scored.scores
    return [float(x) for x in own]


def _batch_header(call: RerankCall) -> dict[str, str]:
    """``x-rerank-batch``: how many requests shared this one's model call (1: scored alone);
    ``x-rerank-used``: the reranker family that actually ranked (auto's pick, or the stand-in);
    ``x-rerank-blend``: the input order's weight, when the order was fused with it (ordered)."""
    out = {"x-rerank-batch": str(call.batch_size), "x-rerank-used": call.used or call.target.family}
    if call.scored is not None and call.scored.blend is not None:
        out["x-rerank-blend"] = f"{call.scored.blend:g}"
    return out


def _warnings(call: RerankCall) -> list[str]:
    """What a client should know about how its request was ranked (Cohere's ``meta.warnings``)."""
    scored, t = call.scored, call.target
    out: list[str] = []
    if scored is None:
        return out
    if call.used == "none":
        out.append("not reranked: " + (scored.notes[0] if scored.notes else "the input order was kept"))
    elif call.used and call.used != t.family:
        out.append(f"ranked by {call.used}, not {t.family}: " + (scored.fallback or (scored.notes[0] if scored.notes else "")))
    if scored.blend is not None:
        out.append(f"the order is fused with the input order (weight {scored.blend:g}, ordered=true); "
                   f"relevance_score is {call.used}'s own score mapped to [0, 1]")
    return out


def _min_score(body: dict[str, Any]) -> float | None:
    v = _get(body, "min_score", (int, float), "a number")
    if v is not None and not math.isfinite(v):
        raise ApiError(422, "'min_score' must be a finite number")
    return None if v is None else float(v)


# ----------------------------------------------------------------------------- the ASGI app


class RerankAPI:
    """ASGI app for :data:`API_PATHS`; ``state`` returns the server's running state (or None
    while it starts)."""

    def __init__(self, settings: Settings, state: Callable[[], Any], security: TransportSecuritySettings) -> None:
        self.settings = settings
        self._state = state
        self._security = StrictTransportSecurity(security)
        self._token = settings.http_token.get_secret_value().encode() if settings.http_token is not None else None
        self.batchers = BatcherPool(enabled=settings.http_batching, wait_s=settings.http_batch_wait_ms / 1000.0,
                                    max_pairs=settings.http_batch_max_pairs)
        self._inflight = 0
        self._started = int(time.time())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        api = API_PATHS[scope["path"]]
        request = Request(scope, receive)
        try:
            response = await self._handle(api, request)
        except ApiError as exc:
            response = self._error(api, exc.status, exc.message)
        except Exception:  # never a traceback to the client; log it on stderr
            log.exception("rerank API: internal error")
            response = self._error(api, 500, "internal error; see the server log")
        await response(scope, receive, send)

    # -- errors in each API's shape -----------------------------------------------------

    def _error(self, api: str, status: int, message: str) -> Response:
        headers = {"www-authenticate": "Bearer"} if status == 401 else {}
        if status == 429:
            headers["retry-after"] = "1"
        if api == "tei":
            body: Any = {"error": message, "error_type": _TEI_TYPES.get(status, "Backend")}
        elif api == "models":
            body = {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                              "code": status}}
        else:
            body = {"message": message}
        return JSONResponse(body, status_code=status, headers=headers)

    # -- checks every request passes ----------------------------------------------------

    async def _guard(self, request: Request, method: str) -> None:
        if self._token is not None:
            auth = request.headers.get("authorization", "").encode("latin-1", "replace")
            if not (auth[:7].lower() == b"bearer " and hmac.compare_digest(auth[7:].strip(), self._token)):
                raise ApiError(401, "unauthorized: send Authorization: Bearer <token>")
        refused = await self._security.validate_request(request, is_post=False)
        if refused is not None:
            raise ApiError(refused.status_code, bytes(refused.body).decode("utf-8", "replace"))
        if request.method != method:
            raise ApiError(405, f"use {method} on {request.url.path}")

    async def _json(self, request: Request) -> Any:
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body of {declared} bytes is over the limit of {limit} (RERANK_MCP_MAX_REQUEST_BYTES)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, f"request body is over the limit of {limit} bytes (RERANK_MCP_MAX_REQUEST_BYTES)")
        try:
            return json.loads(bytes(body))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON ({exc})") from None
        except RecursionError:
            raise ApiError(400, "the body nests JSON arrays or objects too deeply to be read; a rerank request "
                                "needs a few levels at most") from None

    # -- dispatch ---------------------------------------------------------------------

    async def _handle(self, api: str, request: Request) -> Response:
        await self._guard(request, "GET" if api == "models" else "POST")
        state = self._state()
        if state is None:
            raise ApiError(503, "the server is starting; try again")
        if api == "models":
            return JSONResponse(await self._models(state))
        body = await self._json(request)
        if not isinstance(body, dict):
            raise ApiError(422, f"the body must be a JSON object, got {type(body).__name__}")
        if self._inflight >= self.settings.http_max_inflight:
            raise ApiError(429, f"{self._inflight} rerank requests in progress (RERANK_MCP_HTTP_MAX_INFLIGHT); retry shortly")
        self._inflight += 1
        try:
            if api == "tei":
                return await self._tei(state, body)
            return await self._cohere(state, body, api)
        finally:
            self._inflight -= 1

    def _target(self, state: Any, body: dict[str, Any]) -> Target:
        from rerank_mcp.tools.rerank.registry import FAMILIES

        name = _get(body, "model", str, "a string")
        try:
            return resolve_model(name, self.settings, FAMILIES, state.registry.family_of_model)
        except NotFound as exc:
            raise ApiError(404, str(exc)) from None

    async def _score(self, state: Any, call: RerankCall) -> tuple[list[int], list[float]]:
        """Input indices best first (cut to top_n) and their API scores."""
        t = call.target
        try:
            # t.options are the operator's (RERANK_MCP_HTTP_MODELS) or a model id checked by resolve_model
            reranker = await anyio.to_thread.run_sync(partial(state.registry.get, t.family, dict(t.options), trusted=True))
            if t.client_model:
                await anyio.to_thread.run_sync(partial(_refuse_download, state, t, reranker))
            job = await self.batchers.get((t.family, json.dumps(t.options, sort_keys=True, default=str)),
                                          reranker).score_job(call.query, call.texts, call.ordered)
        except LimitExceeded as exc:
            raise ApiError(413, str(exc)) from None
        except NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except DependencyMissing as exc:
            raise ApiError(503, f"model {t.name!r} is not available here: {exc}") from None
        except UpstreamError as exc:
            raise ApiError(502, str(exc)) from None
        except InvalidInput as exc:
            raise ApiError(422, str(exc)) from None
        except RerankMCPError as exc:
            raise ApiError(500, str(exc)) from None
        call.batch_size = job.batch_size
        if job.scored.used and job.scored.download is not None and t.family != "auto":
            # the named model (for cascade, a stage's) is not here yet: refuse rather than answer for it
            # with another reranker
            from rerank_mcp.tools.rerank.base import download_text

            models = getattr(state.registry.context, "models", None)
            waits = job.scored.downloads or [job.scored.download]
            how = "; ".join(f"{d.model}: {download_text(d, models, _ref(d.model))}" for d in waits)
            what = f"model {t.name!r}" + (" needs models that are" if t.family == "cascade" else " is")
            raise ApiError(503, f"{what} not on this machine yet ({how}); nothing was ranked. Name no "
                                "model (the default, auto) to be ranked by the best reranker present, which the "
                                "response names")
        scores = [float(s) for s in job.scored.scores]
        if len(scores) != len(call.texts):
            raise ApiError(500, f"reranker {t.family!r} returned {len(scores)} scores for {len(call.texts)} documents")
        if not all(math.isfinite(s) for s in scores):
            raise ApiError(500, f"reranker {t.name!r} produced non-finite scores")
        order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties keep input order
        if call.min_score is not None:  # on the ranking reranker's own scale
            own = job.scored.raw if job.scored.raw is not None else scores
            order = [i for i in order if own[i] >= call.min_score]
        if call.top_n is not None:
            order = order[: call.top_n]
        shown = _api_scores(job.scored, call.normalized)
        call.used = job.scored.used or t.family
        call.scored = job.scored
        return order, [shown[i] for i in order]

    async def _cohere(self, state: Any, body: dict[str, Any], api: str) -> Response:
        target = self._target(state, body)
        query = _get(body, "query", str, "a string", required=True)
        docs = _get(body, "documents", list, "a list of strings" + (" or {text} objects" if api == "cohere1" else ""),
                    required=True)
        if not docs:
            raise ApiError(400, "'documents' is empty")
        if len(docs) > self.settings.max_passages:
            raise ApiError(413, f"{len(docs)} documents, over the limit of {self.settings.max_passages} per request")
        top_n = _positive(body, "top_n")
        rank_fields = _get(body, "rank_fields", list, "a list of field names")
        if rank_fields is not None and not all(isinstance(f, str) for f in rank_fields):
            raise ApiError(422, "'rank_fields' must be a list of strings")
        texts = [_doc_text(d, i, "documents", rank_fields) for i, d in enumerate(docs)]
        _check_limits(query, texts, "documents", self.settings)
        max_tokens = None
        return_documents = False
        if api == "cohere2":
            max_tokens = _positive(body, "max_tokens_per_doc")
        else:
            return_documents = bool(_get(body, "return_documents", bool, "true or false"))
        scored_texts = [_cut_tokens(t, max_tokens) for t in texts]
        call = RerankCall(target, query, scored_texts, top_n, normalized=True, ordered=_ordered(body),
                          min_score=_min_score(body))
        order, scores = await self._score(state, call)
        results: list[dict[str, Any]] = []
        for i, s in zip(order, scores):
            item: dict[str, Any] = {"index": i, "relevance_score": s}
            if return_documents:
                item["document"] = {"text": texts[i]}
            results.append(item)
        version = "2" if api == "cohere2" else "1"
        out: dict[str, Any] = {"id": str(uuid.uuid4()), "results": results,
                               "meta": {"api_version": {"version": version},
                                        "billed_units": {"search_units": max(1, math.ceil(len(texts) / 100))}}}
        warnings = _warnings(call)
        if warnings:
            out["meta"]["warnings"] = warnings
        if api == "cohere1":  # Jina's fields, beside Cohere's
            out["model"] = target.name
            words = len(query.split())
            out["usage"] = {"total_tokens": sum(words + len(t.split()) for t in scored_texts)}
        return JSONResponse(out, headers=_batch_header(call))

    async def _tei(self, state: Any, body: dict[str, Any]) -> Response:
        target = self._target(state, body)
        query = _get(body, "query", str, "a string", required=True)
        texts = _get(body, "texts", list, "a list of strings", required=True)
        if not texts:
            raise ApiError(422, "'texts' cannot be empty")
        if len(texts) > self.settings.max_passages:
            raise ApiError(413, f"batch size {len(texts)} > maximum allowed batch size {self.settings.max_passages}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ApiError(422, f"texts[{i}] must be a string, got {type(t).__name__}")
        raw = bool(_get(body, "raw_scores", bool, "true or false"))
        return_text = bool(_get(body, "return_text", bool, "true or false"))
        _get(body, "truncate", bool, "true or false")  # inputs are always truncated to fit the model
        direction = _get(body, "truncation_direction", str, "'Left' or 'Right'")
        if direction is not None and direction.lower() not in ("left", "right"):
            raise ApiError(422, "'truncation_direction' must be 'Left' or 'Right'")
        _check_limits(query, texts, "texts", self.settings)
        call = RerankCall(target, query, texts, None, normalized=not raw, ordered=_ordered(body),
                          min_score=_min_score(body))
        order, scores = await self._score(state, call)
        out = []
        for i, s in zip(order, scores):
            item: dict[str, Any] = {"index": i, "score": s}
            if return_text:
                item["text"] = texts[i]
            out.append(item)
        return JSONResponse(out, headers=_batch_header(call))

    async def _models(self, state: Any) -> dict[str, Any]:
        def describe() -> list[Any]:
            return state.registry.describe()

        infos = await anyio.to_thread.run_sync(describe)
        from rerank_mcp.tools.rerank.registry import FAMILIES

        # a cascade whose stages' models are missing runs with stand-ins, which a request naming it
        # is refused (503), like any configured model not here: not listed either
        available = {i.name for i in infos if i.available and FAMILIES[i.name].local
                     and not (i.name == "cascade" and i.note)}
        rows: list[dict[str, Any]] = []

        def add(name: str, family: str) -> None:
            if name and all(r["id"] != name for r in rows):
                rows.append({"id": name, "object": "model", "created": self._started, "owned_by": OWNER,
                             "reranker": family})

        for name, spec in self.settings.http_models.items():
            add(name, spec["reranker"])
        for i in infos:
            if i.name in available:
                add(i.name, i.name)
        s = self.settings
        if "cross-encoder" in available and _HF_ID.match(s.cross_encoder_model) and not _is_pathlike(s.cross_encoder_model):
            add(s.cross_encoder_model, "cross-encoder")
        if "flashrank" in available:
            add(s.flashrank_model, "flashrank")
        return {"object": "list", "data": rows}


class Dispatch:
    """Send the rerank API paths to :class:`RerankAPI`, everything else (``/mcp``, lifespan) on."""

    def __init__(self, api: RerankAPI, app: Any) -> None:
        self.api = api
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in API_PATHS:
            await self.api(scope, receive, send)
        else:
            await self.app(scope, receive, send)
