"""Configuration that forgives and explains: the accepted forms of RERANK_MCP_ALLOWED_ROOTS, a
stdio server with an invalid setting that starts and explains it in every tool answer and in its
instructions, the CLI's global options before or after the verb, and ``--version``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from rerank_mcp.server.settings import Settings
from tests.fixtures.env import model_caches

pytestmark = pytest.mark.anyio

EXE = str(Path(sys.executable).with_name("rerank-mcp"))



def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **model_caches(),
        "RERANK_MCP_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "ORT_DISABLE_TELEMETRY": "1", "HOME": os.environ.get("HOME", "/tmp"), "PATH": os.environ.get("PATH", ""),
        **extra,
    }


@pytest.mark.parametrize("form", ["json", "single", "pathsep", "tilde", "json-tilde", "blank-parts"])
def test_allowed_roots_forms(form, tmp_path, monkeypatch):
    a, b = tmp_path / "notes", tmp_path / "papers"
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    value, want = {
        "json": (json.dumps([str(a), str(b)]), [a, b]),
        "single": (str(a), [a]),
        "pathsep": (f"{a}{os.pathsep}{b}", [a, b]),
        "tilde": (f"~/notes{os.pathsep}~/papers", [home / "notes", home / "papers"]),
        "json-tilde": ('["~/notes"]', [home / "notes"]),
        "blank-parts": (f" {a}{os.pathsep}{os.pathsep} ", [a]),
    }[form]
    monkeypatch.setenv("RERANK_MCP_ALLOWED_ROOTS", value)
    assert Settings().allowed_roots == [p.resolve() for p in want]


@pytest.mark.parametrize("value", ['["/a", ', "[1, 2]", '[""]'])
def test_allowed_roots_invalid_is_explained(value, tmp_path, monkeypatch):
    from pydantic import ValidationError

    from rerank_mcp.server.config_help import explain

    monkeypatch.setenv("RERANK_MCP_ALLOWED_ROOTS", value)
    with pytest.raises(ValidationError) as info:
        Settings()
    msg = explain(info.value)
    assert "RERANK_MCP_ALLOWED_ROOTS" in msg and "JSON list" in msg and os.pathsep in msg and "e.g." in msg


@pytest.mark.slow  # server or CLI subprocesses
async def test_invalid_setting_stdio_server_starts_and_explains(tmp_path):
    env = _env(tmp_path / "data", RERANK_MCP_ALLOWED_ROOTS='["unterminated', RERANK_MCP_MAX_K="0")
    params = StdioServerParameters(command=EXE, args=["serve"], env=env)
    async with Client(params) as c:
        assert "RERANK_MCP_ALLOWED_ROOTS" in c.instructions and "RERANK_MCP_MAX_K" in c.instructions
        tools = (await c.list_tools()).tools
        assert {"ingest", "search", "rerank", "list_collections", "list_rerankers", "delete"} <= {t.name for t in tools}
        args = {"search": {"query": "q"}, "rerank": {"query": "q", "passages": ["a"]},
                "ingest": {"documents": [{"text": "x"}]}, "delete": {"collection": "c"},
                "compare_rerankers": {"query": "q", "passages": ["a"], "rerankers": ["bm25"]},
                "evaluate": {"collection": "c", "judgments": []}}
        for t in tools:
            r = await c.call_tool(t.name, args.get(t.name, {}))
            assert r.is_error, t.name
            text = r.content[0].text
            assert "RERANK_MCP_ALLOWED_ROOTS" in text and "JSON list" in text and "e.g." in text, (t.name, text)
            assert "RERANK_MCP_MAX_K" in text
    assert not (tmp_path / "data").exists()  # nothing was opened or created


@pytest.mark.slow  # server or CLI subprocesses
def test_invalid_setting_one_shot_cli_exits_2(tmp_path):
    env = _env(tmp_path / "data", RERANK_MCP_ALLOWED_ROOTS="[oops")
    p = subprocess.run([EXE, "collections"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert "RERANK_MCP_ALLOWED_ROOTS" in p.stderr and "JSON list" in p.stderr


@pytest.mark.slow  # server or CLI subprocesses
def test_plain_folder_setting_serves(tmp_path):
    """A plain folder (the setting of the report that killed the server) works for file ingest."""
    files = tmp_path / "notes"
    files.mkdir()
    (files / "a.txt").write_text("Reciprocal rank fusion sums 1/(k+rank).")
    env = _env(tmp_path / "data", RERANK_MCP_ALLOWED_ROOTS=str(files), RERANK_MCP_ANALYZER="english")
    p = subprocess.run([EXE, "ingest", str(files / "a.txt"), "-c", "n", "--json"], env=env, capture_output=True,
                       text=True, timeout=300, cwd="/")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["added"] == 1


def test_global_options_before_or_after_verb(tmp_path):
    from rerank_mcp.bench.cli import VERBS
    from rerank_mcp.server.cli import build_parser

    p = build_parser(VERBS)
    for argv in (["--json", "--data-dir", "/d", "collections"], ["collections", "--json", "--data-dir", "/d"],
                 ["--json", "collections", "--data-dir", "/d"]):
        a = p.parse_args(argv)
        assert a.json is True and a.data_dir == "/d", argv
    a = p.parse_args(["--allowed-root", "/a", "ingest", "x", "--allowed-root", "/b"])
    assert a.allowed_roots == ["/a"] and a.roots_after_verb == ["/b"]
    a = p.parse_args(["models", "pull", "--json", "--data-dir", "/d"])
    assert a.json is True and a.data_dir == "/d"
    a = p.parse_args(["search", "q"])
    assert a.json is False and a.data_dir is None


def test_json_after_verb_runs(tmp_path):
    env = _env(tmp_path / "data")
    p = subprocess.run([EXE, "collections", "--json", "--data-dir", str(tmp_path / "d2")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"collections": []}
    assert (tmp_path / "d2").exists() and not (tmp_path / "data").exists()


@pytest.mark.slow  # server or CLI subprocesses
def test_version():
    p = subprocess.run([EXE, "--version"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("rerank-mcp ") and p.stdout.split()[1][0].isdigit()


@pytest.mark.slow  # server or CLI subprocesses
def test_one_shot_cli_starts_no_background_download(tmp_path):
    """`rerank-mcp rerank -r flashrank` with the model missing and downloads allowed: the answer
    comes from a stand-in with the `models pull` command, and no download request is ever made
    (a local HTTP server stands for the model hosts and records every request)."""
    import http.server
    import threading

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            self.send_response(404)
            self.end_headers()

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        env = _env(tmp_path / "data", RERANK_MCP_FLASHRANK_BASE_URL=base, HF_ENDPOINT=base,
                   RERANK_MCP_FLASHRANK_CACHE_DIR=str(tmp_path / "fr"))
        env.pop("HF_HUB_OFFLINE")
        env.pop("TRANSFORMERS_OFFLINE")
        p = subprocess.run([EXE, "rerank", "war", "peace treaty", "the war ended", "-r", "flashrank", "--json"],
                           env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        res = json.loads(p.stdout)
        assert res["used"] != "flashrank"
        assert "rerank-mcp models pull" in p.stdout and "downloading in the background" not in p.stdout
        assert seen == []
    finally:
        srv.shutdown()


@pytest.mark.slow  # server or CLI subprocesses
def test_qdrant_without_url_or_path_says_where_its_data_is(tmp_path):
    pytest.importorskip("qdrant_client")
    env = _env(tmp_path / "data", RERANK_MCP_BACKEND="qdrant")
    p = subprocess.run([EXE, "collections", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "RERANK_MCP_QDRANT_URL" in p.stderr and str(tmp_path / "data" / "qdrant") in p.stderr


@pytest.mark.slow  # server or CLI subprocesses
def test_qdrant_server_state_connects_in_the_background(tmp_path):
    """The server's state returns without importing qdrant-client (what made the qdrant engine's
    initialize slow); the first use of the engine waits for the connection and the repair."""
    pytest.importorskip("qdrant_client")
    code = f"""
import sys
from pathlib import Path
from rerank_mcp.server.settings import Settings
from rerank_mcp.server.state import build_state
s = Settings(data_dir=Path({str(tmp_path / "data")!r}), backend="qdrant")
st = build_state(s, warm=True, embedder_factory=lambda: __import__("tests.fixtures.fakes", fromlist=["x"]).HashEmbedder())
print("imported at return:", "qdrant_client.http" in sys.modules)
print("collections:", st.engine.collections())
print("imported after use:", "qdrant_client.http" in sys.modules)
st.close()
"""
    root = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert p.returncode == 0, p.stderr
    assert "imported at return: False" in p.stdout
    assert "collections: []" in p.stdout and "imported after use: True" in p.stdout
