"""serve --transport http as an OAuth resource server, with tokens from a real identity provider
(oidc-provider under Node) and a real Orthanc behind: each bad token gets its HTTP answer, scopes decide
which tools a caller sees and may call, keys rotate, a flood of bad tokens is not a flood of JWKS fetches,
and no token reaches the log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support.idp import IdentityProvider, SigningKey
from tests.support.orthanc import Orthanc, free_port
from tests.support.served import COMMAND, initialize, serving_http

INITIALIZE = initialize(version="2025-11-25")
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
CHANGES = {"store_instances", "transfer_instances", "delete_instances"}


@dataclass
class Served:
    """A dicomweb-mcp resource server: its MCP URL, its log, and every token sent to it."""

    url: str
    log: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    @property
    def metadata_url(self) -> str:
        return self.url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")

    def post(self, token: str | None, *, query: str = "", http: httpx.Client | None = None) -> httpx.Response:
        """An initialize request with ``token`` in the Authorization header (none if None)."""
        headers = dict(MCP_HEADERS)
        if token is not None:
            self.tokens.append(token)
            headers["Authorization"] = f"Bearer {token}"
        if http is None:
            return httpx.post(self.url + query, json=INITIALIZE, headers=headers, timeout=30)
        return http.post(self.url + query, json=INITIALIZE, headers=headers)

    def assert_no_token_logged(self) -> None:
        log = "".join(self.log)
        assert "Uvicorn running on" in log  # the log was captured
        for token in self.tokens:
            # The whole token, and its signature alone (what would make a logged token usable).
            signature = token.rsplit(".", 1)[-1]
            assert token not in log and (not signature or signature not in log)


@contextmanager
def resource_server(
    idp: IdentityProvider, orthanc: Orthanc, downloads: Path, settings: Mapping[str, str] | None = None
) -> Iterator[Served]:
    """dicomweb-mcp over HTTP taking ``idp``'s tokens, in front of ``orthanc``, with more ``settings``; its
    log is checked for tokens once it has stopped."""
    port = free_port()
    served = Served(f"http://127.0.0.1:{port}/mcp")
    env = {
        "PATH": os.environ["PATH"],
        "DICOMWEB_URL": orthanc.dicomweb_url,
        "DICOMWEB_DOWNLOAD_DIR": str(downloads),
        "DICOMWEB_ALLOW_DELETE": "true",
        "DICOMWEB_MCP_OAUTH_ISSUER": idp.issuer,
        "DICOMWEB_MCP_PUBLIC_URL": served.url,
        "DICOMWEB_LOG_LEVEL": "DEBUG",
        **(settings or {}),
    }
    with serving_http(env, served.log, port=port):
        yield served
    served.assert_no_token_logged()


@pytest.fixture(scope="module")
def server(
    identity_provider: IdentityProvider, orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with resource_server(identity_provider, orthanc, tmp_path_factory.mktemp("downloads")) as served:
        yield served


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(idp: IdentityProvider, url: str) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": idp.keys[0].kid}).encode())
    return f"{header}.{b64(json.dumps(idp.claims(url)).encode())}."


def hs256_with_public_key(idp: IdentityProvider, url: str) -> str:
    """The classic confusion: HMAC keyed with the issuer's published key, which anyone has."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": idp.keys[0].kid}).encode())
    signing_input = f"{header}.{b64(json.dumps(idp.claims(url)).encode())}"
    mac = hmac.new(idp.keys[0].public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def tampered(idp: IdentityProvider, url: str) -> str:
    """The provider's own read-only token with its scope raised, its signature kept."""
    header, payload, signature = idp.token(url, client="reader").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "dicom.read dicom.write dicom.delete"
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


def now() -> int:
    return int(time.time())


# Each bad token: how it is made, and the answer: status, error code, words in the description.
BAD_TOKENS: dict[str, tuple[Callable[[IdentityProvider, str], str], int, str, str]] = {
    "expired": (
        lambda idp, url: idp.sign(idp.claims(url, iat=now() - 900, exp=now() - 600)),
        401,
        "invalid_token",
        "the token has expired",
    ),
    "not yet valid": (
        lambda idp, url: idp.sign(idp.claims(url, nbf=now() + 600)),
        401,
        "invalid_token",
        "not valid yet",
    ),
    "wrong audience": (
        lambda idp, url: idp.token("https://other.example.org/mcp"),
        401,
        "invalid_token",
        "not issued for this server",
    ),
    "wrong issuer": (
        lambda idp, url: idp.sign(idp.claims(url, iss="http://127.0.0.1:9")),
        401,
        "invalid_token",
        "not issued by",
    ),
    "unknown key": (
        lambda idp, url: idp.sign(idp.claims(url), key=SigningKey.generate()),
        401,
        "invalid_token",
        "a key its issuer does not publish",
    ),
    "another key under the issuer's key id": (
        lambda idp, url: idp.sign(idp.claims(url), key=SigningKey.generate(), kid=idp.keys[0].kid),
        401,
        "invalid_token",
        "signature does not verify",
    ),
    "alg none": (unsigned, 401, "invalid_token", "algorithm none is not accepted"),
    "tampered": (tampered, 401, "invalid_token", "signature does not verify"),
    "HS256 keyed with the public key": (
        hs256_with_public_key,
        401,
        "invalid_token",
        "algorithm HS256 is not accepted",
    ),
    "no exp": (lambda idp, url: idp.sign(idp.claims(url, exp=None)), 401, "invalid_token", "no exp claim"),
    "an ID token (a nonce, no scope; roles)": (
        lambda idp, url: idp.sign(idp.claims(url, nonce="n-0S6", scope=None, roles=["dicom.read"])),
        401,
        "invalid_token",
        "an OpenID ID token, not an access token",
    ),
    "not a JWT": (lambda idp, url: "opaque-garbage", 401, "invalid_token", "not a signed JWT"),
    "no dicom scope": (
        lambda idp, url: idp.token(url, client="nothing"),
        403,
        "insufficient_scope",
        "grants none of dicom.read",
    ),
}


def test_protected_resource_metadata(server: Served, identity_provider: IdentityProvider) -> None:
    metadata = httpx.get(server.metadata_url, timeout=10)
    assert metadata.status_code == 200
    assert metadata.json() == {
        "resource": server.url,
        "authorization_servers": [identity_provider.issuer],
        "scopes_supported": ["dicom.read", "dicom.write", "dicom.delete"],
        "bearer_methods_supported": ["header"],
        "resource_name": "dicomweb-mcp",
    }
    missing = server.post(None)
    assert missing.status_code == 401
    challenge = missing.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer resource_metadata="{server.metadata_url}"')
    assert "error=" not in challenge  # RFC 6750: no error code when no credentials were sent
    assert identity_provider.issuer in missing.json()["error_description"]
    other = httpx.get(server.url.replace("/mcp", "/.well-known/oauth-authorization-server"), timeout=10)
    assert other.status_code == 404 and identity_provider.issuer in other.json()["error_description"]


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_tokens(server: Served, identity_provider: IdentityProvider, case: str) -> None:
    make, status, error, words = BAD_TOKENS[case]
    response = server.post(make(identity_provider, server.url))
    assert response.status_code == status, response.text
    assert response.json()["error"] == error and words in response.json()["error_description"]
    challenge = response.headers["www-authenticate"]
    assert f'resource_metadata="{server.metadata_url}"' in challenge and f'error="{error}"' in challenge


def test_minted_tokens_are_good_when_nothing_is_wrong(
    server: Served, identity_provider: IdentityProvider
) -> None:
    """The bad tokens above are signed here with the provider's key: unchanged, the same is accepted."""
    assert server.post(identity_provider.sign(identity_provider.claims(server.url))).status_code == 200


def test_token_in_the_query_string_is_refused(server: Served, identity_provider: IdentityProvider) -> None:
    token = identity_provider.token(server.url)
    server.tokens.append(token)
    response = server.post(None, query=f"?access_token={token}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "Authorization header" in response.json()["error_description"]
    basic = httpx.post(server.url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": "Basic eDp5"})
    assert basic.status_code == 401 and basic.json()["error"] == "invalid_request"


async def tools_and_calls(
    url: str, token: str, calls: dict[str, dict[str, Any]], mode: str = "auto"
) -> tuple[set[str], dict[str, Any]]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        results = {name: await client.call_tool(name, arguments) for name, arguments in calls.items()}
    return tools, results


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_valid_token_end_to_end(
    server: Served, identity_provider: IdentityProvider, mode: str
) -> None:
    token = identity_provider.token(server.url, client="admin")
    server.tokens.append(token)
    tools, results = await tools_and_calls(server.url, token, {"search_studies": {}}, mode)
    assert {"search_studies", "store_instances", "delete_instances"} <= tools
    assert not results["search_studies"].is_error, results["search_studies"].content


def text(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_scopes_decide_the_tools(
    server: Served, identity_provider: IdentityProvider, mode: str
) -> None:
    await scopes_decide_the_tools(server, identity_provider, mode)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_scopes_decide_the_tools_when_served_stateless(
    identity_provider: IdentityProvider, orthanc: Orthanc, tmp_path: Path, mode: str
) -> None:
    """As replicas serve (DICOMWEB_MCP_STATELESS): no session remembers a caller, each request's own token
    decides the tools listed and the calls allowed."""
    settings = {"DICOMWEB_MCP_STATELESS": "true", "DICOMWEB_MCP_STATE_KEY": "5e" * 32}
    with resource_server(identity_provider, orthanc, tmp_path / "downloads", settings) as served:
        await scopes_decide_the_tools(served, identity_provider, mode)


async def scopes_decide_the_tools(server: Served, identity_provider: IdentityProvider, mode: str) -> None:
    reader = identity_provider.token(server.url, client="reader")
    writer = identity_provider.token(server.url, client="writer")
    server.tokens += [reader, writer]
    calls = {"store_instances": {"paths": ["/nowhere.dcm"]}, "delete_instances": {"study_uid": "1.2.3"}}
    tools, results = await tools_and_calls(server.url, reader, calls, mode)
    assert "search_studies" in tools and not tools & CHANGES
    assert results["store_instances"].is_error and results["delete_instances"].is_error
    assert "store_instances needs the OAuth scope dicom.write" in text(results["store_instances"])
    assert "delete_instances needs the OAuth scope dicom.delete" in text(results["delete_instances"])
    tools, results = await tools_and_calls(server.url, writer, calls, mode)
    assert "store_instances" in tools and "delete_instances" not in tools
    # Past the scope check: the server's own answer about the file.
    assert "OAuth scope" not in text(results["store_instances"])
    assert "needs the OAuth scope dicom.delete" in text(results["delete_instances"])


def test_scope_names_with_a_prefix(
    identity_provider: IdentityProvider, orthanc: Orthanc, tmp_path: Path
) -> None:
    """With Entra ID's scope names (api://<app>/dicom.read) configured, hosts are told those names, and the
    provider's tokens, which grant the names bare (as Entra ID's scp does), still grant them."""
    idp = identity_provider
    settings = {"DICOMWEB_MCP_OAUTH_SCOPE_PREFIX": "api://dicomweb-mcp/"}
    with resource_server(idp, orthanc, tmp_path, settings) as served:
        metadata = httpx.get(served.metadata_url, timeout=10).json()
        missing = served.post(None)
        nothing = served.post(idp.token(served.url, client="nothing"))
        reader = idp.token(served.url, client="reader")
        served.tokens.append(reader)
        tools, results = anyio.run(tools_and_calls, served.url, reader, {"store_instances": {"paths": []}})
    published = [
        "api://dicomweb-mcp/dicom.read",
        "api://dicomweb-mcp/dicom.write",
        "api://dicomweb-mcp/dicom.delete",
    ]
    assert metadata["scopes_supported"] == published
    hint = f'scope="{" ".join(published)}"'
    assert missing.status_code == 401 and hint in missing.headers["www-authenticate"]
    assert nothing.status_code == 403 and hint in nothing.headers["www-authenticate"]
    assert nothing.json()["error_description"] == f"the token grants none of {' or '.join(published)}"
    assert "search_studies" in tools and "store_instances" not in tools
    assert "needs the OAuth scope api://dicomweb-mcp/dicom.write," in text(results["store_instances"])


def claims_of(token: str) -> dict[str, Any]:
    """A token's payload, read without checking it (the server did)."""
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return claims


def test_the_audit_trail_names_each_tokens_user(
    identity_provider: IdentityProvider, orthanc: Orthanc, tmp_path: Path
) -> None:
    """Calls made with the provider's tokens are on record as their subjects, a call beyond a token's
    scopes as refused naming the scope, and no token is written."""
    idp, audit = identity_provider, tmp_path / "audit.jsonl"
    settings = {"DICOMWEB_AUDIT_LOG": str(audit)}
    with resource_server(idp, orthanc, tmp_path / "downloads", settings) as served:
        reader, admin = idp.token(served.url, client="reader"), idp.token(served.url, client="admin")
        served.tokens += [reader, admin]
        calls = {"search_studies": {}, "store_instances": {"paths": ["/nowhere.dcm"]}}
        _, by_reader = anyio.run(tools_and_calls, served.url, reader, calls)
        _, by_admin = anyio.run(tools_and_calls, served.url, admin, {"search_studies": {}})
    assert not by_reader["search_studies"].is_error and by_reader["store_instances"].is_error
    assert not by_admin["search_studies"].is_error
    written = audit.read_text()
    lines = [json.loads(line) for line in written.splitlines()]
    assert [(line["event"], line.get("tool"), line.get("outcome")) for line in lines] == [
        ("server_start", None, None),
        ("call", "search_studies", "ok"),
        ("call_start", "store_instances", None),
        ("call", "store_instances", "refused"),
        ("call", "search_studies", "ok"),
    ]
    assert lines[0]["user"]["source"] == "os"

    def user(token: str) -> dict[str, str]:
        claims = claims_of(token)
        return {
            "source": "oauth",
            "subject": claims["sub"],
            "client_id": claims["client_id"],
            "issuer": idp.issuer,
        }

    assert user(reader) != user(admin)  # two people, told apart
    assert [line["user"] for line in lines[1:]] == [user(reader)] * 3 + [user(admin)]
    refused = lines[3]
    assert refused["id"] == lines[2]["id"]
    assert "store_instances needs the OAuth scope dicom.write," in refused["reason"]
    for token in served.tokens:
        assert token not in written and token.rsplit(".", 1)[-1] not in written


def test_a_flood_of_bad_tokens(server: Served, identity_provider: IdentityProvider) -> None:
    idp, url = identity_provider, server.url
    stranger = SigningKey.generate()
    makers: list[Callable[[int], str]] = [
        lambda n: idp.sign(idp.claims(url), key=stranger, kid=f"unknown-{n}"),  # a new unknown key id each
        lambda n: idp.sign(idp.claims(url, exp=now() - 600)),
        lambda n: f"garbage-{n}",
        lambda n: idp.sign(idp.claims(url), key=stranger, kid=idp.keys[0].kid),
    ]
    good = idp.token(url)
    before = idp.jwks_fetches()
    started = time.monotonic()
    with httpx.Client(timeout=30) as http:
        for n in range(200):
            assert server.post(makers[n % len(makers)](n), http=http).status_code == 401
        flood = time.monotonic() - started
        started = time.monotonic()
        answer = server.post(good, http=http)
        took = time.monotonic() - started
    assert answer.status_code == 200
    assert took < 2, f"a good call took {took:.2f} s after the flood"
    # 50 unknown key ids: at most one JWKS fetch (the cooldown), not 50.
    assert idp.jwks_fetches() - before <= 1
    print(f"200 bad tokens in {flood:.2f} s; the good call after them took {took * 1000:.0f} ms")


def test_key_rotation(own_identity_provider: IdentityProvider, orthanc: Orthanc, tmp_path: Path) -> None:
    idp = own_identity_provider
    with resource_server(idp, orthanc, tmp_path) as served:
        old = idp.token(served.url)
        assert served.post(old).status_code == 200
        fetches = idp.jwks_fetches()
        idp.rotate()
        new = idp.token(served.url)
        assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"] == idp.keys[0].kid
        assert served.post(new).status_code == 200  # the unknown key id made the server fetch the keys
        assert served.post(old).status_code == 200  # the old key is still published
        assert idp.jwks_fetches() == fetches + 1
        # A second rotation within the cooldown is not fetched yet: the bound that protects the issuer.
        idp.rotate()
        newest = served.post(idp.token(served.url))
        assert newest.status_code == 401 and "does not publish" in newest.json()["error_description"]
        assert idp.jwks_fetches() == fetches + 1


def test_an_issuer_that_cannot_be_read_stops_the_start(identity_provider: IdentityProvider) -> None:
    port = free_port()
    base = {
        "PATH": os.environ["PATH"],
        "DICOMWEB_URL": "http://127.0.0.1:9/dicom-web",
        "DICOMWEB_MCP_PUBLIC_URL": f"http://127.0.0.1:{port}/mcp",
    }
    answers = {}
    for case, issuer in {
        "nobody listens": f"http://127.0.0.1:{free_port()}",
        "a path the provider does not serve": f"{identity_provider.issuer}/tenant",
    }.items():
        env = {**base, "DICOMWEB_MCP_OAUTH_ISSUER": issuer}
        answers[case] = subprocess.run(
            [COMMAND, "serve", "--transport", "http", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    for case, result in answers.items():
        assert result.returncode == 2, (case, result.stderr)
        assert "DICOMWEB_MCP_OAUTH_ISSUER" in result.stderr and "could not be read" in result.stderr, case
    assert "ConnectError" in answers["nobody listens"].stderr
    assert "HTTP 404" in answers["a path the provider does not serve"].stderr
