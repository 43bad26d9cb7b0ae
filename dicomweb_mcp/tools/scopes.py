"""OAuth scopes as policy: what a caller's access token grants, and which scope a tool needs that it lacks.

Only requests that carry a verified OAuth token are checked: over stdio and with the static token every
tool the operator enabled stays open, as before. ``TOOL_SCOPES`` says which scope each tool needs.

Inside, scopes go by their bare names (``dicom.read``). What hosts are told to ask for (the protected
resource metadata, challenges, refusals) carries the operator's prefix (DICOMWEB_MCP_OAUTH_SCOPE_PREFIX):
Entra ID grants ``api://<app>/dicom.read``, and puts it in the token as ``dicom.read``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

__all__ = [
    "DELETE",
    "READ",
    "SCOPES",
    "TOOL_SCOPES",
    "WRITE",
    "OAuthAccess",
    "granted_scopes",
    "published_scopes",
    "scope_refusal",
]

READ = "dicom.read"
WRITE = "dicom.write"
DELETE = "dicom.delete"
SCOPES = (READ, WRITE, DELETE)

# The OAuth scope a caller's token must grant for each tool (HTTP with DICOMWEB_MCP_OAUTH_ISSUER); a tool
# missing here is not registered at all (server.build_server checks), so no tool is open by omission.
TOOL_SCOPES: dict[str, str] = {
    **dict.fromkeys(
        ["search_studies", "get_study_overview", "search_series", "search_instances"],
        READ,
    ),
    **dict.fromkeys(["retrieve_instances", "retrieve_metadata", "retrieve_frames"], READ),
    **dict.fromkeys(["retrieve_rendered", "read_report", "get_change_feed", "server_info"], READ),
    **dict.fromkeys(["viewer_series", "viewer_frame"], READ),
    **dict.fromkeys(["store_instances", "transfer_instances", "start_cohort", "cohort_status"], WRITE),
    "delete_instances": DELETE,
}


class OAuthAccess(AccessToken):
    """A verified access token, with the prefix of the scope names this server publishes, so that a refusal
    names the scope as its bearer must ask the identity provider for it."""

    scope_prefix: str = ""


def published_scopes(prefix: str) -> list[str]:
    """This server's scopes as hosts must ask for them: with the operator's prefix."""
    return [prefix + scope for scope in SCOPES]


def granted_scopes(claims: Mapping[str, Any], prefix: str = "") -> frozenset[str]:
    """The scopes a token's claims grant: ``scp`` (Entra ID's delegated scopes) and ``scope`` (RFC 9068, any
    OIDC issuer), space-separated, and ``roles`` (Entra ID's app roles, a list). A scope written in full
    (``api://<app>/dicom.read``) counts by its last segment; with a ``prefix``, only when it is that one
    (another API's ``api://other/dicom.read`` grants nothing here), and a bare name counts as well."""
    names: list[str] = []
    for claim in ("scp", "scope", "roles"):
        value = claims.get(claim)
        if isinstance(value, str):
            names.extend(value.split())
        elif isinstance(value, list):
            names.extend(item for item in value if isinstance(item, str))
    if not prefix:
        return frozenset(name.rsplit("/", 1)[-1] for name in names if name.rsplit("/", 1)[-1])
    bare = (name.removeprefix(prefix) for name in names)
    return frozenset(name for name in bare if name and "/" not in name)


def scope_refusal(tool: str, required: str) -> str | None:
    """Why the current OAuth caller may not call ``tool``, which needs ``required``; None when it may, or
    when the request carries no OAuth token (stdio, the static token: no scopes to check)."""
    token = get_access_token()
    if token is None or required in token.scopes:
        return None
    # OAuthAccess says how hosts must name the scope; another verifier's AccessToken names it bare.
    scope = getattr(token, "scope_prefix", "") + required
    return (
        f"{tool} needs the OAuth scope {scope}, which your access token does not grant. Ask the "
        f"administrator of your identity provider for {scope}, then sign in again."
    )
