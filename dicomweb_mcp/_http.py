"""Serving MCP over streamable HTTP: loopback by default, and a bearer token on every request when set.

The SDK's DNS-rebinding protection (Host and Origin checks) stays on; this only adds the token check in
front of it, so a browser page or another local user cannot drive the tools without the token.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any

import uvicorn
from mcp.server import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send

from ._errors import ConfigError

__all__ = ["RequireBearerToken", "serve_http"]


class RequireBearerToken:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``; else 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    def __repr__(self) -> str:
        return "RequireBearerToken(token=***)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
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


def serve_http(server: MCPServer[Any], *, host: str, port: int, token: str | None) -> None:
    """Serve ``server`` at ``http://{host}:{port}/mcp`` until interrupted."""
    if not token and not _is_loopback(host):
        raise ConfigError(
            f"Refusing to serve on {host} without DICOMWEB_MCP_TOKEN: anyone who can reach this port could "
            "read and change patient data. Set DICOMWEB_MCP_TOKEN, or bind 127.0.0.1."
        )
    app: ASGIApp = server.streamable_http_app(host=host)
    if token:
        app = RequireBearerToken(app, token)
    # access_log off: request lines are not needed, and the startup lines say where it listens.
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
