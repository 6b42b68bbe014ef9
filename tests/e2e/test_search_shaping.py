"""Results shaped for agents, through a real MCP client on each engine: token budgets, whole
documents, expanded passages, folded duplicates, cited file lines, line-range resources,
folder sync with progress, and resource-list notifications."""

from __future__ import annotations

import io
import json
from pathlib import Path

import anyio
import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from tests.conftest import ENGINES, shared_embedder

pytestmark = pytest.mark.anyio

SEPARATOR = "\n\n[…]\n\n"


@pytest.fixture(params=ENGINES)
def settings(request, settings):
    if request.param == "qdrant":
        return settings.model_copy(update={"backend": "qdrant", "qdrant_path": str(settings.data_dir / "qdrant")})
    return settings


def paragraph(i: int) -> str:
    topics = ["vitamin D and bone fractures", "BM25 term weighting", "dense vector search with FAISS",
              "foxes and dogs by the river", "sourdough bread fermentation"]
    return (f"Section {i} is about {topics[i % 5]}. It goes on about {topics[i % 5]} with detail number {i}, "
            f"and then adds a second sentence on {topics[(i + 1) % 5]}.")


@pytest.fixture
def files(settings):
    root = Path(settings.allowed_roots[0])
    (root / "notes").mkdir()
    lf = "\n\n".join(paragraph(i) for i in range(14)) + "\n"
    (root / "notes" / "long.md").write_text(lf, encoding="utf-8")
    (root / "notes" / "long-crlf.txt").write_bytes(lf.replace("\n", "\r\n").encode())  # same words, CRLF
    (root / "notes" / "other.md").write_text("A short note on sourdough bread and its starter.\n", encoding="utf-8")
    return root / "notes"


def text_of(path: str) -> str:
    return Path(path).read_bytes().decode("utf-8")


def editor_lines(text: str) -> list[str]:
    return io.StringIO(text, newline=None).read().split("\n")


async def call(c, name, args, **kw):
    r = await c.call_tool(name, args, **kw)
    return r


async def ingest_folder(c, folder, **extra):
    r = await c.call_tool("ingest", {"collection": "kb", "paths": [str(folder)], "chunk_size": 48,
                                     "chunk_overlap": 12, **extra})
    assert not r.is_error, r.content
    return r.structured_content


def count(texts):
    from rerank_mcp.index.embedding import Embedder

    global _EMB
    try:
        emb = _EMB
    except NameError:
        emb = _EMB = Embedder("all-MiniLM-L6-v2")
    return emb.count_tokens(texts)


async def test_max_tokens_is_never_exceeded_and_keeps_rank_order(settings, files):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        await ingest_folder(c, files)
        plain = (await c.call_tool("search", {"query": "vitamin D bone fractures", "collection": "kb", "k": 50}))
        plain = plain.structured_content
        for budget in (400, 800, 1500):  # the whole result's budget (its fields, paths and texts)
            r = await c.call_tool("search", {"query": "vitamin D bone fractures", "collection": "kb",
                                             "max_tokens": budget})
            assert not r.is_error, r.content
            res = r.structured_content
            assert res["max_tokens"] == budget and res["tokens"] <= budget
            assert sum(count([h["text"] for h in res["hits"]])) <= budget  # recounted independently
            assert [h["tokens"] for h in res["hits"]] == count([h["text"] for h in res["hits"]])
            assert res["hits"], "a budget always gets at least part of the best hit"
            order = [h["chunk_id"] for h in plain["hits"]]
            got = [h["chunk_id"] for h in res["hits"]]
            assert got == sorted(got, key=order.index)  # rank order kept
            assert [h["rank"] for h in res["hits"]] == list(range(1, len(got) + 1))
        r = await c.call_tool("search", {"query": "vitamin D bone fractures", "collection": "kb", "max_tokens": 60})
        assert r.is_error and "max_tokens=60" in r.content[0].text, r.content  # too small: says what works
        least = int(r.content[0].text.rsplit("give at least ", 1)[1])
        small = (await c.call_tool("search", {"query": "vitamin D bone fractures", "collection": "kb",
                                              "max_tokens": least})).structured_content
        h = small["hits"][0]
        assert h["truncated"] is True and small["tokens"] <= least and len(small["hits"]) == 1
        assert h["text"] and h["text"] in text_of(h["doc_id"])


async def test_group_by_document_gives_one_entry_per_document_with_exact_passages(settings, files):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        await ingest_folder(c, files)
        r = await c.call_tool("search", {"detail": "full", "query": "sourdough bread fermentation", "collection": "kb",
                                         "group_by": "document", "k": 5, "dedupe": False})
        assert not r.is_error, r.content
        res = r.structured_content
        docs = [h["doc_id"] for h in res["hits"]]
        assert len(docs) == len(set(docs)) and res["group_by"] == "document"
        for h in res["hits"]:
            text = text_of(h["doc_id"])
            assert h["passages"]
            for p in h["passages"]:
                assert text[p["start"]:p["end"]] == p["text"]
                lines = editor_lines(text)
                assert p["text"].replace("\r\n", "\n").split("\n")[0] in lines[p["start_line"] - 1]
                assert p["text"].replace("\r\n", "\n").split("\n")[-1] in lines[p["end_line"] - 1]
            assert h["text"] == SEPARATOR.join(p["text"] for p in h["passages"])
            assert h["start"] == h["passages"][0]["start"] and h["end"] == h["passages"][-1]["end"]
            # merged chunks never repeat text: passages are disjoint and ordered
            spans = [(p["start"], p["end"]) for p in h["passages"]]
            assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))


async def test_expand_merges_neighbours_into_contiguous_passages(settings, files):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        await ingest_folder(c, files)
        base = (await c.call_tool("search", {"detail": "full", "query": "foxes and dogs by the river", "collection": "kb", "k": 3,
                                             "dedupe": False})).structured_content
        r = await c.call_tool("search", {"detail": "full", "query": "foxes and dogs by the river", "collection": "kb", "k": 3,
                                         "expand": 1, "dedupe": False})
        assert not r.is_error, r.content
        res = r.structured_content
        assert res["expand"] == 1
        for h in res["hits"]:
            text = text_of(h["doc_id"])
            assert text[h["start"]:h["end"]] == h["text"]  # one contiguous passage, exact
            assert len(h["chunk_ids"]) >= 2
            assert editor_lines(text)[h["start_line"] - 1].startswith(h["text"].split("\n")[0].rstrip("\r"))
        # each expanded entry holds its hit, and more text around it
        first = base["hits"][0]
        assert first["chunk_id"] in res["hits"][0]["chunk_ids"]
        assert res["hits"][0]["start"] <= first["start"] and res["hits"][0]["end"] >= first["end"]
        assert res["hits"][0]["end"] - res["hits"][0]["start"] > first["end"] - first["start"]


async def test_near_duplicates_in_other_documents_are_folded_and_listed(settings, files):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        await ingest_folder(c, files)
        plain = (await c.call_tool("search", {"detail": "full", "query": "BM25 term weighting", "collection": "kb", "k": 10,
                                              "mode": "bm25"})).structured_content
        twins = {h["doc_id"] for h in plain["hits"]}
        assert any(d.endswith("long.md") for d in twins) and any(d.endswith("long-crlf.txt") for d in twins)
        res = (await c.call_tool("search", {"detail": "full", "query": "BM25 term weighting", "collection": "kb", "k": 10,
                                            "mode": "bm25", "dedupe": True})).structured_content
        assert res["collapsed"] >= 1
        seen = [h for h in res["hits"] if h.get("duplicates")]
        assert seen
        for h in seen:
            for d in h["duplicates"]:
                assert d["doc_id"] != h["doc_id"]
                dup_text = text_of(d["doc_id"])[d["start"]:d["end"]]
                assert " ".join(dup_text.split()) == " ".join(h["text"].split())
        # the CRLF twin's cited lines are its own lines
        for h in seen:
            for d in h["duplicates"]:
                lines = editor_lines(text_of(d["doc_id"]))
                assert h["text"].split("\n")[0].rstrip("\r") in lines[d["start_line"] - 1]


async def test_hits_from_files_cite_exact_lines_and_the_resource_returns_them(settings, files):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        await ingest_folder(c, files)
        res = (await c.call_tool("search", {"detail": "full", "query": "dense vector search with FAISS", "collection": "kb",
                                            "k": 10, "mode": "bm25"})).structured_content
        crlf = [h for h in res["hits"] if h["doc_id"].endswith("long-crlf.txt")]
        assert crlf
        for h in res["hits"]:
            assert h["source"] == h["doc_id"]
            text = text_of(h["source"])
            want = editor_lines(text)[h["start_line"] - 1 : h["end_line"]]
            uri = f"documents://kb/{h['doc_id']}?lines={h['start_line']}-{h['end_line']}"
            got = json.loads((await c.read_resource(uri)).contents[0].text)
            assert got["text"].replace("\r\n", "\n").split("\n") == want
            assert got["start_line"] == h["start_line"] and got["end_line"] == h["end_line"]
            assert h["text"].replace("\r\n", "\n") in "\n".join(want)
            assert text[got["start"]:got["end"]] == got["text"]
        # a single line, an open range, and the whole document without ?lines
        h = crlf[0]
        one = json.loads((await c.read_resource(f"documents://kb/{h['doc_id']}?lines=3")).contents[0].text)
        assert one["text"] == editor_lines(text_of(h["doc_id"]))[2]
        tail = json.loads((await c.read_resource(f"documents://kb/{h['doc_id']}?lines=25-")).contents[0].text)
        assert tail["end_line"] == tail["total_lines"] == 27
        whole = json.loads((await c.read_resource(f"documents://kb/{h['doc_id']}")).contents[0].text)
        assert whole["id"] == h["doc_id"] and whole["chunks"] and whole["chunks"][0]["line"] == 1
        with pytest.raises(Exception, match="lines"):
            await c.read_resource(f"documents://kb/{h['doc_id']}?lines=9-2")


async def test_bad_shaping_values_are_clear_errors(settings, files):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        await ingest_folder(c, files)
        for args, words in (({"max_tokens": -5}, "max_tokens"), ({"max_tokens": 0}, "max_tokens"),
                            ({"group_by": "folder"}, "group_by"), ({"expand": -1}, "expand"),
                            ({"expand": 99}, "expand"), ({"k": 0, "max_tokens": 100}, "k")):
            r = await c.call_tool("search", {"detail": "full", "query": "bread", "collection": "kb", **args})
            assert r.is_error, args
            msg = r.content[0].text
            assert words in msg, msg
            assert "Traceback" not in msg


async def test_ingest_sync_mirrors_a_folder_with_progress(settings, files):
    progress = []

    async def on_progress(p, total, message):
        progress.append(message)

    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        first = await ingest_folder(c, files, sync=True)
        assert first["added"] == 3 and first["deleted"] == 0 and first["synced"]
        (files / "other.md").unlink()
        (files / "long.md").rename(files / "renamed.md")
        (files / "new.py").write_text("def bake(loaf):\n    return loaf\n", encoding="utf-8")
        r = await c.call_tool("ingest", {"collection": "kb", "paths": [str(files)], "sync": True, "chunk_size": 48,
                                         "chunk_overlap": 12}, progress_callback=on_progress)
        assert not r.is_error, r.content
        res = r.structured_content
        assert (res["added"], res["unchanged"], res["deleted"]) == (2, 1, 2)
        assert {Path(d["id"]).name for d in res["documents"] if d["status"] == "deleted"} == {"other.md", "long.md"}
        assert progress and any("deleted" in m for m in progress)
        r = await c.call_tool("ingest", {"collection": "kb", "documents": [{"text": "x"}], "paths": [str(files)],
                                         "sync": True})
        assert r.is_error and "sync" in r.content[0].text
        r = await c.call_tool("ingest", {"collection": "kb", "documents": [{"text": "x"}], "sync": True})
        assert r.is_error and "sync" in r.content[0].text


async def test_resource_list_changes_are_notified_when_collections_come_and_go(settings):
    got = []

    async def handler(message):
        got.append(getattr(message, "method", None) or type(message).__name__)

    docs = [{"id": "a", "text": "Some text to store."}]
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings)), mode="legacy", message_handler=handler) as c:
        init = c.session.initialize_result
        assert init is not None and init.capabilities.resources.list_changed is True  # declared, then sent
        assert not (await c.call_tool("ingest", {"collection": "fresh", "documents": docs})).is_error
        await anyio.sleep(0.1)
        assert got.count("notifications/resources/list_changed") == 1
        assert not (await c.call_tool("ingest", {"collection": "fresh", "documents": docs})).is_error
        await anyio.sleep(0.1)
        assert got.count("notifications/resources/list_changed") == 1  # existing collection: no change
        r = await c.call_tool("delete", {"collection": "fresh", "drop_collection": True})
        assert not r.is_error
        await anyio.sleep(0.1)
        assert got.count("notifications/resources/list_changed") == 2

    # the 2026-07-28 protocol delivers the same change through subscriptions/listen
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        async with c.listen(resources_list_changed=True) as sub:
            assert not (await c.call_tool("ingest", {"collection": "fresh2", "documents": docs})).is_error
            with anyio.fail_after(10):
                async for event in sub:
                    assert type(event).__name__ == "ResourcesListChanged"
                    break
