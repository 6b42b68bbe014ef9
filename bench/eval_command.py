"""``rerank-mcp eval``: retrieval and reranking quality on BEIR-format datasets.

Ingests each dataset into a collection (a throwaway one by default, dropped at the end), runs
every pipeline's queries through the same search path the MCP tool uses, and prints a table;
``--out`` also writes report.md, results.json and chart.png (nDCG@10 against median latency).
``--min-ndcg PIPELINE=FLOAT`` turns it into a quality gate: exit status 3 below a floor.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from rerank_mcp.server.output import Output
from rerank_mcp.server.settings import Settings

DEFAULT_PIPELINES = "bm25,dense,hybrid-rrf,hybrid,hybrid+embedding,bm25+embedding"
FLOOR_EXIT = 3
_BACKEND_LABEL = {"torch": "", "onnx": " on the ONNX Runtime int8 backend",
                  "onnx-mixed": " on the ONNX Runtime int8 backend with the FFN output projections in fp32 (onnx-mixed)"}

# Published nDCG@10 on the test split, for the report (see ../shared/datasets/README.md).
PUBLISHED = {
    ("scifact", "bm25"): (0.665, "BEIR paper, Elasticsearch BM25 (Anserini flat 0.679, bm25s 0.680)"),
    ("scifact", "dense"): (0.645, "MTEB, all-MiniLM-L6-v2"),
    ("scifact", "hybrid"): (0.742, "Pyserini fusion, BM25 + bge-base (a stronger dense model)"),
    ("cranfield", "bm25"): (0.33, "plain BM25, no stemming"),
    ("npl", "bm25"): (0.38, "plain BM25, no stemming"),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "eval",
        help="measure retrieval and reranking quality on BEIR-format datasets",
        description="Ingest BEIR-format datasets (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) and report "
        "nDCG@10, Recall@100, MRR@10 and latency per pipeline.",
    )
    s.add_argument("datasets", nargs="+", metavar="DATASET_DIR", help="BEIR dataset folder(s)")
    s.add_argument("--pipelines", default=DEFAULT_PIPELINES,
                   help="comma-separated: bm25, dense, hybrid (search defaults), hybrid-rrf, hybrid-minmax, "
                        "hybrid-zscore, hybrid-zscore(dense=1,bm25=0.5), each optionally +<reranker> "
                        f"(e.g. hybrid+embedding, bm25+cascade(bm25:30,embedding)); default {DEFAULT_PIPELINES}")
    s.add_argument("--split", default="test", help="qrels split to evaluate (qrels/<split>.tsv), default test")
    s.add_argument("--collection", help="collection to ingest into and keep (one per dataset: NAME-<dataset> "
                   "when several datasets are given); default: a throwaway collection dropped at the end")
    s.add_argument("--max-docs", type=int, help="keep at most N documents (always all judged documents of the kept queries)")
    s.add_argument("--max-queries", type=int, help="keep the first N judged queries")
    s.add_argument("--chunk-size", type=int, help="chunk size in tokens (default: the chunk_size setting)")
    s.add_argument("--chunk-overlap", type=int, help="chunk overlap in tokens (default: the chunk_overlap setting)")
    s.add_argument("--candidates", type=int, default=100, help="first-stage hits a reranker sees (default 100)")
    s.add_argument("--cache-query-embeddings", action="store_true",
                   help="serve query vectors from the embedding cache (fast re-runs on a busy CPU; latency then "
                        "leaves out query embedding, which the report says)")
    s.add_argument("--show-baselines", action="store_true",
                   help="also list the first stages and hybrid arms evaluated only for the comparisons (the "
                        "report always has them, marked as baselines)")
    s.add_argument("--out", help="folder for report.md, results.json and chart.png (e.g. docs/eval)")
    s.add_argument("--stat-test", choices=["fisher", "student"], default="fisher",
                   help="paired test between pipelines on per-query nDCG@10: fisher (randomization, default) or "
                        "student (paired t-test)")
    s.add_argument("--min-ndcg", action="append", default=[], metavar="PIPELINE=FLOAT",
                   help="quality floor on nDCG@10 for a pipeline on every dataset (repeatable, or comma-separated); "
                        f"exit status {FLOOR_EXIT} if any is below")
    s.set_defaults(handler=run_eval)


def parse_floors(values: Sequence[str]) -> dict[str, float]:
    from rerank_mcp.errors import InvalidInput
    from rerank_mcp.tools.evaluate import parse_pipeline, split_pipelines

    floors: dict[str, float] = {}
    for v in values:
        for item in split_pipelines(v):
            name, eq, num = item.rpartition("=")
            try:
                val = float(num)
            except ValueError:
                val = float("nan")
            if not eq or not name or not 0 <= val <= 1:
                raise InvalidInput(f"--min-ndcg {item!r}: expected PIPELINE=FLOAT with FLOAT in [0, 1]")
            parse_pipeline(name)
            floors[name] = val
    return floors


def _collection_name(args: argparse.Namespace, ds_name: str, many: bool) -> tuple[str, bool]:
    import re

    safe = re.sub(r"[^A-Za-z0-9_.\-]", "-", ds_name)[:40] or "dataset"
    if args.collection:
        return (f"{args.collection}-{safe}" if many else args.collection)[:64], False
    return f"eval-{safe}-{os.getpid()}"[:64], True


def run_eval(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.server.state import build_state
    from rerank_mcp.errors import InvalidInput
    from rerank_mcp.bench.beir import load_beir, slice_dataset
    from rerank_mcp.bench.evaluate import EvalReport, check_floors, evaluate_dataset
    from rerank_mcp.tools.evaluate import parse_pipeline, split_pipelines, with_baselines

    pipelines = split_pipelines(args.pipelines)
    if not pipelines:
        raise InvalidInput("--pipelines is empty")
    for p in pipelines:
        parse_pipeline(p)
    floors = parse_floors(args.min_ndcg)
    for name in floors:
        if name not in pipelines:
            pipelines.append(name)
    chunk_size = args.chunk_size or settings.chunk_size
    chunk_overlap = args.chunk_overlap if args.chunk_overlap is not None else min(settings.chunk_overlap, chunk_size - 1)
    if args.candidates <= 0 or args.candidates > 1000:
        raise InvalidInput("--candidates must be from 1 to 1000")
    # load (and validate) every dataset before any work
    datasets = []
    for path in args.datasets:
        ds = load_beir(path, args.split)
        if args.max_docs or args.max_queries:
            ds = slice_dataset(ds, args.max_docs, args.max_queries)
        datasets.append(ds)

    state = build_state(settings, warm=False, cache_queries=bool(args.cache_query_embeddings))
    registry = state.registry
    reports, findings = [], []
    t0 = time.perf_counter()
    try:
        for ds in datasets:
            name, throwaway = _collection_name(args, ds.name, len(datasets) > 1)
            if throwaway and state.engine.collection_info(name) is not None:
                state.engine.drop(name)
            try:
                with out.progress(f"{ds.name}") as progress:
                    rep, fnd = evaluate_dataset(
                        state.engine, registry, ds, name, pipelines, chunk_size=chunk_size,
                        chunk_overlap=chunk_overlap, candidates=args.candidates,
                        limits=state.search_limits, progress=progress, stat_test=args.stat_test,
                    )
            finally:
                if throwaway and state.engine.collection_info(name) is not None:
                    state.engine.drop(name)
            reports.append(rep)
            findings.extend(fnd)
            if not out.as_json:
                out.line(f"{ds.name}: {rep.documents} documents ({rep.chunks} chunks), {rep.queries} queries, "
                         f"ingest {rep.ingest_s:.1f} s")
    finally:
        state.close()
    failures = check_floors(reports, floors)
    report = EvalReport(
        command=_command_line(args, settings),
        embedding_model=state.engine.model_name,
        datasets=reports,
        findings=findings,
        floors=floors,
        floor_failures=failures,
        environment={
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "elapsed_s": round(time.perf_counter() - t0, 1),
            "chunk_size": chunk_size,
            "chunk_overlap": chunk_overlap,
            "candidates": args.candidates,
            "requested_pipelines": pipelines,
            "evaluated_pipelines": with_baselines(pipelines),
            "max_docs": args.max_docs,
            "max_queries": args.max_queries,
            "split": args.split,
            "cached_query_embeddings": bool(args.cache_query_embeddings),
            "embedding_backend": settings.embedding_backend,
            "stat_test": args.stat_test,
        },
    )
    if args.out:
        write_outputs(report, Path(args.out))
    if out.as_json:
        out.json(report)
    else:
        hidden: set[str] = set()
        for rep in reports:
            shown = [p for p in rep.pipelines if p.pipeline in pipelines or args.show_baselines]
            hidden |= {p.pipeline for p in rep.pipelines if p not in shown}
            out.table(
                f"{rep.dataset} ({rep.queries} queries, {rep.documents} docs, chunk {rep.chunk_size}/{rep.chunk_overlap})",
                ["pipeline", "nDCG@10", "Recall@100", "MRR@10", "p50 ms", "p95 ms"],
                [[p.pipeline + ("" if p.pipeline in pipelines else " (baseline)"), f"{p.ndcg_at_10:.4f}",
                  f"{p.recall_at_100:.4f}", f"{p.mrr_at_10:.4f}", f"{p.latency_p50_ms:.1f}", f"{p.latency_p95_ms:.1f}"]
                 for p in shown],
            )
        if hidden:
            out.line(f"also evaluated, as baselines for the comparisons: {', '.join(sorted(hidden))} "
                     "(--show-baselines lists them)")
        for f in findings:
            out.line(f"note: {f.message}")
        if args.out:
            out.line(f"wrote {Path(args.out) / 'report.md'}, results.json, chart.png")
    for msg in failures:
        sys.stderr.write(f"quality floor: {msg}" + "\n")
    return FLOOR_EXIT if failures else 0


def _command_line(args: argparse.Namespace, settings: Settings | None = None) -> str:
    """The eval command as typed (reconstructed from the parsed arguments; the embedding backend,
    which comes from the environment, is shown as its variable: figures differ slightly by backend)."""
    backend = getattr(settings, "embedding_backend", "torch")
    parts = [f"RERANK_MCP_EMBEDDING_BACKEND={backend}", "rerank-mcp"] + (["--data-dir", str(args.data_dir)] if getattr(args, "data_dir", None) else [])
    parts += ["eval", *args.datasets, "--pipelines", args.pipelines]
    for flag, value in (("--split", args.split if args.split != "test" else None), ("--collection", args.collection),
                        ("--max-docs", args.max_docs), ("--max-queries", args.max_queries),
                        ("--chunk-size", args.chunk_size), ("--chunk-overlap", args.chunk_overlap),
                        ("--candidates", args.candidates if args.candidates != 100 else None), ("--out", args.out)):
        if value is not None:
            parts += [flag, str(value)]
    if args.cache_query_embeddings:
        parts.append("--cache-query-embeddings")
    if getattr(args, "stat_test", "fisher") != "fisher":
        parts += ["--stat-test", args.stat_test]
    for f in args.min_ndcg:
        parts += ["--min-ndcg", f]
    return " ".join(p if p.startswith("RERANK_MCP_") else shlex.quote(p) for p in parts)


# --------------------------------------------------------------------------- outputs
def write_outputs(report: Any, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    write_chart(report, folder / "chart.png")
    (folder / "report.md").write_text(render_markdown(report), encoding="utf-8")


def write_chart(report: Any, path: Path) -> None:
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


def render_markdown(report: Any) -> str:
    from rerank_mcp.tools.evaluate import parse_pipeline

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
        f"Split: {env.get('split')}. Machine: {env.get('cpus')} CPUs ({env.get('machine')}), Python {env.get('python')}; "
        f"whole run {env.get('elapsed_s')} s.",
        "",
        "Metrics come from `ranx` (nDCG@10 with linear gains as in trec_eval/BEIR, Recall@100, MRR@10) over the "
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
            label = p.pipeline if p.pipeline in asked else f"{p.pipeline} (baseline)"
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
        lines.append("- Nowhere: every reranker is at or above its first stage, and every hybrid at or above its better arm.")
    ok_lines = []
    by = {(d.dataset, p.pipeline): p for d in report.datasets for p in d.pipelines}
    flagged = {(f.dataset, f.pipeline) for f in report.findings}
    for d in report.datasets:
        for p in d.pipelines:
            spec = parse_pipeline(p.pipeline)
            if (d.dataset, p.pipeline) in flagged:
                continue
            if spec.reranker and (d.dataset, spec.first_stage) in by:
                b = by[(d.dataset, spec.first_stage)]
                ok_lines.append(f"- {d.dataset}: {p.pipeline} {p.ndcg_at_10:.4f} >= {spec.first_stage} {b.ndcg_at_10:.4f}")
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
    from rerank_mcp.tools.evaluate import parse_pipeline

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
