"""What the CLI prints when its output is not a terminal: progress lines on stderr, tables at
their natural width."""

from __future__ import annotations

from rerank_mcp.server.output import Output, ProgressLines


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_lines_every_few_seconds_or_every_ten_percent():
    clock, lines = Clock(), []
    p = ProgressLines("scifact", lines.append, every_s=5.0, every_pct=10.0, clock=clock)
    p.update(0, 1000, "scifact: ingesting")
    assert len(lines) == 1 and "0% (0/1000)" in lines[0]
    clock.t = 0.5
    p.update(150, 1000, "scifact: ingesting")  # a new 10% step, but less than a second after the last line
    assert len(lines) == 1
    clock.t = 1.5
    p.update(160, 1000, "scifact: ingesting")  # the step, now a second later
    assert len(lines) == 2 and "16% (160/1000)" in lines[1]
    for i, t in enumerate((2.0, 3.0, 4.0)):
        clock.t = t
        p.update(170 + i, 1000, "scifact: ingesting")  # same step, under 5 s: quiet
    assert len(lines) == 2
    clock.t = 6.6
    p.update(180, 1000, "dense: queries")  # 5 s since the last line
    assert len(lines) == 3 and lines[2] == "scifact: dense: queries: 18% (180/1000), 7 s"
    clock.t = 7.0
    p.update(1000, 1000, "dense: queries")
    p.finish()  # the last state is always printed
    assert lines[-1].startswith("scifact: dense: queries: 100% (1000/1000)")


def test_progress_counts_whole_documents_while_a_batch_is_part_done():
    lines = []
    p = ProgressLines("scifact", lines.append, clock=Clock())
    p.update(1567.35, 5183, "ingesting documents")  # ingest reports embedding inside a batch as a fraction
    assert lines == ["scifact: ingesting documents: 30% (1567/5183), 0 s"]


def test_progress_without_a_total():
    lines = []
    p = ProgressLines("reading", lines.append, clock=Clock())
    p.update(3, 0, "")
    assert lines == ["reading: 3, 0 s"]


def test_output_progress_prints_lines_to_stderr_when_not_a_terminal(capsys):
    out = Output()
    assert not out.err.is_terminal  # pytest captures stderr
    with out.progress("ingesting") as progress:
        progress(1, 4, "ingesting: embedding chunks")
        progress(2, 4, "ingesting: embedding chunks")  # within a second: held back
        progress(4, 4, "ingesting: stored 4 of 4 documents")
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.splitlines()
    assert err[0].startswith("ingesting: embedding chunks: 25% (1/4)")
    assert err[-1].startswith("ingesting: stored 4 of 4 documents: 100% (4/4)")
    assert len(err) == 2


def test_tables_keep_their_width_when_not_a_terminal(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    out = Output()
    long = "hybrid+cascade(bm25:30,embedding(blend=0.5))"
    out.table("scifact (300 queries, 5183 docs, chunk 200/40)",
              ["pipeline", "nDCG@10", "Recall@100", "MRR@10", "p50 ms", "p95 ms"],
              [[long, "0.6961", "0.9597", "0.6672", "22.2", "25.6"]])
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if long in line)
    assert "0.6961" in row and "25.6" in row  # one line per row: nothing folded
    assert max(len(line) for line in text.splitlines()) > 80


def test_findings_count_queries_in_good_english():
    from rerank_mcp.tools.evaluate import PipelineMetrics, PipelineRun, compare

    def run(name, ndcg, per_query):
        m = PipelineMetrics(pipeline=name, ndcg_at_10=ndcg, recall_at_100=1.0, mrr_at_10=1.0, latency_p50_ms=1.0,
                            latency_p95_ms=1.0, queries=len(per_query))
        return PipelineRun(metrics=m, per_query_ndcg=per_query, rankings={})

    # findings need a significant difference: one query better, twenty worse
    base = {f"q{i}": 0.9 for i in range(20)} | {"up": 0.2}
    rer = {f"q{i}": 0.5 for i in range(20)} | {"up": 0.4}
    runs = {"bm25": run("bm25", 0.87, base), "bm25+embedding": run("bm25+embedding", 0.49, rer)}
    (finding,) = compare("tiny", runs)
    assert "better on 1 query, worse on 20)" in finding.message
    # and no finding at all for a drop the test does not call significant
    runs = {"bm25": run("bm25", 0.6, {"a": 1.0, "b": 0.2, "c": 0.6}),
            "bm25+embedding": run("bm25+embedding", 0.5, {"a": 0.5, "b": 0.4, "c": 0.6})}
    assert compare("tiny", runs) == []
