"""The rerank HTTP API of `rerank-mcp serve --http`, run as a real subprocess.

Cohere v2 and v1 through the official ``cohere`` SDK, Jina and TEI shapes through httpx, the
OpenAI-style model list; the project's own ``cohere`` reranker pointed at its own endpoint;
every endpoint's errors (status and shape); 8 concurrent clients; and the batching queue on
its own.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import anyio
import cohere
import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.env import offline_env
from tests.fixtures.models import FLASHRANK_MODEL, build_flashrank
from tests.fixtures.servers import models_answer, serve_http

TOKEN = "api-token-5678-abcdef"
MAX_BYTES = 100_000
MAX_DOCS = 40

QUERY = "vitamin d deficiency and bone fractures"
DOCS = [
    "The quick brown fox jumps over the lazy dog.",
    "Vitamin D deficiency is associated with bone fractures in older adults.",
    "FAISS performs efficient similarity search over dense vectors.",
    "Bone density falls with age; fractures follow.",
    "Okapi BM25 ranks documents by term frequency and inverse document frequency.",
    "Vitamin supplements are popular.",
]



@contextmanager
def _server(tmp: Path, **env_extra: str):
    env = offline_env(RERANK_MCP_DATA_DIR=str(tmp / "data"), RERANK_MCP_HTTP_TOKEN=TOKEN, RERANK_MCP_LOG_LEVEL="INFO",
                      **env_extra)
    env.pop("CO_API_KEY", None)
    env.pop("RERANK_MCP_COHERE_API_KEY", None)
    with serve_http(env, tmp / "server.log", ready=models_answer(TOKEN), cwd=tmp) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http-api")
    cache = tmp / "flashrank"
    build_flashrank(cache)
    aliases = {"rerank-v3.5": {"reranker": "bm25"}, "fr-small": {"reranker": "flashrank", "options": {"batch_size": 4}}}
    with _server(tmp, RERANK_MCP_FLASHRANK_CACHE_DIR=str(cache), RERANK_MCP_MAX_REQUEST_BYTES=str(MAX_BYTES),
                 RERANK_MCP_MAX_PASSAGES=str(MAX_DOCS), RERANK_MCP_HTTP_MODELS=json.dumps(aliases)) as base:
        yield base
    logs = (tmp / "server.log").read_text()
    assert TOKEN not in logs
    assert "Traceback" not in logs


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _local(family: str, query: str = QUERY, docs: list[str] = DOCS) -> list[int]:
    from rerank_mcp.tools.rerank.registry import RerankerRegistry

    return [p.index for p in RerankerRegistry().get(family).rerank(query, docs).passages]


# ----------------------------------------------------------------------------- the four APIs


@pytest.mark.slow  # the Cohere SDK against a server
def test_cohere_v2_sdk(api):
    co = cohere.ClientV2(api_key=TOKEN, base_url=api)
    r = co.rerank(model="bm25", query=QUERY, documents=DOCS, top_n=3)
    assert [x.index for x in r.results] == _local("bm25")[:3]
    assert r.results[0].index == 1
    scores = [x.relevance_score for x in r.results]
    assert scores == sorted(scores, reverse=True)
    assert r.id and r.meta.api_version.version == "2" and r.meta.billed_units.search_units == 1
    # an alias configured in RERANK_MCP_HTTP_MODELS, and the model's max_tokens_per_doc
    r2 = co.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, max_tokens_per_doc=64)
    assert [x.index for x in r2.results] == _local("bm25")
    # flashrank by its model name: FlashRank's scores are in [0, 1]
    r3 = co.rerank(model=FLASHRANK_MODEL, query=QUERY, documents=DOCS)
    assert sorted(x.index for x in r3.results) == list(range(len(DOCS)))
    assert all(0.0 <= x.relevance_score <= 1.0 for x in r3.results)


def test_cohere_v1_sdk_and_jina(api):
    co = cohere.Client(api_key=TOKEN, base_url=api)
    docs = [d if i % 2 else {"text": d} for i, d in enumerate(DOCS)]
    r = co.rerank(model="bm25", query=QUERY, documents=docs, top_n=2, return_documents=True)
    assert [x.index for x in r.results] == _local("bm25")[:2]
    assert r.results[0].document.text == DOCS[r.results[0].index]
    assert r.meta.api_version.version == "1"
    r = co.rerank(model="bm25", query=QUERY, documents=DOCS)
    assert all(x.document is None for x in r.results)

    # Jina's request and answer
    body = {"model": "embedding", "query": QUERY, "documents": DOCS, "top_n": 3, "return_documents": True}
    j = httpx.post(f"{api}/v1/rerank", json=body, headers=_auth(), timeout=120)
    assert j.status_code == 200, j.text
    out = j.json()
    assert out["model"] == "embedding" and out["usage"]["total_tokens"] > 0
    assert len(out["results"]) == 3 and out["results"][0]["index"] == 1
    assert out["results"][0]["document"] == {"text": DOCS[1]}


def test_tei_shape(api):
    body = {"query": QUERY, "texts": DOCS, "return_text": True, "raw_scores": False, "truncate": True,
            "model": "bm25"}
    r = httpx.post(f"{api}/rerank", json=body, headers=_auth(), timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert isinstance(out, list) and [x["index"] for x in out] == _local("bm25")
    assert all(x["text"] == DOCS[x["index"]] for x in out)
    r = httpx.post(f"{api}/rerank", json={"query": QUERY, "texts": DOCS, "model": "fr-small"}, headers=_auth(), timeout=60)
    assert r.status_code == 200, r.text
    assert all(set(x) == {"index", "score"} for x in r.json())


def test_models_list(api):
    r = httpx.get(f"{api}/v1/models", headers=_auth(), timeout=60)
    assert r.status_code == 200
    out = r.json()
    assert out["object"] == "list"
    ids = {m["id"] for m in out["data"]}
    assert {"bm25", "embedding", "flashrank", FLASHRANK_MODEL, "rerank-v3.5", "fr-small"} <= ids
    assert all(m["object"] == "model" and m["owned_by"] for m in out["data"])
    assert "cohere" not in ids and "rankllm" not in ids  # network rerankers are not served
    # not here: the default cross-encoder's model, so neither it nor the cascade that needs it (a 503 when named)
    assert "cross-encoder" not in ids and "cascade" not in ids


def test_own_cohere_family_matches_local_bm25(api):
    """The project's cohere reranker, pointed at this server, ranks as bm25 does locally, with
    bm25's scores mapped into [0, 1]."""
    from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry

    reg = RerankerRegistry(RerankContext(configs={"cohere": {"api_key": TOKEN}}))
    queries = [QUERY, "similarity search over vectors", "lazy dog"]
    for q in queries:
        remote = reg.get("cohere", {"model": "bm25", "base_url": api, "max_retries": 0}).rerank(q, DOCS)
        local = reg.get("bm25").rerank(q, DOCS)
        assert [p.index for p in remote.passages] == [p.index for p in local.passages], q
        # relevance_score is bm25's own score mapped into [0, 1]: s / (s + 5)
        assert [p.score for p in remote.passages] == pytest.approx([p.score / (p.score + 5) for p in local.passages])


# ----------------------------------------------------------------------------- errors


def _post(api: str, path: str, content: bytes | str | None = None, json_body=None, headers=None, **kw) -> httpx.Response:
    h = {"content-type": "application/json", **_auth(), **(headers or {})}
    if json_body is not None:
        content = json.dumps(json_body)
    return httpx.post(f"{api}{path}", content=content, headers=h, timeout=60, **kw)


def _shape(path: str, r: httpx.Response) -> None:
    body = r.json()
    if path == "/rerank":
        assert set(body) == {"error", "error_type"} and body["error"], body
    else:
        assert set(body) == {"message"} and body["message"], body
    assert "Traceback" not in r.text


COHERE_OK = {"model": "bm25", "query": QUERY, "documents": DOCS}
TEI_OK = {"model": "bm25", "query": QUERY, "texts": DOCS}


@pytest.mark.parametrize("path,ok,docs_key", [("/v2/rerank", COHERE_OK, "documents"),
                                              ("/v1/rerank", COHERE_OK, "documents"),
                                              ("/rerank", TEI_OK, "texts")])
def test_errors_per_endpoint(api, path, ok, docs_key):
    cases: list[tuple[int, dict]] = [
        (400, {"content": b"{not json"}),
        (400, {"json_body": {k: v for k, v in ok.items() if k != "query"}}),
        (400, {"json_body": {k: v for k, v in ok.items() if k != docs_key}}),
        (422, {"json_body": {**ok, "query": 7}}),
        (422, {"json_body": {**ok, docs_key: "one string"}}),
        (422, {"json_body": {**ok, docs_key: [1, 2]}}),
        (422, {"json_body": [1, 2]}),
        (404, {"json_body": {**ok, "model": "no-such-model"}}),
        (404, {"json_body": {**ok, "model": "/etc/passwd"}}),
        (404, {"json_body": {**ok, "model": "cohere"}}),
        (413, {"json_body": {**ok, docs_key: ["x"] * (MAX_DOCS + 1)}}),
        (413, {"json_body": {**ok, docs_key: ["y" * (MAX_BYTES + 10)]}}),
        (401, {"json_body": ok, "headers": {"Authorization": ""}}),
        (401, {"json_body": ok, "headers": {"Authorization": "Bearer wrong"}}),
        (421, {"json_body": ok, "headers": {"Host": "evil.example:80"}}),
        (403, {"json_body": ok, "headers": {"Origin": "http://evil.example"}}),
        # a model that exists but is not available offline here: the default cross-encoder
        (503, {"json_body": {**ok, "model": "cross-encoder"}}),
    ]
    if path != "/rerank":
        cases += [(422, {"json_body": {**ok, "top_n": 0}}), (422, {"json_body": {**ok, "top_n": "3"}})]
    else:
        cases += [(422, {"json_body": {**ok, "raw_scores": "yes"}}), (422, {"json_body": {**ok, "texts": []}})]
    for status, kw in cases:
        r = _post(api, path, **kw)
        assert r.status_code == status, (status, kw if len(str(kw)) < 300 else str(kw)[:300], r.text[:300])
        _shape(path, r)
    # a body streamed without Content-Length is cut off at the limit too
    big = json.dumps({**ok, docs_key: ["z" * 1000] * 30}).encode() * 4

    def chunks():
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    r = _post(api, path, content=chunks())
    assert r.status_code == 413, r.text
    _shape(path, r)
    # the wrong method
    r = httpx.get(f"{api}{path}", headers=_auth(), timeout=30)
    assert r.status_code == 405


def test_deeply_nested_json_is_a_clear_400(api):
    """40,000 nested arrays (80 KB, under the body limit) overflow the JSON reader's recursion:
    a 400 saying so, in each API's shape, and the server answers the next request."""
    deep = b"[" * 40_000 + b"]" * 40_000
    for path in ("/v2/rerank", "/v1/rerank", "/rerank"):
        for body in (deep, b'{"query": "q", "documents": ' + deep + b"}"):
            r = _post(api, path, content=body)
            assert r.status_code == 400, (path, r.status_code, r.text[:300])
            assert "nests JSON arrays or objects too deeply" in r.text
            _shape(path, r)
    assert _post(api, "/v2/rerank", json_body=COHERE_OK).status_code == 200


def test_errors_through_the_cohere_sdk(api):
    from cohere.core.api_error import ApiError

    co = cohere.ClientV2(api_key=TOKEN, base_url=api)
    with pytest.raises(ApiError) as e:
        co.rerank(model="no-such-model", query=QUERY, documents=DOCS)
    assert e.value.status_code == 404 and "no-such-model" in e.value.body["message"]
    bad = cohere.ClientV2(api_key="wrong", base_url=api)
    with pytest.raises(ApiError) as e:
        bad.rerank(model="bm25", query=QUERY, documents=DOCS)
    assert e.value.status_code == 401
    with pytest.raises(ApiError) as e:
        co.rerank(model="bm25", query=QUERY, documents=["d"] * (MAX_DOCS + 1))
    assert e.value.status_code == 413


def test_models_errors(api):
    r = httpx.get(f"{api}/v1/models", timeout=30)
    assert r.status_code == 401 and r.json()["error"]["message"]
    r = httpx.get(f"{api}/v1/models", headers={**_auth(), "Origin": "http://evil.example"}, timeout=30)
    assert r.status_code == 403
    # /mcp keeps its own bearer check
    r = httpx.post(f"{api}/mcp", json={}, timeout=30)
    assert r.status_code == 401


# ----------------------------------------------------------------------------- concurrency


def test_eight_concurrent_clients(api):
    """8 clients at once, mixing rerankers and APIs: each answer equals the one given alone."""
    jobs = []
    for c in range(8):
        for n in range(6):
            docs = DOCS[(c + n) % 3 :] + [f"client {c} request {n} about vitamin d and bone"]
            model = ["bm25", "fr-small", FLASHRANK_MODEL, "embedding"][(c + n) % 4]
            q = [QUERY, "bone fractures", "vector search", "lazy fox"][(c * 7 + n) % 4]
            path = ["/v2/rerank", "/v1/rerank", "/rerank"][(c + 2 * n) % 3]
            jobs.append((c, path, model, q, docs))

    def request(client: httpx.Client, path: str, model: str, q: str, docs: list[str]) -> list[tuple[int, float]]:
        body = {"model": model, "query": q, ("texts" if path == "/rerank" else "documents"): docs}
        r = client.post(f"{api}{path}", json=body, headers=_auth(), timeout=120)
        assert r.status_code == 200, r.text
        assert int(r.headers["x-rerank-batch"]) >= 1
        rows = r.json() if path == "/rerank" else r.json()["results"]
        return [(x["index"], x.get("score", x.get("relevance_score"))) for x in rows]

    with httpx.Client() as client:
        expected = {i: request(client, *job[1:]) for i, job in enumerate(jobs)}
    got: dict[int, list[tuple[int, float]]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(c: int) -> None:
        try:
            with httpx.Client() as client:
                barrier.wait()
                for i, job in enumerate(jobs):
                    if job[0] == c:
                        got[i] = request(client, *job[1:])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert set(got) == set(expected)
    for i in expected:
        # the same score for every document (batched padding may move the last float digits)...
        g, e = sorted(got[i]), sorted(expected[i])
        assert [x[0] for x in g] == [x[0] for x in e], jobs[i]
        assert [x[1] for x in g] == pytest.approx([x[1] for x in e], abs=1e-5), jobs[i]
        # ...and the same order wherever the scores are not (near-)ties
        best = expected[i][0]
        assert got[i][0][0] == best[0] or abs(got[i][0][1] - best[1]) < 1e-5, jobs[i]


# ----------------------------------------------------------------------------- the batching queue


class _Counting:
    """A fake scorer with a reranker's public interface (score, score_many, scores_together) that
    records how its requests were grouped."""

    family = "fake"
    scores_together = True

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score(self, query, texts, ordered=False):
        from rerank_mcp.tools.rerank.base import Scored

        self.calls.append(1)
        time.sleep(0.02)
        return Scored([float(len(query) + len(t)) for t in texts])

    def score_many(self, requests, ordered=False):
        from rerank_mcp.tools.rerank.base import Scored

        self.calls.append(len(requests))
        time.sleep(0.02)
        return [Scored([float(len(q) + len(t)) for t in texts]) for q, texts in requests]


@pytest.mark.parametrize("enabled", [True, False])
def test_batcher_groups_concurrent_requests(enabled):
    from rerank_mcp.tools.batching import RerankBatcher

    fake = _Counting()
    b = RerankBatcher(fake, enabled=enabled, wait_s=0.005, max_pairs=64)  # type: ignore[arg-type]
    results: dict[int, list[float]] = {}

    async def one(i: int) -> None:
        s = await b.score("q" * i, ["a", "bb", "ccc"])
        results[i] = s.scores

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i in range(16):
                tg.start_soon(one, i)

    anyio.run(main)
    assert results == {i: [float(i + 1), float(i + 2), float(i + 3)] for i in range(16)}
    assert sum(fake.calls) == 16
    if enabled:
        assert len(fake.calls) < 16 and max(fake.calls) > 1
        assert b.stats.requests == 16 and b.stats.batches == len(fake.calls)
    else:
        assert fake.calls == [1] * 16


def test_batcher_isolates_a_failing_request():
    from rerank_mcp.errors import InvalidInput
    from rerank_mcp.tools.batching import RerankBatcher
    from rerank_mcp.tools.rerank.base import Scored

    class Picky(_Counting):
        def score(self, query, texts, ordered=False):
            if query == "bad":
                raise InvalidInput("bad query")
            return Scored([1.0] * len(texts))

        def score_many(self, requests, ordered=False):
            if any(q == "bad" for q, _ in requests):
                raise InvalidInput("bad query in the batch")
            return [Scored([1.0] * len(t)) for _, t in requests]

    b = RerankBatcher(Picky(), wait_s=0.01)  # type: ignore[arg-type]
    outcome: dict[str, object] = {}

    async def one(q: str) -> None:
        try:
            outcome[q] = (await b.score(q, ["x", "y"])).scores
        except InvalidInput as exc:
            outcome[q] = exc

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for q in ("good1", "bad", "good2"):
                tg.start_soon(one, q)

    anyio.run(main)
    assert outcome["good1"] == [1.0, 1.0] and outcome["good2"] == [1.0, 1.0]
    assert isinstance(outcome["bad"], InvalidInput)


def test_batcher_leaves_rerankers_without_multi_query_scoring_alone():
    """bm25 has no batched scoring of its own: its requests are scored one by one."""
    from rerank_mcp.tools.batching import RerankBatcher
    from rerank_mcp.tools.rerank.registry import RerankerRegistry

    assert RerankBatcher(RerankerRegistry().get("bm25")).enabled is False
    assert RerankBatcher(_Counting()).enabled is True  # type: ignore[arg-type]
