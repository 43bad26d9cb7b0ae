"""Run in a fresh process by the memory tests: retrieve a whole study to disk, store a directory, or
transfer a study to another server (through the MCP tool, as a host calls it), and report the peak RSS
growth.

Peak RSS is read from /proc/self/status (VmHWM), reset after the warm-up through /proc/self/clear_refs.
getrusage's ru_maxrss would not do: a child inherits the peak of the parent it was forked from, which
hides any growth smaller than the parent's size.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import anyio
from mcp import Client

from dicomweb_mcp import Config, DicomWebClient, StoreStatus, collect_dicom_files
from dicomweb_mcp.config import ServerConfig
from dicomweb_mcp.dicom.reference import Reference
from dicomweb_mcp.files.store import FileStore
from dicomweb_mcp.tools.server import build_server
from tests.support.storage import save_all


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset the peak to the current RSS (Linux 4.0+); return the current RSS in KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def peak_rss_kib() -> int:
    return _status_kib("VmHWM")


async def transfer(url: str, destination: str, study_uid: str, directory: Path) -> dict[str, int]:
    source = Config.single(url=url, timeout=120, name="source", download_dir=directory)
    config = replace(
        source, servers=(source.server, replace(source.server, name="destination", url=destination))
    )
    async with Client(build_server(config)) as client:
        await client.call_tool("search_studies", {"study_uid": study_uid, "server": "destination"})
        baseline = reset_peak_rss()
        result = await client.call_tool(
            "transfer_instances", {"source": "source", "destination": "destination", "study_uid": study_uid}
        )
        peak = peak_rss_kib()
    assert not result.is_error and result.structured_content is not None, result.content
    content = result.structured_content
    return {
        "baseline_kib": baseline,
        "peak_kib": peak,
        "files": content["counts"]["stored"],
        "bytes": content["total_bytes"],
    }


async def main(mode: str, url: str, study_uid: str, directory: Path, destination: str = "") -> None:
    if mode == "transfer":
        print(json.dumps(await transfer(url, destination, study_uid, directory)))
        return
    async with DicomWebClient(ServerConfig(url=url, timeout=120)) as client:
        await client.search_studies({"StudyInstanceUID": study_uid})
        if mode == "retrieve":
            baseline = reset_peak_rss()
            async with client.stream_instances(Reference(study_uid)) as reader:
                saved = await save_all(FileStore(directory), reader, directory)
            count, size = len(saved), sum(f.size for f in saved)
        else:  # store: every file under directory, streamed from disk
            files, _ = collect_dicom_files([directory])
            baseline = reset_peak_rss()
            outcomes = await client.store_instances(files)
            count = sum(o.status is StoreStatus.STORED for o in outcomes)
            size = sum(f.size for f in files)
        peak = peak_rss_kib()
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "files": count, "bytes": size}))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), *sys.argv[5:])
