"""Every configured limit, exceeded through the real MCP tools: a clear error, nothing stored.

The server is built with deliberately small limits (``Settings(max_k=7, ...)``). Each call
over a limit must come back as ``isError`` with a message that names the limit and the
setting that raises it (``RERANK_MCP_...``), and must not write anything: the collection list
and the store's change sequence number are the same before and after. The per-call timeout is
checked on its own server with ``tool_timeout_s`` tiny.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rerank_mcp.server.settings import Settings
from tests.conftest import ENGINES
from tests.reliability.mcp_driver import Mcp, serve

LIMITS = dict(
    max_request_bytes=2048,
    max_passages=5,
    max_passage_chars=200,
    max_query_chars=50,
    max_file_bytes=300,
    max_documents_per_ingest=3,
    max_k=7,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("limits")
    (base / "files").mkdir()
    return base


@pytest.fixture(scope="module", params=ENGINES)
def mcp(root, request):
    extra = {"backend": "qdrant", "qdrant_path": str(root / f"data-{request.param}" / "qdrant")} \
        if request.param == "qdrant" else {}
    settings = Settings(data_dir=root / f"data-{request.param}", allowed_roots=[root / "files"], log_level="WARNING",
                        **LIMITS, **extra)
    with serve(settings) as m:
        r = m.call("ingest", {"collection": "kb", "documents": [
            {"id": "a", "text": "Vitamin D and bone health in older adults."},
            {"id": "b", "text": "FAISS does fast similarity search over dense vectors."},
        ]})
        assert not r.is_error, r.content
        yield m


def _files(root: Path) -> dict[str, str]:
    files = root / "files"
    small = files / "small"
    small.mkdir(exist_ok=True)
    for i in range(4):
        (small / f"f{i}.txt").write_text(f"small file number {i} about retrieval")
    (files / "big.txt").write_text("word " * 80)  # 400 bytes > max_file_bytes=300
    (files / "ok.txt").write_text("a file under every limit")
    return {"small": str(small), "big": str(files / "big.txt"), "ok": str(files / "ok.txt"),
            "one": str(small / "f0.txt")}


def _doc(i: int, n: int = 20, ch: str = "x") -> dict:
    return {"id": f"d{i}", "text": ch * n}


# (tool, arguments, words the error must contain)
OVER_LIMITS = [
    ("k", "search", {"query": "vitamin", "collection": "kb", "k": 8}, ["k=8", "limit of 7", "RERANK_MCP_MAX_K"]),
    ("k-huge", "search", {"query": "vitamin", "collection": "kb", "k": 2**40}, ["limit of 7", "RERANK_MCP_MAX_K"]),
    ("candidates", "search", {"query": "vitamin", "collection": "kb", "k": 2,
                              "rerank": {"reranker": "bm25", "candidates": 8}},
     ["candidates", "limit of 7", "RERANK_MCP_MAX_K"]),
    ("query-search", "search", {"query": "q" * 51, "collection": "kb"},
     ["51 characters", "limit of 50", "RERANK_MCP_MAX_QUERY_CHARS"]),
    ("query-rerank", "rerank", {"query": "q" * 51, "passages": ["a"], "reranker": "bm25"},
     ["51 characters", "limit of 50", "RERANK_MCP_MAX_QUERY_CHARS"]),
    ("passages", "rerank", {"query": "q", "passages": ["p"] * 6, "reranker": "bm25"},
     ["6 passages", "limit of 5", "RERANK_MCP_MAX_PASSAGES"]),
    ("passage-chars", "rerank", {"query": "q", "passages": ["ok", "p" * 201], "reranker": "bm25"},
     ["passages[1]", "201 characters", "limit of 200", "RERANK_MCP_MAX_PASSAGE_CHARS"]),
    ("passage-chars-obj", "rerank", {"query": "q", "passages": [{"id": "x", "text": "p" * 201}], "reranker": "bm25"},
     ["passages[0]", "limit of 200", "RERANK_MCP_MAX_PASSAGE_CHARS"]),
    ("documents", "ingest", {"collection": "kb", "documents": [_doc(i) for i in range(4)]},
     ["4 documents", "limit of 3", "RERANK_MCP_MAX_DOCUMENTS_PER_INGEST"]),
    ("documents-new-collection", "ingest", {"collection": "fresh", "documents": [_doc(i) for i in range(4)]},
     ["limit of 3", "RERANK_MCP_MAX_DOCUMENTS_PER_INGEST"]),
    ("documents-skip-invalid", "ingest", {"collection": "kb", "skip_invalid": True,
                                          "documents": [_doc(i) for i in range(4)]},
     ["limit of 3", "RERANK_MCP_MAX_DOCUMENTS_PER_INGEST"]),
    ("request-one-doc", "ingest", {"collection": "kb", "documents": [_doc(0, 2049)]},
     ["limit of 2048", "RERANK_MCP_MAX_REQUEST_BYTES"]),
    ("request-total", "ingest", {"collection": "kb", "documents": [_doc(i, 800) for i in range(3)]},
     ["limit of 2048", "RERANK_MCP_MAX_REQUEST_BYTES"]),
    ("request-total-utf8", "ingest", {"collection": "kb", "documents": [_doc(i, 700, "é") for i in range(2)]},
     ["bytes", "limit of 2048", "RERANK_MCP_MAX_REQUEST_BYTES"]),
    ("request-total-skip-invalid", "ingest", {"collection": "kb", "skip_invalid": True,
                                              "documents": [_doc(i, 800) for i in range(3)]},
     ["limit of 2048", "RERANK_MCP_MAX_REQUEST_BYTES"]),
]


@pytest.mark.parametrize("case,tool,args,expect", OVER_LIMITS, ids=[c[0] for c in OVER_LIMITS])
def test_over_a_limit_is_a_clear_error_and_stores_nothing(mcp, case, tool, args, expect):
    _assert_refused(mcp, tool, args, expect)


# file limits: the arguments name files, so they are built at test time
FILE_CASES = [
    ("file-bytes", lambda f: {"collection": "kb", "paths": [f["big"]]},
     ["400 bytes", "limit of 300", "RERANK_MCP_MAX_FILE_BYTES"]),
    ("file-bytes-with-good-files", lambda f: {"collection": "kb", "paths": [f["ok"], f["big"]]},
     ["limit of 300", "RERANK_MCP_MAX_FILE_BYTES"]),
    ("files-per-ingest", lambda f: {"collection": "kb", "paths": [f["small"]]},
     ["4 documents", "limit of 3", "RERANK_MCP_MAX_DOCUMENTS_PER_INGEST"]),
    ("files-plus-documents", lambda f: {"collection": "kb", "paths": [f["one"], f["ok"]],
                                        "documents": [_doc(0), _doc(1)]},
     ["4 documents", "limit of 3", "RERANK_MCP_MAX_DOCUMENTS_PER_INGEST"]),
    ("files-per-ingest-new-collection", lambda f: {"collection": "fresh2", "paths": [f["small"]], "skip_invalid": True},
     ["limit of 3", "RERANK_MCP_MAX_DOCUMENTS_PER_INGEST"]),
]


@pytest.mark.parametrize("case,make,expect", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_file_limits_are_clear_errors_and_store_nothing(mcp, root, case, make, expect):
    _assert_refused(mcp, "ingest", make(_files(root)), expect)


def test_oversize_file_with_skip_invalid_is_reported_and_the_rest_stored(mcp, root):
    f = _files(root)
    r = mcp.call("ingest", {"collection": "kb", "paths": [f["ok"], f["big"]], "skip_invalid": True})
    assert not r.is_error, r.content
    out = {d["id"]: d for d in r.structured_content["documents"]}
    assert out[f["ok"]]["status"] in ("added", "unchanged")
    assert out[f["big"]]["status"] == "failed"
    assert "RERANK_MCP_MAX_FILE_BYTES" in out[f["big"]]["reason"]


def test_at_the_limits_everything_works(mcp):
    """The limits are inclusive: exactly at each one is accepted."""
    r = mcp.call("search", {"query": "q" * 50, "collection": "kb", "k": 7})
    assert not r.is_error, r.content
    r = mcp.call("rerank", {"query": "q" * 50, "passages": ["p" * 200] * 5, "reranker": "bm25"})
    assert not r.is_error, r.content
    assert len(r.structured_content["passages"]) == 5
    r = mcp.call("ingest", {"collection": "kb", "documents": [_doc(i, 680) for i in range(3)]})  # 3 x (680 + 2) = 2046 bytes
    assert not r.is_error, r.content


def _assert_refused(mcp: Mcp, tool: str, args: dict, expect: list[str]) -> None:
    before, seq = mcp.collections(), mcp.seq()
    t0 = time.perf_counter()
    r = mcp.call(tool, args)
    assert r.is_error, f"{tool} over a limit succeeded: {r.structured_content}"
    text = r.content[0].text
    for word in expect:
        assert word in text, f"{word!r} not in {text!r}"
    assert "Traceback" not in text and 'File "/' not in text
    assert time.perf_counter() - t0 < 10, "refusing took too long: the limit was checked after the work"
    assert mcp.seq() == seq, "a refused call wrote to the store"
    assert mcp.collections() == before


# ---------------------------------------------------------------------------- timeout

@pytest.mark.slow  # waits for a tool timeout
def test_tool_timeout_returns_a_timeout_error_quickly(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    settings = Settings(data_dir=tmp_path / "data", allowed_roots=[files], log_level="WARNING",
                        tool_timeout_s=0.05, max_passages=5000)
    passages = [f"passage {i} about the world and its many vectors " * 30 for i in range(3000)]
    with serve(settings) as m:
        seq = m.seq()
        t0 = time.perf_counter()
        r = m.call("rerank", {"query": "vectors of the world", "passages": passages, "reranker": "bm25"})
        elapsed = time.perf_counter() - t0
        assert r.is_error, f"a {elapsed:.2f} s rerank succeeded under tool_timeout_s=0.05"
        text = r.content[0].text
        assert "timed out" in text and "RERANK_MCP_TOOL_TIMEOUT_S" in text, text
        assert elapsed < 1.0, f"the timeout error took {elapsed:.2f} s"
        assert m.seq() == seq
        # the server keeps answering
        assert isinstance(m.collections(), list)
