"""What a caller's reranker options may name: network endpoints and local folders.

Everything a client sends may have been written by text an agent read (prompt injection), and
over HTTP by anyone holding the token. Options that name a place are therefore checked before a
reranker is built from them (:meth:`RerankerRegistry.get`):

- a URL option (``base_url`` of ``cohere`` and ``rankllm``) must be the family's configured
  endpoint (``RERANK_MCP_COHERE_BASE_URL`` / Cohere's own, ``RERANK_MCP_LLM_BASE_URL``, or the
  family's ``RERANK_MCP_RERANKER_OPTIONS``) or one the operator lists in
  ``RERANK_MCP_ALLOWED_ENDPOINTS``: the configured API key is sent to no other URL, and the
  server makes no request to a URL a client invented;
- a path option (a ``model`` that is a local folder, ``cache_dir``, ``onnx_cache_dir``) must lie
  inside the model folders (the Hugging Face cache, the FlashRank and ONNX caches, the configured
  models, ``RERANK_MCP_ALLOWED_MODEL_DIRS``): a client cannot make the server read, load or write
  any other folder.

Options the operator configured (``RERANK_MCP_RERANKER_OPTIONS``, ``RERANK_MCP_HTTP_MODELS``) are
not a client's and are not checked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from rerank_mcp.errors import InvalidInput

ENDPOINTS_SETTING = "RERANK_MCP_ALLOWED_ENDPOINTS"
MODEL_DIRS_SETTING = "RERANK_MCP_ALLOWED_MODEL_DIRS"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_key(url: str) -> tuple[str, str, int, str, str] | None:
    """``(scheme, host, port, path, query)`` of an http(s) URL, normalised; None when ``url`` is
    not one (another scheme, no host, user info such as ``http://a@b``, a port that is not a
    number)."""
    if not isinstance(url, str) or not url.strip():
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc or parts.fragment:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], parts.path.rstrip("/"), parts.query


def endpoint_allowed(url: str, allowed: Iterable[str | None]) -> bool:
    """``url`` is one of ``allowed``: same scheme, host and port, and the same path (an entry
    without a path allows every path on its host)."""
    key = endpoint_key(url)
    if key is None:
        return False
    for entry in allowed:
        ek = endpoint_key(entry) if entry else None
        if ek is None or ek[:3] != key[:3]:
            continue
        if (ek[3], ek[4]) == ("", "") or (ek[3], ek[4]) == (key[3], key[4]):
            return True
    return False


def looks_like_path(name: str) -> bool:
    """A model name that a loader would read from the local disk rather than look up by id."""
    return (
        name.startswith(("/", ".", "~")) or "\\" in name or ".." in name.split("/") or os.path.isabs(name)
        or re.match(r"^[A-Za-z]:", name) is not None or os.path.exists(name)
    )


def _real(p: str) -> str:
    return os.path.realpath(os.path.abspath(p))


def inside(path: str, folders: Iterable[str | os.PathLike[str] | None]) -> bool:
    """``path`` (resolved, with ``~`` both as a folder name and expanded) lies in one of ``folders``."""
    candidates = {_real(path), _real(os.path.expanduser(path))}
    roots = [_real(os.fspath(f)) for f in folders if f]
    return all(any(c == r or c.startswith(r.rstrip(os.sep) + os.sep) for r in roots) for c in candidates)


def check(registry: Any, name: str, options: dict[str, Any] | None, where: str = "") -> None:
    """Refuse client ``options`` for family ``name`` that name an endpoint or a folder the
    operator did not allow (:class:`InvalidInput` naming the setting). Cascade stages are
    checked one by one."""
    if not options:
        return
    ctx = registry.context
    label = f"{where}{name}"
    if name == "cascade":
        stages = options.get("stages")
        if isinstance(stages, list):
            for n, st in enumerate(stages, start=1):
                if isinstance(st, dict) and isinstance(st.get("reranker"), str) and isinstance(st.get("options"), dict):
                    check(registry, st["reranker"], st["options"], where=f"{where}cascade stage {n}: ")
        return
    cls = registry.resolve_class(name)
    configured = ctx.family_options.get(name, {})
    for opt in getattr(cls, "url_options", ()):
        url = options.get(opt)
        if url is None or url == configured.get(opt):
            continue
        ok = [*cls.configured_endpoints(ctx), *getattr(ctx, "allowed_endpoints", ())]
        if not isinstance(url, str) or not endpoint_allowed(url, ok):
            raise InvalidInput(
                f"{label} option {opt} {url!r} is not an allowed endpoint: the server sends requests, and the API "
                f"key it is configured with, only to the configured endpoint or to those listed in {ENDPOINTS_SETTING}"
            )
    for opt in getattr(cls, "path_options", ()):
        value = options.get(opt)
        if not isinstance(value, str) or value == configured.get(opt):
            continue
        if opt == "model" and not looks_like_path(value):
            continue  # a model id, looked up in the model cache
        if not inside(value, getattr(ctx, "model_dirs", ())):
            raise InvalidInput(
                f"{label} option {opt} {value!r} is a local path outside the model folders: a caller may name a "
                f"model by its id, or a folder inside the model caches or {MODEL_DIRS_SETTING}"
            )
