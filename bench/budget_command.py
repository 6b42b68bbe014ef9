"""``rerank-mcp eval-budget``: recall of relevant documents inside token budgets, shaped results
(``max_tokens``, ``group_by``, ``expand``) against plain top-k, on BEIR-format datasets."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import time
from pathlib import Path

from rerank_mcp.bench.beir import add_dataset_arguments
from rerank_mcp.server.output import Output
from rerank_mcp.server.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "eval-budget",
        help="recall inside token budgets: search's max_tokens / group_by / expand against plain top-k",
        description="Ingest BEIR-format datasets and, per judged query, fill token budgets from one search's "
        "candidate pool with plain top-k and with the shaping options; report recall of relevant documents.",
    )
    add_dataset_arguments(s, "the budgets")
    s.add_argument("--budgets", default="1000,2000,4000", help="token budgets, comma-separated (default 1000,2000,4000)")
    s.add_argument("--mode", default="hybrid", choices=["dense", "bm25", "hybrid"], help="first stage (default hybrid)")
    s.add_argument("--pool", type=int, default=100, help="candidate chunks per query (default 100)")
    s.add_argument("--out", help="folder for report.md and results.json (e.g. docs/eval/budgets)")
    s.set_defaults(handler=run_budget_eval)


def run_budget_eval(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from rerank_mcp.bench.beir import load_beir, slice_dataset
    from rerank_mcp.bench.budget import BudgetReport, evaluate_dataset_budgets, parse_budgets
    from rerank_mcp.bench.report import render_budget_markdown
    from rerank_mcp.errors import InvalidInput
    from rerank_mcp.server.state import build_state
    from rerank_mcp.tools.shaping import tokenizer_name

    budgets = parse_budgets(args.budgets)
    if not 1 <= args.pool <= 1000:
        raise InvalidInput("--pool must be from 1 to 1000")
    chunk_size = args.chunk_size or settings.chunk_size
    chunk_overlap = args.chunk_overlap if args.chunk_overlap is not None else min(settings.chunk_overlap, chunk_size - 1)
    datasets = []
    for path in args.datasets:
        ds = load_beir(path, args.split)
        if args.max_docs or args.max_queries:
            ds = slice_dataset(ds, args.max_docs, args.max_queries)
        datasets.append(ds)
    if getattr(args, "analyzer", None):
        from rerank_mcp.index.analyzers import check_name

        settings = settings.model_copy(update={"analyzer": check_name(args.analyzer)})
    state = build_state(settings, warm=False)
    results = []
    t0 = time.perf_counter()
    try:
        for ds in datasets:
            import re

            safe = re.sub(r"[^A-Za-z0-9_.\-]", "-", ds.name)[:40] or "dataset"
            keep = bool(args.collection)
            name = (f"{args.collection}-{safe}" if len(datasets) > 1 else args.collection) if keep \
                else f"budget-{safe}-{os.getpid()}"
            name = name[:64]
            try:
                with out.progress(ds.name) as progress:
                    results.append(evaluate_dataset_budgets(
                        state.engine, ds, name, budgets, chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                        mode=args.mode, pool=args.pool, progress=progress))
            finally:
                if not keep and state.engine.collection_info(name) is not None:
                    state.engine.drop(name)
        model, tok = state.engine.model_name, tokenizer_name(state.engine)
    finally:
        state.close()
    report = BudgetReport(
        command=_command_line(args, settings), embedding_model=model, tokenizer=tok, budgets=budgets, datasets=results,
        environment={"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
                     "elapsed_s": round(time.perf_counter() - t0, 1), "chunk_size": chunk_size,
                     "chunk_overlap": chunk_overlap, "mode": args.mode, "pool": args.pool, "split": args.split,
                     "max_docs": args.max_docs, "max_queries": args.max_queries,
                     "embedding_backend": settings.embedding_backend},
    )
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (folder / "report.md").write_text(render_budget_markdown(report), encoding="utf-8")
    if out.as_json:
        out.json(report)
    else:
        for d in results:
            out.table(f"{d.dataset}: recall inside the budget ({d.queries} queries, pool {d.pool})",
                      ["budget", "strategy", "recall", "any", "tokens", "entries", "documents"],
                      [[r.budget, r.strategy, f"{r.recall:.4f}", f"{r.any_relevant:.4f}", f"{r.tokens:.0f}",
                        f"{r.entries:.1f}", f"{r.documents:.1f}"] for r in d.rows])
        if args.out:
            out.line(f"wrote {Path(args.out) / 'report.md'} and results.json")
    return 0


def _command_line(args: argparse.Namespace, settings: Settings | None = None) -> str:
    backend = getattr(settings, "embedding_backend", "torch")
    parts = [f"RERANK_MCP_EMBEDDING_BACKEND={backend}", "rerank-mcp", "eval-budget", *[Path(d).name if Path(d).is_absolute() else d for d in args.datasets]]
    for flag, value in (("--budgets", args.budgets if args.budgets != "1000,2000,4000" else None),
                        ("--mode", args.mode if args.mode != "hybrid" else None),
                        ("--pool", args.pool if args.pool != 100 else None),
                        ("--split", args.split if args.split != "test" else None),
                        ("--max-docs", args.max_docs), ("--max-queries", args.max_queries),
                        ("--chunk-size", args.chunk_size), ("--chunk-overlap", args.chunk_overlap),
                        ("--analyzer", getattr(args, "analyzer", None)),
                        ("--out", args.out)):
        if value is not None:
            parts += [flag, str(value)]
    return " ".join(p if p.startswith("RERANK_MCP_") else shlex.quote(p) for p in parts)
