"""The command that installs a missing package or extra, for the route rerank-mcp was installed by.

pip and ``uv pip`` install into the environment they run in; pipx and ``uv tool`` keep the
command in an environment of its own, where ``pip install`` in the user's shell changes nothing:
there the package is injected (``pipx inject rerank-mcp X``) or the tool reinstalled with it
(``uv tool install --with X rerank-mcp``). The route is read from ``sys.prefix`` (pipx and uv keep
their environments in known folders) and from the ``INSTALLER`` file of rerank-mcp's dist-info.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

DIST = "rerank-mcp"


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DIST)
    except PackageNotFoundError:  # run from a source tree
        return "0.1.0"


def installer(prefix: str | None = None, recorded: str | None = None) -> str:
    """``pipx``, ``uv-tool``, ``uvx``, ``uv`` (``uv pip`` into a virtualenv) or ``pip``."""
    p = Path(prefix or sys.prefix).as_posix().lower()
    if "/pipx/venvs/" in p or "/pipx/.cache/" in p:
        return "pipx"
    if "/uv/tools/" in p:
        return "uv-tool"
    if re.search(r"/uv/(archive|builds)-v\d+/", p):
        return "uvx"
    if recorded is None:
        try:
            from importlib.metadata import distribution

            recorded = (distribution(DIST).read_text("INSTALLER") or "").strip()
        except Exception:
            recorded = ""
    if recorded.lower() == "uv":
        return "uv"
    return "pip"


def extra_packages(extra: str) -> list[str]:
    """The requirements an extra of rerank-mcp adds, from the installed metadata."""
    try:
        from importlib.metadata import requires

        reqs = requires(DIST) or []
    except Exception:
        reqs = []
    out = []
    for r in reqs:
        spec, _, marker = r.partition(";")
        if re.search(rf"""extra\s*==\s*['"]{re.escape(extra)}['"]""", marker):
            out.append(spec.strip().replace(" ", ""))
    return out


def install_command(packages: list[str] | tuple[str, ...] = (), extra: str | None = None,
                    route: str | None = None) -> str:
    """The shell command that adds ``packages`` (or rerank-mcp's ``extra``) where rerank-mcp runs."""
    route = route or installer()
    if extra is not None and route in ("pip", "uv"):
        names = [f"{DIST}[{extra}]"]
    elif extra is not None:
        names = extra_packages(extra) or [f"{DIST}[{extra}]"]
    else:
        names = list(packages)
    args = " ".join(shlex.quote(n) for n in names)
    if route == "pipx":
        return f"pipx inject {DIST} {args}"
    if route in ("uv-tool", "uvx"):
        withs = " ".join(f"--with {shlex.quote(n)}" for n in names)
        return f"uv tool install {withs} {DIST}" if route == "uv-tool" else f"uvx {withs} {DIST}"
    if route == "uv":
        return f"uv pip install {args}"
    return f"pip install {args}"
