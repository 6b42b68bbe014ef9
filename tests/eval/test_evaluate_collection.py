"""evaluate_collection on a tiny hand-made collection (real SQLite, FAISS, tantivy, MiniLM)."""

from __future__ import annotations

import pytest

from rerank_mcp.errors import InvalidInput, NotFound
from rerank_mcp.tools.evaluate import CollectionEvalResult, evaluate_collection
from rerank_mcp.tools.ingest import ingest

DOCS = {
    "solar": "Solar panels convert sunlight into electricity using photovoltaic cells.",
    "wind": "Wind turbines generate electric power from moving air.",
    "bread": "To bake sourdough bread you need flour, water, salt and a starter culture.",
    "pasta": "Fresh pasta is made from eggs and durum wheat semolina, then boiled briefly.",
    "cats": "Cats are small domesticated carnivores that sleep for most of the day.",
    "dogs": "Dogs were domesticated from wolves and are loyal companions to humans.",
    "rivers": "Rivers carry fresh water from mountains to the sea and shape valleys.",
    "volcano": "A volcano erupts when molten rock, ash and gases escape from a magma chamber.",
}

JUDGMENTS = [
    {"query_id": "energy", "query": "photovoltaic solar electricity", "relevant": ["solar"]},
    {"query": "how do wind turbines make power", "relevant": {"wind": 2, "solar": 1}},
    {"query": "sourdough bread baking", "relevant": ["bread"]},
    {"query": "pets that descend from wolves", "relevant": ["dogs"]},
]


@pytest.fixture
def collection(engine):
    ingest(engine, "tiny", [{"id": k, "text": v} for k, v in DOCS.items()])
    return "tiny"


@pytest.fixture
def registry(embedder):
    from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry

    return RerankerRegistry(RerankContext(embedder=lambda model: embedder))


@pytest.mark.slow  # several pipelines with fixture rerankers over every query
def test_metrics_per_pipeline_and_query(engine, registry, collection):
    res = evaluate_collection(engine, registry, collection, JUDGMENTS, ["bm25", "hybrid-rrf+embedding", "dense"])
    assert isinstance(res, CollectionEvalResult)
    assert res.queries == 4
    names = [p.pipeline for p in res.pipelines]
    # first stages and both arms are added so the findings have something to compare with
    assert set(names) == {"bm25", "dense", "hybrid-rrf", "hybrid-rrf+embedding"}
    for p in res.pipelines:
        assert 0.0 <= p.ndcg_at_10 <= 1.0 and 0.0 <= p.recall_at_100 <= 1.0 and 0.0 <= p.mrr_at_10 <= 1.0
        assert p.queries == 4 and p.errors == 0 and p.latency_p95_ms >= p.latency_p50_ms >= 0
    by = {p.pipeline: p for p in res.pipelines}
    assert by["dense"].ndcg_at_10 > 0.8 and by["hybrid-rrf"].ndcg_at_10 > 0.8
    ids = [q.query_id for q in res.per_query]
    assert ids == ["energy", "q2", "q3", "q4"]
    first = res.per_query[0]
    assert first.top_docs["bm25"][0] == "solar" and first.ndcg_at_10["bm25"] == 1.0
    for f in res.findings:
        assert f.kind in ("rerank_below_first_stage", "hybrid_below_best_arm") and f.delta < 0
    # the result is a frozen pydantic model that serialises (the MCP tool returns it as is)
    assert CollectionEvalResult.model_validate_json(res.model_dump_json()) == res


def test_bad_judgments(engine, registry, collection):
    with pytest.raises(InvalidInput, match="not in collection 'tiny'.*'nope'"):
        evaluate_collection(engine, registry, collection, [{"query": "x", "relevant": ["nope"]}], ["bm25"])
    with pytest.raises(InvalidInput, match="non-empty list"):
        evaluate_collection(engine, registry, collection, [], ["bm25"])
    with pytest.raises(InvalidInput, match=r"judgments\[0\]: relevant is empty"):
        evaluate_collection(engine, registry, collection, [{"query": "x", "relevant": []}], ["bm25"])
    with pytest.raises(InvalidInput, match=r"judgments\[0\]"):
        evaluate_collection(engine, registry, collection, [{"query": "x"}], ["bm25"])
    with pytest.raises(InvalidInput, match="duplicate query_id"):
        evaluate_collection(engine, registry, collection, [{"query_id": "a", "query": "x", "relevant": ["cats"]},
                                                           {"query_id": "a", "query": "y", "relevant": ["dogs"]}], ["bm25"])
    with pytest.raises(InvalidInput, match="unknown pipeline"):
        evaluate_collection(engine, registry, collection, JUDGMENTS, ["sparse"])
    with pytest.raises(NotFound):
        evaluate_collection(engine, registry, collection, JUDGMENTS, ["bm25+nosuch"])
    with pytest.raises(NotFound):
        evaluate_collection(engine, registry, "missing", JUDGMENTS, ["bm25"])
