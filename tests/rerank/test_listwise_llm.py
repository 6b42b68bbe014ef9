"""The ``rankllm`` reranker over httpx against a local OpenAI-compatible
``/v1/chat/completions`` server on 127.0.0.1 (tests/fixtures/servers.py: a fake of an LLM
endpoint, which cannot run here at useful quality). The server either ranks by a hidden
relevance marker in each passage (an oracle) or serves scripted answers: malformed, partial,
repeated ids, HTTP errors."""

from __future__ import annotations

import logging
import random

import pytest

from rerank_mcp.errors import DependencyMissing, InvalidInput, UpstreamError
from rerank_mcp.tools.rerank.listwise_llm import complete_permutation, parse_permutation
from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry
from tests.fixtures.servers import FakeOpenAI, hidden_rel, prompt_passages

KEY = "llm-key-DO-NOT-LEAK-42"


@pytest.fixture
def server():
    with FakeOpenAI(api_key=KEY) as srv:
        yield srv


def make(server, **options):
    ctx = RerankContext(configs={"rankllm": {"base_url": server.base_url, "model": "rank-zephyr", "api_key": KEY}}, timeout_s=5.0)
    reg = RerankerRegistry(ctx)
    return reg.get("rankllm", {"backoff": 0.01, **options})


def passages(n, seed=0):
    rng = random.Random(seed)
    rels = rng.sample(range(1000), n)
    return [f"passage number {i}, rel={r}" for i, r in enumerate(rels)]


@pytest.mark.parametrize(
    "answer,expected",
    [
        ("[3] > [1] > [2]", [2, 0, 1]),
        ("[3] > [3] > [1]", [2, 0]),  # repeated id kept once
        ("[9] > [2] > [0] > [x]", [1]),  # out of range and junk dropped
        ("2 > 3 > 1", [1, 2, 0]),  # no brackets: bare numbers
        ("I cannot rank these.", []),
        ("", []),
    ],
)
def test_parse_permutation(answer, expected):
    assert parse_permutation(answer, 3) == expected


def test_complete_permutation_keeps_prior_order_of_unranked():
    assert complete_permutation([4, 1], 6) == [4, 1, 0, 2, 3, 5]


def test_single_window_follows_the_model(server):
    rr = make(server)
    ps = passages(7)
    res = rr.rerank("which is best?", ps)
    assert [p.index for p in res.passages] == sorted(range(7), key=lambda i: -hidden_rel(ps[i]))
    assert [p.rank for p in res.passages] == list(range(1, 8))
    assert res.passages[0].score > res.passages[1].score > res.passages[-1].score
    req = server.requests[0]
    assert req["headers"].get("Authorization") == f"Bearer {KEY}"
    assert req["body"]["model"] == "rank-zephyr"
    assert len(prompt_passages(req["body"]["messages"])) == 7


@pytest.mark.parametrize("prompt", ["rankgpt", "rankzephyr"])
def test_sliding_window_brings_the_true_top_10_up(server, prompt):
    ps = passages(100, seed=7)
    rr = make(server, prompt=prompt, window_size=20, stride=10)
    res = rr.rerank("q", ps)
    truth = sorted(range(100), key=lambda i: -hidden_rel(ps[i]))
    assert [p.index for p in res.passages][:10] == truth[:10]
    assert sorted(p.index for p in res.passages) == list(range(100))  # each exactly once
    # Bottom-up windows: 80-100, 70-90, ..., 0-20.
    assert len(server.requests) == 9
    assert all(len(w) == 20 for w in server.windows())
    first = prompt_passages(server.requests[0]["body"]["messages"])
    assert sorted(hidden_rel(t) for t in first.values()) == sorted(hidden_rel(p) for p in ps[80:])
    if prompt == "rankzephyr":
        assert len(server.requests[0]["body"]["messages"]) == 2
    else:
        assert len(server.requests[0]["body"]["messages"]) == 3 + 2 * 20 + 1


def test_partial_and_repeated_answers_keep_every_candidate_once(server):
    server.script = ["[4] > [4] > [2] > [99]"]
    rr = make(server)
    res = rr.rerank("q", passages(6))
    assert [p.index for p in res.passages] == [3, 1, 0, 2, 4, 5]
    assert any("partial" in n for n in res.notes)
    assert res.fallback is None


def test_malformed_answer_is_retried(server):
    server.script = ["Sure! Here is my ranking:", "[2] > [1] > [3]"]
    rr = make(server, max_retries=2)
    res = rr.rerank("q", passages(3))
    assert [p.index for p in res.passages] == [1, 0, 2]
    assert len(server.requests) == 2 and res.fallback is None


def test_failed_window_keeps_input_order_and_says_so(server):
    # 30 candidates, window 20 stride 10: windows 10-30 then 0-20; the first fails 3 times.
    server.script = [500, 503, "garbage"]
    rr = make(server, window_size=20, stride=10, max_retries=2)
    ps = passages(30, seed=3)
    res = rr.rerank("q", ps)
    assert len(server.requests) == 4
    assert res.fallback and "1 of 2 window(s)" in res.fallback
    assert any("window 11-30" in n for n in res.notes)
    # The second window (0-20, after the failed one kept 10-30 as is) ranked its 20 correctly.
    top = [p.index for p in res.passages[:20]]
    assert top == sorted(range(20), key=lambda i: -hidden_rel(ps[i]))
    assert [p.index for p in res.passages[20:]] == list(range(20, 30))


def test_timeout_is_retried(server):
    server.script = [("slow", 1.0)]
    rr = make(server, timeout=0.3, max_retries=1)
    ps = passages(4)
    res = rr.rerank("q", ps)
    assert [p.index for p in res.passages] == sorted(range(4), key=lambda i: -hidden_rel(ps[i]))


def test_all_windows_fail_uses_local_fallback(server):
    server.script = [500] * 10
    rr = make(server, max_retries=1, fallback="bm25")
    res = rr.rerank("purring cats", ["dogs bark", "a cat purring", "fish swim"])
    assert res.fallback and "bm25" in res.fallback
    assert res.passages[0].index == 1


def test_rejected_key_is_a_clear_error_without_the_key(server, caplog):
    caplog.set_level(logging.DEBUG)
    ctx = RerankContext(configs={"rankllm": {"base_url": server.base_url, "api_key": "wrong-key-123456"}})
    rr = RerankerRegistry(ctx).get("rankllm")
    with pytest.raises(UpstreamError, match="rejected the API key") as err:
        rr.rerank("q", passages(3))
    assert "wrong-key-123456" not in str(err.value) + caplog.text + repr(rr) + str(rr.options)


def test_long_passages_are_cut_and_reported(server):
    rr = make(server, max_words=5)
    res = rr.rerank("q", ["one two three rel=1", "a b c d e f g h rel=5"])
    assert res.truncated == [1]
    sent = prompt_passages(server.requests[0]["body"]["messages"])
    assert sent[2] == "a b c d e"


def test_no_endpoint_is_dependency_missing():
    with pytest.raises(DependencyMissing, match="base_url"):
        RerankerRegistry(RerankContext()).get("rankllm")


def test_bad_options():
    reg = RerankerRegistry(RerankContext(configs={"rankllm": {"base_url": "http://127.0.0.1:9/v1"}}))
    with pytest.raises(InvalidInput, match="prompt"):
        reg.get("rankllm", {"prompt": "chatty"})
    with pytest.raises(InvalidInput, match="stride"):
        reg.get("rankllm", {"window_size": 10, "stride": 10})
    with pytest.raises(InvalidInput, match="temperatur"):
        reg.get("rankllm", {"temperatur": 0})
