"""What the CLI's tables leave out must still reach the reader: a search's notes and its reranker's
fallback, compare's per-reranker notes, and the rerankers table's text. In-process CLI runs on a real
data folder (real embedder, SQLite, FAISS, tantivy)."""

from __future__ import annotations

import pytest

from rerank_mcp.main import main

DOCS = ["倒排索引把每个词映射到包含它的文档列表，是全文检索引擎的核心数据结构。", "大熊猫是中国特有的动物。",
        "The quick brown fox jumps over the lazy dog."]


def cli(capsys, *argv: str) -> str:
    rc = main(list(argv))
    out = capsys.readouterr()
    assert rc == 0, out.err[-2000:]
    return " ".join(out.out.split())  # one line: the console wraps long lines at its width


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "1000")  # tables one row a line: their cells' text not wrapped
    return str(tmp_path / "data")


@pytest.mark.slow  # the embedding model loads once per CLI run
def test_cli_search_prints_the_notes_and_the_fallback(data, capsys):
    args = ["--data-dir", data, "ingest", "-c", "zh"]
    for t in DOCS:
        args += ["--text", t]
    cli(capsys, *args)
    out = cli(capsys, "--data-dir", data, "search", "倒排索引", "-c", "zh")
    assert "note: the embedding model" in out and "was not trained on this query's language" in out, out
    out = cli(capsys, "--data-dir", data, "search", "倒排索引", "-c", "zh", "--rerank", "embedding")
    assert "note: the embedding reranker's model" in out, out
    assert "note: the embedding reranker with the collection's own model" in out, out  # below its first stage
    # a reranker standing in for one whose model is not here (downloads are off): the fallback is printed
    out = cli(capsys, "--data-dir", data, "search", "lazy fox", "-c", "zh", "--rerank", "cross-encoder")
    assert "fallback: cross-encoder model" in out and "ranked by" in out, out
    out = cli(capsys, "--data-dir", data, "search", "lazy fox", "-c", "zh")
    assert "note:" not in out and "fallback:" not in out


def test_cli_compare_prints_each_rerankers_notes(data, capsys):
    out = cli(capsys, "--data-dir", data, "compare", "fox", "the fox", "a dog", "-r", 'bm25={"blend": 0.5}',
              "-r", "bm25")
    assert "bm25(blend=0.5): blend 0.5 not applied: the passages' order is not a ranking" in out, out


def test_cli_rerankers_table_joins_its_parts_cleanly(data, capsys):
    out = cli(capsys, "--data-dir", data, "rerankers")
    assert "the result names what ran (used)" in out, out
    assert ".;" not in out
