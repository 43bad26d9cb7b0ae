"""One case of benchmarks/transfer.py, in a fresh process: prints its seconds and peak RSS growth as JSON.

python -m benchmarks.transfer_case CASE SOURCE_URL DESTINATION_URL STUDY_UID WORKDIR
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server
from tests.support.memory_probe import peak_rss_kib, reset_peak_rss


async def ours(case: str, source: str, destination: str, study_uid: str, workdir: Path) -> dict[str, Any]:
    first = Config.single(url=source, name="source", download_dir=workdir / "downloads", timeout=300)
    config = replace(
        first, servers=(first.server, replace(first.server, name="destination", url=destination))
    )
    async with Client(build_server(config)) as client:
        # Connections open and server kinds known on both sides, as for any call after the first.
        for server in ("source", "destination"):
            await client.call_tool("search_studies", {"study_uid": study_uid, "server": server})
        baseline = reset_peak_rss()
        started = time.perf_counter()
        if case == "retrieve+store":
            retrieved = await client.call_tool("retrieve_instances", {"study_uid": study_uid})
            assert not retrieved.is_error, retrieved.content
            directory = (retrieved.structured_content or {})["directory"]
            result = await client.call_tool(
                "store_instances", {"paths": [directory], "server": "destination"}
            )
        else:
            arguments = {"source": "source", "destination": "destination", "study_uid": study_uid}
            result = await client.call_tool(
                "transfer_instances", {**arguments, "deidentify": case == "transfer-deid"}
            )
        seconds = time.perf_counter() - started
        peak = peak_rss_kib()
    assert not result.is_error, result.content
    return {"seconds": seconds, "peak_mib": (peak - baseline) / 1024}


def dicomweb_client(source: str, destination: str, study_uid: str) -> dict[str, Any]:
    from dicomweb_client.api import DICOMwebClient

    reader, writer = DICOMwebClient(source), DICOMwebClient(destination)
    reader.search_for_studies(search_filters={"StudyInstanceUID": study_uid})
    writer.search_for_studies(limit=1)
    baseline = reset_peak_rss()
    started = time.perf_counter()
    datasets = reader.retrieve_study(study_uid)
    writer.store_instances(datasets)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_mib": (peak_rss_kib() - baseline) / 1024}


def main() -> None:
    case, source, destination, study_uid, workdir = sys.argv[1:6]
    if case == "dicomweb-client":
        report = dicomweb_client(source, destination, study_uid)
    else:
        report = anyio.run(ours, case, source, destination, study_uid, Path(workdir))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
