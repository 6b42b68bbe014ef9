"""``rerank-mcp models pull | list | remove``: the rerankers' and the embedding setting's models.

``pull NAME...`` downloads cross-encoders and embedding models by Hugging Face name
(``owner/name``, through huggingface_hub: HF_ENDPOINT, HF_HOME, HF_TOKEN and proxies apply) and
FlashRank models by name (from the flashrank_base_url setting into the FlashRank cache dir),
with a progress bar on stderr. ``list`` shows every model the configuration uses and every one
found in those two places: the languages it covers (``en``, ``zh,en``, ``multilingual``; ``?``
unknown), present or missing, size, location, and what uses it. ``remove``
deletes a model. The logic is in :mod:`rerank_mcp.tools.models_store`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rerank_mcp.server.output import Output
from rerank_mcp.server.settings import Settings

ORDINALS = ("first", "second", "third", "fourth", "fifth")


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("models", help="download, list and remove the models rerankers and search use")
    verbs = s.add_subparsers(dest="models_command", required=True)
    p = verbs.add_parser("pull", help="download models (Hugging Face names, or FlashRank model names); without a "
                         "name, make the configured embedding model ready (its one-time ONNX export)")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="e.g. cross-encoder/ms-marco-MiniLM-L-6-v2, ms-marco-TinyBERT-L-2-v2, BAAI/bge-small-en-v1.5")
    p.add_argument("--kind", choices=["hf", "flashrank"], help="what NAME is (default: told from the name)")
    p.set_defaults(handler=pull)
    p = verbs.add_parser("list", help="models in use and on this machine: present or missing, size, location")
    p.set_defaults(handler=list_models)
    p = verbs.add_parser("remove", help="delete downloaded models")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--kind", choices=["hf", "flashrank"], help="what NAME is (default: told from the name)")
    p.set_defaults(handler=remove)


def _store(settings: Settings):
    from rerank_mcp.server.state import model_store

    return model_store(settings)


def _size(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def pull(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.errors import RerankMCPError
    from rerank_mcp.tools.models_store import model_ref

    if not args.names:
        return _prepare_embedding(settings, out)
    store = _store(settings)
    refs = [model_ref(n, args.kind) for n in args.names]  # every name checked before any download
    results, failed = [], 0
    for ref in refs:
        try:
            with out.progress(ref.name) as progress:
                store.pull(ref, progress)
            info = store.info(ref)
            results.append(info)
            if not out.as_json:
                out.line(f"{ref.name}: ready, {_size(info.size_bytes)} in {info.location}")
        except RerankMCPError as exc:
            failed += 1
            sys.stderr.write(f"error: {ref.name}: {exc}\n")
            results.append(store.info(ref).model_copy(update={"state": "failed", "error": str(exc)}))
    if out.as_json:
        out.json(results)
    return 1 if failed else 0


def _download_embedding(settings: Settings, out: Output) -> None:
    """The embedding model's files, downloaded when it is a Hugging Face model not yet here (the
    default too, where the package that carries it is not installed)."""
    from rerank_mcp.tools.models_store import embedding_hub_ref

    ref = embedding_hub_ref(settings.embedding_model)
    if ref is None:
        return
    store = _store(settings)
    if store.path(ref) is not None:
        return
    sys.stderr.write(f"{ref.name}: downloading the embedding model (once)...\n")
    with out.progress(ref.name) as progress:
        store.pull(ref, lambda done, total, n=ref.name: progress(done, total or 0, n))


def _prepare_embedding(settings: Settings, out: Output) -> int:
    """The configured embedding model, ready to load: its ONNX export made (or waited for, when a
    server is making it), the same file a server makes on its first start."""
    import time

    from rerank_mcp.errors import RerankMCPError
    from rerank_mcp.index.model_names import onnx_cache_dir
    from rerank_mcp.index.prepare import needs_export, prepare

    model, backend = settings.embedding_model, settings.embedding_backend
    cache = onnx_cache_dir(settings.onnx_cache_dir)
    t = time.perf_counter()
    try:
        _download_embedding(settings, out)
        if needs_export(model, backend, cache):
            sys.stderr.write(f"{model}: exporting to ONNX for the {backend} backend (once per model, about half a "
                             "minute)...\n")
        path = prepare(model, backend, cache)
    except RerankMCPError as exc:
        sys.stderr.write(f"error: {model}: {exc}\n")
        return 1
    info = {"name": model, "backend": backend, "state": "ready", "location": str(path) if path else None,
            "size_bytes": path.stat().st_size if path else None, "seconds": round(time.perf_counter() - t, 1)}
    if out.as_json:
        out.json(info)
    elif path is None:
        out.line(f"{model} ({backend}): nothing to prepare")
    else:
        out.line(f"{model} ({backend}): ready, {_size(info['size_bytes'])} in {path}")
    return 0


def model_uses(settings: Settings) -> dict:
    """``{ModelRef: [what uses it]}`` for the configuration: each family's default model, auto's
    choices, the default cascade's stages, per-family option defaults, and the embedding setting."""
    from rerank_mcp.server.state import flashrank_dir
    from rerank_mcp.tools.models_store import model_ref
    from rerank_mcp.tools.rerank.cascade import DEFAULT_STAGES
    from rerank_mcp.tools.rerank.registry import FAMILIES, RerankContext, RerankerRegistry

    reg = RerankerRegistry(RerankContext(settings=settings, configs={"flashrank": {"cache_dir": flashrank_dir(settings)}}))
    uses: dict = {}

    def add(ref, what: str) -> None:
        if ref is not None:
            uses.setdefault(ref, []).append(what)

    for name in FAMILIES:
        add(reg.model_ref(name), f"{name} reranker")
    for i, (name, _) in enumerate(reg.auto_order()):
        add(reg.model_ref(name), f"auto ({ORDINALS[i] if i < len(ORDINALS) else i + 1} choice)")
    for i, st in enumerate(DEFAULT_STAGES, start=1):
        add(reg.model_ref(st["reranker"]), f"cascade stage {i}")
    for family, options in settings.reranker_options.items():
        model = options.get("model") if isinstance(options, dict) else None
        if isinstance(model, str) and not Path(model).expanduser().is_dir():
            kind = "flashrank" if family == "flashrank" else "hf"
            try:
                add(model_ref(model, kind), f"{family} reranker (RERANK_MCP_RERANKER_OPTIONS)")
            except Exception:
                pass
    emb = settings.embedding_model
    from rerank_mcp.index.model_names import CANONICAL_DEFAULT, canonical_name, packaged_default

    default = canonical_name(emb) == CANONICAL_DEFAULT
    if default and packaged_default() is None:
        emb = CANONICAL_DEFAULT  # not packaged here: the hub's copy
    if not Path(emb).expanduser().is_dir() and "/" in emb and not (default and packaged_default() is not None):
        try:
            add(model_ref(emb, "hf"), "embedding model (RERANK_MCP_EMBEDDING_MODEL): dense search, embedding reranker")
        except Exception:
            pass
    return uses


def _embedding_info(settings: Settings):
    """The embedding setting's model when it is not a Hugging Face download: the packaged
    default, or a local folder."""
    from rerank_mcp.index.model_names import CANONICAL_DEFAULT, canonical_name, packaged_default
    from rerank_mcp.tools.models_store import ModelInfo, _folder_size

    emb = settings.embedding_model
    what = ["embedding model (RERANK_MCP_EMBEDDING_MODEL): dense search, embedding reranker"]
    if canonical_name(emb) == CANONICAL_DEFAULT:
        path = packaged_default()
        if path is not None:
            return ModelInfo(name=CANONICAL_DEFAULT, kind="package", state="present",
                             size_bytes=_folder_size(path), location=str(path), used_by=what)
        return None  # a Hugging Face download, listed with the others (model_uses)
    p = Path(emb).expanduser()
    if p.is_dir():
        return ModelInfo(name=emb, kind="folder", state="present", size_bytes=_folder_size(p), location=str(p.resolve()),
                         used_by=what)
    return None


def list_models(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    store = _store(settings)
    infos = store.list(model_uses(settings))
    extra = _embedding_info(settings)
    if extra is not None:
        infos.insert(0, extra)
    if out.as_json:
        out.json(infos)
        return 0
    out.table("models", ["model", "kind", "languages", "state", "size", "location", "used by"],
              [[i.name, i.kind, i.languages or "?", i.state, _size(i.size_bytes),
                i.location if i.state == "present" else (i.command or ""), "; ".join(i.used_by)] for i in infos])
    return 0


def remove(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.tools.models_store import model_ref

    store = _store(settings)
    refs = [model_ref(n, args.kind) for n in args.names]  # argparse: at least one name
    done = {r.name: store.remove(r) for r in refs}
    if out.as_json:
        out.json({"removed": [n for n, ok in done.items() if ok], "not_present": [n for n, ok in done.items() if not ok]})
    else:
        for n, ok in done.items():
            out.line(f"{n}: {'removed' if ok else 'was not here'}")
    return 0
