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
from dicomweb_mcp.dicomweb.query import build_query
from dicomweb_mcp.dicomweb.servers import profile_for
from dicomweb_mcp.tools.retrieve import retrieve_metadata
from dicomweb_mcp.tools.search import search_studies
from dicomweb_mcp.tools.server import build_server
from tests.support.mcp import tool_context

SEARCH = {"patient_name": "Patient1*", "study_date": "20180101-20201231", "limit": 25}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(samples), "p95_ms": percentile(samples, 0.95), "n": len(samples)}


async def main(a: dict[str, Any]) -> dict[str, Any]:
    config = Config.single(url=a["url"], download_dir=Path(a["out"]), server_kind="orthanc")  # type: ignore[arg-type]
    count = a.get("calls", 100)
    report: dict[str, Any] = {}
    env = {
        "PATH": os.environ["PATH"],
        "DICOMWEB_URL": config.server.url,
        "DICOMWEB_DOWNLOAD_DIR": str(config.download_dir),
        "DICOMWEB_SERVER_KIND": "orthanc",
    }
    command = str(Path(sys.executable).parent / "dicomweb-mcp")
    async with (
        DicomWebClient(config.server) as client,
        Client(build_server(config)) as memory,
        Client(StdioServerParameters(command=command, args=[], env=env)) as stdio,
    ):
        app = tool_context(config, client)
        result = await search_studies(app, **SEARCH)
        metadata = {"study_uid": result.results[0].study_uid}  # a one-instance study of the corpus

        def through(mcp: Client, tool: str, arguments: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
            async def call() -> None:
                assert not (await mcp.call_tool(tool, arguments)).is_error

            return call

        calls: dict[str, dict[str, Callable[[], Awaitable[Any]]]] = {
            "search": {
                "direct": lambda: search_studies(app, **SEARCH),
                "in_memory": through(memory, "search_studies", SEARCH),
                "stdio": through(stdio, "search_studies", SEARCH),
            },
            "metadata": {
                "direct": lambda: retrieve_metadata(app, **metadata),
                "in_memory": through(memory, "retrieve_metadata", metadata),
                "stdio": through(stdio, "retrieve_metadata", metadata),
            },
        }
        # The three ways are called in turn, call after call, so that the server's own drift over time
        # falls on all three alike and the differences are the layers' own cost.
        samples = {name: {way: [] for way in ways} for name, ways in calls.items()}
        for name, ways in calls.items():
            order = list(ways)
            for round_number in range(count + 10):
                for way in order[round_number % 3 :] + order[: round_number % 3]:
                    started = time.perf_counter()
                    await ways[way]()
                    if round_number >= 10:  # warm-up rounds are not counted
                        samples[name][way].append((time.perf_counter() - started) * 1000)

        # The same query as the server receives it, answered as the server sends it.
        query = build_query(
            {"PatientName": "Patient1*", "StudyDate": "20180101-20201231"},
            include_fields=["StudyDescription"],
            limit=25,
        ).encode(profile_for(ServerKind.ORTHANC))
        async with httpx.AsyncClient() as http:
            raw = await http.get(
                f"{config.server.url}/studies?{query}", headers={"Accept": "application/dicom+json"}
            )
        datasets = raw.json()
        summarized = len(result.model_dump_json().encode())
        compact = len(json.dumps(datasets, separators=(",", ":")).encode())
        report["search"] = {
            **summary(samples["search"]["direct"]),
            "corpus": a.get("corpus"),
            "returned": result.returned,
            "raw_returned": len(datasets),
            "summary_bytes": summarized,
            "raw_bytes": len(raw.content),
            "raw_compact_bytes": compact,
            "ratio": summarized / len(raw.content),
            "ratio_compact": summarized / compact,
        }
    report["mcp_overhead"] = {}
    for name, ways in samples.items():
        p50 = {way: statistics.median(values) for way, values in ways.items()}
        report["mcp_overhead"][name] = {
            "direct_p50_ms": p50["direct"],
            "in_memory_p50_ms": p50["in_memory"],
            "stdio_p50_ms": p50["stdio"],
            "in_memory_added_ms": p50["in_memory"] - p50["direct"],
            "stdio_added_ms": p50["stdio"] - p50["direct"],
        }
    return report


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, json.loads(sys.argv[1]))))
