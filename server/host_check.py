"""The Host / Origin check against DNS rebinding, with the port matched as digits (the SDK's
own check accepts anything after ``host:``, e.g. ``127.0.0.1:1@evil.example``)."""

from __future__ import annotations

from mcp.server.transport_security import TransportSecurityMiddleware


def matches(value: str, allowed: list[str]) -> bool:
    """``value`` is one of ``allowed``, or ``base:PORT`` for an allowed ``base:*`` with PORT all
    digits (the SDK's own check takes anything after the colon: ``127.0.0.1:1@evil.example``)."""
    if value in allowed:
        return True
    for pattern in allowed:
        if pattern.endswith(":*") and value.startswith(pattern[:-1]):
            port = value[len(pattern) - 1:]
            if port.isascii() and port.isdigit() and len(port) <= 5:
                return True
    return False


class StrictTransportSecurity(TransportSecurityMiddleware):
    """The SDK's Host / Origin check (as the rerank API uses it) with :func:`matches`."""

    def _validate_host(self, host: str | None) -> bool:
        return bool(host) and matches(host or "", self.settings.allowed_hosts)

    def _validate_origin(self, origin: str | None) -> bool:
        return not origin or matches(origin, self.settings.allowed_origins)
