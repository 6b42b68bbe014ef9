"""Streamable HTTP transport: 127.0.0.1 by default, optional bearer token, DNS-rebinding guard."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from rerank_mcp.server.host_check import matches as _matches
from rerank_mcp.server.settings import Settings

log = logging.getLogger("rerank_mcp.http")


class BearerAuth:
    """Pure ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>``.

    The comparison is constant-time; the token is never logged.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        auth = b""
        for k, v in scope.get("headers", []):
            if k == b"authorization":
                auth = v
                break
        ok = auth[:7].lower() == b"bearer " and hmac.compare_digest(auth[7:].strip(), self._token)
        if not ok:
            body = b'{"error": "unauthorized: send Authorization: Bearer <token>"}'
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


class HostGuard:
    """Pure ASGI middleware in front of every path: the Host header, and the Origin header when
    sent, must match :func:`security_settings` with a numeric port. Refusals answer as the SDK's
    check does (421 for the Host, 403 for the Origin)."""

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings) -> None:
        self.app = app
        self._hosts = list(security.allowed_hosts)
        self._origins = list(security.allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = origin = None
            for k, v in scope.get("headers", []):
                if k == b"host" and host is None:
                    host = v.decode("latin-1")
                elif k == b"origin" and origin is None:
                    origin = v.decode("latin-1")
            refusal = None
            if host is None or not _matches(host, self._hosts):
                refusal = (421, b"Invalid Host header")
            elif origin and not _matches(origin, self._origins):
                refusal = (403, b"Invalid Origin header")
            if refusal is not None:
                log.warning("refused an HTTP request: %s (%r)", refusal[1].decode(), host if refusal[0] == 421 else origin)
                status, body = refusal
                await send({"type": "http.response.start", "status": status, "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def security_settings(settings: Settings) -> TransportSecuritySettings:
    """Host and Origin validation (MCP transport spec: guard against DNS rebinding)."""
    host = settings.http_host
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        hosts.append(f"{host}:*")
    origins.extend(settings.allowed_origins)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def http_app(server: MCPServer, settings: Settings) -> ASGIApp:
    """``/mcp`` plus the rerank API (server/rerank_api.py: Cohere, Jina and TEI shapes, and
    ``/v1/models``), on one port, behind the same token, Host / Origin checks and body limit."""
    from rerank_mcp.server.rerank_api import Dispatch, RerankAPI

    app: ASGIApp = server.streamable_http_app(
        transport_security=security_settings(settings),
        max_request_body_size=settings.max_request_bytes,
        host=settings.http_host,
    )
    app = HostGuard(app, security_settings(settings))
    if settings.http_token is not None:
        app = BearerAuth(app, settings.http_token.get_secret_value())
    elif settings.http_host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without a bearer token: set RERANK_MCP_HTTP_TOKEN", settings.http_host)
    live = getattr(server, "live_state", {})
    api = RerankAPI(settings, lambda: live.get("state"), security_settings(settings))
    return Dispatch(api, app)


def serve_http(server: MCPServer, settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT. Then the running tool calls are told to stop at once (each
    answers "cancelled" after its batch in hand, instead of uvicorn waiting for it to finish),
    connections get 3 s to close, and the lifespan closes the index."""
    import asyncio

    import uvicorn

    app = http_app(server, settings)
    live = getattr(server, "live_state", {})

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            st = live.get("state")
            if st is not None:  # on the event loop, not inside the signal handler
                asyncio.get_event_loop().call_soon_threadsafe(st.workers.stop)

    log.info("serving MCP over streamable HTTP at http://%s:%s/mcp (rerank API: /v2/rerank, /v1/rerank, /rerank, "
             "/v1/models)", settings.http_host, settings.http_port)
    config = uvicorn.Config(app, host=settings.http_host, port=settings.http_port, log_level="warning",
                            timeout_graceful_shutdown=3)
    try:
        Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it shut down for; the shutdown is done
        pass
