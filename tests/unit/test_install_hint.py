"""Messages naming a missing package or extra give the command for the route rerank-mcp was
installed by: pip, uv pip, pipx (inject) or uv tool (--with)."""

from __future__ import annotations

import sys

import pytest

from rerank_mcp.index.install import extra_packages, install_command, installer


@pytest.mark.parametrize("prefix, recorded, route", [
    ("/home/me/.local/share/pipx/venvs/rerank-mcp", "pip", "pipx"),
    ("/home/me/.local/pipx/venvs/rerank-mcp", "uv", "pipx"),  # pipx using uv records uv
    ("/home/me/.local/share/uv/tools/rerank-mcp", "uv", "uv-tool"),
    ("/home/me/.cache/uv/archive-v0/AbC123", "uv", "uvx"),
    ("/home/me/project/.venv", "uv", "uv"),
    ("/home/me/project/.venv", "pip", "pip"),
    ("/usr", "", "pip"),
])
def test_route_detection(prefix, recorded, route):
    assert installer(prefix, recorded) == route


def test_commands_per_route():
    assert install_command(["flashrank"], route="pip") == "pip install flashrank"
    assert install_command(["flashrank"], route="uv") == "uv pip install flashrank"
    assert install_command(["flashrank"], route="pipx") == "pipx inject rerank-mcp flashrank"
    assert install_command(["flashrank"], route="uv-tool") == "uv tool install --with flashrank rerank-mcp"
    assert install_command(["flashrank"], route="uvx") == "uvx --with flashrank rerank-mcp"
    assert install_command(extra="eval", route="pip") == "pip install 'rerank-mcp[eval]'"


def test_extra_expands_to_its_packages_where_injected():
    pkgs = extra_packages("eval")
    assert any(p.startswith("ranx") for p in pkgs) and any(p.startswith("matplotlib") for p in pkgs)
    cmd = install_command(extra="eval", route="pipx")
    assert cmd.startswith("pipx inject rerank-mcp ") and "ranx" in cmd and "matplotlib" in cmd
    cmd = install_command(extra="qdrant", route="uv-tool")
    assert cmd.startswith("uv tool install --with ") and "qdrant-client" in cmd and cmd.endswith(" rerank-mcp")


def test_missing_extra_message_follows_the_route(monkeypatch):
    from rerank_mcp.bench import extra
    from rerank_mcp.errors import DependencyMissing

    monkeypatch.setattr(sys, "prefix", "/home/me/.local/share/pipx/venvs/rerank-mcp")
    with pytest.raises(DependencyMissing) as info:
        extra.require("a_module_that_is_not_installed")
    assert "pipx inject rerank-mcp" in str(info.value) and "pip install" not in str(info.value)
    monkeypatch.setattr(sys, "prefix", "/home/me/.local/share/uv/tools/rerank-mcp")
    with pytest.raises(DependencyMissing) as info:
        extra.require("a_module_that_is_not_installed")
    assert "uv tool install --with" in str(info.value)
