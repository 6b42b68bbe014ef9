"""``rerank-mcp eval``: retrieval and reranking quality on BEIR-format datasets.

Ingests each dataset into a collection (a throwaway one by default, dropped at the end), runs
every pipeline's queries through the same search path the MCP tool uses, and prints a table;
``--out`` also writes report.md, results.json and chart.png (nDCG@10 against median latency).
``--min-ndcg PIPELINE=FLOAT`` turns it into a quality gate: exit status 3 below a floor.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rerank_mcp.bench.beir import add_dataset_arguments
from rerank_mcp.server.output import Output
from rerank_mcp.server.settings import Settings

DEFAULT_PIPELINES = "bm25,dense,hybrid-rrf,hybrid,hybrid+embedding,bm25+embedding"
FLOOR_EXIT = 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "eval",
        help="measure retrieval and reranking quality on BEIR-format datasets",
        description="Ingest BEIR-format datasets (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) and report "
        "nDCG@10, Recall@100, MRR@10 and latency per pipeline.",
    )
    add_dataset_arguments(s, "the pipelines")
    s.add_argument("--pipelines", default=DEFAULT_PIPELINES,
                   help="comma-separated: bm25, dense, hybrid (search defaults), hybrid-rrf, hybrid-minmax, "
                        "hybrid-zscore, hybrid-zscore(dense=1,bm25=0.5), hybrid(feedback) or dense(feedback) (search's "
                        "feedback), each optionally +<reranker> "
                        f"(e.g. hybrid+embedding, bm25+cascade(bm25:30,embedding)); default {DEFAULT_PIPELINES}")
    s.add_argument("--candidates", type=int, default=100, help="first-stage hits a reranker sees (default 100)")
    s.add_argument("--allow-stand-in", action="store_true",
                   help="run pipelines whose reranker's model is not on this machine with the reranker that stands "
                        "in for it (the table and results.json name what ran); without it such a pipeline is an "
                        "error, before any work, giving the command that fetches the model")
    s.add_argument("--shuffle-candidates", type=int, metavar="SEED",
                   help="rerankers see the first stage's candidates shuffled (seeded per query) and unordered, as "
                        "passages an agent collected would arrive: measures reranking without a first-stage order")
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


class HeldLogs:
    """While progress is shown: log records (INFO from the engines, warnings from model libraries,
    Python warnings) are held back instead of interleaving with the progress lines, and written
    to stderr, once each, by :meth:`flush` when the work is done."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        self._saved: list[tuple[logging.Logger, list[logging.Handler]]] = []
        self._depth = 0

    class _Keep(logging.Handler):
        def __init__(self, sink: list[logging.LogRecord]) -> None:
            super().__init__(logging.DEBUG)
            self.sink = sink

        def emit(self, record: logging.LogRecord) -> None:
            self.sink.append(record)

    def __enter__(self) -> HeldLogs:
        self._depth += 1
        if self._depth == 1:
            root = logging.getLogger()
            self._saved = [(root, list(root.handlers))]
            keep = self._Keep(self.records)
            keep.setLevel(min((h.level for h in root.handlers), default=logging.WARNING))
            root.handlers = [keep]
            logging.captureWarnings(True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            logging.captureWarnings(False)
            for logger, handlers in self._saved:
                logger.handlers = handlers

    def flush(self) -> None:
        """Write the held records to stderr (each distinct message once, with its count)."""
        if not self.records:
            return
        fmt = logging.Formatter("%(levelname)s %(name)s: %(message)s")
        seen: dict[str, int] = {}
        for r in self.records:
            text = fmt.format(r).rstrip()
            seen[text] = seen.get(text, 0) + 1
        sys.stderr.write(f"log lines held back during the run ({len(self.records)}):\n")
        for text, n in seen.items():
            sys.stderr.write(text + (f" (x{n})" if n > 1 else "") + "\n")
        self.records.clear()


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
    from rerank_mcp.bench.beir import load_beir, slice_dataset
    from rerank_mcp.bench.evaluate import EvalReport, check_floors, evaluate_dataset
    from rerank_mcp.bench.extra import require
    from rerank_mcp.errors import InvalidInput
    from rerank_mcp.server.state import build_state
    from rerank_mcp.tools.evaluate import check_pipelines, parse_pipeline, split_pipelines, with_baselines

    # before any work: the paired tests need ranx, the chart matplotlib (the 'eval' extra)
    require("ranx", *(["matplotlib"] if args.out else []))
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

    if getattr(args, "analyzer", None):
        from rerank_mcp.index.analyzers import check_name

        settings = settings.model_copy(update={"analyzer": check_name(args.analyzer)})
    state = build_state(settings, warm=False, cache_queries=bool(args.cache_query_embeddings))
    registry = state.registry
    reports, findings = [], []
    analyzers: dict[str, str] = {}
    t0 = time.perf_counter()
    try:
        # every pipeline's reranker, options and model, before any ingest
        check_pipelines(registry, with_baselines(pipelines), allow_stand_in=bool(args.allow_stand_in))
    except BaseException:
        state.close()
        raise
    held = HeldLogs()
    try:
        for ds in datasets:
            name, throwaway = _collection_name(args, ds.name, len(datasets) > 1)
            if throwaway and state.engine.collection_info(name) is not None:
                state.engine.drop(name)
            try:
                with held, out.progress(f"{ds.name}") as progress:
                    rep, fnd = evaluate_dataset(
                        state.engine, registry, ds, name, pipelines, chunk_size=chunk_size,
                        chunk_overlap=chunk_overlap, candidates=args.candidates,
                        limits=state.search_limits, progress=progress, stat_test=args.stat_test,
                        shuffle_candidates=args.shuffle_candidates,
                    )
                info = state.engine.collection_info(name)
                analyzers[ds.name] = info.analyzer_name if info else "legacy"
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
        held.flush()
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
            "analyzers": analyzers,
            "stat_test": args.stat_test,
            "shuffle_candidates": args.shuffle_candidates,
            "allow_stand_in": bool(args.allow_stand_in),
        },
    )
    if args.out:
        from rerank_mcp.bench.report import write_eval_outputs

        write_eval_outputs(report, Path(args.out))
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
                [[p.label + ("" if p.pipeline in pipelines else " (baseline)"), f"{p.ndcg_at_10:.4f}",
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
                        ("--candidates", args.candidates if args.candidates != 100 else None),
                        ("--analyzer", getattr(args, "analyzer", None)), ("--out", args.out)):
        if value is not None:
            parts += [flag, str(value)]
    if getattr(args, "shuffle_candidates", None) is not None:
        parts += ["--shuffle-candidates", str(args.shuffle_candidates)]
    if getattr(args, "allow_stand_in", False):
        parts.append("--allow-stand-in")
    if args.cache_query_embeddings:
        parts.append("--cache-query-embeddings")
    if getattr(args, "stat_test", "fisher") != "fisher":
        parts += ["--stat-test", args.stat_test]
    for f in args.min_ndcg:
        parts += ["--min-ndcg", f]
    return " ".join(p if p.startswith("RERANK_MCP_") else shlex.quote(p) for p in parts)
