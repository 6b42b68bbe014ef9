"""Settings that do not validate, explained: which variable, what is wrong with it, the forms it
accepts and an example. A stdio server with an invalid setting still starts (server/app.py): every
tool answers with this explanation and the MCP ``instructions`` carry it, so a desktop client shows
the reason instead of a disconnected server."""

from __future__ import annotations

import json
import typing
from typing import Any, Literal

from pydantic import ValidationError

from rerank_mcp.server.settings import ROOTS_FORMS, Settings

# Accepted forms and an example, for settings whose type alone does not say it well.
FORMS: dict[str, str] = {
    "allowed_roots": ROOTS_FORMS,
    "reranker_options": 'a JSON object of options per reranker family, e.g. {"cross-encoder": {"backend": "onnx"}}',
    "http_models": 'a JSON object of model names, e.g. {"rerank-v3.5": {"reranker": "cross-encoder"}}',
    "allowed_origins": 'a JSON list of origins, e.g. ["http://localhost:3000"]',
}


def env_name(field: str) -> str:
    return "RERANK_MCP_" + field.upper()


def _forms(field: str) -> str:
    if field in FORMS:
        return FORMS[field]
    info = Settings.model_fields.get(field)
    if info is None:
        return ""
    ann = info.annotation
    args = [ann] if typing.get_origin(ann) is Literal else [a for a in typing.get_args(ann) if a is not type(None)] or [ann]
    example = info.default if info.default is not None and not callable(info.default) else None
    for a in args:
        if typing.get_origin(a) is Literal:
            return f"one of {', '.join(map(str, typing.get_args(a)))} (e.g. {example})"
    kind = {int: "a whole number", float: "a number", bool: "true or false"}.get(args[0], "a value")
    return kind + (f", e.g. {example}" if example not in (None, "") else "")


def explain(exc: Exception) -> str:
    """One line per invalid setting: the variable, the problem, the accepted forms with an example."""
    if not isinstance(exc, ValidationError):
        return f"invalid settings: {exc}"
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err.get("loc") else ""
        value = err.get("input")
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        forms = _forms(field)
        lines.append(f"{env_name(field)}={shown} is invalid: {msg}" + (f". Accepted: {forms}" if forms else ""))
    return "invalid settings: " + "; ".join(lines)


def invalid_fields(exc: Exception) -> list[str]:
    if not isinstance(exc, ValidationError):
        return []
    return sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc") and str(e["loc"][0]) in Settings.model_fields})


def fallback_settings(exc: Exception, **overrides: Any) -> Settings:
    """Settings with the invalid fields at their defaults (the others as configured), for a server
    that starts only to explain the error."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    for field in invalid_fields(exc):
        clean[field] = Settings.model_fields[field].get_default(call_default_factory=True)
    try:
        return Settings(**clean)  # type: ignore[arg-type]
    except Exception:
        return Settings.model_construct()
