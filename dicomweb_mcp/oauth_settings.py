"""The OAuth resource server's settings, checked: the issuer's and this server's URLs, and the prefix of
the scope names it publishes (DICOMWEB_MCP_OAUTH_SCOPE_PREFIX, Entra ID's ``api://<app>/``); and which hosts
are loopback, the one place where a token (or no token at all) may go over plain HTTP.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["is_loopback", "oauth_url", "scope_prefix"]

# RFC 6749 3.3: what a scope name may hold, printable ASCII but the space, '"' and '\'.
_SCOPE_CHARACTERS = frozenset(map(chr, range(0x21, 0x7F))) - {'"', "\\"}


def oauth_url(name: str, url: str) -> None:
    """``ConfigError`` unless ``url``, the setting ``name``, is an issuer or public URL: https, or http on a
    loopback host only (a token on the wire in clear is anyone's); no query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"{name} {url!r} is not a URL like https://host/path (no query or fragment).")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"{name} {url!r} must use https: tokens would cross the network in clear.")


def is_loopback(host: str) -> bool:
    """``host`` (a name or an address, IPv6 with or without its brackets) is this machine only: localhost,
    127.0.0.0/8 or ::1. The rule for an issuer, a JWKS or a public URL over plain HTTP, and for a bind
    address without a token."""
    name = host.removeprefix("[").removesuffix("]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def scope_prefix(prefix: str) -> None:
    """``ConfigError`` unless ``prefix`` (empty: none) can begin every scope name this server publishes: the
    characters of a scope (RFC 6749), ending with '/' as Entra ID's Application ID URI does before each
    scope's name, since a full scope name in a token is read up to its last '/'."""
    name = "DICOMWEB_MCP_OAUTH_SCOPE_PREFIX"
    if not prefix:
        return
    if not set(prefix) <= _SCOPE_CHARACTERS:
        raise ConfigError(
            f"{name} {prefix!r} cannot begin a scope name: spaces, quotes, backslashes and non-ASCII "
            "characters have no place in one (RFC 6749)."
        )
    if not prefix.endswith("/") or not prefix.strip("/"):
        raise ConfigError(
            f"{name} {prefix!r} is not a scope prefix: it is what comes before each scope's name, ending "
            "with '/', e.g. api://dicomweb-mcp/ for api://dicomweb-mcp/dicom.read (for Entra ID, the "
            "Application ID URI followed by '/')."
        )
