"""The ``rerank-mcp eval`` command end to end: outputs, exit status, and a quality floor on a
SciFact slice (read in place from ../shared/datasets) that fails if ranking breaks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import DATASETS
from tests.eval.test_evaluate_collection import DOCS

pytestmark = pytest.mark.slow  # SciFact slices through the CLI

SCIFACT = DATASETS / "scifact"

# Measured on this slice (150 documents incl. every judged one, first 30 test queries, chunk 256/32):
# bm25 0.9113, dense 0.9196, hybrid (the zscore default) 0.9394; the floors sit about 0.05 below.
# (A small slice makes easy queries: the numbers are far above full-SciFact ones; what matters is
# that broken ranking, e.g. a wrong chunk-to-document mapping or a broken arm, falls well below.)
FLOORS = {"bm25": 0.86, "dense": 0.87, "hybrid": 0.89}


def tiny_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as fh:
        for k, v in DOCS.items():
            fh.write(json.dumps({"_id": k, "title": k.capitalize(), "text": v}) + "\n")
        fh.write(json.dumps({"_id": "empty", "title": "", "text": ""}) + "\n")
    queries = {"q1": "photovoltaic solar electricity", "q2": "sourdough bread baking", "q3": "magma eruption"}
    with (root / "queries.jsonl").open("w") as fh:
        for k, v in queries.items():
            fh.write(json.dumps({"_id": k, "text": v}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tsolar\t1\nq2\tbread\t1\nq3\tvolcano\t1\nq3\tcats\t1\n")
    return root


def run_cli(argv: list[str]) -> int:
    from rerank_mcp.main import main

    return main(argv)


def test_outputs_and_floor_exit_status(tmp_path, capsys):
    data = tiny_beir(tmp_path / "tiny")
    out = tmp_path / "report"
    rc = run_cli(["--data-dir", str(tmp_path / "d"), "eval", str(data), "--pipelines", "bm25,hybrid-rrf+bm25",
                  "--out", str(out), "--min-ndcg", "bm25=0.5"])
    first = capsys.readouterr()
    assert rc == 0, first.err[-2000:]
    assert "hybrid-rrf+bm25" in first.out  # the terminal table
    # baselines the comparisons needed are named, not listed as if asked for
    assert "also evaluated, as baselines for the comparisons: dense, hybrid-rrf" in first.out
    assert not any(line.lstrip("│┃| ").startswith("dense") for line in first.out.splitlines())
    # output not on a terminal: progress comes as plain lines on stderr
    assert any(line.startswith("tiny") and "%" in line for line in first.err.splitlines()), first.err[-2000:]
    res = json.loads((out / "results.json").read_text())
    ds = res["datasets"][0]
    assert ds["dataset"] == "tiny" and ds["documents"] == 8 and ds["skipped_empty_documents"] == 1
    assert {p["pipeline"] for p in ds["pipelines"]} == {"bm25", "dense", "hybrid-rrf", "hybrid-rrf+bm25"}
    report = (out / "report.md").read_text()
    assert report.splitlines()[0].startswith("#") and "rerank-mcp --data-dir" in report and " eval " in report
    assert "| bm25 |" in report and "cross-encoder" in report
    assert "| dense (baseline) |" in report and "| hybrid-rrf (baseline) |" in report
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the throwaway collection is gone
    from rerank_mcp.index.store import Store

    st = Store(tmp_path / "d" / "rerank-mcp.sqlite")
    try:
        assert st.collections() == []
    finally:
        st.close()
    # an unreachable floor fails with exit status 3 and says why
    rc = run_cli(["--data-dir", str(tmp_path / "d"), "--json", "eval", str(data), "--pipelines", "bm25",
                  "--min-ndcg", "bm25=1.0,dense=1.0"])
    assert rc == 3
    captured = capsys.readouterr()
    assert "quality floor" in captured.err and "below the floor" in captured.err
    assert json.loads(captured.out)["floor_failures"]


@pytest.mark.parametrize("missing,out", [("ranx", False), ("matplotlib", True)])
def test_without_the_eval_extra_the_error_names_it(tmp_path, capsys, monkeypatch, missing, out):
    if missing != "ranx":
        import ranx  # noqa: F401  (ranx imports matplotlib: loaded first, only matplotlib is missing)
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` now raises ImportError
    data = tiny_beir(tmp_path / "tiny")
    rc = run_cli(["--data-dir", str(tmp_path / "d"), "eval", str(data), "--pipelines", "bm25",
                  *(["--out", str(tmp_path / "report")] if out else [])])
    err = capsys.readouterr().err
    assert rc == 1, err[-2000:]
    assert (f"error: rerank-mcp eval needs the 'eval' extra: pip install 'rerank-mcp[eval]' (missing: {missing})"
            in err), err[-2000:]
    assert not (tmp_path / "report").exists()  # refused before any work


def test_bad_arguments(tmp_path, capsys):
    data = tiny_beir(tmp_path / "tiny")
    assert run_cli(["--data-dir", str(tmp_path / "d"), "eval", str(data), "--pipelines", "sparse"]) == 1
    assert "unknown pipeline" in capsys.readouterr().err
    assert run_cli(["--data-dir", str(tmp_path / "d"), "eval", str(data), "--min-ndcg", "bm25"]) == 1
    assert "PIPELINE=FLOAT" in capsys.readouterr().err
    assert run_cli(["--data-dir", str(tmp_path / "d"), "eval", str(tmp_path / "nope")]) == 1
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").exists(), reason="SciFact not present in ../shared/datasets")
def test_scifact_slice_quality_floor(tmp_path, capsys):
    floors = ",".join(f"{k}={v}" for k, v in FLOORS.items())
    rc = run_cli(["--data-dir", str(tmp_path / "d"), "--json", "eval", str(SCIFACT), "--max-docs", "150",
                  "--max-queries", "30", "--chunk-size", "256", "--chunk-overlap", "32",
                  "--pipelines", "bm25,dense,hybrid", "--min-ndcg", floors])
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    got = {p["pipeline"]: p["ndcg_at_10"] for p in res["datasets"][0]["pipelines"]}
    print("measured", got)
    assert rc == 0, (got, captured.err[-2000:])


def test_eval_names_the_analyzer_of_each_collection(tmp_path, capsys):
    """--analyzer chooses the collections' BM25 analyzer; the report and the command line say which ran."""
    root = tmp_path / "zh"
    (root / "qrels").mkdir(parents=True)
    docs = {"panda": "大熊猫每天吃竹子。", "rail": "高速铁路连接台北和高雄。", "tea": "乌龙茶产自福建和台湾。"}
    with (root / "corpus.jsonl").open("w") as fh:
        for k, v in docs.items():
            fh.write(json.dumps({"_id": k, "title": "", "text": v}, ensure_ascii=False) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "熊猫吃什么"}, ensure_ascii=False) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tpanda\t1\n")
    out = tmp_path / "report"
    rc = run_cli(["--data-dir", str(tmp_path / "d"), "eval", str(root), "--pipelines", "bm25",
                  "--analyzer", "english+bigram", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err[-2000:]
    res = json.loads((out / "results.json").read_text())
    assert res["environment"]["analyzers"] == {"zh": "english+bigram"}
    assert "--analyzer english+bigram" in res["command"]
    assert "BM25 analyzer: zh `english+bigram`" in (out / "report.md").read_text()
    assert res["datasets"][0]["pipelines"][0]["ndcg_at_10"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- never credit a stand-in


def _no_ingest(monkeypatch):
    """Fail the test if any ingest starts (validation must come first)."""
    import rerank_mcp.bench.evaluate as ev

    def refuse(*a, **k):
        raise AssertionError("ingest started before the pipelines were validated")

    monkeypatch.setattr(ev, "ingest_dataset", refuse)


def test_missing_model_fails_up_front_with_the_pull_command(tmp_path, capsys, monkeypatch):
    data = tiny_beir(tmp_path / "tiny")
    _no_ingest(monkeypatch)
    rc = run_cli(["--data-dir", str(tmp_path / "d"), "eval", str(data), "--pipelines", "bm25,hybrid+cross-encoder",
                  "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert rc == 1, err[-2000:]
    assert "hybrid+cross-encoder" in err and "rerank-mcp models pull cross-encoder/ms-marco-MiniLM-L-6-v2" in err
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("pipelines,what", [("bm25,hybrid+nosuch", "unknown reranker 'nosuch'"),
                                            ("bm25,hybrid+embedding(blnd=0.5)", "unknown option 'blnd'")])
def test_misspelt_reranker_or_option_fails_before_the_ingest(tmp_path, capsys, monkeypatch, pipelines, what):
    data = tiny_beir(tmp_path / "tiny")
    _no_ingest(monkeypatch)
    rc = run_cli(["--data-dir", str(tmp_path / "d"), "eval", str(data), "--pipelines", pipelines])
    err = capsys.readouterr().err
    assert rc == 1 and what in err, err[-2000:]


def test_allow_stand_in_labels_what_ran(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # the table at its natural width (labels unwrapped)
    data = tiny_beir(tmp_path / "tiny")
    out = tmp_path / "report"
    rc = run_cli(["--data-dir", str(tmp_path / "d"), "eval", str(data), "--pipelines", "hybrid+cross-encoder,bm25+auto",
                  "--allow-stand-in", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    assert "hybrid+cross-encoder (stand-in: embedding)" in captured.out
    assert "bm25+auto (ran none)" in captured.out  # offline, auto keeps a first stage's order
    ds = json.loads((out / "results.json").read_text())["datasets"][0]
    by = {p["pipeline"]: p for p in ds["pipelines"]}
    assert by["hybrid+cross-encoder"]["ran"] == "embedding" and by["hybrid+cross-encoder"]["stand_in"] is True
    assert by["bm25+auto"]["ran"] == "none" and by["bm25+auto"]["stand_in"] is False
    assert by["bm25"]["ran"] is None
    assert "| hybrid+cross-encoder (stand-in: embedding) |" in (out / "report.md").read_text()
    assert "--allow-stand-in" in json.loads((out / "results.json").read_text())["command"]


def test_library_log_lines_are_held_until_the_progress_ends(capsys):
    import logging
    import warnings

    from rerank_mcp.bench.eval_command import HeldLogs
    from rerank_mcp.server.output import Output

    logging.getLogger().setLevel(logging.INFO)
    held = HeldLogs()
    out = Output(as_json=False)
    with held, out.progress("work") as progress:
        progress(1, 4, "work: step")
        logging.getLogger("rerank_mcp.index.engine").info("engine says hello")
        warnings.warn("a model library's warning", UserWarning, stacklevel=1)
        progress(4, 4, "work: step")
    err = capsys.readouterr().err
    assert "engine says hello" not in err and "model library" not in err  # not between the progress lines
    held.flush()
    err = capsys.readouterr().err
    assert "held back" in err and "engine says hello" in err and "a model library's warning" in err
