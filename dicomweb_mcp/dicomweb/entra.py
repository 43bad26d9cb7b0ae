"""Microsoft Entra ID tokens in a signed-in user's name (OAuth 2.0 on-behalf-of), for the Azure DICOM service.

azure-identity's ``OnBehalfOfCredential`` makes the exchange: this server's app registration presents the
user's access token (the assertion) and gets a token for the DICOM service in the user's name. Its requests
go through httpx here: the async credential's own transport needs aiohttp, which is not installed, and one
HTTP stack means one set of proxy and TLS settings. Entra ID's refusals become ``CredentialError``s that say
who must do what. Whose token is exchanged, and when, is the caller's business (tools/obo.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import anyio
import httpx
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.core.pipeline.transport import AsyncHttpTransport
from azure.core.rest import HttpRequest
from azure.core.rest._http_response_impl_async import AsyncHttpResponseImpl
from azure.core.utils import case_insensitive_dict

from ..config import ServerConfig
from ..errors import CredentialError

__all__ = ["HttpxTransport", "on_behalf_of_credential", "refusal"]

_TIMEOUT = 30.0


class HttpxTransport(AsyncHttpTransport):  # type: ignore[type-arg]
    """An azure-core transport over httpx. An exchange happens once per user and token lifetime (about an
    hour), so each request has a client of its own: nothing is held open between them, nothing to close."""

    async def __aenter__(self) -> HttpxTransport:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def sleep(self, duration: float) -> None:
        await anyio.sleep(duration)

    async def send(self, request: HttpRequest, **kwargs: Any) -> _Answer:
        body = request.content
        form = body if isinstance(body, Mapping) else None
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT, follow_redirects=False) as http:
                response = await http.request(
                    request.method,
                    request.url,
                    headers=dict(request.headers),
                    data=form,
                    content=None if form is not None else body,
                )
        except httpx.HTTPError as exc:
            # azure-core's retry policy retries these, as it would its own transport's.
            raise ServiceRequestError(f"{type(exc).__name__}: {exc}", error=exc) from None
        return _Answer(request, response)


class _Answer(AsyncHttpResponseImpl):
    """An answer already read whole (token responses are small)."""

    def __init__(self, request: HttpRequest, response: httpx.Response) -> None:
        super().__init__(
            request=request,
            internal_response=response,
            status_code=response.status_code,
            reason=response.reason_phrase,
            content_type=response.headers.get("content-type"),
            headers=case_insensitive_dict(response.headers.items()),
            stream_download_generator=None,
        )
        self._content = response.content

    async def close(self) -> None:
        self._is_closed = True


def on_behalf_of_credential(server: ServerConfig, assertion: str, certificate: bytes | None) -> Any:
    """A credential for ``server``'s DICOM service scope in the name of the user whose access token is
    ``assertion``; it caches the tokens it gets, so one is kept per assertion."""
    from azure.identity.aio import OnBehalfOfCredential  # slow to import: only for a server that needs it

    assert server.tenant_id and server.client_id  # checked by ServerConfig
    return OnBehalfOfCredential(
        server.tenant_id,
        server.client_id,
        client_secret=server.client_secret,
        client_certificate=certificate,
        user_assertion=assertion,
        transport=HttpxTransport(),
    )


# What Entra ID's refusal codes (AADSTS...) ask for, and of whom.
_CONSENT = (
    "The administrator of the Microsoft Entra tenant must give this MCP server's app registration (client "
    "ID {client_id}) the delegated API permission Dicom.ReadWrite of Azure API for DICOM (API permissions > "
    "Add a permission > APIs my organization uses) and grant admin consent for it."
)
_MFA = "Entra ID asks for multi-factor authentication: sign in again in your MCP host, completing it."
_WHAT_TO_DO = {
    "65001": _CONSENT,
    "50013": (
        "Your access token cannot be exchanged: it was not issued for this MCP server's app registration "
        "(client ID {client_id}), or its signature or audience is not what Entra ID expects. Sign in "
        "again; if this persists, the administrator must have MCP hosts request tokens for this server's "
        "Application ID URI."
    ),
    "500133": "Your sign-in has expired: sign in again in your MCP host.",
    "50076": _MFA,
    "50079": _MFA,
    "7000215": (
        "The server's client secret is not valid: the operator must create a new one for app registration "
        "{client_id} and set it in the variable client_secret_env names."
    ),
    "7000222": (
        "The server's client secret has expired: the operator must create a new one for app registration "
        "{client_id} and set it in the variable client_secret_env names."
    ),
    "700016": (
        "Entra ID does not know the application {client_id} in tenant {tenant_id}: the operator must check "
        "tenant_id and client_id."
    ),
    "90002": "Entra ID does not know the tenant {tenant_id}: the operator must check tenant_id.",
}
_BY_ERROR = {
    "consent_required": _CONSENT,
    "interaction_required": _WHAT_TO_DO["50076"],
    "invalid_grant": (
        "Entra ID would not exchange your access token: sign in again in your MCP host; if this persists, "
        "ask the administrator to check this server's app registration (client ID {client_id})."
    ),
    "invalid_client": (
        "Entra ID did not accept this server's own credentials (client ID {client_id}): the operator must "
        "check the client secret or certificate."
    ),
}


def refusal(exc: Exception, server: ServerConfig) -> CredentialError:
    """Why the exchange for ``server`` failed, and what the user or the administrator must do."""
    where = f"Server {server.name!r} acts as you at the Azure DICOM service, but"
    if isinstance(exc, ServiceRequestError) and not isinstance(exc, ClientAuthenticationError):
        return CredentialError(
            f"{where} Microsoft Entra ID could not be reached to get a token in your name ({exc.message}). "
            "Try again; if this persists, the operator must check that this host reaches "
            "login.microsoftonline.com."
        )
    error, codes, description = _entra_error(exc)
    todo = next((_WHAT_TO_DO[code] for code in codes if code in _WHAT_TO_DO), None) or _BY_ERROR.get(
        error or ""
    )
    said = f" ({error}: {description})" if error and description else f" ({error or description})"
    advice = (todo or "Sign in again; if this persists, show this message to the administrator.").format(
        client_id=server.client_id, tenant_id=server.tenant_id
    )
    return CredentialError(
        f"{where} Microsoft Entra ID refused to exchange your access token{said}. {advice}"
    )


def _entra_error(exc: Exception) -> tuple[str | None, list[str], str]:
    """Entra ID's error, its AADSTS codes and the first line of its description, from the answer's body
    (``error``, ``error_codes``, ``error_description``) or else from the exception's message."""
    body: Any = None
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = response.json()
        except Exception:  # not JSON, or no body: the message is all there is
            body = None
    if isinstance(body, Mapping):
        error = body.get("error") if isinstance(body.get("error"), str) else None
        codes = [str(code) for code in body.get("error_codes") or [] if isinstance(code, int | str)]
        text = str(body.get("error_description") or "")
    else:
        message = str(getattr(exc, "message", None) or exc)
        found = re.search(r"\((\w+)\)", message)
        error, codes, text = (found.group(1) if found else None), [], message
    codes += [code for code in re.findall(r"AADSTS(\d+)", text) if code not in codes]
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    return error, codes, first[:300]
