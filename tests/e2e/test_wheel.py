"""The wheel as a user installs it: one top-level package, and a server that starts anywhere.

The wheel is built from the checkout, installed (``--no-deps``, no editable link) into a fresh
virtual environment, and ``rerank-mcp serve`` is started from an unrelated directory and driven
through MCP initialize and tools/list over stdio. The dependencies (torch and friends, several
hundred MB) are not downloaded again: the fresh environment sees the test environment's
site-packages as a plain path entry, so its ``.pth`` files (among them the editable install's
import hook) are not processed and only the wheel's copy of ``rerank_mcp`` can be imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.fixtures.env import model_caches

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # slow: builds and installs a wheel
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"),
         str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (wheel,) = (work / "dist").glob("rerank_mcp-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    before = set(os.listdir(purelib))
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    gained = set(os.listdir(purelib)) - before
    deps = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "_test_dependencies.pth").write_text(deps + "\n")  # a path line: its .pth files stay unread
    return {"wheel": wheel, "venv": venv, "purelib": Path(purelib), "gained": gained, "work": work}


def test_wheel_holds_one_top_level_package(installed):
    with zipfile.ZipFile(installed["wheel"]) as z:
        tops = {n.split("/")[0] for n in z.namelist()}
        names = z.namelist()
    assert {t for t in tops if not t.endswith(".dist-info")} == {"rerank_mcp"}
    for sub in ("server", "tools", "index", "bench"):
        assert f"rerank_mcp/{sub}/__init__.py" in names
    assert "rerank_mcp/errors.py" in names and "rerank_mcp/main.py" in names
    assert "rerank_mcp/bench/beir.py" in names and "rerank_mcp/bench/shapes.py" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(installed["wheel"]) as z:
        assert "rerank-mcp = rerank_mcp.main:main" in z.read(entry_points).decode()
    assert "rerank_mcp/tools/rerank/base.py" in names
    # every module of the checkout's packages (a package missing from pyproject's list is left out)
    modules = {f"rerank_mcp/{p.relative_to(ROOT).as_posix()}" for layer in ("server", "tools", "index", "bench")
               for p in (ROOT / layer).rglob("*.py")}
    assert not modules - set(names), f"left out of the wheel: {sorted(modules - set(names))}"
    assert "rerank_mcp/index/qdrant/engine.py" in names
    assert not any(n.startswith("rerank_mcp/tests/") for n in names)
    # no module the checkout no longer has (setuptools copies into build/lib and never empties it)
    stale = [n for n in names if n.startswith("rerank_mcp/") and not (ROOT / n.removeprefix("rerank_mcp/")).exists()]
    assert not stale, f"the wheel holds modules the checkout does not (delete {ROOT / 'build'}): {stale}"
    # site-packages gained the package and its metadata, nothing named server, tools or index
    gained = {g for g in installed["gained"] if not g.endswith(".dist-info") and g != "__pycache__"}
    assert gained == {"rerank_mcp"}, gained
    assert not {"server", "tools", "index"} & set(os.listdir(installed["purelib"]))


async def test_installed_server_starts_from_an_unrelated_directory(installed, tmp_path):
    exe = installed["venv"] / "bin" / "rerank-mcp"
    assert exe.exists()
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    env = {
        **model_caches(),
        "RERANK_MCP_DATA_DIR": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1",
        "HOME": os.environ.get("HOME", "/tmp"), "PATH": os.environ.get("PATH", ""),
    }
    # the installed copy is the one that runs, not the checkout
    where = subprocess.run([str(installed["venv"] / "bin" / "python"), "-c",
                            "import rerank_mcp.server.main as m; print(m.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(installed["purelib"])), where
    params = StdioServerParameters(command=str(exe), args=["serve"], env=env, cwd=str(elsewhere))
    async with Client(params) as c:
        names = {t.name for t in (await c.list_tools()).tools}
    assert {"ingest", "search", "rerank", "list_collections", "list_rerankers", "delete"} <= names
