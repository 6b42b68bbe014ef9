"""docs/extending.md's worked examples, run as the document writes them.

The tool example's code is taken from the document, added to the catalog, and must then be
listed with its schemas, callable over a real in-memory MCP session (including its errors), and
a CLI verb. The fusion example is written into the fusion table before the rest of the package
is imported (what editing index/fusion.py does), in a subprocess: it must then be in the search
tool's schema and description, usable by search and evaluate, and a CLI choice.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from rerank_mcp.tools.catalog import CATALOG
from tests.conftest import shared_embedder
from tests.fixtures.env import offline_env

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


def example(section: str) -> str:
    """The first python block of a section of docs/extending.md."""
    text = DOC.read_text(encoding="utf-8")
    part = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```python\n(.*?)```", part, re.S)
    assert m, f"no python example under {section!r}"
    return m.group(1)


@pytest.fixture
def stats_tool(monkeypatch):
    mod = types.ModuleType("extending_tool_example")
    sys.modules[mod.__name__] = mod  # pydantic resolves the models' annotations through it
    try:
        exec(compile(example("A tool"), str(DOC), "exec"), mod.__dict__)
        monkeypatch.setitem(CATALOG, mod.STATS.name, mod.STATS)
        yield mod.STATS
    finally:
        sys.modules.pop(mod.__name__, None)


@pytest.mark.anyio
async def test_the_tool_example_is_listed_callable_and_a_cli_verb(stats_tool, settings, capsys):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        t = tools["collection_stats"]
        assert t.description == "How many documents and chunks one collection holds."
        assert t.input_schema["required"] == ["collection"]
        assert t.input_schema["properties"]["collection"]["description"] == "collection name"
        assert set(t.output_schema["properties"]) == {"collection", "documents", "chunks"}
        assert t.annotations.read_only_hint is True and t.annotations.destructive_hint is False
        r = await c.call_tool("ingest", {"collection": "kb", "documents": [
            {"id": "a", "text": "The quick brown fox."}, {"id": "b", "text": "Vitamin D and bones."}]})
        assert not r.is_error, r.content
        r = await c.call_tool("collection_stats", {"collection": "kb"})
        assert not r.is_error, r.content
        assert r.structured_content == {"collection": "kb", "documents": 2, "chunks": 2}
        r = await c.call_tool("collection_stats", {"collection": "nope"})  # the tool's own error, mapped
        assert r.is_error and "unknown collection 'nope'" in r.content[0].text
        r = await c.call_tool("collection_stats", {"collection": 3})  # strict: no number for a string
        assert r.is_error and "collection" in r.content[0].text and "string" in r.content[0].text
        r = await c.call_tool("collection_stats", {"collection": "kb", "colection": "kb"})  # no argument ignored
        assert r.is_error and "unknown argument 'colection' (did you mean 'collection'?)" in r.content[0].text
        assert t.input_schema["additionalProperties"] is False
    from rerank_mcp.server.cli import run

    capsys.readouterr()
    assert run(["--data-dir", str(settings.data_dir), "--json", "stats", "kb"]) == 0
    assert json.loads(capsys.readouterr().out) == {"collection": "kb", "documents": 2, "chunks": 2}
    assert run(["--data-dir", str(settings.data_dir), "stats", "nope"]) == 1
    assert "unknown collection 'nope'" in capsys.readouterr().err


def examples(section: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    part = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", part, re.S)


@pytest.mark.anyio
async def test_the_reranker_family_example_is_listed_and_ranks(settings, monkeypatch):
    from rerank_mcp.tools.rerank.registry import FAMILIES, Family

    cls_code, entry = examples("A reranker family")
    mod = types.ModuleType("extending_family_example")
    sys.modules[mod.__name__] = mod
    try:
        exec(compile(cls_code, str(DOC), "exec"), mod.__dict__)
        fam = eval(entry.strip().rstrip(","), {"Family": Family})
        monkeypatch.setitem(FAMILIES, fam.name, dataclasses.replace(fam, target=f"{mod.__name__}:OverlapReranker"))
        async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
            infos = {i["name"]: i for i in (await c.call_tool("list_rerankers", {})).structured_content["result"]}
            assert infos["overlap"]["status"] == "ready" and infos["overlap"]["options"] == ["blend", "blend_by_position"]
            r = await c.call_tool("rerank", {"query": "brown fox", "reranker": "overlap",
                                             "passages": ["a lazy dog", "the brown fox", "a brown dog"]})
            assert not r.is_error, r.content
            assert [p["index"] for p in r.structured_content["passages"]] == [1, 2, 0]
            assert [p["score"] for p in r.structured_content["passages"]] == [1.0, 0.5, 0.0]
            r = await c.call_tool("rerank", {"query": "fox", "reranker": "overlap", "passages": ["fox"],
                                             "options": {"k1": 1}})
            assert r.is_error and "k1" in r.content[0].text  # options are checked against the family's model
    finally:
        sys.modules.pop(mod.__name__, None)


FUSION_CHECK = """
import json, sys
from rerank_mcp.index import fusion
ns = {}
exec(sys.stdin.read(), ns)
fusion.METHODS[ns["BEST_RANK"].name] = ns["BEST_RANK"]  # as written into the table

import anyio
from mcp import Client

from rerank_mcp.server import state as state_mod
from rerank_mcp.server.app import build_server
from rerank_mcp.server.cli import build_parser
from rerank_mcp.server.settings import Settings
from tests.fixtures.fakes import HashEmbedder

config = state_mod.index_config
state_mod.index_config = lambda s, **extra: config(s, **{"embedder_factory": HashEmbedder, **extra})


async def main():
    settings = Settings(data_dir=sys.argv[1], log_level="WARNING")
    out = {}
    async with Client(build_server(settings)) as c:
        search = next(t for t in (await c.list_tools()).tools if t.name == "search")
        out["enum"] = search.input_schema["properties"]["fusion"]["enum"]
        out["described"] = "'best-rank' (each chunk's best weighted reciprocal rank)" in search.description
        docs = [{"id": "fox", "text": "the quick brown fox jumps"}, {"id": "dog", "text": "a lazy dog sleeps"},
                {"id": "cat", "text": "the cat watches the fox"}]
        await c.call_tool("ingest", {"collection": "kb", "documents": docs})
        r = await c.call_tool("search", {"query": "fox", "collection": "kb", "fusion": "best-rank"})
        out["search"] = r.structured_content if not r.is_error else r.content[0].text
        r = await c.call_tool("evaluate", {"collection": "kb", "pipelines": ["hybrid-best-rank"],
                                           "judgments": [{"query": "fox", "relevant": ["fox"]}]})
        out["evaluate"] = [p["pipeline"] for p in r.structured_content["pipelines"]] if not r.is_error else r.content[0].text
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    out["cli"] = next(a for a in sub.choices["search"]._actions if a.dest == "fusion").choices
    print(json.dumps(out))

anyio.run(main)
"""


@pytest.mark.slow
def test_the_fusion_example_is_one_entry_in_the_table(tmp_path):
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(FUSION_CHECK), str(tmp_path / "data")],
                          input=example("A fusion method"), capture_output=True, text=True, timeout=120,
                          cwd=root, env=offline_env(PYTHONPATH=str(root)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "best-rank" in out["enum"] and out["described"]
    assert isinstance(out["search"], dict), out["search"]
    assert out["search"]["fusion"] == "best-rank" and out["search"]["hits"][0]["doc_id"] in ("fox", "cat")
    assert "hybrid-best-rank" in out["evaluate"], out["evaluate"]
    assert "best-rank" in out["cli"]
