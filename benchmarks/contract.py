"""What every host pays per turn for the tool list, tool by tool (name + description + inputSchema as
json.dumps writes them), with delete enabled, against the budget the tests hold (tests/support/mcp.py);
then the same list with two named servers (a server enum on every tool, and transfer_instances).

    python -m benchmarks.contract
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace

import anyio
from mcp import Client
from mcp.types import Tool

from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server
from tests.support.mcp import MODEL_FACING_BYTES_PER_TOOL as PER_TOOL


def size(tool: Tool) -> int:
    return len(
        json.dumps({"name": tool.name, "description": tool.description, "inputSchema": tool.input_schema})
    )


async def listed(config: Config) -> list[Tool]:
    async with Client(build_server(config)) as client:
        return (await client.list_tools()).tools


async def main() -> None:
    with tempfile.TemporaryDirectory() as downloads:
        config = Config.single(url="http://127.0.0.1:9/dicom-web", download_dir=downloads, allow_delete=True)
        tools = await listed(config)
        pacs, research = (replace(config.server, name=name) for name in ("pacs", "research"))
        named = await listed(replace(config, servers=(pacs, research)))
    print("model-facing bytes per tool (name, description, inputSchema):")
    for tool in tools:
        print(f"  {tool.name:<20} {size(tool):>6,}")
    total = sum(size(tool) for tool in tools)
    average = total / len(tools)
    verdict = "within" if average <= PER_TOOL else "OVER"
    print(f"  {'all tools':<20} {total:>6,}  ({average:.0f} a tool; budget {PER_TOOL}: {verdict})")
    transfer = next(size(tool) for tool in named if tool.name == "transfer_instances")
    print(
        f"  {'two named servers':<20} {sum(size(tool) for tool in named):>6,}  "
        f"(a server enum on each tool; transfer_instances {transfer:,})"
    )


if __name__ == "__main__":
    anyio.run(main)
