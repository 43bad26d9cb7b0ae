"""Microsoft Entra ID's v2.0 token endpoint answering the on-behalf-of request (for respx-mocked tests), the
settings of a server acting on behalf of its callers, and a caller signed in as the OAuth middleware does.

Shaped as Microsoft documents the flow: the middle tier POSTs a form with grant_type
urn:ietf:params:oauth:grant-type:jwt-bearer, client_id, client_secret, assertion (the user's access
token), scope and requested_token_use=on_behalf_of; the answer is token_type, scope, expires_in,
ext_expires_in and access_token, or HTTP 400 with error, error_description, error_codes, timestamp,
trace_id and correlation_id (and suberror for consent).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import respx
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from dicomweb_mcp import Config
from dicomweb_mcp.config import ServerConfig
from tests.support.azure import BASE, DICOM_JSON

TENANT = "5f0c2a4e-8d3b-4c1a-9e7f-2b6d8a0c4e11"
CLIENT_ID = "0e9b7c3d-1a2f-4b5c-8d6e-7f8091a2b3c4"
# A test value, in no real tenant: checked never to appear in a log or an archive request.
CLIENT_SECRET = "test-app-secret~not.a.real.one"
TOKEN_URL = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
DICOM_SCOPE = "https://dicom.healthcareapis.azure.com/.default"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

CONSENT_REQUIRED = {
    "error": "invalid_grant",
    "error_description": (
        f"AADSTS65001: The user or administrator has not consented to use the application with ID '{CLIENT_ID}' "
        "named 'dicomweb-mcp'. Send an interactive authorization request for this user and resource.\r\n"
        "Trace ID: 0b6f3c1e-3c5a-4b7e-9f1a-2d3c4b5a6f70\r\nCorrelation ID: 4d2c1b0a-9e8f-4a7b-8c6d-5e4f3a2b1c0d\r\n"
        "Timestamp: 2025-05-01 10:00:00Z"
    ),
    "error_codes": [65001],
    "timestamp": "2025-05-01 10:00:00Z",
    "trace_id": "0b6f3c1e-3c5a-4b7e-9f1a-2d3c4b5a6f70",
    "correlation_id": "4d2c1b0a-9e8f-4a7b-8c6d-5e4f3a2b1c0d",
    "suberror": "consent_required",
}
BAD_ASSERTION = {
    "error": "invalid_grant",
    "error_description": (
        "AADSTS50013: Assertion failed signature validation. [Reason - The key was not found.]\r\n"
        "Trace ID: 1c7a4d2f-4d6b-4c8f-8a2b-3e4d5c6b7a81\r\nCorrelation ID: 5e3d2c1b-0f9a-4b8c-9d7e-6f5a4b3c2d1e\r\n"
        "Timestamp: 2025-05-01 10:00:00Z"
    ),
    "error_codes": [50013],
    "timestamp": "2025-05-01 10:00:00Z",
    "trace_id": "1c7a4d2f-4d6b-4c8f-8a2b-3e4d5c6b7a81",
    "correlation_id": "5e3d2c1b-0f9a-4b8c-9d7e-6f5a4b3c2d1e",
}


def user(name: str, *, lifetime: int = 3600, signature: str = "sig") -> AccessToken:
    """A verified access token as the OAuth middleware hands it on (tools/oauth.py makes it so)."""
    claims = {
        "iss": ISSUER,
        "sub": f"{name}-subject",
        "name": name.title(),
        "aud": CLIENT_ID,
        "scp": "dicom.read",
    }
    return AccessToken(
        token=f"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ{name}In0.{name}-{signature}",
        client_id="mcp-host-app",
        scopes=["dicom.read", "dicom.write"],
        expires_at=int(time.time()) + lifetime,
        resource="https://mcp.example.org/mcp",
        subject=f"{name}-subject",
        claims=claims,
    )


@dataclass
class Entra:
    """The token endpoint: an accepted assertion gets a DICOM service token naming its user and a serial
    number; ``refusals`` maps an assertion to the error body Entra ID answers it with."""

    users: dict[str, str] = field(default_factory=dict)  # assertion -> user name
    refusals: dict[str, dict[str, Any]] = field(default_factory=dict)
    forms: list[dict[str, str]] = field(default_factory=list)
    headers: list[httpx.Headers] = field(default_factory=list)

    def accept(self, *tokens: AccessToken) -> None:
        for token in tokens:
            self.users[token.token] = (token.subject or "").removesuffix("-subject")

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        form = {key: values[0] for key, values in parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        self.headers.append(request.headers)
        refusal = self.refusals.get(form.get("assertion", ""))
        if refusal is not None:
            return httpx.Response(400, json=refusal)
        name = self.users.get(form.get("assertion", ""))
        if name is None:
            return httpx.Response(400, json=BAD_ASSERTION)
        return httpx.Response(
            200,
            json={
                "token_type": "Bearer",
                "scope": form["scope"].replace("/.default", "/Dicom.ReadWrite"),
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": f"dicom-token-{name}-{len(self.forms)}",
            },
        )


STUDY = {
    "0020000D": {"vr": "UI", "Value": ["1.2.826.0.1.3680043.8.498.1"]},
    "00100020": {"vr": "LO", "Value": ["PAT-1"]},
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
    "00080020": {"vr": "DA", "Value": ["20240101"]},
    "00080061": {"vr": "CS", "Value": ["CT"]},
}


def acting_server(**settings: Any) -> ServerConfig:
    """An Azure DICOM server acting on behalf of its callers, as this app registration; ``settings`` change it."""
    given: dict[str, Any] = {
        "url": BASE,
        "auth": "azure",
        "on_behalf_of": True,
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    return ServerConfig(**{**given, **settings})


def acting_config(tmp_path: Path, **settings: Any) -> Config:
    return Config(
        (acting_server(),),
        download_dir=tmp_path,
        oauth_issuer=ISSUER,
        public_url="https://mcp.example.org/mcp",
        **settings,
    )


@contextmanager
def signed_in(token: AccessToken | None) -> Iterator[None]:
    """Requests made inside come from ``token``'s bearer (none: no signed-in user), as the OAuth middleware
    (tools/http.py RequireOAuthToken) hands each request on: the SDK's authenticated-user context variable."""
    reset = auth_context_var.set(AuthenticatedUser(token) if token is not None else None)
    try:
        yield
    finally:
        auth_context_var.reset(reset)


class Archive:
    """The Azure DICOM service's QIDO answer; records the Authorization header of every request."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.authorizations.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json=[STUDY], headers=DICOM_JSON)


@contextmanager
def mocked(entra: Entra) -> Iterator[tuple[respx.MockRouter, Archive]]:
    """Entra ID's token endpoint (its calls counted in ``entra.forms``) and the archive's QIDO."""
    archive = Archive()
    with respx.mock(assert_all_called=False) as mock:
        mock.post(TOKEN_URL).mock(side_effect=entra)
        mock.get(f"{BASE}/studies").mock(side_effect=archive)
        yield mock, archive
