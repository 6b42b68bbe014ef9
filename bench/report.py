"""Report rendering for eval, eval-budget and bench: markdown, the eval chart, results files.

The chart needs matplotlib (the ``eval`` extra), imported when a chart is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rerank_mcp.tools.evaluate import parse_pipeline

_BACKEND_LABEL = {"torch": "", "onnx": " on the ONNX Runtime int8 backend",
                  "onnx-mixed": " on the ONNX Runtime int8 backend with the FFN output projections in fp32 (onnx-mixed)",
                  "onnx-mixed-l0": " on the ONNX Runtime int8 backend with the first layer's FFN output projection in "
                                   "fp32 (onnx-mixed-l0)",
                  "onnx-smooth-l0": " on the ONNX Runtime int8 backend with the first layer's FFN output projection in "
                                    "fp32 and the Q/K/V and FFN inputs smoothed (onnx-smooth-l0)",
                  "onnx-smooth-l01": " on the ONNX Runtime int8 backend with the first two layers' FFN output projections "
                                     "in fp32 and the Q/K/V and FFN inputs smoothed (onnx-smooth-l01)"}

# Published nDCG@10 on the test split, for the report (see ../shared/datasets/README.md).
PUBLISHED = {
    ("scifact", "bm25"): (0.665, "BEIR paper, Elasticsearch BM25 (Anserini flat 0.679, bm25s 0.680)"),
    ("scifact", "dense"): (0.645, "MTEB, all-MiniLM-L6-v2"),
    ("scifact", "hybrid"): (0.742, "Pyserini fusion, BM25 + bge-base (a stronger dense model)"),
    ("cranfield", "bm25"): (0.33, "plain BM25, no stemming"),
    ("npl", "bm25"): (0.38, "plain BM25, no stemming"),
}


# --------------------------------------------------------------------------- bench
def md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(nothing measured)\n"
    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


def render_bench_markdown(sections: list[Any], command: str, machine: str, started: str, peak_rss_mb: float) -> str:
    md = [f"# Benchmarks\n\nProduced by `{command}` on {machine}, {started} UTC. Every figure is measured in the same "
          "run as its baseline.\n"]
    for s in sections:
        md.append(f"## {s.title}\n\n{md_table(s.rows)}")
        md += [f"- {n}\n" for n in s.notes]
        md.append("")
    md.append(f"Peak resident memory of the benchmark process: {peak_rss_mb} MB.\n")
    return "\n".join(md)


# --------------------------------------------------------------------------- eval
def write_eval_outputs(report: Any, folder: Path) -> None:
    """results.json, chart.png and report.md of a ``rerank-mcp eval`` run into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    write_eval_chart(report, folder / "chart.png")
    (folder / "report.md").write_text(render_eval_markdown(report), encoding="utf-8")


def write_eval_chart(report: Any, path: Path) -> None:
    """nDCG@10 against median latency, a marker per dataset and a colour per pipeline."""
    from rerank_mcp.bench.extra import require

    require("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    names = list(dict.fromkeys(p.pipeline for d in report.datasets for p in d.pipelines))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colors = {n: cmap(i % cmap.N) for i, n in enumerate(names)}
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    for di, d in enumerate(report.datasets):
        for p in d.pipelines:
            ax.scatter(max(p.latency_p50_ms, 0.01), p.ndcg_at_10, marker=markers[di % len(markers)],
                       color=colors[p.pipeline], s=60, edgecolors="black", linewidths=0.5)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    # 1-2-5 ticks in each decade: a range inside one or two decades still gets several labels
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels on a log axis overlap
    ax.set_xlabel("latency p50 per query (ms, log scale)")
    ax.set_ylabel("nDCG@10")
    ax.set_title(f"Quality vs latency ({report.embedding_model.split('/')[-1]})")
    ax.grid(True, which="both", alpha=0.3)
    from matplotlib.lines import Line2D

    h1 = [Line2D([], [], marker="o", linestyle="", color=colors[n], label=n) for n in names]
    h2 = [Line2D([], [], marker=markers[i % len(markers)], linestyle="", color="grey", label=d.dataset)
          for i, d in enumerate(report.datasets)]
    leg = ax.legend(handles=h1, title="pipeline", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.add_artist(leg)
    ax.legend(handles=h2, title="dataset", loc="lower left", bbox_to_anchor=(1.01, 0.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def render_eval_markdown(report: Any) -> str:
    env = report.environment
    lines = [
        "# Retrieval and reranking quality",
        "",
        "Produced by:",
        "",
        "```",
        report.command or "rerank-mcp eval ...",
        "```",
        "",
        f"Embedding model: `{report.embedding_model}`"
        + _BACKEND_LABEL.get(env.get("embedding_backend") or "torch", f" on the {env.get('embedding_backend')} backend")
        + f". Chunking: {env.get('chunk_size')} tokens, "
        f"{env.get('chunk_overlap')} overlap. Rerankers see the first-stage top {env.get('candidates')}. "
        f"Split: {env.get('split')}. "
        + (f"BM25 analyzer: {', '.join(f'{k} `{v}`' for k, v in env['analyzers'].items())}. "
           if env.get("analyzers") else "")
        + f"Machine: {env.get('cpus')} CPUs ({env.get('machine')}), Python {env.get('python')}; "
        f"whole run {env.get('elapsed_s')} s.",
        "",
        "Metrics (nDCG@10 with linear gains as in trec_eval/BEIR, Recall@100, MRR@10; ranx's definitions, computed "
        "by tools/metrics.py) over the "
        "judged queries of the split. Search returns chunks; a document takes the rank of its best chunk, and "
        "the 100 chunks fetched per query are aggregated into at most 100 documents. Latency is the wall "
        "time of one `tools.search.search()` call (query embedding, both arms, fusion, reranking), after one "
        "untimed warm-up call per pipeline."
        + (" **Query vectors were served from the embedding cache in this run** (`--cache-query-embeddings`), "
           "so latencies leave out embedding the query with all-MiniLM-L6-v2 on the CPU (roughly 10-30 ms per "
           "query on an idle 2-core machine, far more on a busy one)." if env.get("cached_query_embeddings") else ""),
        "",
    ]
    for d in report.datasets:
        lines += [
            f"## {d.dataset}",
            "",
            f"{d.documents} documents ({d.chunks} chunks"
            + (f"; {d.skipped_empty_documents} empty documents skipped" if d.skipped_empty_documents else "")
            + f"), {d.queries} queries, {d.judgments} judgments. Ingest {d.ingest_s} s (embeddings from the cache "
            "where present).",
            "",
            "| pipeline | nDCG@10 | Recall@100 | MRR@10 | p50 ms | p95 ms | published nDCG@10 |",
            "|---|---|---|---|---|---|---|",
        ]
        asked = env.get("requested_pipelines") or [p.pipeline for p in d.pipelines]
        for p in sorted(d.pipelines, key=lambda p: p.pipeline not in asked):  # baselines last, marked
            pub = _published(d.dataset, p.pipeline)
            label = p.label if p.pipeline in asked else f"{p.label} (baseline)"
            lines.append(
                f"| {label} | {p.ndcg_at_10:.4f} | {p.recall_at_100:.4f} | {p.mrr_at_10:.4f} | "
                f"{p.latency_p50_ms:.1f} | {p.latency_p95_ms:.1f} | {pub} |"
                + ("" if not p.errors else f" ({p.errors} failed {'query' if p.errors == 1 else 'queries'})")
            )
        lines.append("")
    lines += _significance_lines(report)
    lines += ["## Where a stage lowers quality", ""]
    if report.findings:
        for f in report.findings:
            lines.append(f"- {f.message}")
    else:
        lines.append("- Nowhere significantly (paired randomization test, p < 0.05): no reranker is below its first "
                     "stage, and no hybrid below its better arm, by more than chance explains.")
    ok_lines = []
    by = {(d.dataset, p.pipeline): p for d in report.datasets for p in d.pipelines}
    flagged = {(f.dataset, f.pipeline) for f in report.findings}
    for d in report.datasets:
        for p in d.pipelines:
            spec = parse_pipeline(p.pipeline)
            if (d.dataset, p.pipeline) in flagged:
                continue
            if spec.reranker and (d.dataset, spec.first_stage) in by and p.ndcg_at_10 < by[(d.dataset, spec.first_stage)].ndcg_at_10:
                b = by[(d.dataset, spec.first_stage)]
                ok_lines.append(f"- {d.dataset}: {p.label} {p.ndcg_at_10:.4f} < {spec.first_stage} {b.ndcg_at_10:.4f}, "
                                "not significantly (p >= 0.05)")
                continue
            if spec.reranker and (d.dataset, spec.first_stage) in by:
                b = by[(d.dataset, spec.first_stage)]
                ok_lines.append(f"- {d.dataset}: {p.label} {p.ndcg_at_10:.4f} >= {spec.first_stage} {b.ndcg_at_10:.4f}")
            elif spec.mode == "hybrid" and not spec.reranker and (d.dataset, "bm25") in by and (d.dataset, "dense") in by:
                arm = max(by[(d.dataset, "bm25")], by[(d.dataset, "dense")], key=lambda x: x.ndcg_at_10)
                ok_lines.append(f"- {d.dataset}: {p.pipeline} {p.ndcg_at_10:.4f} >= better arm {arm.pipeline} {arm.ndcg_at_10:.4f}")
    if ok_lines:
        lines += ["", "At or above the comparison:", ""] + ok_lines
    if report.floors:
        lines += ["", "## Quality floors", ""]
        lines += [f"- {n}: nDCG@10 >= {v}" for n, v in report.floors.items()]
        lines += [f"- FAILED: {m}" for m in report.floor_failures] or ["- all met"]
    lines += [
        "",
        "## Defaults this run supports",
        "",
        _fusion_note(report),
        f"- Chunking {env.get('chunk_size')}/{env.get('chunk_overlap')} tokens"
        + (" (the chunk_size/chunk_overlap settings' defaults are 200/40): at most all-MiniLM-L6-v2's "
           "max_seq_length of 256 word pieces, so the model sees every token of every chunk."
           if (env.get("chunk_size") or 0) <= 256 else " (above all-MiniLM-L6-v2's max_seq_length of 256: "
           "the model truncates longer chunks)."),
        "",
        "## Not measured here",
        "",
        "- `cross-encoder`, `flashrank` and the default `cascade` (flashrank then cross-encoder) are left out of "
        "quality runs: no trained cross-encoder or FlashRank model can be downloaded here, and the fixture "
        "models the tests build have random classification heads, so their scores say nothing about quality "
        "(they are exercised for plumbing and speed only). With a real model, run e.g. "
        "`--pipelines hybrid,hybrid+cross-encoder`.",
        "- The `embedding` reranker re-scores candidates with the same bi-encoder as the dense arm, so over "
        "hybrid candidates it mostly re-imposes the dense order; see the findings above. In this command it reads "
        "candidate vectors from the embedding cache (the vectors computed at ingest, by model and text hash), so "
        "its latency here is a cache lookup, not 100 forward passes of the bi-encoder.",
        "",
        "![nDCG@10 against latency](chart.png)",
        "",
    ]
    return "\n".join(lines)


def _related(a: str, b: str) -> bool:
    """Pairs worth a line in the report: a pipeline and its first stage or a hybrid's arm, two
    hybrids, or two rerankings of one first stage."""
    pa, pb = parse_pipeline(a), parse_pipeline(b)
    if pa.reranker and pa.first_stage == b or pb.reranker and pb.first_stage == a:
        return True
    if not pa.reranker and not pb.reranker:
        return pa.mode == "hybrid" or pb.mode == "hybrid"
    return bool(pa.reranker and pb.reranker and pa.first_stage == pb.first_stage)


def _significance_lines(report: Any) -> list[str]:
    tests = {s.test for d in report.datasets for s in getattr(d, "significance", [])}
    if not tests:
        return []
    name = {"fisher": "Fisher's paired randomization test (10,000 permutations)",
            "student": "a paired t-test"}.get(next(iter(tests)), next(iter(tests)))
    lines = ["## Paired significance", "",
             f"Per-query nDCG@10 of two pipelines compared with {name} (ranx `compare`); **bold** p-values are "
             "below 0.05. Wins and losses count the queries where the first pipeline scores higher or lower. "
             "Every pair is in results.json (`significance`), with every query's score (`per_query_ndcg`).", ""]
    for d in report.datasets:
        rows = [s for s in d.significance if _related(s.a, s.b)]
        if not rows:
            continue
        lines += [f"### {d.dataset}", "", "| a | b | nDCG@10 a | nDCG@10 b | a - b | p | wins / losses |",
                  "|---|---|---|---|---|---|---|"]
        for s in rows:
            p = f"{s.p_value:.4f}"
            lines.append(f"| {s.a} | {s.b} | {s.a_ndcg_at_10:.4f} | {s.b_ndcg_at_10:.4f} | {s.delta:+.4f} | "
                         f"{'**' + p + '**' if s.significant else p} | {s.wins} / {s.losses} |")
        lines.append("")
    return lines


def _fusion_note(report: Any) -> str:
    by = {(d.dataset, p.pipeline): p.ndcg_at_10 for d in report.datasets for p in d.pipelines}
    names = [d.dataset for d in report.datasets]
    hyb = "hybrid" if all((n, "hybrid") in by for n in names) else "hybrid-zscore"
    if not all((n, x) in by for n in names for x in ("bm25", "dense", hyb)):
        return "- (run hybrid with both arms to check the default fusion)"
    above_arms = all(by[(n, hyb)] >= max(by[(n, "bm25")], by[(n, "dense")]) for n in names)
    above_rrf = all((n, "hybrid-rrf") in by and by[(n, hyb)] >= by[(n, "hybrid-rrf")] for n in names)
    sig = {(d.dataset, frozenset((x.a, x.b))): x for d in report.datasets for x in getattr(d, "significance", [])}
    tested = []
    for other in ("hybrid-rrf", "hybrid-minmax"):
        pairs = [sig.get((n, frozenset((hyb, other)))) for n in names]
        if all(pairs):
            won = sum(1 for x in pairs if x.significant and (x.delta > 0) == (x.a == hyb))
            lost = sum(1 for x in pairs if x.significant and (x.delta > 0) != (x.a == hyb))
            tested.append(f"against {other} its difference is significant (p < 0.05) on {won} collection(s) in its "
                          f"favour and {lost} against it, of {len(names)} (p = "
                          + ", ".join(f"{x.p_value:.3f}" for x in pairs) + ")")
    return ("- `search`'s default hybrid fusion is z-score normalised score fusion with equal arm weights "
            "(`hybrid` = `hybrid-zscore`), each arm 100 deep. Here it is "
            + ("at or above its better arm on every collection" if above_arms else "**below its better arm somewhere**")
            + (" and at or above RRF (k=60) on every collection." if above_rrf else "; RRF (k=60) beats it somewhere.")
            + (" Paired tests: " + "; ".join(tested) + "." if tested else ""))


def _published(dataset: str, pipeline: str) -> str:
    base = dataset.lower()
    key = (base, "hybrid" if pipeline.startswith("hybrid") and "+" not in pipeline else pipeline)
    if key in PUBLISHED:
        v, src = PUBLISHED[key]
        return f"{v} ({src})"
    return ""


# --------------------------------------------------------------------------- eval-budget
def render_budget_markdown(report: Any) -> str:
    env = report.environment
    lines = [
        "# Recall inside a token budget",
        "",
        "Produced by:",
        "",
        "```",
        report.command or "rerank-mcp eval-budget ...",
        "```",
        "",
        f"Embedding model `{report.embedding_model}`"
        + {k: v for k, v in _BACKEND_LABEL.items() if k != "torch"}.get(env.get("embedding_backend") or "torch", "")
        + f"; tokens counted with the {report.tokenizer}, the same count "
        "`search`'s `max_tokens` uses. Chunking "
        f"{env.get('chunk_size')}/{env.get('chunk_overlap')} tokens. Each query runs one `{env.get('mode')}` search "
        f"for a pool of {env.get('pool')} chunks; every strategy fills the budget from that same pool:",
        "",
        "- **top-k**: hits in rank order, as many as fit whole (a plain result cut at the budget);",
        "- **packed**: `max_tokens` (near-duplicate texts folded into one entry; an entry that does not fit is "
        "skipped and the next tried);",
        "- **packed+document**: `max_tokens` with `group_by: \"document\"` (a document's chunks merged, overlapping "
        "text not repeated);",
        "- **packed+document+expand1**: and `expand: 1` (one neighbouring chunk each side of every hit).",
        "",
        "Recall: relevant documents (grade > 0) among the returned entries' documents (and the near-duplicates "
        "listed under them, whose text is the entry's) / relevant documents, averaged over the judged queries. `any` is the share of queries with at least one relevant document "
        "inside the budget. Tokens, entries and documents are means per query.",
        "",
    ]
    if env.get("max_docs") or env.get("max_queries"):
        lines += [f"Sliced run: max_docs={env.get('max_docs')}, max_queries={env.get('max_queries')}.", ""]
    for d in report.datasets:
        lines += [
            f"## {d.dataset}",
            "",
            f"{d.documents} documents ({d.chunks} chunks), {d.queries} queries. Ingest {d.ingest_s} s (embeddings "
            f"from the cache where present), budget runs {d.eval_s} s.",
            "",
            "| budget | strategy | recall | any | tokens used | entries | documents | recall vs top-k |",
            "|---|---|---|---|---|---|---|---|",
        ]
        base = {r.budget: r for r in d.rows if r.strategy == "top-k"}
        for b in report.budgets:
            for r in [x for x in d.rows if x.budget == b]:
                delta = "" if r.strategy == "top-k" or b not in base else f"{r.recall - base[b].recall:+.4f}"
                lines.append(f"| {b} | {r.strategy} | {r.recall:.4f} | {r.any_relevant:.4f} | {r.tokens:.0f} | "
                             f"{r.entries:.1f} | {r.documents:.1f} | {delta} |")
        lines.append("")
    lines += ["## Reading", ""]
    for d in report.datasets:
        for b in report.budgets:
            rows = {r.strategy: r for r in d.rows if r.budget == b}
            if "top-k" not in rows:
                continue
            best = max((r for n, r in rows.items() if n != "top-k"), key=lambda r: r.recall, default=None)
            if best is None:
                continue
            top = rows["top-k"]
            lines.append(f"- {d.dataset} at {b} tokens: best shaped result {best.strategy} {best.recall:.4f}, plain "
                         f"top-k {top.recall:.4f} ({best.recall - top.recall:+.4f}); {best.documents:.1f} documents "
                         f"in {best.tokens:.0f} tokens against {top.documents:.1f} in {top.tokens:.0f}.")
    lines.append("")
    return "\n".join(lines)
