"""Recall inside a token budget: shaped results (tools/shaping.py) against plain top-k.

For every judged query of a BEIR dataset one search fetches a pool of candidate chunks; each
strategy then fills a budget of B tokens from that same pool:

- ``top-k``: the hits in rank order, as many as fit (the largest k whose texts total at most
  B tokens): what a client that cuts a plain result at its budget gets;
- ``packed``: :func:`~rerank_mcp.tools.shaping.shape` with ``max_tokens=B`` (near-duplicates
  folded, first fit in rank order);
- ``packed+document``: the same with ``group_by="document"`` (a document's chunks merged,
  overlaps not repeated);
- ``packed+document+expand1``: and one neighbouring chunk on each side of every hit.

The measure is recall of the relevant documents (grade > 0) among the entries' documents,
averaged over queries, with the tokens actually used (same tokenizer as ``max_tokens``: the
embedding model's word pieces).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from rerank_mcp.errors import InvalidInput
from rerank_mcp.index.contract import Progress
from rerank_mcp.tools.schema import Frozen
from rerank_mcp.tools.shaping import shape

STRATEGIES: dict[str, dict[str, Any]] = {
    "top-k": {},
    "packed": {},
    "packed+document": {"group_by": "document"},
    "packed+document+expand1": {"group_by": "document", "expand": 1},
}
DEFAULT_BUDGETS = (1000, 2000, 4000)


class BudgetRow(Frozen):
    strategy: str
    budget: int
    recall: float = Field(description="mean over queries of relevant documents inside the budget / relevant documents")
    any_relevant: float = Field(description="share of queries with at least one relevant document inside the budget")
    tokens: float = Field(description="mean tokens used")
    entries: float = Field(description="mean entries returned")
    documents: float = Field(description="mean distinct documents returned")


class BudgetDataset(Frozen):
    dataset: str
    documents: int
    chunks: int
    queries: int
    pool: int
    mode: str
    ingest_s: float
    eval_s: float
    rows: list[BudgetRow]


class BudgetReport(Frozen):
    command: str | None = None
    embedding_model: str
    tokenizer: str
    budgets: list[int]
    datasets: list[BudgetDataset]
    environment: dict[str, Any] = Field(default_factory=dict)


def parse_budgets(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out or any(b <= 0 for b in out):
        raise InvalidInput(f"--budgets must be positive integers separated by commas, e.g. 1000,2000,4000; got {text!r}")
    return sorted(set(out))


def topk_within(hits: Sequence[Any], counts: Sequence[int], budget: int) -> tuple[list[Any], int]:
    """The longest prefix of ``hits`` whose token counts add up to at most ``budget``."""
    used, out = 0, []
    for h, n in zip(hits, counts):
        if used + n > budget:
            break
        out.append(h)
        used += n
    return out, used


def evaluate_budgets(
    engine: Any,
    collection: str,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    *,
    mode: str = "hybrid",
    pool: int = 100,
    strategies: Sequence[str] = tuple(STRATEGIES),
    progress: Progress | None = None,
    label: str = "",
) -> list[BudgetRow]:
    from rerank_mcp.tools.search import SearchLimits, search

    for s in strategies:
        if s not in STRATEGIES:
            raise InvalidInput(f"unknown strategy {s!r}; use {', '.join(STRATEGIES)}")
    acc: dict[tuple[str, int], dict[str, float]] = {
        (s, b): {"recall": 0.0, "any": 0.0, "tokens": 0.0, "entries": 0.0, "documents": 0.0}
        for s in strategies for b in budgets
    }
    qids = [q for q in queries if any(g > 0 for g in qrels.get(q, {}).values())]
    for i, qid in enumerate(qids):
        relevant = {d for d, g in qrels[qid].items() if g > 0}
        res = search(engine, None, queries[qid], collection, k=pool, mode=mode, limits=SearchLimits(max_k=max(pool, 1000)))
        counts = engine.embedding.count_tokens([h.text for h in res.hits]) if res.hits else []
        for b in budgets:
            for s in strategies:
                if s == "top-k":
                    hits, used = topk_within(res.hits, counts, b)
                else:
                    shaped = shape(engine, res, max_tokens=b, **STRATEGIES[s])
                    hits, used = shaped.hits, shaped.tokens or 0
                docs = {h.doc_id for h in hits}
                # a folded near-duplicate is listed with its document id, its text is the entry's
                found = docs | {d.doc_id for h in hits for d in (getattr(h, "duplicates", None) or [])}
                a = acc[(s, b)]
                a["recall"] += len(found & relevant) / len(relevant)
                a["any"] += 1.0 if found & relevant else 0.0
                a["tokens"] += used
                a["entries"] += len(hits)
                a["documents"] += len(docs)
        if progress and (i % 10 == 0 or i == len(qids) - 1):
            progress(i + 1, len(qids), f"{label}budgets: queries")
    n = max(1, len(qids))
    return [
        BudgetRow(strategy=s, budget=b, recall=round(a["recall"] / n, 4), any_relevant=round(a["any"] / n, 4),
                  tokens=round(a["tokens"] / n, 1), entries=round(a["entries"] / n, 2),
                  documents=round(a["documents"] / n, 2))
        for (s, b), a in acc.items()
    ]


def evaluate_dataset_budgets(engine: Any, ds: Any, collection: str, budgets: Sequence[int], *, chunk_size: int,
                             chunk_overlap: int, mode: str = "hybrid", pool: int = 100,
                             progress: Progress | None = None) -> BudgetDataset:
    """Ingest a BEIR dataset (:class:`~rerank_mcp.bench.beir.BeirDataset`) and measure every strategy
    at every budget."""
    from rerank_mcp.bench.evaluate import ingest_dataset

    t0 = time.perf_counter()
    ingest_dataset(engine, collection, ds, chunk_size, chunk_overlap, progress)
    t1 = time.perf_counter()
    rows = evaluate_budgets(engine, collection, ds.queries, ds.qrels, budgets, mode=mode, pool=pool,
                            progress=progress, label=f"{ds.name} ")
    return BudgetDataset(dataset=ds.name, documents=len(ds.documents), chunks=engine.count_chunks(collection),
                         queries=len(ds.queries), pool=pool, mode=mode, ingest_s=round(t1 - t0, 1),
                         eval_s=round(time.perf_counter() - t1, 1), rows=rows)
