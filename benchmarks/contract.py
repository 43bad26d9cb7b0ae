"""What every host pays per turn for the tool list, tool by tool (name + description + inputSchema as
json.dumps writes them), with delete enabled, against the budget the tests hold (tests/support/mcp.py).

    python -m benchmarks.contract
"""

from __future__ import annotations

import json
import tempfile

import anyio
from mcp import Client

from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server
from tests.support.mcp import MODEL_FACING_BUDGET as BUDGET


async def main() -> None:
    with tempfile.TemporaryDirectory() as downloads:
        config = Config(url="http://127.0.0.1:9/dicom-web", download_dir=downloads, allow_delete=True)
        async with Client(build_server(config)) as client:
            tools = (await client.list_tools()).tools
    total = 0
    print("model-facing bytes per tool (name, description, inputSchema):")
    for tool in tools:
        size = len(
            json.dumps({"name": tool.name, "description": tool.description, "inputSchema": tool.input_schema})
        )
        total += size
        print(f"  {tool.name:<20} {size:>6,}")
    print(f"  {'all tools':<20} {total:>6,}  (budget {BUDGET:,}: {'within' if total <= BUDGET else 'OVER'})")


if __name__ == "__main__":
    anyio.run(main)
