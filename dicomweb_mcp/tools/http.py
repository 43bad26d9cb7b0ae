"""Serving MCP over streamable HTTP: loopback by default, and a bearer token on every request when set.

Host and Origin checks (DNS-rebinding protection) are on for every bind address, and the token check
sits in front of them, so a browser page or another local user cannot drive the tools. With a public
bind, the names clients use to reach the server go in DICOMWEB_MCP_ALLOWED_HOSTS; a browser-based host
(MCP Inspector) is let in by naming its origin in DICOMWEB_MCP_ALLOWED_ORIGINS.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Sequence
from typing import Any

import uvicorn
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Config
from ..errors import ConfigError

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
            if str(scope.get("path", "")).startswith("/.well-known/"):
                # No OAuth here: a 401 on the discovery documents would send a host into a login flow
                # that cannot succeed, instead of telling its user that the header is missing.
                await _answer(send, 404, {"error": "not_found", "message": _NO_OAUTH})
                return
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            # The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._token):
                await _answer(
                    send,
                    401,
                    {"error": "unauthorized", "message": _NO_OAUTH},
                    [(b"www-authenticate", b'Bearer realm="dicomweb-mcp"')],
                )
                return
        await self._app(scope, receive, send)


_NO_OAUTH = (
    "This server takes a static bearer token, not OAuth: configure your MCP host to send the header "
    "'Authorization: Bearer <the DICOMWEB_MCP_TOKEN value>'."
)


async def _answer(
    send: Send, status: int, content: dict[str, str], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_security(
    host: str, port: int, extra_hosts: Sequence[str] = (), extra_origins: Sequence[str] = ()
) -> TransportSecuritySettings:
    """Host and Origin checks for every bind address, not only the three names the SDK knows: a page in a
    browser must not reach the tools through DNS rebinding, whatever address is bound. ``extra_origins``
    are full origins (``http://localhost:6274``) of browser-based hosts the operator trusts."""
    bound = f"[{host}]" if ":" in host and not host.startswith("[") else host  # IPv6 is bracketed in Host
    hosts = sorted({bound, "127.0.0.1", "localhost", "[::1]", *extra_hosts})
    own = [f"{scheme}://{name}:{port}" for name in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:{port}" for name in hosts] + [f"{name}:*" for name in hosts],
        allowed_origins=own + [origin.rstrip("/") for origin in extra_origins],
    )


def serve_http(server: MCPServer[Any], config: Config, *, host: str, port: int) -> None:
    """Serve ``server`` at ``http://{host}:{port}/mcp`` until interrupted."""
    token = config.mcp_token
    if not token and not _is_loopback(host):
        raise ConfigError(
            f"Refusing to serve on {host} without DICOMWEB_MCP_TOKEN: anyone who can reach this port could "
            "read and change patient data. Set DICOMWEB_MCP_TOKEN, or bind 127.0.0.1."
        )
    app: ASGIApp = server.streamable_http_app(
        host=host,
        transport_security=transport_security(
            host, port, config.mcp_allowed_hosts, config.mcp_allowed_origins
        ),
    )
    if token:
        app = RequireBearerToken(app, token)
    # access_log off: request lines are not needed, and the startup lines say where it listens.
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
