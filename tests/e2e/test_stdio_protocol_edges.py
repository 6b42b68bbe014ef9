"""Protocol edges over raw stdio bytes, against a real ``rerank-mcp serve`` over pipes.

- A request whose ``id`` is not a string or an integer (``1.5``, ``true``, ``null``, ``{}``, ``[]``,
  ``NaN``), or that has none, is answered with -32600 (invalid request, ``"id": null``) and is not
  executed: an ingest sent that way stores nothing. (The SDK reads such a line as a notification
  and drops it unanswered.)
- Tool arguments are validated strictly: ``k: true``, ``k: 3.0`` and ``k: "3.5"`` are type errors
  naming ``k``, not 1 and 3 (only a top-level integer may come as the decimal string ``"3"``, as
  command-line clients send it); a strict-type error on ingest stores nothing.
- One very long line is read in linear time (the line reader searched the whole buffer for a
  newline after every 64 KiB read: 128 MiB took 8.6 s on a 2-core machine, now 1.7 s).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.test_stdio_transport import EXE, _env
from tests.fixtures.stdio_process import StdioServer

pytestmark = pytest.mark.slow  # stdio server subprocesses

PARSE_ERROR, INVALID_REQUEST = -32700, -32600

BAD_IDS = [b"1.5", b"true", b"false", b"null", b"{}", b'{"a": 1}', b"[]", b"[1]", b"NaN", b"1e400"]


def _call(srv: StdioServer, rid: int, name: str, arguments: dict) -> dict:
    srv.send({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
    return srv.until(rid)[-1]


def _collections(srv: StdioServer, rid: int) -> list[str]:
    reply = _call(srv, rid, "list_collections", {})
    return [c["name"] for c in reply["result"]["structuredContent"]["collections"]]


def _close(srv: StdioServer) -> str:
    srv.proc.stdin.close()
    rc = srv.proc.wait(timeout=60)
    stderr = srv.proc.stderr.read().decode(errors="replace")
    assert rc == 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    return stderr


@pytest.mark.parametrize("transport", ["asyncio", "sdk"])
def test_requests_with_an_invalid_id_are_refused_and_not_executed(tmp_path, transport):
    srv = StdioServer([EXE, "serve"], _env(tmp_path, transport))
    try:
        srv.initialize()
        for n, raw_id in enumerate(BAD_IDS):
            srv.send(b'{"jsonrpc": "2.0", "id": ' + raw_id + b', "method": "ping"}\n')
            srv.send({"jsonrpc": "2.0", "id": 100 + n, "method": "ping"})
            got = srv.until(100 + n)
            assert len(got) == 2, (raw_id, got)
            err, pong = got
            assert err["id"] is None and err["error"]["code"] in (INVALID_REQUEST, PARSE_ERROR), (raw_id, err)
            if raw_id not in (b"NaN", b"1e400"):  # JSON has no NaN: the parser may refuse the line itself
                assert err["error"]["code"] == INVALID_REQUEST, (raw_id, err)
                assert '"id"' in err["error"]["message"], err
            assert pong == {"jsonrpc": "2.0", "id": 100 + n, "result": {}}
        # a request without any id is no notification either: refused, not run
        srv.send({"jsonrpc": "2.0", "method": "ping"})
        srv.send({"jsonrpc": "2.0", "id": 150, "method": "ping"})
        got = srv.until(150)
        assert [m.get("error", {}).get("code") for m in got] == [INVALID_REQUEST, None], got
        # an ingest under an invalid id is answered -32600 and stores nothing
        for n, raw_id in enumerate([b"{}", b"1.5", b"null", b"true", b"[]"]):
            params = json.dumps({"name": "ingest", "arguments": {
                "collection": "sneaky", "documents": [{"id": "x", "text": "stored by an unanswerable request"}]}})
            srv.send(b'{"jsonrpc": "2.0", "id": ' + raw_id + b', "method": "tools/call", "params": '
                     + params.encode() + b"}\n")
            srv.send({"jsonrpc": "2.0", "id": 200 + n, "method": "ping"})
            got = srv.until(200 + n)
            assert got[0]["error"]["code"] == INVALID_REQUEST and got[0]["id"] is None, (raw_id, got)
        assert "sneaky" not in _collections(srv, 300)
        # real notifications still get no answer
        srv.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 12345}})
        srv.send({"jsonrpc": "2.0", "id": 301, "method": "ping"})
        assert srv.until(301) == [{"jsonrpc": "2.0", "id": 301, "result": {}}]
    finally:
        _close(srv)


def test_tool_arguments_are_validated_strictly(tmp_path):
    srv = StdioServer([EXE, "serve"], _env(tmp_path, "asyncio"))
    try:
        srv.initialize()
        reply = _call(srv, 10, "ingest", {"collection": "kb", "documents": [{"id": "a", "text": "alpha beta gamma"}]})
        assert not reply["result"].get("isError"), reply
        good = _call(srv, 11, "search", {"query": "alpha", "collection": "kb", "k": 3, "mode": "bm25"})
        assert not good["result"].get("isError"), good
        cases = [
            ("search", {"query": "alpha", "collection": "kb", "k": True}, "k"),
            ("search", {"query": "alpha", "collection": "kb", "k": "3.5"}, "k"),
            ("search", {"query": "alpha", "collection": "kb", "k": "three"}, "k"),
            ("search", {"query": "alpha", "collection": "kb", "k": 3.0}, "k"),
            ("search", {"query": "alpha", "collection": "kb", "expand": False}, "expand"),
            ("search", {"query": "alpha", "collection": "kb", "dedupe": 1}, "dedupe"),
            ("search", {"query": "alpha", "collection": "kb", "rerank": {"reranker": "bm25", "candidates": "5"}},
             "candidates"),
            ("search", {"query": 7, "collection": "kb"}, "query"),
            ("rerank", {"query": "q", "passages": ["a", "b"], "reranker": "bm25", "top_n": 1.0}, "top_n"),
            ("rerank", {"query": "q", "passages": ["a", "b"], "reranker": "bm25", "return_text": "yes"}, "return_text"),
            ("ingest", {"collection": "kb", "documents": [{"id": "b", "text": "delta"}], "chunk_size": True},
             "chunk_size"),
            ("ingest", {"collection": "kb", "documents": [{"id": "c", "text": "epsilon"}], "skip_invalid": 1},
             "skip_invalid"),
            ("ingest", {"collection": "kb2", "documents": [{"id": 5, "text": "zeta"}]}, "id"),
            ("delete", {"collection": "kb", "ids": ["a"], "drop_collection": "false"}, "drop_collection"),
        ]
        for n, (tool, args, name) in enumerate(cases):
            reply = _call(srv, 20 + n, tool, args)
            result = reply["result"]
            assert result.get("isError"), (tool, args, reply)
            text = result["content"][0]["text"]
            assert name in text and ("valid" in text or "type" in text), (tool, args, text)
        # the one exception: a top-level integer as the decimal string command-line clients send
        # (the MCP Inspector's --tool-arg k=1)
        ok = _call(srv, 59, "search", {"query": "alpha", "collection": "kb", "k": "1", "mode": "bm25"})
        assert not ok["result"].get("isError") and len(ok["result"]["structuredContent"]["hits"]) == 1, ok
        # nothing stored by the refused calls; the deleted-if-lax document is still there
        docs = _call(srv, 60, "search", {"query": "alpha delta epsilon zeta", "collection": "kb", "mode": "bm25"})
        ids = [h["doc_id"] for h in docs["result"]["structuredContent"]["hits"]]
        assert ids == ["a"], ids
        assert "kb2" not in _collections(srv, 61)
    finally:
        _close(srv)


def test_one_long_line_is_read_in_linear_time(tmp_path):
    srv = StdioServer([EXE, "serve"], _env(tmp_path, "asyncio"))
    try:
        srv.initialize()
        pad = 160 << 20
        line = b'{"jsonrpc": "2.0", "id": 7, "method": "ping", "params": {"_meta": {"pad": "' + b"x" * pad + b'"}}}\n'
        t0 = time.perf_counter()
        srv.send(line)
        del line
        reply = srv.until(7, timeout=120)[-1]
        took = time.perf_counter() - t0
        assert reply == {"jsonrpc": "2.0", "id": 7, "result": {}}
        # linear: ~2 s here; the quadratic search for the newline took ~13 s for 160 MiB
        assert took < 8, f"a 160 MiB line took {took:.1f} s"
    finally:
        _close(srv)
