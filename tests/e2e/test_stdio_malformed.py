"""Malformed lines on stdio get a JSON-RPC error, and the session goes on.

A real ``rerank-mcp serve`` over real pipes, with the asyncio transport and with the SDK's
(``RERANK_MCP_STDIO_TRANSPORT=sdk``): a line that is not JSON is answered with -32700 (parse
error), JSON that is not a JSON-RPC message with -32600 (invalid request), both with
``"id": null``; after each one the server still answers a ping. A blank line carries no
message and gets no answer.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_stdio_transport import EXE, _env
from tests.fixtures.stdio_process import INIT, INITIALIZED, StdioServer

pytestmark = pytest.mark.slow  # stdio server subprocesses

PARSE_ERROR, INVALID_REQUEST = -32700, -32600

MALFORMED = [
    ("not JSON", b"this is not json\n", PARSE_ERROR),
    ("JSON with trailing garbage", b'{"jsonrpc": "2.0", "id": 90, "method": "ping"} and more\n', PARSE_ERROR),
    ("invalid UTF-8", b"\xff\xfe\xfd\n", PARSE_ERROR),
    ("a multi-byte character cut short", b'{"jsonrpc": "2.0", "id": 91, "method": "pi\xc3\n', PARSE_ERROR),
    ("JSON array", b"[1, 2, 3]\n", INVALID_REQUEST),
    ("empty JSON array", b"[]\n", INVALID_REQUEST),
    ("JSON number", b"42\n", INVALID_REQUEST),
    ("JSON string", b'"ping"\n', INVALID_REQUEST),
    ("JSON null", b"null\n", INVALID_REQUEST),
    ("object without jsonrpc", b'{"id": 92, "method": "ping"}\n', INVALID_REQUEST),
    ("object without method", b'{"jsonrpc": "2.0", "id": 93}\n', INVALID_REQUEST),
    ("wrong jsonrpc version", b'{"jsonrpc": "1.0", "id": 94, "method": "ping"}\n', INVALID_REQUEST),
]


@pytest.mark.parametrize("transport", ["asyncio", "sdk"])
def test_malformed_lines_are_answered_and_the_session_goes_on(tmp_path, transport):
    srv = StdioServer([EXE, "serve"], _env(tmp_path, transport))
    try:
        srv.send(b"garbage before initialize\n")
        err = srv.next()
        assert err is not None and err["id"] is None and err["error"]["code"] == PARSE_ERROR, err
        srv.send(INIT)
        assert srv.until(1)[-1]["result"]["serverInfo"]["name"] == "rerank-mcp"
        srv.send(INITIALIZED)
        for n, (what, line, code) in enumerate(MALFORMED):
            srv.send(line)
            srv.send({"jsonrpc": "2.0", "id": 100 + n, "method": "ping"})
            got = srv.until(100 + n)
            assert len(got) == 2, f"{what}: {got}"
            err, pong = got
            assert err == {"jsonrpc": "2.0", "id": None, "error": err["error"]}, f"{what}: {err}"
            assert err["error"]["code"] == code, f"{what}: {err}"
            assert err["error"]["message"], what
            assert pong["result"] == {}, f"{what}: {pong}"
        # a blank line is no message: no answer, and the next request is answered
        srv.send(b"\n")
        srv.send(b"   \n")
        srv.send({"jsonrpc": "2.0", "id": 200, "method": "ping"})
        assert srv.until(200) == [{"jsonrpc": "2.0", "id": 200, "result": {}}]
        # a real tool call still works after all that
        srv.send({"jsonrpc": "2.0", "id": 201, "method": "tools/call",
                  "params": {"name": "list_collections", "arguments": {}}})
        reply = srv.until(201)[-1]
        assert not reply["result"].get("isError"), reply
        assert reply["result"]["structuredContent"]["collections"] == []
    finally:
        srv.proc.stdin.close()
        rc = srv.proc.wait(timeout=60)
    stderr = srv.proc.stderr.read().decode(errors="replace")
    assert rc == 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
