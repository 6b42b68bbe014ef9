"""Invalid tool arguments, said plainly: one line per problem, named by its dotted path.

pydantic's own text (``1 validation error for searchArguments ... For further information visit
https://errors.pydantic.dev/...``) names internal models and a web page; an agent needs the
argument, what it must be and what it got: ``k: must be an integer (got 3.5)``, ``query:
required``, ``passages.0.text: required``, ``unknown argument 'top_k' (did you mean 'k'?);
accepted: query, collection, k, ...``. The MCP server (every catalog tool) and the CLI verbs
derived from the catalog use :func:`problems`.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, Sequence
from types import UnionType
from typing import Any

from pydantic import BaseModel, ValidationError

_TYPES = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "string_type": "a string", "str_type": "a string",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "list_type": "a list", "tuple_type": "a list", "set_type": "a list",
    "dict_type": "an object", "model_type": "an object", "model_attributes_type": "an object",
    "none_required": "null",
}
_BOUNDS = {"greater_than": "greater than {gt}", "greater_than_equal": "at least {ge}",
           "less_than": "less than {lt}", "less_than_equal": "at most {le}"}
_SCALARS = {"str", "int", "float", "bool", "none", "dict", "list", "tuple", "set", "bytes"}


def problems(exc: ValidationError, model: type[BaseModel] | None = None, noun: str = "argument") -> list[str]:
    """One readable line per problem in ``exc``. ``model``: the validated model, whose field
    names (and those of the models nested in it) an unknown name is offered against; ``noun``
    names its top-level fields ("argument" for a tool, "option" for a CLI verb)."""
    names = _model_names(model)
    errors = []
    for e in exc.errors():
        loc = tuple(e["loc"])
        key = loc[-1:] if e.get("type") == "extra_forbidden" else ()  # an unknown name, never a union member
        loc = loc[:len(loc) - len(key)]
        errors.append(([*_clean(loc, names), *key], _tag_at(loc, names), e))
    errors = _pick_branches(errors)
    out: list[str | tuple] = []
    unknown: dict[tuple, list[str]] = {}
    for loc, e in errors:
        if e.get("type") == "extra_forbidden" and loc:
            parent = tuple(loc[:-1])
            if parent not in unknown:
                out.append(parent)  # one line for them all, where the first one was
            unknown.setdefault(parent, []).append(str(loc[-1]))
            continue
        line = f"{_path(loc) or noun + 's'}: {_what(e)}"
        if line not in out:
            out.append(line)
    return [unknown_names(unknown[x], _fields_at(model, x), noun if not x else "field", _path(list(x)))
            if isinstance(x, tuple) else x for x in out]


def unknown_names(names: Sequence[str], accepted: Sequence[str] | None, noun: str = "argument",
                  where: str = "") -> str:
    """``unknown argument 'top_k' (did you mean 'k'?); accepted: query, k, ...``."""
    named = ", ".join(f"{n!r}" + (f" (did you mean {m[0]!r}?)" if (m := _near(n, accepted or ())) else "")
                      for n in names)
    line = f"{where}: " if where else ""
    line += f"unknown {noun}{'s' if len(names) > 1 else ''} {named}"
    if accepted is None:
        return line
    return line + (f"; accepted: {', '.join(accepted)}" if accepted else f"; it takes no {noun}s")


def _near(name: str, accepted: Iterable[str]) -> list[str]:
    accepted = list(accepted)
    lowered = {a.lower(): a for a in accepted}
    if name.lower() in lowered:
        return [lowered[name.lower()]]
    got = difflib.get_close_matches(name, accepted, n=1, cutoff=0.6)
    if not got:  # top_k -> k, chunksize -> chunk_size: the same name once separators and affixes go
        bare = name.lower().replace("-", "_")
        bare = bare.replace("_", "")
        got = [a for a in accepted if a.replace("_", "") == bare
               or (len(a) <= 2 and bare.endswith(a) and len(bare) <= len(a) + 4)][:1]  # topk -> k
    return got


def _what(e: Any) -> str:
    kind, ctx = e.get("type", ""), e.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind in _TYPES:
        msg = f"must be {_TYPES[kind]}"
    elif kind in _BOUNDS:
        msg = "must be " + _BOUNDS[kind].format(**{k: _num(v) for k, v in ctx.items()})
    elif kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", ""))
        head, _, last = expected.rpartition(" or ")
        msg = f"must be one of {head}, {last}" if head else f"must be {expected}"
    elif kind in ("too_long", "too_short"):
        bound = ctx.get("max_length" if kind == "too_long" else "min_length")
        noun = "characters" if isinstance(e.get("input"), str) else "items"
        msg = f"must have at {'most' if kind == 'too_long' else 'least'} {bound} {noun}"
    else:
        msg = str(e.get("msg", "is invalid")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        msg = msg.replace("Input should be", "must be").replace("input should be", "must be")
    return f"{msg} (got {_shown(e.get('input'))})" if "input" in e else msg


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _shown(v: Any) -> str:
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _is_tag(part: Any, models: set[str]) -> bool:
    """A union member's name in a pydantic error location (``str``, ``Passage``, ``list[...]``),
    not a field name, a key or an index. ``models``: the names of the models in the arguments."""
    return isinstance(part, str) and (part in _SCALARS or part in models or "[" in part
                                      or part.startswith(("function-", "lax-", "strict-", "tagged-union")))


def _clean(loc: Sequence[Any], models: set[str]) -> list[Any]:
    return [p for p in loc if not _is_tag(p, models)]


def _tag_at(loc: Sequence[Any], models: set[str]) -> tuple[tuple, str] | None:
    """Where the first union in ``loc`` is (the clean path before it) and which member failed."""
    for i, p in enumerate(loc):
        if _is_tag(p, models):
            return tuple(_clean(loc[:i], models)), str(p)
    return None


def _model_names(model: type[BaseModel] | None) -> set[str]:
    seen: dict[str, type[BaseModel]] = {}
    todo = [model] if model is not None else []
    while todo:
        m = todo.pop()
        if m.__name__ in seen:
            continue
        seen[m.__name__] = m
        for f in m.model_fields.values():
            todo.extend(_models_in(f.annotation))
    return set(seen)


def _pick_branches(errors: list[tuple[list[Any], Any, Any]]) -> list[tuple[list[Any], Any]]:
    """A value matching no member of a union fails every member: keep the member it came closest
    to (whose errors lie deeper than a wrong type of the value itself: the object form of a passage
    written with ``txt``), or say once what it may be (``must be a string or an object``)."""
    sites: dict[tuple, dict[str, list]] = {}
    for loc, tag, e in errors:
        if tag is not None:
            sites.setdefault(tag[0], {}).setdefault(tag[1], []).append((loc, e))
    out: list[tuple[list[Any], Any]] = []
    done: set[tuple] = set()
    for loc, tag, e in errors:
        if tag is None:
            out.append((loc, e))
            continue
        site, _member = tag
        if site in done:
            continue
        done.add(site)
        members = sites[site]
        closer = [errs for errs in members.values()
                  if any(len(l) > len(site) or err.get("type") not in _TYPES for l, err in errs)]
        if closer:
            out.extend(closer[0])
            continue
        kinds = []
        for errs in members.values():
            for _l, err in errs:
                k = _TYPES.get(err.get("type", ""))
                if k and k not in kinds:
                    kinds.append(k)
        first = members[next(iter(members))][0][1]
        out.append((list(site), {"type": "union", "msg": "must be " + " or ".join(kinds), "input": first.get("input")}))
    return out


def _path(loc: Sequence[Any]) -> str:
    return ".".join(map(str, loc))


def _fields_at(model: type[BaseModel] | None, path: Sequence[Any]) -> list[str] | None:
    """The field names of the model found at ``path`` inside ``model`` (through lists, dicts,
    optional values and unions), or None when there is none."""
    current = [model] if model is not None else []
    for part in path:
        if isinstance(part, int):
            continue
        nxt: list[type[BaseModel]] = []
        for m in current:
            f = m.model_fields.get(part)
            if f is not None:
                nxt.extend(_models_in(f.annotation))
        if not nxt:
            return None
        current = nxt
    return list(current[0].model_fields) if current else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, UnionType):
        return []
    out: list[type[BaseModel]] = []
    for a in typing.get_args(annotation):
        out.extend(m for m in _models_in(a) if m not in out)
    return out
