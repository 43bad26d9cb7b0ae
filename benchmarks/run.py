"""The benchmark: one command that starts a local Orthanc, generates its data with pydicom (fixed seeds,
nothing committed), measures every case for this project, dicomweb-client and curl side by side, and
writes a markdown table and a JSON file.

    python -m benchmarks.run [--runs 5] [--scale 1.0] [--out benchmarks/results]

Each measurement runs in a fresh process (its peak RSS is its own). Within one run the tools go one after
the other on the same data, each run starting with a different tool after an untimed warm-up, so ratios
are taken run by run and then their median, which holds up on noisy machines better than a ratio of
medians.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from dicomweb_mcp import DicomWebClient, StoreStatus, collect_dicom_files
from dicomweb_mcp.config import ServerConfig
from dicomweb_mcp.dicom.reference import Reference
from dicomweb_mcp.dicomweb.multipart import MultipartFileBody
from tests.support.orthanc import Orthanc  # run as python -m benchmarks.run from the repository
from tests.support.synthetic import make_search_corpus, make_study

REPO = Path(__file__).resolve().parents[1]

TOOLS = ("ours", "dicomweb-client", "curl")
MB = 1e6


@dataclass
class Case:
    name: str
    description: str
    arguments: dict[str, Any]
    study: str | None = None  # stored by the case itself: deleted before each measurement
    unit: str = "MB/s"
    runs: list[dict[str, Any]] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def store(url: str, directory: Path) -> str:
    files, skipped = collect_dicom_files([directory])
    assert not skipped, skipped[:3]
    async with DicomWebClient(ServerConfig(url=url, timeout=600, server_kind="orthanc")) as client:  # type: ignore[arg-type]
        outcomes = await client.store_instances(files)
    assert all(o.status is StoreStatus.STORED for o in outcomes)
    return files[0].study_uid


async def delete(url: str, study: str) -> None:
    async with DicomWebClient(ServerConfig(url=url, timeout=600, server_kind="orthanc")) as client:  # type: ignore[arg-type]
        with contextlib.suppress(Exception):
            await client.delete(Reference(study))


async def write_bodies(directory: Path, bodies: Path, batch_count: int, batch_bytes: int) -> None:
    """The multipart batches curl posts: the same batches our client would send."""
    from dicomweb_mcp.dicomweb.stow import batches

    files, _ = collect_dicom_files([directory])
    bodies.mkdir(parents=True, exist_ok=True)
    for index, batch in enumerate(batches(files, batch_count, batch_bytes)):
        body = MultipartFileBody(batch)
        with (bodies / f"{index:04d}.multipart").open("wb") as stream:
            async for chunk in body:
                stream.write(chunk)
        (bodies / f"{index:04d}.boundary").write_text(body.boundary)


def measure(case: Case, tool: str, out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    os.sync()  # start every measurement with no dirty pages from the one before
    arguments = {**case.arguments, "out": str(out)}
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.measure", case.name, tool, json.dumps(arguments)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"{case.name}/{tool} failed:\n{completed.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return result


def aggregate(case: Case) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for tool in TOOLS:
        runs = [r[tool] for r in case.runs if tool in r]
        if not runs:
            continue
        seconds = [r["seconds"] for r in runs]
        rows[tool] = {
            "median_s": statistics.median(seconds),
            "min_s": min(seconds),
            "max_s": max(seconds),
            "mb_per_s": statistics.median(r["bytes"] / r["seconds"] / MB for r in runs),
            "items_per_s": statistics.median(r["items"] / r["seconds"] for r in runs),
            "bytes": runs[0]["bytes"],
            "items": runs[0]["items"],
            "peak_rss_mib": max(r["rss_peak_kib"] for r in runs) / 1024,
            "rss_growth_mib": max(r["rss_peak_kib"] - r["rss_base_kib"] for r in runs) / 1024
            if tool != "curl"
            else None,
            "runs": len(runs),
        }
    for other in ("curl", "dicomweb-client"):
        pairs = [
            r["ours"]["seconds"] and r[other]["seconds"] / r["ours"]["seconds"]
            for r in case.runs
            if other in r
        ]
        if pairs and "ours" in rows:
            rows["ours"][f"speed_vs_{other}"] = statistics.median(pairs)
    return rows


def markdown(cases: list[Case], latency: dict[str, Any], machine: str, runs: int) -> str:
    lines = [
        f"Machine: {machine}. Median of {runs} runs (min-max); ratios are per run, then the median.",
        "",
        "| case | tool | median s (min-max) | MB/s | items/s | peak RSS MiB | RSS growth MiB | vs curl | vs dicomweb-client |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        for tool, row in aggregate(case).items():
            growth = "" if row["rss_growth_mib"] is None else f"{row['rss_growth_mib']:.1f}"
            vs_curl = row.get("speed_vs_curl")
            vs_dwc = row.get("speed_vs_dicomweb-client")
            lines.append(
                f"| {case.name} | {tool} | {row['median_s']:.2f} ({row['min_s']:.2f}-{row['max_s']:.2f}) "
                f"| {row['mb_per_s']:.0f} | {row['items_per_s']:.0f} | {row['peak_rss_mib']:.0f} | {growth} "
                f"| {f'{vs_curl:.2f}x' if vs_curl else ''} | {f'{vs_dwc:.2f}x' if vs_dwc else ''} |"
            )
    if latency:
        search = latency["search"]
        lines += [
            "",
            f"search (QIDO over {search.get('corpus', 'the')} studies, PatientName wildcard + date range, "
            f"{search['returned']} results, n={search['n']}): p50 {search['p50_ms']:.1f} ms, "
            f"p95 {search['p95_ms']:.1f} ms. Summarized result {search['summary_bytes']:,} bytes = "
            f"{100 * search['ratio']:.0f}% of the server's DICOM JSON for the same studies "
            f"({search['raw_bytes']:,} bytes as sent; {100 * search['ratio_compact']:.0f}% of it re-encoded "
            f"compactly, {search['raw_compact_bytes']:,} bytes).",
            "",
            "| mcp-overhead | direct p50 ms | in-memory p50 ms (added) | stdio p50 ms (added) |",
            "|---|---|---|---|",
        ]
        for call, row in latency["mcp_overhead"].items():
            lines.append(
                f"| {call} | {row['direct_p50_ms']:.2f} | {row['in_memory_p50_ms']:.2f} "
                f"(+{row['in_memory_added_ms']:.2f}) | {row['stdio_p50_ms']:.2f} (+{row['stdio_added_ms']:.2f}) |"
            )
    return "\n".join(lines) + "\n"


def machine_description() -> str:
    memory = ""
    try:
        kib = int(
            next(
                line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
            ).split()[1]
        )
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    orthanc = subprocess.run(
        ["Orthanc", "--version"], capture_output=True, text=True, check=False
    ).stdout.split("\n")[0]
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs{memory}, Python {platform.python_version()}, "
        f"{orthanc or 'Orthanc'} with the DICOMweb plugin on 127.0.0.1"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the data sizes (quick checks)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--cases", default="all", help="comma-separated case names, or all")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put data (default: a temp dir)")
    parser.add_argument(
        "--write-to",
        type=Path,
        default=None,
        help="where the measured tools write what they retrieve (default: inside the work dir; /dev/shm takes "
        "the disk out of the measurement)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    scale = args.scale

    def n(count: int) -> int:
        return max(1, round(count * scale))

    workdir = Path(tempfile.mkdtemp(prefix="dicomweb-bench-", dir=args.workdir))
    orthanc = Orthanc(workdir / "orthanc").start()
    url = orthanc.dicomweb_url
    try:
        log(f"generating data in {workdir} (scale {scale})")
        data = workdir / "data"
        large = make_study(data / "large", instances=n(200), rows=1620, columns=1618, seed=1)  # 5.2 MB each
        many = make_study(data / "many", instances=n(2000), series=10, rows=64, columns=76, seed=2)  # ~10 KB
        frames = make_study(data / "frames", instances=1, rows=512, columns=512, frames=100, seed=3)
        make_study(data / "store-many", instances=n(2000), series=10, rows=64, columns=76, seed=4)
        make_study(data / "store-large", instances=n(20), rows=5120, columns=5120, seed=5)  # 52 MB each
        make_search_corpus(data / "search", studies=n(5000), seed=6)
        log("storing the retrieve and search data")
        uids = {name: anyio.run(store, url, data / name) for name in ("large", "many", "frames", "search")}
        frame_file = collect_dicom_files(frames)[0][0]
        store_many = collect_dicom_files([data / "store-many"])[0]
        store_large = collect_dicom_files([data / "store-large"])[0]
        anyio.run(write_bodies, data / "store-many", workdir / "bodies-many", 100, 256 * 1024 * 1024)
        anyio.run(write_bodies, data / "store-large", workdir / "bodies-large", 100, 256 * 1024 * 1024)
        frame_args = {
            "url": url,
            "study": frame_file.study_uid,
            "series": frame_file.series_uid,
            "instance": frame_file.instance_uid,
            "frames": 100,
            "items": 100,
        }
        all_cases = [
            Case(
                "retrieve-large",
                "one study, 5 MB instances",
                {"url": url, "study": uids["large"], "items": len(large)},
            ),
            Case(
                "retrieve-many",
                "one study, ~10 KB instances in 10 series",
                {"url": url, "study": uids["many"], "items": len(many)},
                unit="items/s",
            ),
            Case("frames", "100 frames of 512x512x16 bit, one request", frame_args),
            Case("frames-each", "the same 100 frames, one request each", frame_args, unit="items/s"),
            Case(
                "store-many",
                "~10 KB instances from disk, batches of 100",
                {
                    "url": url,
                    "source": str(data / "store-many"),
                    "bodies": str(workdir / "bodies-many"),
                    "items": len(store_many),
                    "batch": 100,
                },
                study=store_many[0].study_uid,
                unit="items/s",
            ),
            Case(
                "store-large",
                "52 MB instances from disk",
                {
                    "url": url,
                    "source": str(data / "store-large"),
                    "bodies": str(workdir / "bodies-large"),
                    "items": len(store_large),
                    "batch": 4,
                },
                study=store_large[0].study_uid,
            ),
        ]
        wanted = set(args.cases.split(",")) if args.cases != "all" else None
        out = (args.write_to or workdir) / "dicomweb-bench-out"
        cases = [c for c in all_cases if wanted is None or c.name in wanted]
        for case in cases:
            # Untimed: bring Orthanc's caches and the page cache to the same state for every tool.
            if case.study:
                anyio.run(delete, url, case.study)
            measure(case, "curl", out)
        for run in range(args.runs):
            for case in cases:
                results: dict[str, Any] = {}
                # A different tool goes first in each run, so none always meets the server cold.
                for tool in TOOLS[run % len(TOOLS) :] + TOOLS[: run % len(TOOLS)]:
                    if case.study:
                        anyio.run(delete, url, case.study)
                    results[tool] = measure(case, tool, out)
                    r = results[tool]
                    log(
                        f"run {run + 1}/{args.runs} {case.name:<15} {tool:<16} {r['seconds']:7.2f} s "
                        f"{r['bytes'] / r['seconds'] / MB:8.0f} MB/s {r['items'] / r['seconds']:8.0f} items/s "
                        f"peak RSS {r['rss_peak_kib'] / 1024:5.0f} MiB"
                    )
                case.runs.append(results)
        latency: dict[str, Any] = {}
        if wanted is None or "search" in wanted or "mcp-overhead" in wanted:
            log("search latency and MCP overhead")
            completed = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.latency",
                    json.dumps(
                        {
                            "url": url,
                            "out": str(workdir / "latency"),
                            "corpus": n(5000),
                            "calls": 100,
                        }
                    ),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            latency = json.loads(completed.stdout.strip().splitlines()[-1])
        machine = machine_description()
        table = markdown(cases, latency, machine, args.runs)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.md").write_text(table)
        (args.out / "bench.json").write_text(
            json.dumps(
                {
                    "machine": machine,
                    "runs": args.runs,
                    "scale": scale,
                    "seconds": time.perf_counter() - started,
                    "cases": {
                        c.name: {"description": c.description, "summary": aggregate(c), "runs": c.runs}
                        for c in cases
                    },
                    "latency": latency,
                },
                indent=1,
            )
        )
        print(table)
        log(f"done in {time.perf_counter() - started:.0f} s; results in {args.out}")
    finally:
        orthanc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
