"""On-behalf-of through the real HTTP app: RequireOAuthToken in front of the streamable HTTP transport, so
each request's user is the one the middleware verified from that request's Authorization header, in both
protocol eras, with sessions of two users open at once and a token renewed mid-session.

The tokens are checked by a stand-in verifier (the real one is tested against a real identity provider in
test_oauth.py); Entra ID and the DICOM service are mocked with respx, as in test_obo.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.provider import AccessToken

from dicomweb_mcp.tools.http import RequireOAuthToken, transport_security
from dicomweb_mcp.tools.oauth import TokenRefused
from dicomweb_mcp.tools.server import build_server
from tests.support.entra import ISSUER, Entra, acting_config, mocked, user
from tests.support.orthanc import free_port

pytestmark = pytest.mark.anyio


class Verifier:
    """Accepts exactly the tokens it was given, as the OAuth middleware's verifier would once checked."""

    def __init__(self, *tokens: AccessToken) -> None:
        self.tokens = {token.token: token for token in tokens}

    async def check(self, token: str) -> AccessToken:
        if token not in self.tokens:
            raise TokenRefused("the token is not known")
        return self.tokens[token]


@contextmanager
def serving(tmp_path: Path, verifier: Verifier) -> Iterator[str]:
    """The HTTP app as serve_http builds it, with ``verifier``, on a free loopback port (a thread)."""
    port = free_port()
    server = build_server(acting_config(tmp_path))
    security = transport_security("127.0.0.1", port)
    app = RequireOAuthToken(
        server.streamable_http_app(host="127.0.0.1", transport_security=security),
        verifier,  # type: ignore[arg-type]
        public_url=f"http://127.0.0.1:{port}/mcp",
        issuer=ISSUER,
    )
    served = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not served.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the HTTP app did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        served.should_exit = True
        thread.join(10)


async def searches(url: str, tokens: list[AccessToken], mode: Any) -> list[bool]:
    """One session; each search sent with the next of ``tokens`` in its Authorization header (the first
    opens the session too)."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {tokens[0].token}"}, timeout=30)
    outcomes = []
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        for token in tokens:
            http.headers["Authorization"] = f"Bearer {token.token}"
            result = await client.call_tool("search_studies", {"patient_id": "PAT-1"})
            outcomes.append(not result.is_error)
    return outcomes


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_each_request_acts_as_the_user_its_token_names(tmp_path: Path, mode: str) -> None:
    alice, bob = user("alice"), user("bob")
    renewed = user("alice", signature="renewed")
    entra = Entra()
    entra.accept(alice, bob, renewed)
    results: dict[str, list[bool]] = {}
    with mocked(entra) as (_, archive), serving(tmp_path, Verifier(alice, bob, renewed)) as url:

        async def session(name: str, tokens: list[AccessToken]) -> None:
            results[name] = await searches(url, tokens, mode)

        async with anyio.create_task_group() as group:
            group.start_soon(session, "alice", [alice, alice, renewed])
            group.start_soon(session, "bob", [bob, bob])
    assert results == {"alice": [True, True, True], "bob": [True, True]}
    # One exchange per user assertion, whichever order the two sessions ran in.
    assertions = [form["assertion"] for form in entra.forms]
    assert sorted(assertions) == sorted([alice.token, bob.token, renewed.token])
    # Each request carried the token exchanged for the assertion of its own request.
    alices = [sent for sent in archive.authorizations if sent.startswith("Bearer dicom-token-alice-")]
    bobs = [sent for sent in archive.authorizations if sent.startswith("Bearer dicom-token-bob-")]
    assert len(alices) == 3 and len(bobs) == 2 and len(archive.authorizations) == 5
    assert alices[0] == alices[1] == f"Bearer dicom-token-alice-{assertions.index(alice.token) + 1}"
    assert alices[2] == f"Bearer dicom-token-alice-{assertions.index(renewed.token) + 1}"
    assert bobs[0] == bobs[1] == f"Bearer dicom-token-bob-{assertions.index(bob.token) + 1}"
    for request in archive.requests:
        for token in (alice, bob, renewed):
            assert token.token not in str(request.url) + str(request.headers)
