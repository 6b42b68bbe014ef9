"""The BEIR loader on well-formed and malformed folders, slicing, and pipeline names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerank_mcp.bench.beir import BeirDocument, load_beir, read_corpus, read_qrels, read_queries, slice_dataset
from rerank_mcp.errors import InvalidInput
from rerank_mcp.tools.evaluate import parse_pipeline, split_pipelines, with_baselines


def make(root: Path, corpus=None, queries=None, qrels=None, split="test") -> Path:
    corpus = corpus if corpus is not None else [
        {"_id": "d1", "title": "Alpha", "text": "alpha body"},
        {"_id": "d2", "title": "", "text": "beta body"},
        {"_id": "d3", "title": "Gamma only", "text": ""},
        {"_id": "d4", "title": "", "text": ""},
    ]
    queries = queries if queries is not None else [
        {"_id": "q1", "text": "alpha?"}, {"_id": "q2", "text": "beta?"}, {"_id": "q3", "text": "unjudged"},
    ]
    qrels = qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t1\n"
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    if corpus is not False:
        (root / "corpus.jsonl").write_text(
            "".join((c if isinstance(c, str) else json.dumps(c)) + "\n" for c in corpus), encoding="utf-8")
    if queries is not False:
        (root / "queries.jsonl").write_text(
            "".join((q if isinstance(q, str) else json.dumps(q)) + "\n" for q in queries), encoding="utf-8")
    if qrels is not False:
        (root / "qrels" / f"{split}.tsv").write_text(qrels, encoding="utf-8")
    return root


def test_loads_judged_queries_and_builds_text(tmp_path):
    ds = load_beir(make(tmp_path / "tiny"))
    assert ds.name == "tiny" and ds.split == "test"
    assert set(ds.queries) == {"q1", "q2"}  # q3 has no judgments
    assert ds.documents["d1"] == "Alpha\n\nalpha body"
    assert ds.documents["d2"] == "beta body"
    assert ds.documents["d3"] == "Gamma only"
    assert "d4" not in ds.documents and ds.skipped_empty == 1
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 1}}
    assert ds.judgments == 3


def test_record_readers_stream_the_raw_fields(tmp_path):
    root = make(tmp_path / "tiny")
    docs = list(read_corpus(root))  # the folder or the file
    assert docs[0] == BeirDocument("d1", "Alpha", "alpha body") and docs[0].body == "Alpha\n\nalpha body"
    assert [d.id for d in docs] == ["d1", "d2", "d3", "d4"]  # empty documents included
    assert list(read_queries(root / "queries.jsonl")) == [("q1", "alpha?"), ("q2", "beta?"), ("q3", "unjudged")]
    assert read_qrels(root / "qrels" / "test.tsv") == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 1}}
    trec = tmp_path / "trec.tsv"
    trec.write_text("q1\t0\td1\t2\nq1\t0\td2\t0\n")  # TREC layout: no header, an iteration column
    assert read_qrels(trec) == {"q1": {"d1": 2, "d2": 0}}
    with pytest.raises(InvalidInput, match=r"trec\.tsv line 1: query 'q1' is not in queries\.jsonl"):
        read_qrels(trec, queries={"q2"})


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_missing_file_is_named(tmp_path, missing):
    root = make(tmp_path / "ds")
    (root / missing).unlink()
    with pytest.raises(InvalidInput, match=missing.replace("/", ".")):
        load_beir(root)


def test_missing_folder_and_unknown_split(tmp_path):
    with pytest.raises(InvalidInput, match="not a folder"):
        load_beir(tmp_path / "nope")
    with pytest.raises(InvalidInput, match=r"train\.tsv: file not found \(splits here: test\)"):
        load_beir(make(tmp_path / "ds"), split="train")


def test_bad_json_line_names_file_and_line(tmp_path):
    root = make(tmp_path / "ds", corpus=[{"_id": "d1", "title": "a", "text": "b"}, '{"_id": "d2", "text": '])
    with pytest.raises(InvalidInput) as exc:
        load_beir(root)
    assert "corpus.jsonl line 2" in str(exc.value) and "not valid JSON" in str(exc.value)


def test_bad_query_line_names_file_and_line(tmp_path):
    root = make(tmp_path / "ds", queries=[{"_id": "q1", "text": "x"}, {"_id": "q2", "text": "y"}, "[1, 2]"])
    with pytest.raises(InvalidInput, match=r"queries\.jsonl line 3: expected a JSON object"):
        load_beir(root)


def test_missing_fields(tmp_path):
    root = make(tmp_path / "a", queries=[{"_id": "q1", "text": "x"}, {"_id": "q2"}])
    with pytest.raises(InvalidInput, match=r"queries\.jsonl line 2: missing field\(s\) text"):
        load_beir(root)
    root = make(tmp_path / "b", corpus=[{"title": "no id", "text": "x"}])
    with pytest.raises(InvalidInput, match=r"corpus\.jsonl line 1: missing field\(s\) _id"):
        load_beir(root)
    root = make(tmp_path / "c", corpus=[{"_id": "d1"}])
    with pytest.raises(InvalidInput, match=r"corpus\.jsonl line 1: missing field\(s\) title, text"):
        load_beir(root)


def test_qrels_naming_unknown_document_or_query(tmp_path):
    root = make(tmp_path / "a", qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tzzz\t1\n")
    with pytest.raises(InvalidInput, match=r"test\.tsv line 3: document 'zzz' is not in corpus\.jsonl"):
        load_beir(root)
    root = make(tmp_path / "b", qrels="query-id\tcorpus-id\tscore\nq9\td1\t1\n")
    with pytest.raises(InvalidInput, match=r"test\.tsv line 2: query 'q9' is not in queries\.jsonl"):
        load_beir(root)
    root = make(tmp_path / "c", qrels="query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(InvalidInput, match=r"test\.tsv line 2: expected 3 tab-separated columns"):
        load_beir(root)
    root = make(tmp_path / "d", qrels="query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    with pytest.raises(InvalidInput, match=r"test\.tsv line 2: score 'high' is not an integer"):
        load_beir(root)


def test_duplicate_document_id(tmp_path):
    root = make(tmp_path / "ds", corpus=[{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}],
                qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    with pytest.raises(InvalidInput, match=r"corpus\.jsonl line 2: duplicate document id 'd1'"):
        load_beir(root)


def test_slice_keeps_judged_documents(tmp_path):
    corpus = [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(50)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(5)]
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{40 + i}\t1\n" for i in range(5))
    ds = load_beir(make(tmp_path / "ds", corpus, queries, qrels))
    s = slice_dataset(ds, max_docs=10, max_queries=3)
    assert list(s.queries) == ["q0", "q1", "q2"]
    assert len(s.documents) == 10
    assert {"d40", "d41", "d42"} <= set(s.documents) and "d43" not in s.documents


def test_pipeline_names():
    p = parse_pipeline("hybrid-zscore(dense=0.6,bm25=0.4)+embedding")
    assert (p.mode, p.fusion, dict(p.weights), p.reranker, p.first_stage) == (
        "hybrid", "zscore", {"dense": 0.6, "bm25": 0.4}, "embedding", "hybrid-zscore(dense=0.6,bm25=0.4)")
    c = parse_pipeline("bm25+cascade(bm25:30,embedding)")
    assert c.options == {"stages": [{"reranker": "bm25", "options": {}, "top_k": 30},
                                    {"reranker": "embedding", "options": {}, "top_k": None}]}
    assert parse_pipeline("hybrid").fusion is None
    for bad in ("sparse", "bm25-rrf", "dense(dense=1)", "hybrid(x=1)", "hybrid+embedding(a)", ""):
        with pytest.raises(InvalidInput):
            parse_pipeline(bad)
    assert split_pipelines("bm25, hybrid-zscore(dense=1,bm25=0.5)+embedding,dense") == [
        "bm25", "hybrid-zscore(dense=1,bm25=0.5)+embedding", "dense"]
    assert with_baselines(["hybrid-rrf+embedding"]) == ["bm25", "dense", "hybrid-rrf", "hybrid-rrf+embedding"]


def test_pipeline_feedback_flag():
    p = parse_pipeline("hybrid-zscore(dense=1,bm25=0.5,feedback)+embedding")
    assert (p.feedback, dict(p.weights), p.first_stage) == (
        True, {"dense": 1.0, "bm25": 0.5}, "hybrid-zscore(dense=1,bm25=0.5,feedback)")
    assert parse_pipeline("hybrid(feedback)").feedback and parse_pipeline("hybrid(feedback)").weights is None
    assert parse_pipeline("dense(feedback)").feedback
    assert not parse_pipeline("hybrid").feedback
    with pytest.raises(InvalidInput, match="hybrid or dense only"):
        parse_pipeline("bm25(feedback)")
    for bad in ("dense(feedback,dense=1)", "hybrid(feedbac)"):
        with pytest.raises(InvalidInput):
            parse_pipeline(bad)
    assert with_baselines(["hybrid(feedback)"]) == ["bm25", "dense", "hybrid(feedback)"]
