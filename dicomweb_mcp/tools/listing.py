"""What each client is shown: the lists of tools and resources filtered per request, by whether the client
renders MCP Apps and by what its OAuth token's scopes allow.

The SDK's MCPServer lists the same to everyone; these overrides of its two list handlers (private in the
SDK: recheck them when it is upgraded) are the one place that differs per client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server import MCPServer
from mcp.server.apps import client_supports_apps
from mcp.server.context import ServerRequestContext
from mcp.types import ListResourcesResult, ListToolsResult, PaginatedRequestParams

from . import scopes
from .context import ToolContext
from .scopes import TOOL_SCOPES

__all__ = ["ListedPerClient", "app_only", "scope_refusal", "shown"]


def scope_refusal(name: str) -> str | None:
    """Why the current caller's token may not use tool ``name``, or None when it may."""
    return scopes.scope_refusal(name, TOOL_SCOPES[name])


def app_only(meta: Mapping[str, Any] | None) -> bool:
    """A tool only the study viewer calls (MCP Apps visibility ``["app"]``)."""
    ui = (meta or {}).get("ui")
    return isinstance(ui, Mapping) and list(ui.get("visibility") or ()) == ["app"]


def shown(name: str, meta: Mapping[str, Any] | None, apps: bool) -> bool:
    """Whether a client is shown tool ``name``: the viewer's own only to one that renders apps (the others'
    hosts would hand them to the model, which has no use for them), and only what the caller's scopes
    allow."""
    return (apps or not app_only(meta)) and scope_refusal(name) is None


class ListedPerClient(MCPServer[ToolContext]):
    async def _handle_list_tools(
        self, ctx: ServerRequestContext[ToolContext], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        apps = client_supports_apps(ctx)
        return ListToolsResult(tools=[t for t in await self.list_tools() if shown(t.name, t.meta, apps)])

    async def _handle_list_resources(
        self, ctx: ServerRequestContext[ToolContext], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        """The viewer's page only to a client that renders apps: a host that does not would offer people a
        page of HTML to attach to the conversation."""
        resources = await self.list_resources()
        if not client_supports_apps(ctx):
            resources = [r for r in resources if not str(r.uri).startswith("ui://")]
        return ListResourcesResult(resources=resources)
