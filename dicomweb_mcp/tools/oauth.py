"""OAuth 2.1 resource server: JWT access tokens checked against the keys their issuer publishes.

A token is validated here, without asking the issuer per request: its signature with a key from the
issuer's JWKS (found through its OpenID or OAuth discovery document), then iss, aud, exp and nbf with a
small skew. It must be an access token: a ``typ`` of JWT or at+jwt if any, and not an ID token (a nonce
without scopes).
Only asymmetric algorithms are accepted: ``none`` needs no key and HS* would let anyone who holds the
published key sign. The JWKS is fetched at start, again when a token names a key not seen yet
(at most once per cooldown, so a flood of forged tokens is not a flood of fetches), and when the cached
set is an hour old (keys the issuer withdrew stop being trusted). PyJWT does the JOSE work.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import jwt

from ..oauth_settings import is_loopback
from .scopes import OAuthAccess, granted_scopes

__all__ = ["ALGORITHMS", "IssuerKeys", "IssuerUnreachable", "JwtVerifier", "TokenRefused"]

log = logging.getLogger("dicomweb_mcp.oauth")

ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# The key type each algorithm family signs with: a token cannot pick an algorithm its key was not made for.
_KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
# The JOSE ``typ`` values of an access token, lower case without ``application/`` (RFC 7515 4.1.9):
# a plain JWT (Entra ID, most issuers) or RFC 9068's at+jwt (oidc-provider); absent is accepted too.
_ACCESS_TOKEN_TYPES = frozenset({"jwt", "at+jwt"})
# Clocks of the issuer and this server may differ by this much (seconds).
SKEW = 60
# A token naming an unknown key triggers at most one JWKS fetch per this many seconds.
COOLDOWN = 30.0
# A JWKS older than this is fetched again at the next token, so a withdrawn key stops being accepted.
MAX_AGE = 3600.0
_TIMEOUT = 10.0
_MAX_DOCUMENT = 1 << 20


class TokenRefused(Exception):
    """Why a bearer token is not accepted, in words safe to show its sender (never the token itself)."""


class IssuerUnreachable(Exception):
    """The issuer's discovery document or JWKS could not be read."""


class IssuerKeys:
    """The signing keys one issuer publishes, by key id, fetched through its discovery document."""

    def __init__(
        self,
        issuer: str,
        *,
        cooldown: float = COOLDOWN,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.issuer = issuer
        self._cooldown = cooldown
        self._max_age = max_age
        self._clock = clock
        self._transport = transport
        self._jwks_uri: str | None = None
        self._keys: dict[str | None, dict[str, Any]] = {}
        self._loaded_at = -math.inf
        self._refetched_at = -math.inf
        # Made in the event loop that first needs it: the start-up check runs in a loop of its own.
        self._lock: anyio.Lock | None = None

    async def load(self) -> None:
        """Read the discovery document and the JWKS now; raise ``IssuerUnreachable`` saying what failed."""
        async with self._client() as http:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover(http)
            document = await _json(http, self._jwks_uri, "JWKS")
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise IssuerUnreachable(f"the JWKS at {self._jwks_uri} has no keys list")
        self._keys = _signing_keys(keys)
        self._loaded_at = self._clock()

    async def signing_key(self, kid: str | None) -> dict[str, Any] | None:
        """The published key (a JWK) named ``kid``; None if the issuer does not publish it."""
        if self._lock is None:
            self._lock = anyio.Lock()
        if self._clock() - self._loaded_at >= self._max_age:
            async with self._lock:
                if self._clock() - self._loaded_at >= self._max_age:
                    await self._reload("the cached keys are old")
        key = self._find(kid)
        if key is None:
            # Waiting for a fetch already under way: it may bring the key.
            async with self._lock:
                key = self._find(kid)
                if key is None and self._clock() - self._refetched_at >= self._cooldown:
                    self._refetched_at = self._clock()
                    await self._reload("a token names an unknown key")
                    key = self._find(kid)
        return key

    async def _reload(self, why: str) -> None:
        try:
            await self.load()
        except IssuerUnreachable as exc:
            # The keys already held stay in use; the next try waits for the cooldown.
            self._loaded_at = self._clock() - self._max_age + self._cooldown
            log.warning("could not refresh the issuer's keys (%s): %s", why, exc)

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None and len(self._keys) == 1:
            # An issuer that publishes one key may leave the key id out of its tokens.
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=_TIMEOUT, transport=self._transport, follow_redirects=False)

    async def _discover(self, http: httpx.AsyncClient) -> str:
        """The JWKS URL from the OpenID discovery document, else the OAuth one (RFC 8414); the document
        must name this issuer exactly, as tokens will."""
        base = self.issuer.rstrip("/")
        parts = urlsplit(base)
        urls = (
            f"{base}/.well-known/openid-configuration",
            f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path}",
        )
        failures = []
        for url in urls:
            try:
                document = await _json(http, url, "discovery document")
            except IssuerUnreachable as exc:
                failures.append(str(exc))
                continue
            issuer, jwks_uri = document.get("issuer"), document.get("jwks_uri")
            if not isinstance(issuer, str) or issuer.rstrip("/") != base:
                raise IssuerUnreachable(
                    f"{url} names the issuer {issuer!r}, not {self.issuer!r}: set the issuer to the value "
                    "that document gives (tokens carry it as iss)"
                )
            if not isinstance(jwks_uri, str) or not _safe_url(jwks_uri):
                raise IssuerUnreachable(f"{url} gives no https jwks_uri")
            # Tokens carry the issuer as its own document spells it.
            self.issuer = issuer
            return jwks_uri
        raise IssuerUnreachable("; ".join(failures))


class JwtVerifier:
    """A JWT access token from ``keys``' issuer, for one of ``audiences``, checked for RequireOAuthToken;
    ``scope_prefix`` begins the scope names this server publishes (DICOMWEB_MCP_OAUTH_SCOPE_PREFIX)."""

    def __init__(
        self,
        keys: IssuerKeys,
        audiences: Sequence[str],
        *,
        resource: str,
        scope_prefix: str = "",
        skew: int = SKEW,
    ) -> None:
        self.keys = keys
        self.scope_prefix = scope_prefix
        self._audiences = list(audiences)
        self._resource = resource
        self._skew = skew

    async def check(self, token: str) -> OAuthAccess:
        """The verified token's identity and scopes; raise ``TokenRefused`` saying why not."""
        try:
            # Read once unverified, for what picks the key and refuses early; the signature is checked below.
            unverified = jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRefused("the token is not a signed JWT") from None
        header: dict[str, Any] = unverified["header"]
        _check_access_token(header, unverified["payload"])
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            shown = "".join(c for c in str(alg) if c.isascii() and c.isalnum())[:16]
            raise TokenRefused(
                f"the token's algorithm {shown or 'none'} is not accepted: only asymmetric signatures "
                f"({', '.join(sorted(ALGORITHMS))})"
            )
        kid = header.get("kid")
        jwk = await self.keys.signing_key(kid if isinstance(kid, str) else None)
        if jwk is None:
            raise TokenRefused("the token is signed with a key its issuer does not publish")
        if _KEY_TYPE.get(alg[:2]) != jwk.get("kty") or jwk.get("alg") not in (None, alg):
            raise TokenRefused(f"the token's algorithm {alg} does not match its key")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self._audiences,
                issuer=self.keys.issuer,
                leeway=self._skew,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenRefused(self._reason(exc)) from None
        return OAuthAccess(
            token=token,
            client_id=_text(claims, "azp", "client_id", "appid", "sub") or "unknown",
            scopes=sorted(granted_scopes(claims, self.scope_prefix)),
            expires_at=int(claims["exp"]),
            resource=self._resource,
            subject=_text(claims, "sub"),
            claims=claims,
            scope_prefix=self.scope_prefix,
        )

    def _reason(self, exc: jwt.PyJWTError) -> str:
        if isinstance(exc, jwt.ExpiredSignatureError):
            return "the token has expired"
        if isinstance(exc, jwt.ImmatureSignatureError):
            return "the token is not valid yet (nbf or iat in the future)"
        if isinstance(exc, jwt.InvalidAudienceError):
            return f"the token was not issued for this server (aud must be {' or '.join(self._audiences)})"
        if isinstance(exc, jwt.InvalidIssuerError):
            return f"the token was not issued by {self.keys.issuer}"
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"the token has no {exc.claim} claim"
        if isinstance(exc, jwt.InvalidSignatureError):
            return "the token's signature does not verify"
        return "the token is malformed"


def _check_access_token(header: dict[str, Any], claims: dict[str, Any]) -> None:
    """Refuse a JWT that says it is something else than an access token: a ``typ`` other than a JWT or
    an access token (RFC 9068), or an OpenID ID token's ``nonce`` without the scopes access tokens carry.
    Read before the signature is checked: a refusal needs no proof, and an ID token is told as such, not
    as a wrong aud."""
    typ = header.get("typ")
    media = typ.lower().removeprefix("application/") if isinstance(typ, str) else None
    if typ is not None and media not in _ACCESS_TOKEN_TYPES:
        shown = "".join(c for c in str(typ) if c.isascii() and (c.isalnum() or c in "+/.-"))[:32]
        raise TokenRefused(
            f"the token's type {shown or '?'} is not an access token's (typ must be JWT or at+jwt)"
        )
    # Keycloak before 25 copies the nonce into access tokens too, which carry delegated scopes; an ID
    # token never does (Entra ID's may carry roles, hence the check).
    if "nonce" in claims and not ({"scope", "scp"} & claims.keys()):
        raise TokenRefused(
            "the token is an OpenID ID token, not an access token: the host must send the access token "
            "it got for this server"
        )


def _text(claims: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _signing_keys(keys: list[Any]) -> dict[str | None, dict[str, Any]]:
    """Public signature keys by key id: encryption keys and symmetric ones have no place here."""
    found: dict[str | None, dict[str, Any]] = {}
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if key.get("use", "sig") != "sig":
            continue
        kid = key.get("kid")
        found[kid if isinstance(kid, str) else None] = key
    return found


def _safe_url(url: str) -> bool:
    """https, or http on loopback (a local issuer, as in tests)."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or ""))


async def _json(http: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise IssuerUnreachable(f"{what} {url}: {type(exc).__name__} {exc}".rstrip()) from None
    if response.status_code != 200:
        raise IssuerUnreachable(f"{what} {url}: HTTP {response.status_code}")
    if len(response.content) > _MAX_DOCUMENT:
        raise IssuerUnreachable(f"{what} {url}: larger than {_MAX_DOCUMENT} bytes")
    try:
        document = response.json()
    except ValueError:
        raise IssuerUnreachable(f"{what} {url}: not JSON") from None
    if not isinstance(document, dict):
        raise IssuerUnreachable(f"{what} {url}: not a JSON object")
    return document
