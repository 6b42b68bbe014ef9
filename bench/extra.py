"""The ``eval`` extra: packages only ``rerank-mcp eval`` needs (ranx for the paired tests,
matplotlib for the chart), installed with ``pip install 'rerank-mcp[eval]'``. The server and the
other verbs never import them."""

from __future__ import annotations

import importlib

from rerank_mcp.errors import DependencyMissing

EXTRA = "eval"
PACKAGES = ("ranx", "matplotlib")  # as listed in pyproject.toml's [project.optional-dependencies]


def require(*modules: str, verb: str = "rerank-mcp eval") -> None:
    """Import ``modules``; raise :class:`DependencyMissing` naming the extra for those missing."""
    missing = []
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError:
            missing.append(m)
    if missing:
        from rerank_mcp.index.install import install_command

        raise DependencyMissing(f"{verb} needs the '{EXTRA}' extra: {install_command(extra=EXTRA)} "
                                f"(missing: {', '.join(missing)})")
