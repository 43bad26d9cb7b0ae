"""Serving MCP over streamable HTTP: loopback by default, and a bearer token on every request when set:
the operator's static token (one person), or each user's OAuth access token (a resource server).

Host and Origin checks (DNS-rebinding protection) are on for every bind address, and the token check
sits in front of them, so a browser page or another local user cannot drive the tools. With a public
bind, the names clients use to reach the server go in DICOMWEB_MCP_ALLOWED_HOSTS; a browser-based host
(MCP Inspector) is let in by naming its origin in DICOMWEB_MCP_ALLOWED_ORIGINS.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl

import anyio
import uvicorn
from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl, ConfigDict, TypeAdapter
from starlette.authentication import AuthCredentials
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Config
from ..errors import ConfigError
from ..oauth_settings import is_loopback
from .oauth import IssuerKeys, IssuerUnreachable, JwtVerifier, TokenRefused
from .scopes import SCOPES, published_scopes

__all__ = ["RequireBearerToken", "RequireOAuthToken", "json_answer", "serve_http", "transport_security"]

log = logging.getLogger("dicomweb_mcp.http")


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
                await json_answer(send, 404, {"error": "not_found", "message": _NO_OAUTH})
                return
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            # The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._token):
                await json_answer(
                    send,
                    401,
                    {"error": "unauthorized", "message": _NO_OAUTH},
                    [(b"www-authenticate", b'Bearer realm="dicomweb-mcp"')],
                )
                return
        await self._app(scope, receive, send)


class RequireOAuthToken:
    """ASGI middleware of an OAuth resource server: the protected resource metadata (RFC 9728) for anyone,
    and for the rest a valid access token in the Authorization header, else 401 (or 403 for a token that
    grants no scope of this server) with a challenge pointing at the metadata. Scopes are named to hosts
    with ``scope_prefix`` (DICOMWEB_MCP_OAUTH_SCOPE_PREFIX), as they must ask their identity provider."""

    def __init__(
        self, app: ASGIApp, verifier: JwtVerifier, *, public_url: str, issuer: str, scope_prefix: str = ""
    ) -> None:
        self._app = AuthContextMiddleware(app)  # the SDK's: the verified user in its context variable
        self._verifier = verifier
        # The issuer exactly as configured: clients compare it with the issuer's own metadata, and a
        # trailing slash added to a path-less URL would not match.
        exact = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True))
        self._published = published_scopes(scope_prefix)
        routes = create_protected_resource_routes(
            resource_url=exact.validate_python(public_url),
            authorization_servers=[exact.validate_python(issuer)],
            scopes_supported=self._published,
            resource_name="dicomweb-mcp",
        )
        published = routes[0]
        # The public path may differ from the local /mcp behind a proxy; clients may also ask at the root.
        for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
            if path != published.path:
                routes.append(Route(path, endpoint=published.endpoint, methods=["GET", "OPTIONS"]))
        self._metadata_paths = frozenset(route.path for route in routes)
        self._metadata = Router(routes=list(routes))
        self._issuer = issuer
        scopes = " ".join(self._published)
        self._challenge = f'Bearer resource_metadata="{build_resource_metadata_url(AnyHttpUrl(public_url))}"'
        self._scope_hint = f'scope="{scopes}"'

    def __repr__(self) -> str:
        return "RequireOAuthToken()"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if path in self._metadata_paths:
            await self._metadata(scope, receive, send)
            return
        if path.startswith("/.well-known/"):
            message = f"This server is an OAuth resource server; its authorization server is {self._issuer}."
            await json_answer(send, 404, {"error": "not_found", "error_description": message})
            return
        query = parse_qsl(bytes(scope.get("query_string") or b"").decode("latin-1"), keep_blank_values=True)
        if any(name == "access_token" for name, _ in query):
            # RFC 6750 allows it, MCP forbids it: URLs end up in logs and browser history.
            where = "send the access token in the Authorization header"
            await self._refuse(send, 400, "invalid_request", where)
            return
        given = [value for name, value in scope.get("headers") or [] if name == b"authorization"]
        if not given:
            log.info("refused a request: no access token")
            body = {
                "error": "unauthorized",
                "error_description": f"This server needs an OAuth access token from {self._issuer}.",
            }
            challenge = f"{self._challenge}, {self._scope_hint}"
            await json_answer(send, 401, body, [(b"www-authenticate", challenge.encode())])
            return
        scheme, _, token = given[0].decode("latin-1").partition(" ")
        if len(given) > 1 or scheme.lower() != "bearer" or not token.strip():
            await self._refuse(send, 401, "invalid_request", "send one header: Authorization: Bearer <token>")
            return
        try:
            access = await self._verifier.check(token.strip())
        except TokenRefused as exc:
            await self._refuse(send, 401, "invalid_token", str(exc))
            return
        if not set(access.scopes) & set(SCOPES):
            needed = " or ".join(self._published)
            await self._refuse(send, 403, "insufficient_scope", f"the token grants none of {needed}")
            return
        inner = {**scope, "user": AuthenticatedUser(access), "auth": AuthCredentials(access.scopes)}
        await self._app(inner, receive, send)

    async def _refuse(self, send: Send, status: int, error: str, description: str) -> None:
        log.info("refused a request: %s (%s)", error, description)
        # The description is this module's words: quotes and controls would break the header.
        safe = "".join(c for c in description if c.isprintable() and c not in '"\\')
        challenge = f'{self._challenge}, error="{error}", error_description="{safe}"'
        if error == "insufficient_scope":
            challenge += f", {self._scope_hint}"
        await json_answer(
            send,
            status,
            {"error": error, "error_description": description},
            [(b"www-authenticate", challenge.encode())],
        )


_NO_OAUTH = (
    "This server takes a static bearer token, not OAuth: configure your MCP host to send the header "
    "'Authorization: Bearer <the DICOMWEB_MCP_TOKEN value>'."
)


async def json_answer(
    send: Send, status: int, content: Mapping[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A whole JSON response: the HTTP layer's refusals, here and in tools/stateless.py."""
    body = json.dumps(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


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
        # A bare name too: behind a TLS proxy on 443 clients send no port, and the proxy passes that on.
        allowed_hosts=[f"{name}:{port}" for name in hosts] + [f"{name}:*" for name in hosts] + hosts,
        allowed_origins=own + [origin.rstrip("/") for origin in extra_origins],
    )


def serve_http(server: MCPServer[Any], config: Config, *, host: str, port: int) -> None:
    """Serve ``server`` at ``http://{host}:{port}/mcp`` until interrupted."""
    token = config.mcp_token
    if not token and not config.oauth_issuer and not is_loopback(host):
        raise ConfigError(
            f"Refusing to serve on {host} without DICOMWEB_MCP_TOKEN or DICOMWEB_MCP_OAUTH_ISSUER: anyone "
            "who can reach this port could read and change patient data. Set one, or bind 127.0.0.1."
        )
    security = transport_security(host, port, config.mcp_allowed_hosts, config.mcp_allowed_origins)
    app: ASGIApp
    if config.mcp_stateless:
        from .stateless import stateless_app, warn_if_jobs_unshared

        warn_if_jobs_unshared(config)
        app = stateless_app(server, security, config.mcp_state_keys)
    else:
        app = server.streamable_http_app(host=host, transport_security=security)
    if config.oauth_issuer:
        public_url = cast(str, config.public_url)  # Config._check_oauth: always set with the issuer
        app = RequireOAuthToken(
            app,
            _verifier(config, config.oauth_issuer, public_url),
            public_url=public_url,
            issuer=config.oauth_issuer,
            scope_prefix=config.oauth_scope_prefix,
        )
    elif token:
        app = RequireBearerToken(app, token)
    # access_log off: request lines are not needed, and the startup lines say where it listens.
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


def _verifier(config: Config, issuer: str, public_url: str) -> JwtVerifier:
    """The token verifier for the configured issuer, its keys read now: a wrong issuer URL stops the start
    with a message, not every request later."""
    keys = IssuerKeys(issuer)
    try:
        anyio.run(keys.load)
    except IssuerUnreachable as exc:
        raise ConfigError(
            f"DICOMWEB_MCP_OAUTH_ISSUER {issuer!r}: the issuer's keys could not be read "
            f"({exc}). Check the URL (for Entra ID: https://login.microsoftonline.com/<tenant id>/v2.0) "
            "and that this host can reach it."
        ) from None
    return JwtVerifier(
        keys, config.accepted_audiences, resource=public_url, scope_prefix=config.oauth_scope_prefix
    )
