"""The rerank HTTP API asks only the families' public interface: a family added in a temporary
module, with no attribute of its own but ``_score`` (the one method every family writes) and its
public class methods, is served by its name and by a model name it claims (``known_models``),
listed in ``/v1/models``, and batched by its public ``scores_together``.

The API runs in this process (so that the temporary family is registered), on a real uvicorn
server on 127.0.0.1, and is called over HTTP.
"""

from __future__ import annotations

import socket
import sys
import textwrap
import threading
import time
import types
from contextlib import contextmanager
from types import SimpleNamespace

import httpx
import pytest
import uvicorn

from rerank_mcp.server.http import security_settings
from rerank_mcp.server.rerank_api import RerankAPI
from rerank_mcp.server.settings import Settings
from rerank_mcp.tools.rerank import registry as registry_mod
from rerank_mcp.tools.rerank.registry import Family, RerankContext, RerankerRegistry

TOKEN = "family-api-token-1234"

MODULE = textwrap.dedent('''
    from typing import Sequence
    from pydantic import Field
    from rerank_mcp.tools.rerank.base import RerankOptions, Reranker, Scored

    class LengthOptions(RerankOptions):
        model: str | None = Field(None, description="longest-first-v1 (the only one)")
        longest_first: bool = Field(True, description="longer passages first")

    class LengthReranker(Reranker):
        family = "length"
        Options = LengthOptions
        score_meaning = "the passage's length in characters; mapped to [0, 1] as n / (n + 10)"

        @classmethod
        def known_models(cls):
            return ("longest-first-v1",)

        def unit_scores(self, scores):
            return [s / (s + 10.0) for s in scores]

        def _score(self, query: str, texts: Sequence[str]) -> Scored:
            sign = 1.0 if self.options.longest_first else -1.0
            return Scored([sign * len(t) for t in texts])
''')

DOCS = ["a cat", "a much longer passage about cats", "cats purr"]


@contextmanager
def _api(app):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def length_family(monkeypatch):
    mod = types.ModuleType("length_family_for_api_test")
    exec(MODULE, mod.__dict__)
    monkeypatch.setitem(sys.modules, "length_family_for_api_test", mod)
    monkeypatch.setitem(registry_mod.FAMILIES, "length", Family(
        "length", "length_family_for_api_test:LengthReranker", (), None, "longest passage first; a test family."))
    return mod.LengthReranker


def test_the_api_serves_a_family_through_its_public_interface(length_family, tmp_path):
    own = {k for k in vars(length_family) if k.startswith("_") and not k.startswith("__") and k != "_abc_impl"}
    assert own == {"_score"}  # nothing private for the API to read
    settings = Settings(data_dir=tmp_path, http_token=TOKEN)
    state = SimpleNamespace(registry=RerankerRegistry(RerankContext(settings=settings)))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with _api(RerankAPI(settings, lambda: state, security_settings(settings))) as url:
        # a model name the family claims, alone
        r = httpx.post(f"{url}/v2/rerank", json={"model": "longest-first-v1", "query": "cats", "documents": DOCS},
                       headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        assert [x["index"] for x in r.json()["results"]] == [1, 2, 0]
        assert r.json()["results"][0]["relevance_score"] == pytest.approx(32 / 42)
        assert r.headers["x-rerank-used"] == "length"
        # the family by its name: TEI with raw scores
        r = httpx.post(f"{url}/rerank", json={"model": "length", "query": "cats", "texts": DOCS, "raw_scores": True},
                       headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        assert [(x["index"], x["score"]) for x in r.json()] == [(1, 32.0), (2, 9.0), (0, 5.0)]
        # listed, and a name nobody claims is still refused
        ids = {m["id"] for m in httpx.get(f"{url}/v1/models", headers=auth, timeout=30).json()["data"]}
        assert "length" in ids
        r = httpx.post(f"{url}/v2/rerank", json={"model": "shortest-v9", "query": "q", "documents": DOCS},
                       headers=auth, timeout=30)
        assert r.status_code == 404 and "shortest-v9" in r.json()["message"]
    # a family without multi-request scoring of its own is not gathered into batches
    assert state.registry.get("length").scores_together is False
