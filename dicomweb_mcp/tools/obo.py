"""Each caller's own identity at an Azure DICOM service: their access token exchanged on their behalf.

A server with ``on_behalf_of`` gets as its client's auth a flow that, for every request, takes the user the
SDK authenticated for the MCP request being served (the OAuth middleware's verified token), and sends the
DICOM service token Microsoft Entra ID gave in that user's name. The user's own token goes to Entra ID as
the assertion and nowhere else; the archive sees only the exchanged one. One client and one connection pool
per server serve every user: only the Authorization header differs, chosen per request.

Credentials are kept per user assertion (a digest of the token, and its expiry to forget it by) in a
bounded LRU, so a user's second call reuses the token of the first, and a refreshed sign-in gets a new
exchange.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Generator

import httpx
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from ..config import Config, ServerConfig
from ..dicomweb.auth import AzureTokenAuth
from ..errors import ConfigError, PolicyError

__all__ = ["CallerAuth", "caller_auths"]

# Users whose credentials are kept at once per server; the least recently seen goes first.
MAX_USERS = 1000


def caller_auths(config: Config) -> dict[str, CallerAuth]:
    """The per-caller auth flow of each server that acts on behalf of its callers, by name; the app's
    certificate read now, so that an unreadable one stops the start rather than every call."""
    return {server.name: CallerAuth(server) for server in config.servers if server.on_behalf_of}


class CallerAuth(httpx.Auth):
    """httpx auth for one on-behalf-of server: per request, the current caller's DICOM service token."""

    def __init__(
        self,
        server: ServerConfig,
        *,
        max_users: int = MAX_USERS,
        clock: Callable[[], float] = time.time,
        caller: Callable[[], AccessToken | None] = get_access_token,
    ) -> None:
        self._server = server
        self._max_users = max_users
        self._clock = clock
        self._caller = caller  # the SDK's authenticated user of the request being served
        self._certificate = _certificate(server)
        self._users: OrderedDict[tuple[int, str], AzureTokenAuth] = OrderedDict()
        self.credentials_made = 0  # one per user assertion seen

    def __repr__(self) -> str:
        return f"CallerAuth(server={self._server.name!r}, users={len(self._users)})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("CallerAuth works with httpx.AsyncClient only")
        yield request  # pragma: no cover - makes this a generator

    def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The current caller's own flow: it sets the header, and may ask again once after a 401."""
        return self.for_caller(self._caller()).async_auth_flow(request)

    def for_caller(self, caller: AccessToken | None) -> AzureTokenAuth:
        """The auth flow in ``caller``'s name: the one made for this very token if it is still held."""
        if caller is None or not caller.token:
            raise PolicyError(
                f"Server {self._server.name!r} acts on behalf of the signed-in user, and this request "
                "carries no signed-in user (no OAuth access token): it is refused rather than made with the "
                "MCP server's own identity. Call it through serve --transport http with OAuth."
            )
        # The digest tells assertions (and so their users) apart; the expiry says when to forget one.
        key = (int(caller.expires_at or 0), hashlib.sha256(caller.token.encode()).hexdigest())
        found = self._users.get(key)
        if found is not None:
            self._users.move_to_end(key)
            return found
        self._forget_expired()
        from ..dicomweb.entra import on_behalf_of_credential, refusal  # azure-identity: only when needed

        server = self._server
        credential = on_behalf_of_credential(server, caller.token, self._certificate)
        made = AzureTokenAuth(credential, server.azure_scope, explain=lambda exc: refusal(exc, server))
        self._users[key] = made
        self.credentials_made += 1
        while len(self._users) > self._max_users:
            self._users.popitem(last=False)
        return made

    def _forget_expired(self) -> None:
        """Drop the credentials of assertions that have expired: Entra ID exchanges no expired token."""
        now = self._clock()
        for key in [key for key in self._users if key[0] and key[0] <= now]:
            del self._users[key]


def _certificate(server: ServerConfig) -> bytes | None:
    if server.client_certificate is None:
        return None
    try:
        return server.client_certificate.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"Server {server.name!r}: client_certificate {str(server.client_certificate)!r} cannot be read "
            f"({exc.strerror or exc}): give a PEM or PKCS12 file with the certificate and its private key."
        ) from None
