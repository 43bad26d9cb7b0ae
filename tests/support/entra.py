"""Microsoft Entra ID's v2.0 token endpoint answering the on-behalf-of request (for respx-mocked tests).

Shaped as Microsoft documents the flow: the middle tier POSTs a form with grant_type
urn:ietf:params:oauth:grant-type:jwt-bearer, client_id, client_secret, assertion (the user's access
token), scope and requested_token_use=on_behalf_of; the answer is token_type, scope, expires_in,
ext_expires_in and access_token, or HTTP 400 with error, error_description, error_codes, timestamp,
trace_id and correlation_id (and suberror for consent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from mcp.server.auth.provider import AccessToken

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
