"""Per-call latencies: search over the corpus (p50/p95, result size vs raw DICOM JSON), and what the MCP
layer adds to a call (in-memory and stdio) over calling the operations directly.

    python -m benchmarks.latency '{"url": ..., "out": ..., "metadata_study": ..., "calls": 100}'
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client, StdioServerParameters

from dicomweb_mcp import Config, DicomWebClient, ServerKind
from dicomweb_mcp._operations import DicomWebOperations
from dicomweb_mcp._query import build_query
from dicomweb_mcp._servers import profile_for
from dicomweb_mcp.server import build_server

SEARCH = {"patient_name": "Patient1*", "study_date": "20180101-20201231", "limit": 25}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def timed(call: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    for _ in range(10):  # warm-up
        await call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(samples), "p95_ms": percentile(samples, 0.95), "n": len(samples)}


async def main(a: dict[str, Any]) -> dict[str, Any]:
    config = Config(url=a["url"], download_dir=Path(a["out"]), server_kind="orthanc")  # type: ignore[arg-type]
    count = a.get("calls", 100)
    report: dict[str, Any] = {}
    async with DicomWebClient(config) as client:
        operations = DicomWebOperations(config, client)
        search_samples = await timed(lambda: operations.search_studies(**SEARCH), count)
        result = await operations.search_studies(**SEARCH)
        metadata = {"study_uid": result.results[0].study_uid}  # a one-instance study of the corpus
        # The same query as the server receives it, answered as the server sends it.
        query = build_query(
            {"PatientName": "Patient1*", "StudyDate": "20180101-20201231"},
            include_fields=["StudyDescription"],
            limit=25,
        ).encode(profile_for(ServerKind.ORTHANC))
        async with httpx.AsyncClient() as http:
            raw = await http.get(
                f"{config.url}/studies?{query}", headers={"Accept": "application/dicom+json"}
            )
        datasets = raw.json()
        summarized = len(result.model_dump_json().encode())
        compact = len(json.dumps(datasets, separators=(",", ":")).encode())
        report["search"] = {
            **summary(search_samples),
            "corpus": a.get("corpus"),
            "returned": result.returned,
            "raw_returned": len(datasets),
            "summary_bytes": summarized,
            "raw_bytes": len(raw.content),
            "raw_compact_bytes": compact,
            "ratio": summarized / len(raw.content),
            "ratio_compact": summarized / compact,
        }
        direct = {
            "search": summary(search_samples),
            "metadata": summary(await timed(lambda: operations.retrieve_metadata(**metadata), count)),
        }

    async def through(client: Client) -> dict[str, dict[str, float]]:
        async def search() -> None:
            assert not (await client.call_tool("search_studies", SEARCH)).is_error

        async def meta() -> None:
            assert not (await client.call_tool("retrieve_metadata", metadata)).is_error

        return {"search": summary(await timed(search, count)), "metadata": summary(await timed(meta, count))}

    async with Client(build_server(config)) as memory:
        in_memory = await through(memory)
    env = {
        "PATH": os.environ["PATH"],
        "DICOMWEB_URL": config.url,
        "DICOMWEB_DOWNLOAD_DIR": str(config.download_dir),
        "DICOMWEB_SERVER_KIND": "orthanc",
    }
    command = str(Path(sys.executable).parent / "dicomweb-mcp")
    async with Client(StdioServerParameters(command=command, args=[], env=env)) as stdio_client:
        stdio = await through(stdio_client)
    report["mcp_overhead"] = {
        call: {
            "direct_p50_ms": direct[call]["p50_ms"],
            "in_memory_p50_ms": in_memory[call]["p50_ms"],
            "stdio_p50_ms": stdio[call]["p50_ms"],
            "in_memory_added_ms": in_memory[call]["p50_ms"] - direct[call]["p50_ms"],
            "stdio_added_ms": stdio[call]["p50_ms"] - direct[call]["p50_ms"],
        }
        for call in ("search", "metadata")
    }
    return report


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, json.loads(sys.argv[1]))))
