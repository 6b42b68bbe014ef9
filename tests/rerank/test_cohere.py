"""The ``cohere`` reranker: the real cohere SDK (ClientV2) against a local Cohere-compatible
server on 127.0.0.1 (tests/fixtures/servers.py: a fake of the remote API, which cannot be
reached from here). Ordering, top_n, batching, retries, error messages, key hygiene."""

from __future__ import annotations

import logging
import random
import time

import pytest

from rerank_mcp.errors import DependencyMissing, InvalidInput, UpstreamError
from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry
from tests.fixtures.servers import FakeCohere, hidden_rel

KEY = "sk-test-SECRET-0123456789abcdef"


@pytest.fixture
def server():
    with FakeCohere(KEY) as srv:
        yield srv


def make(server, key=KEY, **options):
    ctx = RerankContext(configs={"cohere": {"api_key": key, "base_url": server.base_url}}, timeout_s=5.0)
    reg = RerankerRegistry(ctx)
    return reg.get("cohere", {"backoff": 0.01, **options}), reg


def docs(n, seed=0):
    rng = random.Random(seed)
    rels = rng.sample(range(10 * n), n)
    return [f"passage {i} about things rel={r / (10 * n):.4f}" for i, r in enumerate(rels)]


def test_orders_by_relevance_score(server):
    rr, _ = make(server)
    ds = docs(12)
    res = rr.rerank("what matters", ds)
    got = [p.index for p in res.passages]
    assert got == sorted(range(12), key=lambda i: -hidden_rel(ds[i]))
    assert [p.score for p in res.passages] == sorted((hidden_rel(d) for d in ds), reverse=True)
    assert res.reranker == "cohere" and res.model == "rerank-v3.5"
    body = server.requests[-1]["body"]
    assert body["model"] == "rerank-v3.5" and body["query"] == "what matters" and body["documents"] == ds


def test_top_n_is_sent_and_applied(server):
    rr, _ = make(server)
    ds = docs(20, seed=1)
    res = rr.rerank("q", ds, top_n=3)
    assert server.requests[-1]["body"]["top_n"] == 3
    assert [p.index for p in res.passages] == sorted(range(20), key=lambda i: -hidden_rel(ds[i]))[:3]
    assert any("top_n=3" in n for n in res.notes)


def test_batching_past_the_per_request_limit(server):
    server.max_docs = 7
    ds = docs(30, seed=2)
    rr, _ = make(server, batch_size=7, max_tokens_per_doc=64)
    res = rr.rerank("q", ds)
    bodies = [r["body"] for r in server.requests]
    assert [len(b["documents"]) for b in bodies] == [7, 7, 7, 7, 2]
    assert all(b["max_tokens_per_doc"] == 64 for b in bodies)
    assert [p.index for p in res.passages] == sorted(range(30), key=lambda i: -hidden_rel(ds[i]))
    # Without batching the server refuses the request: the batching is what made it work.
    rr2, _ = make(server, batch_size=1000)
    with pytest.raises(UpstreamError, match="400"):
        rr2.rerank("q", ds)


def test_batch_size_over_api_limit_is_invalid(server):
    with pytest.raises(InvalidInput, match="batch_size"):
        make(server, batch_size=5000)


def test_429_is_retried_then_succeeds(server):
    server.script = [429, 429]
    rr, _ = make(server, max_retries=3)
    ds = docs(5, seed=3)
    res = rr.rerank("q", ds)
    assert len(server.requests) == 3
    assert [p.index for p in res.passages] == sorted(range(5), key=lambda i: -hidden_rel(ds[i]))


def test_500_retries_are_bounded(server):
    server.script = [500] * 10
    rr, _ = make(server, max_retries=2)
    with pytest.raises(UpstreamError, match=r"after 3 attempt\(s\).*500"):
        rr.rerank("q", docs(3))
    assert len(server.requests) == 3  # ours: 1 + 2 retries; the SDK's own retries are off


def test_backoff_grows_exponentially(server):
    server.script = [503, 503, 503]
    rr, _ = make(server, max_retries=3, backoff=0.1)
    t0 = time.perf_counter()
    rr.rerank("q", docs(3))
    assert time.perf_counter() - t0 >= 0.1 + 0.2 + 0.4 - 0.02


def test_400_is_a_clear_error_without_retry(server):
    server.script = [400]
    rr, _ = make(server)
    with pytest.raises(UpstreamError, match=r"rejected the request \(HTTP 400\).*scripted failure 400"):
        rr.rerank("q", docs(3))
    assert len(server.requests) == 1


def test_401_says_the_key_was_rejected_and_never_shows_it(server, caplog):
    caplog.set_level(logging.DEBUG)
    rr, _ = make(server, key="sk-WRONG-key-abcdef0123")
    with pytest.raises(UpstreamError) as err:
        rr.rerank("q", docs(3))
    msg = str(err.value)
    assert "rejected the API key" in msg and "401" in msg
    assert "sk-WRONG-key-abcdef0123" not in msg
    assert "sk-WRONG-key-abcdef0123" not in caplog.text
    assert "sk-WRONG-key-abcdef0123" not in repr(rr)
    assert err.value.__cause__ is None and err.value.__context__ is None or "sk-WRONG" not in str(err.value.__context__)


def test_timeout_is_a_clear_error(server):
    server.script = [("slow", 1.5)]
    rr, _ = make(server, timeout=0.3)
    t0 = time.perf_counter()
    with pytest.raises(UpstreamError, match=r"did not answer within 0.3 s.*timeout"):
        rr.rerank("q", docs(3))
    assert time.perf_counter() - t0 < 1.4


def test_key_never_in_logs_or_results(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.script = [429, 500]
    rr, _ = make(server)
    res = rr.rerank("q", docs(4))
    server.script = [500] * 5
    with pytest.raises(UpstreamError) as err:
        rr.rerank("q", docs(4))
    for text in (caplog.text, str(err.value), res.model_dump_json(), repr(rr), str(rr.options)):
        assert KEY not in text
    assert "retrying" in caplog.text  # the retries were logged, the key was not


def test_no_key_is_dependency_missing(server, no_cohere_env):
    with pytest.raises(DependencyMissing, match="RERANK_MCP_COHERE_API_KEY or CO_API_KEY"):
        make(server, key=None)


def test_key_from_co_api_key_env(server, monkeypatch):
    monkeypatch.setenv("CO_API_KEY", KEY)
    rr, _ = make(server, key=None)
    assert len(rr.rerank("q", docs(3)).passages) == 3


def test_fallback_to_local_reranker(server):
    server.script = [500] * 5
    rr, _ = make(server, max_retries=1, fallback="bm25")
    ds = ["cats purr rel=0.1", "dogs bark loudly rel=0.9", "cats and more cats rel=0.5"]
    res = rr.rerank("cats", ds)
    assert res.fallback and "bm25" in res.fallback and "500" in res.fallback
    assert KEY not in res.fallback
    assert [p.index for p in res.passages][-1] == 1  # bm25 order: the dog passage has no "cats"


def test_unknown_option_is_rejected(server):
    with pytest.raises(InvalidInput, match="retries_forever"):
        make(server, retries_forever=True)
