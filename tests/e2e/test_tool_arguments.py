"""Invalid tool arguments, through real MCP client sessions (in-memory, and one stdio server).

- An unknown top-level argument is an error naming it, with the accepted arguments and a "did you
  mean" for a near miss (``top_k`` -> ``k``), on every catalog tool; nothing is stored; the
  published input schemas say ``additionalProperties: false``.
- Every invalid argument is one readable line with its dotted path (``k: must be an integer (got
  3.5)``, ``passages.0.text: required``): no pydantic text, URL or internal model name.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from rerank_mcp.server.app import build_server
from rerank_mcp.tools.catalog import CATALOG
from tests.conftest import shared_embedder
from tests.fixtures.env import model_caches

pytestmark = pytest.mark.anyio

DOCS = [{"id": f"d{i}", "text": t} for i, t in enumerate([
    "Pasta carbonara is made with eggs, pecorino and guanciale.",
    "Fresh pasta needs flour and eggs, rested before rolling.",
    "Sourdough bread rises with a starter of wild yeast.",
    "Risotto is rice cooked slowly in stock.",
])]
SEARCH_ARGS = "query, collection, k, mode, fusion, weights, filter, feedback, rerank, max_tokens, group_by, expand, " \
              "dedupe, detail"


def text(r) -> str:
    return " ".join(getattr(c, "text", "") for c in r.content)


def clean(message: str) -> None:
    """No pydantic dump in an argument error."""
    for bad in ("validation error", "pydantic", "https://", "Arguments", "Input should", "[type=", "input_value"):
        assert bad not in message, (bad, message)


@pytest.fixture
async def client(settings):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "kb", "documents": DOCS})
        assert not r.is_error, text(r)
        yield c


async def test_unknown_arguments_are_errors_naming_them_with_a_near_miss(client):
    r = await client.call_tool("search", {"query": "pasta", "collection": "kb", "top_k": 1})
    assert r.is_error, r.structured_content  # was: 4 hits, top_k ignored
    assert text(r) == ("Error executing tool search: invalid arguments: unknown argument 'top_k' (did you mean "
                       f"'k'?); accepted: {SEARCH_ARGS}")
    r = await client.call_tool("search", {"query": "pasta", "collection": "kb", "reranker": "bm25", "k": 2})
    assert r.is_error  # was: unreranked hits
    assert "unknown argument 'reranker' (did you mean 'rerank'?)" in text(r)
    r = await client.call_tool("search", {"query": "pasta", "collection": "kb", "Query": "x", "topk": 2})
    assert r.is_error
    assert "unknown arguments 'Query' (did you mean 'query'?), 'topk' (did you mean 'k'?)" in text(r)
    # nested objects: the field's path and the nested model's fields
    r = await client.call_tool("search", {"query": "pasta", "collection": "kb", "rerank": {"top_n": 5}})
    assert text(r) == ("Error executing tool search: invalid arguments: rerank: unknown field 'top_n'; accepted: "
                       "reranker, options, candidates, min_score")
    # the same call without the unknown argument works
    r = await client.call_tool("search", {"query": "pasta", "collection": "kb", "k": 1})
    assert not r.is_error and len(r.structured_content["hits"]) == 1


async def test_an_unknown_argument_stores_nothing(client):
    r = await client.call_tool("ingest", {"collection": "new", "documents": DOCS, "chunksize": 50})
    assert r.is_error
    assert "unknown argument 'chunksize' (did you mean 'chunk_size'?)" in text(r)
    r = await client.call_tool("delete", {"collection": "kb", "id": ["d0"]})
    assert r.is_error and "unknown argument 'id' (did you mean 'ids'?)" in text(r)
    r = await client.call_tool("list_collections", {})
    assert {c["name"]: c["documents"] for c in r.structured_content["collections"]} == {"kb": 4}


async def test_every_catalog_tool_refuses_unknown_arguments_and_says_so_in_its_schema(client):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == set(CATALOG)
    for name, spec in CATALOG.items():
        assert tools[name].input_schema.get("additionalProperties") is False, name
        r = await client.call_tool(name, {"no_such_argument": 1})
        assert r.is_error, name
        accepted = ", ".join(spec.request.model_fields)
        tail = f"; accepted: {accepted}" if accepted else "; it takes no arguments"
        assert f"unknown argument 'no_such_argument'{tail}" in text(r), text(r)
        clean(text(r))


@pytest.mark.parametrize(("tool", "args", "line"), [
    ("search", {"query": "x", "k": 3.5}, "k: must be an integer (got 3.5)"),
    ("search", {"query": "x", "k": True}, "k: must be an integer (got true)"),
    ("search", {"query": "x", "mode": "semantic"}, "mode: must be one of 'dense', 'bm25', 'hybrid' (got 'semantic')"),
    ("search", {"query": "x", "group_by": "chunk"}, "group_by: must be 'document' (got 'chunk')"),
    ("search", {"query": "x", "filter": "lang=en"}, "filter: must be an object (got 'lang=en')"),
    ("search", {"query": 123}, "query: must be a string (got 123)"),
    ("search", {}, "query: required"),
    ("search", {"query": "x", "rerank": {"candidates": 100000}},
     "rerank.candidates: must be at most 1000 (got 100000)"),
    ("search", {"query": "x", "weights": {"dense": "a"}}, "weights.dense: must be a number (got 'a')"),
    ("rerank", {"query": "x", "passages": [5]}, "passages.0: must be a string or an object (got 5)"),
    ("compare_rerankers", {"query": "x", "passages": ["a"], "rerankers": [{"reranker": "bm25", "opts": {}}]},
     "rerankers.0: unknown field 'opts' (did you mean 'options'?); accepted: reranker, options, label"),
    ("evaluate", {"collection": "kb", "judgments": "q1"}, "judgments: must be a list (got 'q1')"),
])
async def test_each_problem_is_one_readable_line(client, tool, args, line):
    r = await client.call_tool(tool, args)
    assert r.is_error
    assert text(r) == f"Error executing tool {tool}: invalid arguments: {line}"
    clean(text(r))


async def test_several_problems_are_one_line_each(client):
    r = await client.call_tool("rerank", {"query": 1, "passages": ["ok", {"txt": "a passage"}], "top_n": "two"})
    assert r.is_error
    assert text(r).split("\n") == [
        "Error executing tool rerank: invalid arguments:",
        "query: must be a string (got 1)",
        "passages.1.text: required",
        "passages.1: unknown field 'txt' (did you mean 'text'?); accepted: text, id, metadata",
        "top_n: must be an integer (got 'two')",
    ]
    clean(text(r))
    r = await client.call_tool("ingest", {"collection": "kb2", "documents": [{"id": "x"}], "sync": "yes"})
    assert text(r).split("\n")[1:] == ["documents.0.text: required", "sync: must be true or false (got 'yes')"]
    r = await client.call_tool("list_collections", {})
    assert [c["name"] for c in r.structured_content["collections"]] == ["kb"]


@pytest.mark.slow  # a stdio server subprocess
async def test_over_stdio(tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    env = {**model_caches(), "RERANK_MCP_DATA_DIR": str(tmp_path / "data"),
           "RERANK_MCP_ALLOWED_ROOTS": json.dumps([str(root)]), "HF_HUB_OFFLINE": "1",
           "HOME": os.environ.get("HOME", "/tmp"), "PATH": os.environ.get("PATH", "")}
    exe = str(Path(sys.executable).with_name("rerank-mcp"))
    async with Client(StdioServerParameters(command=exe, args=["serve"], env=env)) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert all(t.input_schema.get("additionalProperties") is False for t in tools.values())
        r = await c.call_tool("search", {"query": "pasta", "top_k": 1, "mode": "bm25"})
        assert r.is_error and "unknown argument 'top_k' (did you mean 'k'?)" in text(r)
        r = await c.call_tool("search", {"query": "pasta", "k": 3.5, "mode": "bm25"})
        assert text(r) == "Error executing tool search: invalid arguments: k: must be an integer (got 3.5)"


async def test_a_catalog_cli_verb_says_the_same(settings):
    """A verb derived from a catalog declaration (``cli``) validates what it builds with the same
    formatter: its JSON options' problems are lines with their paths, nothing is opened."""
    import argparse

    from rerank_mcp.errors import InvalidInput
    from rerank_mcp.server.commands import tool_verb
    from rerank_mcp.tools.catalog import Request, ToolSpec
    from rerank_mcp.tools.models import RerankStep

    class Probe(Request):
        collection: str
        rerank: RerankStep | None = None

    spec = ToolSpec(name="probe", description="", request=Probe, result=dict, cli="probe", run=lambda _s, _r: {})
    args = argparse.Namespace(collection="kb", rerank='{"candidates": 5000, "top_n": 3}', json_fields=["rerank"])
    with pytest.raises(InvalidInput) as info:
        tool_verb(spec)(args, settings, None)
    assert str(info.value) == ("probe: rerank.candidates: must be at most 1000 (got 5000); rerank: unknown field "
                               "'top_n'; accepted: reranker, options, candidates, min_score")
    assert not settings.data_dir.exists()  # nothing opened, nothing created
