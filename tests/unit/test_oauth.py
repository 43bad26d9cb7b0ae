"""OAuth decisions without a network: which claims a token needs, which scopes it grants, which tools a
caller may see and call, and how often the issuer's keys are fetched. The real identity provider's
tokens are tested in tests/test_oauth.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from contextlib import AbstractContextManager
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from mcp import Client
from mcp.server.auth.provider import AccessToken

from dicomweb_mcp import Config
from dicomweb_mcp.config import ServerConfig
from dicomweb_mcp.environment import read_config
from dicomweb_mcp.errors import ConfigError
from dicomweb_mcp.oauth_settings import is_loopback, oauth_url
from dicomweb_mcp.tools.http import RequireOAuthToken, json_answer
from dicomweb_mcp.tools.oauth import IssuerKeys, IssuerUnreachable, JwtVerifier, TokenRefused, _safe_url
from dicomweb_mcp.tools.scopes import OAuthAccess, granted_scopes
from dicomweb_mcp.tools.server import TOOL_SCOPES, build_server
from tests.support.entra import signed_in

ISSUER = "https://login.example.org/tenant-1/v2.0"
RESOURCE = "https://mcp.example.org/mcp"
PREFIX = "api://dicomweb-mcp/"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
    return {**json.loads(algorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig"}


class Issuer:
    """The issuer's two documents, served to ``IssuerKeys`` through a mock transport, with a clock."""

    def __init__(self) -> None:
        self.keys = [public_jwk(RSA_KEY, "rsa-1"), public_jwk(EC_KEY, "ec-1")]
        self.issuer = ISSUER
        self.jwks_fetches = 0
        self.now = 1000.0
        self.openid = True

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tenant-1/v2.0/.well-known/openid-configuration" and self.openid:
            return httpx.Response(
                200, json={"issuer": self.issuer, "jwks_uri": "https://login.example.org/keys"}
            )
        if request.url.path == "/.well-known/oauth-authorization-server/tenant-1/v2.0":
            return httpx.Response(
                200, json={"issuer": self.issuer, "jwks_uri": "https://login.example.org/keys"}
            )
        if request.url.path == "/keys":
            self.jwks_fetches += 1
            return httpx.Response(200, json={"keys": self.keys})
        return httpx.Response(404)

    def key_set(self) -> IssuerKeys:
        return IssuerKeys(
            ISSUER,
            cooldown=30,
            max_age=3600,
            clock=lambda: self.now,
            transport=httpx.MockTransport(self.handle),
        )


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
async def verifier(issuer: Issuer) -> JwtVerifier:
    keys = issuer.key_set()
    await keys.load()
    return JwtVerifier(keys, [RESOURCE], resource=RESOURCE)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISSUER, "aud": RESOURCE, "sub": "u-1", "iat": now, "exp": now + 600}
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def signed(payload: dict[str, Any], key: Any = RSA_KEY, alg: str = "RS256", kid: str = "rsa-1") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def refused(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(TokenRefused) as caught:
        await verifier.check(token)
    return str(caught.value)


# -- scopes ---------------------------------------------------------------------------------------------


def test_scopes_from_each_claim_form() -> None:
    assert granted_scopes({"scp": "dicom.read dicom.write"}) == {"dicom.read", "dicom.write"}  # Entra ID
    assert granted_scopes({"scope": "openid dicom.read"}) == {"openid", "dicom.read"}  # RFC 9068
    assert granted_scopes({"roles": ["dicom.delete"]}) == {"dicom.delete"}  # Entra ID app roles
    assert granted_scopes({"scope": ["dicom.read"]}) == {"dicom.read"}
    assert granted_scopes({"scp": "api://0a1b/dicom.read"}) == {"dicom.read"}
    assert granted_scopes({"scp": 7, "roles": "dicom.read", "scope": [None, "", "/"]}) == {"dicom.read"}
    assert granted_scopes({}) == frozenset()


def test_scopes_with_the_operators_prefix() -> None:
    # Entra ID puts bare names in scp and roles; some issuers write them in full.
    assert granted_scopes({"scp": "dicom.read", "roles": ["dicom.delete"]}, PREFIX) == {
        "dicom.read",
        "dicom.delete",
    }
    assert granted_scopes({"scope": "api://dicomweb-mcp/dicom.write"}, PREFIX) == {"dicom.write"}
    # Another API's scope of the same name grants nothing here once the prefix is known...
    other = {"scp": "api://other-app/dicom.read api://dicomweb-mcp/x/dicom.write api://dicomweb-mcp/"}
    assert granted_scopes(other, PREFIX) == frozenset()
    # ...and without a prefix a full name counts by its last segment, as before.
    assert granted_scopes(other) == {"dicom.read", "dicom.write"}


def full_config(*, read_only: bool = False, allow_delete: bool = True) -> Config:
    servers = (
        ServerConfig("http://127.0.0.1:9/dicom-web", allow_delete=allow_delete, read_only=read_only),
        ServerConfig("http://127.0.0.1:9/other", name="research", read_only=read_only),
    )
    return Config(servers)


def caller(*scopes: str, prefix: str = "") -> AbstractContextManager[None]:
    """Requests made inside come from the bearer of a token granting ``scopes``, as over HTTP with OAuth,
    verified by a server whose scope names begin with ``prefix``."""
    granted: dict[str, Any] = {"token": "t", "client_id": "c", "scopes": list(scopes)}
    # The SDK's own token when there is no prefix: a refusal must not need this package's subclass.
    access = OAuthAccess(**granted, scope_prefix=prefix) if prefix else AccessToken(**granted)
    return signed_in(access)


def test_every_tool_has_a_scope() -> None:
    names = {tool.name for tool in build_server(full_config())._tool_manager.list_tools()}
    assert names == set(TOOL_SCOPES)  # nothing open by omission, no stale entry


async def tool_names(config: Config) -> set[str]:
    async with Client(build_server(config)) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


CHANGES = {"store_instances", "transfer_instances", "delete_instances"}


@pytest.mark.anyio
async def test_tools_listed_by_scope() -> None:
    assert await tool_names(full_config()) >= CHANGES  # no OAuth token (stdio, static token): as before
    with caller("dicom.read"):
        reader = await tool_names(full_config())
    assert "search_studies" in reader and not reader & CHANGES
    with caller("dicom.read", "dicom.write"):
        assert await tool_names(full_config()) & CHANGES == {"store_instances", "transfer_instances"}
    with caller("dicom.write", "dicom.delete"):
        writer = await tool_names(full_config())
    assert "search_studies" not in writer and "delete_instances" in writer
    with caller("openid"):
        assert await tool_names(full_config()) == set()


@pytest.mark.anyio
async def test_the_operators_switches_still_apply() -> None:
    with caller("dicom.read", "dicom.write", "dicom.delete"):
        assert not await tool_names(full_config(read_only=True)) & CHANGES
        assert "delete_instances" not in await tool_names(full_config(allow_delete=False))


@pytest.mark.anyio
async def test_a_call_beyond_the_token_is_refused_by_scope() -> None:
    with caller("dicom.read"):
        async with Client(build_server(full_config())) as client:
            store = await client.call_tool("store_instances", {"paths": ["/nowhere.dcm"]})
            delete = await client.call_tool("delete_instances", {"study_uid": "1.2.3"})
            unknown = await client.call_tool("store_instance", {})
    assert store.is_error and "store_instances needs the OAuth scope dicom.write" in store.content[0].text
    assert delete.is_error and "needs the OAuth scope dicom.delete" in delete.content[0].text
    # The list of tools that exist is the caller's list.
    assert unknown.is_error and "store_instances" not in unknown.content[0].text
    with caller("dicom.read", prefix=PREFIX):
        async with Client(build_server(full_config())) as client:
            store = await client.call_tool("store_instances", {"paths": ["/nowhere.dcm"]})
    # Named as the host must ask Entra ID for it.
    assert "store_instances needs the OAuth scope api://dicomweb-mcp/dicom.write," in store.content[0].text
    assert "identity provider for api://dicomweb-mcp/dicom.write," in store.content[0].text


# -- tokens ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_good_token(verifier: JwtVerifier) -> None:
    access = await verifier.check(signed(claims(scope="dicom.read", client_id="app-1")))
    assert access.scopes == ["dicom.read"] and access.client_id == "app-1" and access.subject == "u-1"
    ec_token = signed(claims(scp="dicom.write"), key=EC_KEY, alg="ES256", kid="ec-1")
    assert (await verifier.check(ec_token)).scopes == ["dicom.write"]


@pytest.mark.anyio
async def test_time_claims_with_a_small_skew(verifier: JwtVerifier) -> None:
    now = int(time.time())
    assert await verifier.check(signed(claims(exp=now - 30)))  # within the skew
    assert "expired" in await refused(verifier, signed(claims(exp=now - 120)))
    assert await verifier.check(signed(claims(nbf=now + 30)))
    assert "not valid yet" in await refused(verifier, signed(claims(nbf=now + 120)))
    assert "not valid yet" in await refused(verifier, signed(claims(iat=now + 120)))


@pytest.mark.anyio
async def test_issuer_audience_and_required_claims(verifier: JwtVerifier) -> None:
    assert "not issued for this server" in await refused(verifier, signed(claims(aud="https://other/mcp")))
    assert await verifier.check(signed(claims(aud=["https://other/mcp", RESOURCE])))
    assert "not issued by" in await refused(
        verifier, signed(claims(iss="https://login.example.org/other/v2.0"))
    )
    for claim in ("exp", "iss", "aud"):
        assert f"no {claim} claim" in await refused(verifier, signed(claims(**{claim: None})))


@pytest.mark.anyio
async def test_only_asymmetric_signatures_with_their_own_key(verifier: JwtVerifier) -> None:
    payload = b64(json.dumps(claims()).encode())
    none = f"{b64(json.dumps({'alg': 'none', 'kid': 'rsa-1'}).encode())}.{payload}."
    assert "algorithm none is not accepted" in await refused(verifier, none)
    # HS256 keyed with the issuer's public key: anyone could make this token.
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
    mac = hmac.new(pem, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    assert "algorithm HS256 is not accepted" in await refused(verifier, f"{head}.{payload}.{b64(mac)}")
    # An ES256 header on the RSA key's id.
    mismatch = signed(claims(), key=EC_KEY, alg="ES256", kid="rsa-1")
    assert "does not match its key" in await refused(verifier, mismatch)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "signature does not verify" in await refused(verifier, signed(claims(), key=other))
    good = signed(claims(scope="dicom.read"))
    head, body, signature = good.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(body + "=="))
    tampered["scope"] = "dicom.read dicom.delete"
    forged = f"{head}.{b64(json.dumps(tampered).encode())}.{signature}"
    assert "signature does not verify" in await refused(verifier, forged)
    assert "not a signed JWT" in await refused(verifier, "not-a-token")


@pytest.mark.anyio
async def test_a_token_that_does_not_parse_fetches_no_keys(issuer: Issuer, verifier: JwtVerifier) -> None:
    """Header and claims are read once, before the key is looked up: a payload that is no JSON object is
    refused then, so a flood of such tokens naming unknown keys costs no JWKS fetch."""
    head = b64(json.dumps({"alg": "RS256", "kid": "unknown-1"}).encode())
    for payload in (b"[1, 2]", b"not json"):
        token = f"{head}.{b64(payload)}.{b64(b'sig')}"
        assert "not a signed JWT" in await refused(verifier, token)
    issuer.now += 31  # past the cooldown: a lookup of the unknown key would fetch
    assert "not a signed JWT" in await refused(verifier, token)
    assert issuer.jwks_fetches == 1  # the start's only


def typed(typ: Any, payload: dict[str, Any] | None = None) -> str:
    """A token signed with the issuer's key whose JOSE header says ``typ`` (None: no typ at all)."""
    return jwt.encode(payload or claims(), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1", "typ": typ})


@pytest.mark.anyio
async def test_only_access_tokens(verifier: JwtVerifier) -> None:
    # Entra ID's and most issuers' JWT, RFC 9068's at+jwt (oidc-provider), with or without application/.
    for typ in ("JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt", "application/jwt", None):
        access = await verifier.check(typed(typ, claims(scope="dicom.read")))
        assert access.scopes == ["dicom.read"], typ
    for typ in ("dpop+jwt", "logout+jwt", "secevent+jwt", "JOSE", 7):
        reason = await refused(verifier, typed(typ))
        assert "is not an access token's (typ must be JWT or at+jwt)" in reason, typ
    assert "type dpop+jwt" in await refused(verifier, typed("dpop+jwt"))
    # An OpenID ID token (its nonce), told as such even when its aud (the client's id) is not this server.
    for aud in (RESOURCE, "client-app-id"):
        reason = await refused(verifier, signed(claims(aud=aud, nonce="n-0S6_WzA2Mj")))
        assert "an OpenID ID token, not an access token" in reason, aud
    # Entra ID's ID token with app roles is one too; Keycloak's (before 25) access token with a nonce is not.
    assert "an OpenID ID token" in await refused(verifier, signed(claims(nonce="n-1", roles=["dicom.read"])))
    keycloak = await verifier.check(signed(claims(nonce="n-2", scope="openid dicom.read")))
    assert "dicom.read" in keycloak.scopes


@pytest.mark.anyio
async def test_unknown_keys_are_fetched_at_a_bounded_rate(issuer: Issuer, verifier: JwtVerifier) -> None:
    assert issuer.jwks_fetches == 1
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for n in range(50):
        await refused(verifier, signed(claims(), key=stranger, kid=f"unknown-{n}"))
    assert issuer.jwks_fetches == 2  # one refetch for the first unknown key, then the cooldown
    # The issuer rotates: its new key is used after the cooldown.
    issuer.keys.append(public_jwk(stranger, "rotated"))
    rotated = signed(claims(), key=stranger, kid="rotated")
    await refused(verifier, rotated)
    issuer.now += 31
    assert await verifier.check(rotated)
    assert issuer.jwks_fetches == 3
    # A withdrawn key stops being accepted once the cached set is old.
    issuer.keys = [key for key in issuer.keys if key["kid"] != "rsa-1"]
    assert await verifier.check(signed(claims()))
    issuer.now += 3600
    assert "does not publish" in await refused(verifier, signed(claims()))


@pytest.mark.anyio
async def test_discovery(issuer: Issuer) -> None:
    issuer.openid = False  # an OAuth-only issuer (RFC 8414)
    keys = issuer.key_set()
    await keys.load()
    assert keys.issuer == ISSUER
    issuer.issuer = "https://login.example.org/tenant-2/v2.0"
    with pytest.raises(IssuerUnreachable, match="names the issuer"):
        await issuer.key_set().load()
    unreachable = IssuerKeys(ISSUER, transport=httpx.MockTransport(lambda request: httpx.Response(503)))
    with pytest.raises(IssuerUnreachable, match="HTTP 503"):
        await unreachable.load()


@pytest.mark.anyio
async def test_entra_id_v2_tokens(issuer: Issuer) -> None:
    """An Entra ID v2 access token: iss the tenant's v2.0 URL, aud the application's client id (the
    operator's DICOMWEB_MCP_OAUTH_AUDIENCE), delegated scopes in scp, app roles in roles."""
    keys = issuer.key_set()
    await keys.load()
    client_id = "6e0f1c44-0000-4000-8000-000000000001"
    verifier = JwtVerifier(keys, [client_id, "api://dicomweb-mcp"], resource=RESOURCE)
    user = claims(aud=client_id, scp="dicom.read dicom.write", azp="c1", ver="2.0", tid="tenant-1")
    access = await verifier.check(signed(user))
    assert access.scopes == ["dicom.read", "dicom.write"] and access.client_id == "c1"
    app = claims(aud="api://dicomweb-mcp", roles=["dicom.read"], azp="daemon")
    assert (await verifier.check(signed(app))).scopes == ["dicom.read"]


async def granted_scopes_app(scope: Any, receive: Any, send: Any) -> None:
    """Behind the middleware: answers with the scopes the request's token was granted."""
    await json_answer(send, 200, {"scopes": sorted(scope["auth"].scopes)})


@pytest.mark.anyio
async def test_published_scope_names_carry_the_prefix(issuer: Issuer) -> None:
    keys = issuer.key_set()
    await keys.load()
    verifier = JwtVerifier(keys, [RESOURCE], resource=RESOURCE, scope_prefix=PREFIX)
    app = RequireOAuthToken(
        granted_scopes_app, verifier, public_url=RESOURCE, issuer=ISSUER, scope_prefix=PREFIX
    )
    published = [
        "api://dicomweb-mcp/dicom.read",
        "api://dicomweb-mcp/dicom.write",
        "api://dicomweb-mcp/dicom.delete",
    ]
    hint = f'scope="{" ".join(published)}"'

    def bearer(scp: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {signed(claims(scp=scp))}"}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="https://mcp.example.org"
    ) as http:
        metadata = await http.get("/.well-known/oauth-protected-resource/mcp")
        missing = await http.post("/mcp")
        other_api = await http.post("/mcp", headers=bearer("openid api://other-app/dicom.read"))
        granted = await http.post("/mcp", headers=bearer("dicom.read api://dicomweb-mcp/dicom.write"))
    assert metadata.json()["scopes_supported"] == published
    assert missing.status_code == 401 and hint in missing.headers["www-authenticate"]
    assert other_api.status_code == 403 and hint in other_api.headers["www-authenticate"]
    assert other_api.json()["error_description"] == f"the token grants none of {' or '.join(published)}"
    assert granted.status_code == 200 and granted.json() == {"scopes": ["dicom.read", "dicom.write"]}


# -- settings -------------------------------------------------------------------------------------------


def test_oauth_settings() -> None:
    base = {"DICOMWEB_URL": "http://localhost:8042/dicom-web"}
    oauth = {**base, "DICOMWEB_MCP_OAUTH_ISSUER": ISSUER, "DICOMWEB_MCP_PUBLIC_URL": RESOURCE}
    config = read_config(oauth)
    assert config.oauth_issuer == ISSUER and config.accepted_audiences == (RESOURCE,)
    chosen = read_config({**oauth, "DICOMWEB_MCP_OAUTH_AUDIENCE": "api://dicom, 6e0f1c44"})
    assert chosen.accepted_audiences == ("api://dicom", "6e0f1c44")
    with pytest.raises(ConfigError, match="both set"):
        read_config({**oauth, "DICOMWEB_MCP_TOKEN": "secret-token"})
    with pytest.raises(ConfigError, match="needs DICOMWEB_MCP_PUBLIC_URL"):
        read_config({**base, "DICOMWEB_MCP_OAUTH_ISSUER": ISSUER})
    with pytest.raises(ConfigError, match="needs DICOMWEB_MCP_OAUTH_ISSUER"):
        read_config({**base, "DICOMWEB_MCP_OAUTH_AUDIENCE": "api://dicom"})
    with pytest.raises(ConfigError, match="must use https"):
        read_config({**oauth, "DICOMWEB_MCP_OAUTH_ISSUER": "http://login.example.org/t"})
    assert read_config({**oauth, "DICOMWEB_MCP_PUBLIC_URL": "http://127.0.0.1:8000/mcp"}).public_url
    with pytest.raises(ConfigError, match="not a URL"):
        read_config({**oauth, "DICOMWEB_MCP_PUBLIC_URL": "https://mcp.example.org/mcp?x=1"})
    assert "secret-token" not in repr(read_config({**base, "DICOMWEB_MCP_TOKEN": "secret-token"}))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.7", False),
        ("localhost.example.org", False),
        ("login.example.org", False),
    ],
)
def test_one_loopback_rule_for_urls_and_binds(host: str, loopback: bool) -> None:
    """Plain HTTP is for this machine only, by one rule: a bind without a token (tools/http.py), an issuer
    or public URL (the settings), and the JWKS an issuer names (tools/oauth.py)."""
    assert is_loopback(host) is loopback
    bare = host.strip("[]")
    url = f"http://{f'[{bare}]' if ':' in bare else bare}:8000/mcp"
    assert _safe_url(url) is loopback
    if loopback:
        oauth_url("DICOMWEB_MCP_PUBLIC_URL", url)
    else:
        with pytest.raises(ConfigError, match="must use https"):
            oauth_url("DICOMWEB_MCP_PUBLIC_URL", url)
    assert _safe_url(url.replace("http:", "https:"))


def test_scope_prefix_setting() -> None:
    oauth = {
        "DICOMWEB_URL": "http://localhost:8042/dicom-web",
        "DICOMWEB_MCP_OAUTH_ISSUER": ISSUER,
        "DICOMWEB_MCP_PUBLIC_URL": RESOURCE,
    }
    assert read_config(oauth).oauth_scope_prefix == ""
    for prefix in (PREFIX, "api://6e0f1c44-0000-4000-8000-000000000001/", "https://contoso.example/dicom/"):
        assert (
            read_config({**oauth, "DICOMWEB_MCP_OAUTH_SCOPE_PREFIX": f" {prefix} "}).oauth_scope_prefix
            == prefix
        )
    with pytest.raises(ConfigError, match="DICOMWEB_MCP_OAUTH_SCOPE_PREFIX needs DICOMWEB_MCP_OAUTH_ISSUER"):
        read_config({"DICOMWEB_URL": oauth["DICOMWEB_URL"], "DICOMWEB_MCP_OAUTH_SCOPE_PREFIX": PREFIX})
    # The Application ID URI alone, a full scope name, or a bare slash: what comes before a name, with '/'.
    for prefix in ("api://dicomweb-mcp", "api://dicomweb-mcp/dicom.read", "/"):
        with pytest.raises(
            ConfigError,
            match=re.escape("ending with '/', e.g. api://dicomweb-mcp/ for api://dicomweb-mcp/dicom.read"),
        ):
            read_config({**oauth, "DICOMWEB_MCP_OAUTH_SCOPE_PREFIX": prefix})
    # Characters a scope name cannot hold, and that would break the challenge header.
    for prefix in ("api://dicom web/", 'api://"x"/', "api://x\\y/", "api://dicomwéb/"):
        with pytest.raises(ConfigError, match="cannot begin a scope name"):
            read_config({**oauth, "DICOMWEB_MCP_OAUTH_SCOPE_PREFIX": prefix})
