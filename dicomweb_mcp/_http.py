"""Serving MCP over streamable HTTP: loopback by default, and a bearer token on every request when set.

Host and Origin checks (DNS-rebinding protection) are on for every bind address, and the token check
sits in front of them, so a browser page or another local user cannot drive the tools. With a public
bind, the names clients use to reach the server go in DICOMWEB_MCP_ALLOWED_HOSTS.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any

import uvicorn
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from ._errors import ConfigError

__all__ = ["RequireBearerToken", "serve_http", "transport_security"]


class RequireBearerToken:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``; else 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._token = token.encode()

    def __repr__(self) -> str:
        return "RequireBearerToken(token=***)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            # The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._token):
                body = json.dumps(
                    {"error": "unauthorized", "message": "A valid bearer token is required."}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer realm="dicomweb-mcp"'),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self._app(scope, receive, send)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_security(
    host: str, port: int, extra_hosts: list[str] | None = None
) -> TransportSecuritySettings:
    """Host and Origin checks for every bind address, not only the three names the SDK knows: a page in a
    browser must not reach the tools through DNS rebinding, whatever address is bound."""
    bound = f"[{host}]" if ":" in host and not host.startswith("[") else host  # IPv6 is bracketed in Host
    hosts = sorted({bound, "127.0.0.1", "localhost", "[::1]", *(extra_hosts or [])})
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:{port}" for name in hosts] + [f"{name}:*" for name in hosts],
        allowed_origins=[f"{scheme}://{name}:{port}" for name in hosts for scheme in ("http", "https")],
    )


def serve_http(
    server: MCPServer[Any], *, host: str, port: int, token: str | None, extra_hosts: list[str] | None = None
) -> None:
    """Serve ``server`` at ``http://{host}:{port}/mcp`` until interrupted."""
    if not token and not _is_loopback(host):
        raise ConfigError(
            f"Refusing to serve on {host} without DICOMWEB_MCP_TOKEN: anyone who can reach this port could "
            "read and change patient data. Set DICOMWEB_MCP_TOKEN, or bind 127.0.0.1."
        )
    app: ASGIApp = server.streamable_http_app(
        host=host, transport_security=transport_security(host, port, extra_hosts)
    )
    if token:
        app = RequireBearerToken(app, token)
    # access_log off: request lines are not needed, and the startup lines say where it listens.
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
