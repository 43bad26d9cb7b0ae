"""Load: 50 concurrent tool calls through one dicomweb-mcp process over stdio, against the real Orthanc.
Every call succeeds, and the process never holds more connections to Orthanc than its pool allows."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from dicomweb_mcp import Config, DicomWebClient, collect_dicom_files
from tests.support.samples import Samples
from tests.support.synthetic import make_study

pytestmark = pytest.mark.anyio

POOL = 10  # DicomWebClient's default max_connections


def connections_to(port: int) -> int:
    """Established TCP connections whose remote end is ``port`` (only the server process talks to it)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01":  # 01 = ESTABLISHED
                count += 1
    return count


async def test_fifty_concurrent_calls(orthanc_config: Config, samples: Samples, tmp_path: Path) -> None:
    files, _ = collect_dicom_files(
        [*(f.path for f in samples.all), *make_study(tmp_path / "src", instances=20, series=4, seed=5)]
    )
    async with DicomWebClient(orthanc_config.server) as client:
        await client.store_instances(files)
    synthetic = files[-1]
    port = int(orthanc_config.server.url.rsplit(":", 1)[1].split("/")[0])
    calls: list[tuple[str, dict[str, Any]]] = []
    for n in range(50):
        kind = n % 5
        if kind == 0:
            calls.append(("search_studies", {"patient_name": "*", "limit": 10}))
        elif kind == 1:
            calls.append(("search_series", {"study_uid": synthetic.study_uid}))
        elif kind == 2:
            calls.append(
                ("search_instances", {"study_uid": samples.study_uid, "series_uid": samples.red.series_uid})
            )
        elif kind == 3:
            calls.append(
                ("retrieve_metadata", {"study_uid": synthetic.study_uid if n % 2 else samples.study_uid})
            )
        else:
            calls.append(
                ("retrieve_instances", {"study_uid": synthetic.study_uid, "output_dir": f"load-{n}"})
            )

    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, connections_to(port))
            stop.wait(0.002)

    env = {
        "PATH": os.environ["PATH"],
        "DICOMWEB_URL": orthanc_config.server.url,
        "DICOMWEB_DOWNLOAD_DIR": str(orthanc_config.download_dir),
    }
    command = str(Path(sys.executable).parent / "dicomweb-mcp")
    results: list[Any] = []
    sampler = threading.Thread(target=sample, daemon=True)
    async with Client(StdioServerParameters(command=command, args=[], env=env)) as client:
        await client.call_tool("server_info", {})
        sampler.start()

        async def run(tool: str, arguments: dict[str, Any]) -> None:
            results.append((tool, await client.call_tool(tool, arguments)))

        async with anyio.create_task_group() as group:
            for tool, arguments in calls:
                group.start_soon(run, tool, arguments)
    stop.set()
    sampler.join()
    failures = [(tool, r.content[0].text) for tool, r in results if r.is_error]
    assert len(results) == 50 and failures == []
    retrieved = [r.structured_content for tool, r in results if tool == "retrieve_instances"]
    assert len(retrieved) == 10 and all(r["file_count"] == 20 for r in retrieved)
    print(f"50 concurrent calls; peak connections to Orthanc: {peak}")
    assert 2 <= peak <= POOL
