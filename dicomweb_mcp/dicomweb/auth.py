"""Authentication as pluggable httpx auth flows: none, HTTP Basic, static bearer, Azure (refreshing).

None of these classes ever shows a secret in its repr.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, Protocol

import anyio
import httpx

from ..config import AuthMode, ServerConfig
from ..errors import ConfigError, CredentialError, DicomWebError

__all__ = ["AzureTokenAuth", "BearerAuth", "TokenCredential", "build_auth"]

# Refresh a token this long before it expires, so that a request never leaves with a token that dies
# on the way (Entra tokens live about an hour).
_REFRESH_MARGIN_SECONDS = 300.0


class TokenCredential(Protocol):
    """What azure-identity credentials offer (sync or async ``get_token``)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


class BearerAuth(httpx.Auth):
    """A static bearer token."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"


class AzureTokenAuth(httpx.Auth):
    """Bearer tokens from an azure-identity credential.

    Tokens are cached until shortly before they expire; a 401 forces one refresh and one retry (the token
    may have been revoked or the clock skewed). Sync credentials run in a worker thread, so that their
    blocking HTTP calls never stall the event loop; async credentials are awaited directly.
    """

    def __init__(
        self,
        credential: TokenCredential | None,
        scope: str,
        *,
        explain: Callable[[Exception], DicomWebError] | None = None,
    ) -> None:
        # None: DefaultAzureCredential, made on the first token request. azure-identity is slow to
        # import, and a host would otherwise wait for it before the server answers at all.
        self._credential = credential
        self._scope = scope
        # Words for a credential's failure; without: advice on signing this process in.
        self._explain = explain
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        kind = type(self._credential).__name__ if self._credential is not None else "DefaultAzureCredential"
        return f"AzureTokenAuth(credential={kind}, scope={self._scope!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("AzureTokenAuth works with httpx.AsyncClient only")
        yield request  # pragma: no cover - makes this a generator

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self._get_token(force=False)}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {await self._get_token(force=True)}"
            yield request

    async def _get_token(self, *, force: bool) -> str:
        async with self._lock:
            if force or self._token is None or time.time() >= self._expires_on - _REFRESH_MARGIN_SECONDS:
                if self._credential is None:
                    self._credential = _default_azure_credential()
                get_token = self._credential.get_token
                try:
                    if inspect.iscoroutinefunction(get_token):
                        access = await get_token(self._scope)
                    else:
                        access = await anyio.to_thread.run_sync(get_token, self._scope)
                except Exception as exc:
                    if self._explain is not None:
                        raise self._explain(exc) from None
                    # azure-identity explains every credential it tried; the first line is the gist.
                    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise CredentialError(
                        f"Could not get an Azure access token for {self._scope}: {first_line} Sign in with "
                        "'az login', or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or run "
                        "with a managed identity."
                    ) from None
                self._token = str(access.token)
                self._expires_on = float(access.expires_on)
            return self._token


def build_auth(config: ServerConfig, credential: TokenCredential | None = None) -> httpx.Auth | None:
    """The auth flow for ``config``; ``credential`` overrides DefaultAzureCredential for Azure."""
    if config.auth is AuthMode.NONE:
        return None
    if config.auth is AuthMode.BASIC:
        assert config.username is not None and config.password is not None  # checked by ServerConfig
        return httpx.BasicAuth(config.username, config.password)
    if config.auth is AuthMode.BEARER:
        assert config.token is not None
        return BearerAuth(config.token)
    if config.on_behalf_of:
        # Never this process's own identity in a user's place: the caller's flow must be given.
        raise ConfigError(
            f"Server {config.name!r} acts on behalf of each caller: its auth flow must be given."
        )
    return AzureTokenAuth(credential, config.azure_scope)


def _default_azure_credential() -> TokenCredential:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as exc:  # pragma: no cover - azure-identity is a dependency
        raise ConfigError("DICOMWEB_AUTH=azure needs the azure-identity package.") from exc
    return DefaultAzureCredential()
