"""How many of the project's functions a tool call passes through before its first HTTP request.

Each tool is called in memory through the MCP client against a transport that answers every request
with an empty list: at the first request the tool's own call makes, the stack is read and the frames of ``dicomweb_mcp`` are counted (the SDK's
own frames are not). Counted at ``httpx.AsyncClient.send``, the one place every request passes.

    python -m benchmarks.stack_depth
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client

import dicomweb_mcp
from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server

PACKAGE = str(Path(dicomweb_mcp.__file__).parent)
STUDY = "1.2.3.4"
CALLS: dict[str, dict[str, Any]] = {
    "search_studies": {"patient_name": "Smith*"},
    "retrieve_instances": {"study_uid": STUDY},
    "transfer_instances": {"source": "default", "destination": "research", "study_uid": STUDY},
}


def project_frames() -> list[str]:
    frames = []
    for frame in inspect.stack()[2:]:
        if frame.filename.startswith(PACKAGE):
            frames.append(f"{Path(frame.filename).relative_to(PACKAGE)}:{frame.function}")
    return frames


async def measure(tool: str, arguments: dict[str, Any], downloads: str) -> list[str]:
    seen: list[list[str]] = []
    original: Callable[..., Any] = httpx.AsyncClient.send

    async def send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        frames = project_frames()
        # Warm-up requests made in the background by the lifespan are not the tool's.
        if not seen and any(f.endswith(f":{tool}") for f in frames):
            seen.append(frames)
        # An empty answer to everything: detection ends, and the tool goes on to its own request.
        return httpx.Response(200, json=[], request=request)

    config = Config.single(url="http://127.0.0.1:9/dicom-web", download_dir=Path(downloads), max_retries=0)
    config = replace(config, servers=(config.server, replace(config.server, name="research")))
    httpx.AsyncClient.send = send  # type: ignore[method-assign]
    try:
        async with Client(build_server(config)) as client:
            await client.call_tool(tool, arguments)
    finally:
        httpx.AsyncClient.send = original  # type: ignore[method-assign]
    return seen[0] if seen else []


async def main() -> None:
    with tempfile.TemporaryDirectory() as downloads:
        for tool, arguments in CALLS.items():
            frames = await measure(tool, arguments, downloads)
            print(f"{tool}: {len(frames)} project functions on the stack at the first request")
            for frame in reversed(frames):
                print(f"    {frame}")


if __name__ == "__main__":
    anyio.run(main)
