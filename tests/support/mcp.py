"""Calling the MCP server as a host would, through the SDK's in-memory client."""

from __future__ import annotations

from typing import Any

from mcp import Client
from mcp.client.extension import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import CallToolResult

from dicomweb_mcp import Config, DicomWebClient, FileStore
from dicomweb_mcp.tools.context import Archive, ToolContext
from dicomweb_mcp.tools.server import build_server

# What a host sends the model every turn for each tool (name, description, inputSchema), on average over
# the whole list with delete enabled: a new tool cannot raise it, only spend what others save. Named
# servers add a server enum to every tool and transfer_instances: the operator's choice, measured in
# benchmarks/contract.py.
MODEL_FACING_BYTES_PER_TOOL = 600

# What a host that renders apps declares (the SDK's client_supports_apps wants the MIME type listed).
RENDERS_APPS = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})

ALL_TOOLS = {
    "search_studies",
    "search_series",
    "search_instances",
    "retrieve_instances",
    "retrieve_metadata",
    "retrieve_frames",
    "retrieve_rendered",
    "get_study_overview",
    "read_report",
    "store_instances",
    "delete_instances",
    "get_change_feed",
    "server_info",
    "start_cohort",
    "cohort_status",
}


def text(result: CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


def tool_context(config: Config, *clients: DicomWebClient) -> ToolContext:
    """What the server hands its tools, for calling a tool function directly: ``config``'s named servers,
    in order, each with its client (the first ones only, when fewer clients are given)."""
    archives = {
        name: Archive(settings, client)
        for (name, settings), client in zip(config.named.items(), clients, strict=False)
    }
    return ToolContext(archives, FileStore(config.download_dir), config)


async def call(config: Config, tool: str, arguments: dict[str, Any], **client_options: Any) -> CallToolResult:
    async with Client(build_server(config), **client_options) as client:
        return await client.call_tool(tool, arguments)


async def answer(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """A call that must succeed: its structured result."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content
