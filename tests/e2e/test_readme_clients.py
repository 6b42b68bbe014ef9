"""The README's client configurations, launched as the clients launch them: the command, args and
env of the Claude Desktop and VS Code / Cursor JSON blocks and of the `claude mcp add` line, parsed
out of README.md. Only the README's placeholder for the checkout (`/path/to/rerank-mcp`) and VS
Code's `${workspaceFolder}` are filled in, as a reader and VS Code do. The Inspector examples run
as written, on a fresh install (an empty data directory)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.fixtures.env import model_caches

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # slow: server subprocesses launched as the README's clients would

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PLACEHOLDER = "/path/to/rerank-mcp"
EXE = str(Path(sys.executable).with_name("rerank-mcp"))



def _block_after(heading: str, lang: str) -> str:
    at = README.index(heading)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(README, at)
    assert m, f"no {lang} block after {heading!r}"
    return m.group(1)


def _checkout(cmd: str) -> str:
    """The README's placeholder for the checkout, filled in with this checkout (or, where its
    .venv lies elsewhere, the rerank-mcp of the running environment)."""
    assert cmd.startswith(PLACEHOLDER), cmd
    local = cmd.replace(PLACEHOLDER, str(ROOT), 1)
    return local if Path(local).exists() else EXE


def configs(workspace: Path) -> dict[str, tuple[str, list[str], dict[str, str]]]:
    desktop = json.loads(_block_after("**Claude Desktop**", "json"))["mcpServers"]["rerank"]
    vscode_text = _block_after("**VS Code / Cursor", "json").replace("${workspaceFolder}", str(workspace))
    vscode = json.loads(vscode_text)["servers"]["rerank"]
    assert vscode["type"] == "stdio"
    line = next(ln for ln in _block_after("**Claude Code**", "bash").splitlines() if ln.startswith("claude mcp add"))
    words = shlex.split(line)
    cut = words.index("--")
    env = {}
    i = 3
    while i < cut:
        if words[i] in ("-e", "--env"):
            k, _, v = words[i + 1].partition("=")
            env[k] = v
            i += 2
        else:
            i += 1
    code_cmd, *code_args = words[cut + 1:]
    return {
        "claude-desktop": (desktop["command"], desktop["args"], desktop.get("env", {})),
        "claude-code": (code_cmd, code_args, env),
        "vscode": (vscode["command"], vscode["args"], vscode.get("env", {})),
    }


def _base_env(tmp_path: Path) -> dict[str, str]:
    # what a client passes besides the configuration's env; the data directory of this test (the
    # configurations name none: platformdirs puts it under XDG_DATA_HOME)
    return {**model_caches(), "HOME": os.environ.get("HOME", "/tmp"), "PATH": os.environ.get("PATH", ""),
            "XDG_DATA_HOME": str(tmp_path / "xdg-data"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.mark.parametrize("client", ["claude-desktop", "claude-code", "vscode"])
async def test_readme_client_configuration_launches(client, tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    cmd, args, env = configs(workspace)[client]
    assert args == ["serve"] and "RERANK_MCP_ALLOWED_ROOTS" in env
    params = StdioServerParameters(command=_checkout(cmd), args=args, env={**_base_env(tmp_path), **env}, cwd="/")
    async with Client(params) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert {"ingest", "search", "rerank", "list_collections"} <= names
        r = await c.call_tool("list_collections", {})
        assert not r.is_error and r.structured_content["collections"] == []
        # the configured roots are what file ingest may read, whatever form they take
        r = await c.call_tool("ingest", {"paths": ["/etc/hostname"], "collection": "x"})
        assert r.is_error and "allowed roots" in r.content[0].text
    assert (tmp_path / "xdg-data" / "rerank-mcp").is_dir()  # the data went where platformdirs says


def test_readme_configurations_are_the_parsed_ones():
    """The test above launches what the README shows (a parse that found nothing would pass vacuously)."""
    cfg = configs(Path("/ws"))
    assert all(cmd.startswith(PLACEHOLDER) for cmd, _, _ in cfg.values())
    assert json.loads(cfg["claude-desktop"][2]["RERANK_MCP_ALLOWED_ROOTS"])
    assert cfg["vscode"][2]["RERANK_MCP_ALLOWED_ROOTS"] == '["/ws"]'


def _inspector_commands() -> list[list[str]]:
    block = _block_after("## Inspect it with the MCP Inspector", "bash").replace("\\\n", " ")
    return [shlex.split(ln) for ln in block.splitlines() if ln.strip().startswith("npx")]


@pytest.mark.skipif(shutil.which("npx") is None, reason="needs Node.js (npx) for the MCP Inspector CLI")
def test_readme_inspector_examples_on_a_fresh_install(tmp_path):
    cmds = _inspector_commands()
    assert len(cmds) == 2 and any("tools/list" in c for c in cmds) and any("search" in c for c in cmds)
    home = tmp_path / "home"  # a fresh install: the server's data and caches under an empty HOME
    home.mkdir()
    npm_cache = os.environ.get("npm_config_cache") or str(Path(os.environ.get("HOME", "/tmp")) / ".npm")
    env = {**os.environ, "HOME": str(home), "npm_config_cache": npm_cache, "npm_config_update_notifier": "false"}
    try:
        outs = []
        for cmd in cmds:
            try:
                out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired:
                pytest.skip("the npm registry did not answer in time")
            if out.returncode != 0 and ("ENOTFOUND" in out.stderr or "EAI_AGAIN" in out.stderr):
                pytest.skip("npm registry unreachable")
            assert out.returncode == 0, (cmd, out.stderr[-2000:])
            outs.append(json.loads(out.stdout))
        assert {"ingest", "search", "rerank"} <= {t["name"] for t in outs[0]["tools"]}
        res = outs[1]
        assert res.get("isError") in (None, False), res
        assert res["structuredContent"]["hits"] == []
        assert "ingest" in res["structuredContent"]["notes"][0]
    finally:  # the export the servers started in the background, into this HOME's cache
        for lock in home.glob(".cache/rerank-mcp/onnx/.*.lock"):
            text = lock.read_text().strip()
            if text.isdigit() and int(text) > 1:
                try:
                    os.kill(int(text), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
