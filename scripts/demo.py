"""The tutorial, end to end, as an MCP host would run it.

Writes the tutorial's three sample files (generated, so a plain clone needs nothing beside it), starts a
local Orthanc on 127.0.0.1 with a temporary storage directory, launches ``dicomweb-mcp`` over stdio with
the SDK's client, walks the tutorial (store, search, retrieve, look, delete), prints each call with a
short result and its size, and stops Orthanc. Run from the repository root: ``python -m scripts.demo``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from tests.support.orthanc import Orthanc  # the same Orthanc runner the tests use
from tests.support.tutorial import write_tutorial_files

REPO = Path(__file__).resolve().parents[1]


def clip(value: Any) -> str:
    """UIDs are long: show their tail, enough to tell them apart."""
    text = ",".join(Path(str(v)).name for v in value) if isinstance(value, list) else str(value)
    return text if len(text) <= 28 else "..." + text[-16:]


def short(tool: str, result: dict[str, Any]) -> str:
    """One line an operator can read: what came back, not all of it."""
    if "results" in result:
        items = result["results"]
        first = ", ".join(f"{k}={clip(v)}" for k, v in list(items[0].items())[:4]) if items else "no matches"
        return f"{result['returned']} result(s); {first}"
    if tool == "store_instances":
        return f"counts {result['counts']}"
    if tool == "retrieve_instances":
        return f"{result['file_count']} files, {result['total_bytes']:,} bytes under {result['directory']}"
    if tool == "retrieve_metadata":
        return f"{result['instance_count']} instance(s); full metadata in {clip(result['metadata_file'])}"
    if tool == "retrieve_frames":
        return f"{result['frame_count']} frame(s), {result['total_bytes']:,} bytes -> {clip(result['files'])}"
    if tool == "retrieve_rendered":
        size = f"{result['width']}x{result['height']}"
        return f"{result['content_type']} {size} by the {result['renderer']}, {result['size_bytes']:,} bytes"
    if tool == "get_study_overview":
        series = ", ".join(f"{s['number']} {s['modality']} ({s['instances']})" for s in result["series"])
        sheet = f"; {Path(result['contact_sheet']).name} saved" if result.get("contact_sheet") else ""
        return f"{result['patient']['name']}, {result['study']['date']}: series {series}{sheet}"
    if tool == "delete_instances":
        return f"deleted {result['level']} via {result['method']}"
    if tool == "server_info":
        return f"{result['server_kind']} at {result['base_url']}, reachable={result['reachable']}"
    return json.dumps(result)[:150]


async def walk(client: Client, blue: Path, green: Path, red: Path) -> list[tuple[str, int]]:
    sizes: list[tuple[str, int]] = []
    state: dict[str, str] = {}

    async def step(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        shown = ", ".join(f"{k}={clip(v)}" for k, v in arguments.items())
        print(f"-> {tool}({shown})")
        started = time.perf_counter()
        result = await client.call_tool(tool, arguments)
        elapsed = (time.perf_counter() - started) * 1000
        if result.is_error:
            raise SystemExit(f"   {tool} failed: {' '.join(getattr(b, 'text', '') for b in result.content)}")
        content = result.structured_content or {}
        # What the model reads: the text block (hosts show it, not the structured content).
        size = sum(len(getattr(block, "text", "").encode()) for block in result.content)
        sizes.append((tool, size))
        print(f"   {short(tool, content)}  [{size:,} bytes, {elapsed:.0f} ms]")
        return content

    await step("server_info", {})
    stored = await step("store_instances", {"paths": [str(blue)]})
    study = state["study"] = stored["study_uids"][0]
    await step("store_instances", {"paths": [str(red)], "study_uid": study})
    await step("store_instances", {"paths": [str(green)], "study_uid": study})
    await step("search_studies", {"patient_name": "Anony*"})
    await step("search_studies", {"patient_name": "Anony Mous", "study_date": "2020-01-01-2020-12-31"})
    series = await step("search_series", {"study_uid": study})
    await step("get_study_overview", {"study_uid": study, "show": True})
    red_series = next(s["series_uid"] for s in series["results"] if s.get("number_of_instances") == 2)
    instances = await step("search_instances", {"study_uid": study, "series_uid": red_series})
    red_uid = next(i["instance_uid"] for i in instances["results"] if i.get("instance_number") == 1)
    await step("retrieve_instances", {"study_uid": study})
    await step("retrieve_instances", {"study_uid": study, "series_uid": red_series})
    await step("retrieve_metadata", {"study_uid": study})
    ref = {"study_uid": study, "series_uid": red_series, "instance_uid": red_uid}
    await step("retrieve_frames", {**ref, "frames": [1]})
    await step("retrieve_rendered", ref)
    await step("delete_instances", ref)
    await step("search_instances", {"study_uid": study})
    await step("delete_instances", {"study_uid": study, "series_uid": red_series})
    await step("delete_instances", {"study_uid": study})
    await step("search_studies", {"patient_name": "Anony*"})
    return sizes


async def main() -> None:
    downloads = REPO / "dicomweb-downloads" / "demo"
    with tempfile.TemporaryDirectory(prefix="dicomweb-mcp-demo-") as workdir:
        samples = write_tutorial_files(Path(workdir) / "tutorial")
        files = [samples[name] for name in ("blue-circle", "green-square", "red-triangle")]
        orthanc = Orthanc(Path(workdir)).start()
        print(f"Orthanc {orthanc.dicomweb_url} (storage in {workdir}); downloads go to {downloads}\n")
        try:
            command = Path(sys.executable).parent / "dicomweb-mcp"
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "DICOMWEB_URL": orthanc.dicomweb_url,
                "DICOMWEB_DOWNLOAD_DIR": str(downloads),
                "DICOMWEB_ALLOW_DELETE": "true",
            }
            async with Client(StdioServerParameters(command=str(command), args=[], env=env)) as client:
                tools = (await client.list_tools()).tools
                print(f"dicomweb-mcp over stdio: {len(tools)} tools: {', '.join(t.name for t in tools)}\n")
                sizes = await walk(client, *files)
        finally:
            orthanc.stop()
    print("\nResult sizes (bytes of text the model reads):")
    for tool, size in sizes:
        print(f"  {tool:<20} {size:>6,}")
    print("\nDemo complete: Orthanc stopped.")


if __name__ == "__main__":
    anyio.run(main)
