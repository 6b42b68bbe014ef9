"""Streamable HTTP transport: 127.0.0.1 by default, optional bearer token, DNS-rebinding guard."""

from __future__ import annotations

import hmac
import logging

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

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
    app = server.streamable_http_app(
        transport_security=security_settings(settings),
        max_request_body_size=settings.max_request_bytes,
        host=settings.http_host,
    )
    if settings.http_token is not None:
        return BearerAuth(app, settings.http_token.get_secret_value())
    if settings.http_host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without a bearer token: set RERANK_MCP_HTTP_TOKEN", settings.http_host)
    return app


def serve_http(server: MCPServer, settings: Settings) -> None:
    import uvicorn

    app = http_app(server, settings)
    log.info("serving MCP over streamable HTTP at http://%s:%s/mcp", settings.http_host, settings.http_port)
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level="warning")
