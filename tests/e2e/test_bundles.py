"""The one-click and registry installs: the Claude Desktop extension (packaging/mcpb/manifest.json,
scripts/build-mcpb) and the MCP Registry's server.json.

The manifest is validated and the bundle packed by the MCPB project's own tool
(`@anthropic-ai/mcpb`, from npm: skipped without Node.js or the npm registry). The bundle's
server is launched with the manifest's arguments after the host's substitutions (``${__dirname}``,
and the allowed folders expanded into arguments, as the tool's ``replaceVariables`` does); the
``uv run --directory DIR`` prefix, which makes the host's environment from pyproject.toml, is
replaced by this environment's ``rerank-mcp`` (no network for the dependencies here).

server.json is checked against the published schema when a copy of it is at hand
(RERANK_MCP_SERVER_JSON_SCHEMA: its URL is not reachable offline and no package ships it), and
always against the schema's rules that matter to it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import shared_embedder
from tests.fixtures.env import model_caches

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = json.loads((ROOT / "packaging" / "mcpb" / "manifest.json").read_text())
SERVER_JSON = json.loads((ROOT / "server.json").read_text())
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
EXE = str(Path(sys.executable).with_name("rerank-mcp"))
MCPB = ["npx", "-y", "@anthropic-ai/mcpb@2.1.2"]



def _npx(args: list[str], **kw) -> subprocess.CompletedProcess:
    if shutil.which("npx") is None:
        pytest.skip("needs Node.js (npx) for @anthropic-ai/mcpb")
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)
    except subprocess.TimeoutExpired:
        pytest.skip("the npm registry did not answer in time")
    if p.returncode != 0 and re.search(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT", p.stderr):
        pytest.skip("npm registry unreachable")
    return p


def _tools() -> set[str]:
    import anyio

    from rerank_mcp.server.app import build_server
    from rerank_mcp.server.settings import Settings

    async def names(d: Path) -> set[str]:
        s = Settings(data_dir=d)
        async with Client(build_server(s, embedder_factory=shared_embedder(s))) as c:
            return {t.name for t in (await c.list_tools()).tools}

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return anyio.run(names, Path(d))


def test_manifest_matches_the_package():
    assert MANIFEST["name"] == "rerank-mcp" and MANIFEST["version"] == VERSION
    folders = MANIFEST["user_config"]["allowed_folders"]
    assert folders["type"] == "directory" and folders["multiple"] is True
    args = MANIFEST["server"]["mcp_config"]["args"]
    assert args[-2:] == ["--allowed-roots", "${user_config.allowed_folders}"]
    assert {t["name"] for t in MANIFEST["tools"]} == _tools()


@pytest.mark.slow  # runs the bundle tool
def test_manifest_validates_with_the_mcpb_tool():
    p = _npx([*MCPB, "validate", str(ROOT / "packaging" / "mcpb" / "manifest.json")])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "passes" in p.stdout
    bad = dict(MANIFEST, server={**MANIFEST["server"], "type": "ruby"})
    tmp = ROOT / ".pytest_cache" / "bad-manifest.json"
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_text(json.dumps(bad))
    p = _npx([*MCPB, "validate", str(tmp)])
    assert p.returncode != 0  # the validator does reject a wrong manifest


def _host_args(args: list[str], dirname: str, folders: list[str]) -> list[str]:
    """The manifest's arguments after the host's substitutions (mcpb's replaceVariables)."""
    out: list[str] = []
    for a in args:
        if a == "${user_config.allowed_folders}":
            out.extend(folders)
        else:
            out.append(a.replace("${__dirname}", dirname))
    return out


@pytest.mark.slow
async def test_bundle_builds_and_its_server_runs_with_the_allowed_folders(tmp_path):
    if shutil.which("npx") is None:
        pytest.skip("needs Node.js (npx) for @anthropic-ai/mcpb")
    out = tmp_path / "rerank-mcp.mcpb"
    p = subprocess.run([str(ROOT / "scripts" / "build-mcpb"), str(out)], capture_output=True, text=True, timeout=600)
    if p.returncode != 0 and re.search(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT", p.stderr):
        pytest.skip("npm registry unreachable")
    assert p.returncode == 0, p.stderr[-3000:]
    unpacked = tmp_path / "ext"
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        z.extractall(unpacked)
    assert {"manifest.json", "pyproject.toml", "main.py", "server/app.py", "index/prepare.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", ".venv/"))]
    assert json.loads((unpacked / "manifest.json").read_text()) == MANIFEST

    notes, papers, other = tmp_path / "notes", tmp_path / "papers", tmp_path / "other"
    for d in (notes, papers, other):
        d.mkdir()
        (d / "a.txt").write_text(f"A note kept in {d.name} about reciprocal rank fusion.")
    cfg = MANIFEST["server"]["mcp_config"]
    args = _host_args(cfg["args"], str(unpacked), [str(notes), str(papers)])
    assert cfg["command"] == "uv" and args[:4] == ["run", "--directory", str(unpacked), "rerank-mcp"]
    env = {**cfg.get("env", {}), **model_caches(), "HOME": os.environ.get("HOME", "/tmp"), "PATH": os.environ.get("PATH", ""),
           "RERANK_MCP_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "RERANK_MCP_ANALYZER": "english"}
    params = StdioServerParameters(command=EXE, args=args[4:], env=env, cwd="/")
    async with Client(params) as c:
        r = await c.call_tool("ingest", {"collection": "kb", "paths": [str(notes / "a.txt"), str(papers / "a.txt")]})
        assert not r.is_error, r.content
        assert r.structured_content["added"] == 2
        r = await c.call_tool("ingest", {"collection": "kb", "paths": [str(other / "a.txt")]})
        assert r.is_error and "allowed roots" in r.content[0].text
    # no folder chosen: the list expands to nothing, and file ingest is off (the host starts in /)
    params = StdioServerParameters(command=EXE, args=_host_args(cfg["args"], str(unpacked), [])[4:], env=env, cwd="/")
    async with Client(params) as c:
        r = await c.call_tool("ingest", {"collection": "kb", "paths": [str(notes / "a.txt")]})
        assert r.is_error and "RERANK_MCP_ALLOWED_ROOTS" in r.content[0].text


def test_server_json_follows_the_registry_rules():
    s = SERVER_JSON
    assert s["$schema"].startswith("https://static.modelcontextprotocol.io/schemas/")
    assert re.fullmatch(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+", s["name"]) and 3 <= len(s["name"]) <= 200
    assert 1 <= len(s["description"]) <= 100
    assert s["version"] == VERSION
    (pkg,) = s["packages"]
    allowed = {"registryType", "registryBaseUrl", "identifier", "version", "fileSha256", "runtimeHint", "transport",
               "runtimeArguments", "packageArguments", "environmentVariables"}
    assert set(pkg) <= allowed  # additionalProperties: false
    assert pkg["registryType"] == "pypi" and pkg["identifier"] == "rerank-mcp" and pkg["version"] == VERSION
    assert pkg["transport"] == {"type": "stdio"}
    assert [a.get("value") for a in pkg["packageArguments"]] == ["serve"]
    assert all(a["type"] == "positional" for a in pkg["packageArguments"])
    assert all(v["name"].startswith("RERANK_MCP_") and v.get("format", "string") in ("string", "number", "boolean",
                                                                                      "filepath")
               for v in pkg["environmentVariables"])
    from rerank_mcp.server.settings import Settings

    for v in pkg["environmentVariables"]:  # every variable is a real setting
        assert v["name"].removeprefix("RERANK_MCP_").lower() in Settings.model_fields


def test_server_json_validates_against_the_published_schema():
    path = os.environ.get("RERANK_MCP_SERVER_JSON_SCHEMA")
    if not path:
        pytest.skip(f"the published schema ({SERVER_JSON['$schema']}) is not reachable offline and no package ships "
                    "it: set RERANK_MCP_SERVER_JSON_SCHEMA to a downloaded copy to run this check")
    import jsonschema

    schema = json.loads(Path(path).read_text())
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(SERVER_JSON)
    bad = dict(SERVER_JSON, description="x" * 101)
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad))
