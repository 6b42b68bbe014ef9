"""Chinese (and mixed-script) documents through a real MCP client session, on both engines:
BM25 search with Simplified, Traditional and mixed queries, the bm25 reranker, the analyzer a
collection records, and the way out for collections analyzed otherwise."""

from __future__ import annotations

import json

import pytest
from mcp import Client

from rerank_mcp.server.app import build_server
from tests.conftest import ENGINES, shared_embedder

pytestmark = pytest.mark.anyio

DOCS = [
    {"id": "panda", "text": "大熊猫是中国特有的动物。大熊猫每天要花十几个小时吃竹子，一只成年大熊猫每天吃十二到三十八公斤竹子。"},
    {"id": "index", "text": "倒排索引把每个词映射到包含它的文档列表，是全文检索引擎的核心数据结构。"},
    {"id": "bm25", "text": "BM25是一种基于词频和逆文档频率的排序函数，常用于搜索引擎。"},
    {"id": "both", "text": "搜索引擎先用倒排索引找出候选文档，再用BM25给它们打分排序。"},
    {"id": "rag", "text": "在RAG系统中，Reranker对检索到的段落重新排序，把最相关的段落交给大模型。"},
    {"id": "taiwan", "text": "台湾的高速铁路连接台北和高雄，全长约三百五十公里。"},
    {"id": "fox", "text": "The quick brown fox jumps over the lazy dog."},
]


@pytest.fixture(params=ENGINES)
def settings(request, settings):
    if request.param == "qdrant":
        return settings.model_copy(update={"backend": "qdrant", "qdrant_path": str(settings.data_dir / "qdrant")})
    return settings


async def _ids(c, query, **kw):
    r = await c.call_tool("search", {"query": query, "collection": "zh", "mode": "bm25", "k": 5, **kw})
    assert not r.is_error, r.content
    return [h["doc_id"] for h in r.structured_content["hits"]]


async def test_chinese_queries_find_the_matching_document_first(settings):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "zh", "documents": DOCS})
        assert not r.is_error, r.content
        assert r.structured_content["analyzer"] == "english"  # chosen from the text: CJK bigrams, English words
        assert (await _ids(c, "大熊猫每天吃什么"))[0] == "panda"
        # a Chinese query with an English term: both the CJK bigrams and the Latin word match
        got = await _ids(c, "倒排索引和BM25")
        assert got[0] == "both" and {"index", "bm25"} <= set(got)
        assert (await _ids(c, "RAG中的Reranker"))[0] == "rag"
        # Traditional script and full-width forms find the Simplified text
        assert (await _ids(c, "臺灣的高速鐵路有多長"))[0] == "taiwan"
        assert (await _ids(c, "ＢＭ２５排序函數"))[0] == "bm25"
        assert (await _ids(c, "lazy dogs"))[0] == "fox"  # English words are still stemmed
        r = await c.call_tool("list_collections", {})
        assert {x["name"]: x["analyzer"] for x in r.structured_content["collections"]} == {"zh": "english"}


async def test_the_bm25_reranker_puts_the_matching_chinese_passage_first(settings):
    passages = [d["text"] for d in DOCS]
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("rerank", {"query": "大熊猫吃竹子", "passages": passages, "reranker": "bm25"})
        assert not r.is_error, r.content
        ranked = r.structured_content["passages"]
        assert ranked[0]["index"] == 0
        assert ranked[0]["score"] > 0 and ranked[-1]["score"] == 0.0
        r = await c.call_tool("rerank", {"query": "臺灣高鐵", "passages": passages, "reranker": "bm25"})
        assert r.structured_content["passages"][0]["index"] == 5


async def test_an_explicit_analyzer_is_recorded_and_a_different_one_later_names_reindex(settings):
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "de", "analyzer": "german",
                                         "documents": [{"id": "a", "text": "Die Häuser der Stadt sind alt."}]})
        assert not r.is_error, r.content
        assert r.structured_content["analyzer"] == "german"
        r = await c.call_tool("search", {"query": "Haus", "collection": "de", "mode": "bm25"})
        assert [h["doc_id"] for h in r.structured_content["hits"]] == ["a"]  # Häuser -> haus
        r = await c.call_tool("ingest", {"collection": "de", "analyzer": "french",
                                         "documents": [{"id": "b", "text": "Les maisons"}]})
        assert r.is_error
        msg = r.content[0].text
        assert "analyzed with 'german', not 'french'" in msg and "rerank-mcp reindex de --analyzer french" in msg
        r = await c.call_tool("ingest", {"collection": "de", "analyzer": "klingon",
                                         "documents": [{"id": "b", "text": "x"}]})
        assert r.is_error and "unknown analyzer 'klingon'" in r.content[0].text
        r = await c.call_tool("search", {"query": "maisons", "collection": "de", "mode": "bm25"})
        assert r.structured_content["hits"] == []  # nothing stored by the refused calls


async def test_hybrid_never_falls_below_bm25_when_the_model_does_not_cover_the_query(settings):
    """The default embedding model is English-only: for a Chinese query hybrid weights its dense
    arm 0 (the figures in docs/eval/languages) and says so; an English query keeps both arms."""
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "zh", "documents": DOCS})
        assert not r.is_error, r.content
        r = await c.call_tool("search", {"query": "大熊猫每天吃什么", "collection": "zh", "k": 5})
        assert not r.is_error, r.content
        hybrid = r.structured_content
        assert any("was not trained on this query's language" in n for n in hybrid["notes"]), hybrid["notes"]
        assert hybrid["hits"][0]["doc_id"] == "panda"
        bm25 = [h["doc_id"] for h in (await c.call_tool("search", {"query": "大熊猫每天吃什么", "collection": "zh",
                                                                  "k": 5, "mode": "bm25"})).structured_content["hits"]]
        assert [h["doc_id"] for h in hybrid["hits"]] == bm25
        # weights the caller gives are kept
        r = await c.call_tool("search", {"query": "大熊猫每天吃什么", "collection": "zh", "k": 5,
                                         "weights": {"dense": 1, "bm25": 1}})
        assert not any("not trained" in n for n in r.structured_content.get("notes", []))
        r = await c.call_tool("search", {"query": "lazy dog", "collection": "zh", "k": 3})
        assert not any("not trained" in n for n in r.structured_content.get("notes", []))
        assert r.structured_content["hits"][0]["doc_id"] == "fox"


async def test_dense_and_the_embedding_reranker_say_when_the_model_does_not_cover_the_query(settings):
    """A Chinese query searched densely, or reranked by the embedding reranker, with the English-only
    default model carries a note saying so (as hybrid's does); an English query carries none."""
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "zh", "documents": DOCS})
        assert not r.is_error, r.content
        r = await c.call_tool("search", {"query": "倒排索引", "collection": "zh", "k": 3, "mode": "dense"})
        assert not r.is_error, r.content
        notes = r.structured_content.get("notes", [])
        assert any("was not trained on this query's language" in n and "dense results may be poor" in n
                   for n in notes), notes
        r = await c.call_tool("search", {"query": "lazy dog", "collection": "zh", "k": 3, "mode": "dense"})
        assert not any("not trained" in n for n in r.structured_content.get("notes", []))
        for mode in ("bm25", "hybrid"):
            r = await c.call_tool("search", {"query": "倒排索引", "collection": "zh", "k": 3, "mode": mode,
                                             "rerank": {"reranker": "embedding"}})
            assert not r.is_error, r.content
            notes = r.structured_content.get("notes", [])
            assert sum("the embedding reranker's model" in n and "was not trained on this query's language" in n
                       for n in notes) == 1, (mode, notes)
        r = await c.call_tool("rerank", {"query": "倒排索引", "passages": [d["text"] for d in DOCS],
                                         "reranker": "embedding"})
        assert any("the embedding reranker's model" in n for n in r.structured_content["notes"])
        r = await c.call_tool("rerank", {"query": "lazy dog", "passages": [d["text"] for d in DOCS],
                                         "reranker": "embedding"})
        assert not any("not trained" in n for n in r.structured_content["notes"])


async def test_auto_ranks_chinese_passages_with_bm25_when_the_embedding_model_is_english_only(settings):
    """Offline, auto's fallback for unordered passages is the embedding reranker; its default model
    covers English only, so for Chinese text auto takes bm25 (the CJK-aware analyzer) and says so."""
    passages = [d["text"] for d in DOCS]
    order = [6, 2, 4, 5, 0, 1, 3]  # the panda passage neither first nor last
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("rerank", {"query": "大熊猫每天吃多少竹子", "passages": [passages[i] for i in order]})
        assert not r.is_error, r.content
        out = r.structured_content
        assert out["used"] == "bm25", out
        assert any("auto picked bm25" in n and "English only" in n for n in out["notes"]), out["notes"]
        assert order[out["passages"][0]["index"]] == 0
        r = await c.call_tool("rerank", {"query": "lazy dog", "passages": [
            "The quick brown fox jumps over the lazy dog.", "Pandas eat bamboo.", "Trains connect cities."]})
        assert r.structured_content["used"] == "embedding"  # English text: the embedding reranker


def _zh_file(folder):
    """A Chinese notes file: one topic per line, sentences with no spaces, a long paragraph at the end."""
    topics = ["大熊猫是中国特有的动物，以竹子为主食。", "长城是古代中国修建的军事防御工程。", "黄河是中国第二长的河流。",
              "茶叶起源于中国，乌龙茶产自福建和台湾。", "倒排索引把每个词映射到包含它的文档列表。", "高速铁路连接北京和上海。"]
    lines = [f"第{i + 1}条：{topics[i % len(topics)]}" for i in range(30)]
    lines[16] = "第17条：量子计算机利用量子叠加进行并行计算。"  # the one line about quantum computers
    long_para = "".join(f"这是长段落的第{i}句，讨论搜索引擎如何给文档打分。" for i in range(60))  # ~1,400 characters
    text = "\n".join(lines) + "\n\n" + long_para + "\n"
    path = folder / "笔记.txt"
    path.write_text(text, encoding="utf-8")
    return path, text


async def test_chinese_chunks_budgets_and_line_citations(settings):
    from tests.e2e.test_search_shaping import count

    path, text = _zh_file(settings.allowed_roots[0])
    async with Client(build_server(settings, embedder_factory=shared_embedder(settings))) as c:
        r = await c.call_tool("ingest", {"collection": "zh", "paths": [str(path)]})
        assert not r.is_error, r.content
        doc = json.loads((await c.read_resource(f"documents://zh/{path}")).contents[0].text)
        chunks = doc["chunks"]
        assert len(chunks) > 2
        for ch in chunks:  # chunk sizes in the embedding model's tokens; the long paragraph cut at sentence ends
            assert count([ch["text"]])[0] <= settings.chunk_size
            if "长段落" in ch["text"] and not ch["text"].endswith("\n"):
                assert ch["text"].rstrip().endswith("。"), ch["text"][-20:]
        res = (await c.call_tool("search", {"query": "量子计算机", "collection": "zh", "mode": "bm25",
                                            "k": 3})).structured_content
        h = res["hits"][0]
        assert h["start_line"] <= 17 <= h["end_line"], (h["start_line"], h["end_line"])
        lines = text.split("\n")
        uri = f"documents://zh/{path}?lines={h['start_line']}-{h['end_line']}"
        got = json.loads((await c.read_resource(uri)).contents[0].text)
        assert got["text"].split("\n") == lines[h["start_line"] - 1 : h["end_line"]]
        assert "量子计算机" in got["text"]
        too_small = await c.call_tool("search", {"query": "搜索引擎打分", "collection": "zh", "mode": "bm25",
                                                  "max_tokens": 30})
        assert too_small.is_error and "give at least" in too_small.content[0].text
        least = int(too_small.content[0].text.rsplit("give at least ", 1)[1])
        for budget in (least, 400, 800):  # a budget bounds the whole result, Chinese text included, in word pieces
            r = (await c.call_tool("search", {"query": "搜索引擎打分", "collection": "zh", "mode": "bm25",
                                              "max_tokens": budget})).structured_content
            assert r["tokens"] <= budget and sum(count([x["text"] for x in r["hits"]])) <= budget
            assert r["hits"]
