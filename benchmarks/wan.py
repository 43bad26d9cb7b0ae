"""The WAN benchmark: a local Orthanc behind a shaping proxy on loopback (benchmarks/wanproxy.py), and this
project, dicomweb-client and curl side by side through it, with the requests each tool call made.

    python -m benchmarks.wan [--rtt-ms 40 --conn-mbit 100 --total-mbit 1000 --runs 3]

Cases (data made with pydicom, fixed seeds; each case run ``--runs`` times, the tools in a different order
each run; times are medians, ratios are taken run by run and then their median):

- retrieve: one study of 8 series, 128 instances, about 67 MB. curl's single GET of the study is what one
  connection gives; curl's 8 GETs, one per series, all at once, is the link's reference.
- store: 200 files of about 52 KB (10 MB). curl POSTs them as one multipart body, and as four bodies of 50
  at once (bodies built beforehand). The study is deleted from Orthanc before every store.
- first-call: a fresh client (server kind auto) searching studies: the first call, then a second one on
  the same client; and the same through an MCP session as a host runs it (``dicomweb-mcp`` over stdio,
  initialize, the tool list, the model's turn, then the session's first tool call and a warm one).

ours and dicomweb-client get an untimed search first on a fresh client for retrieve and store (connection
open, server kind known), as benchmarks/measure.py does; curl pays its connection in every measurement.
The proxy counts the requests and new TCP connections of each measured call. Targets are checked at the
end; results also go to benchmarks/results/wan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client, StdioServerParameters
from pydicom import dcmread

from benchmarks.wanproxy import WanProxy
from dicomweb_mcp import Config, DicomWebClient
from dicomweb_mcp.tools.context import no_progress
from dicomweb_mcp.tools.retrieve import retrieve_instances
from dicomweb_mcp.tools.write import store_instances
from tests.support.mcp import tool_context
from tests.support.orthanc import Orthanc  # run as python -m benchmarks.wan from the repository
from tests.support.synthetic import make_study

REPO = Path(__file__).resolve().parents[1]
CURL = shutil.which("curl") or "/usr/bin/curl"
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
TIMEOUT = 300.0  # any one measured call
MB = 1e6

# The data: 128 instances of 512x512x16 bit (524 KB each: 67 MB) in 8 series; 200 of 160x160 (52 KB).
RETRIEVE: dict[str, Any] = {"instances": 128, "series": 8, "rows": 512, "columns": 512, "seed": 41}
STORE: dict[str, Any] = {"instances": 200, "series": 4, "rows": 160, "columns": 160, "seed": 42}
STORE_PARALLEL = 4
SEARCH_LIMIT = 10


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Sample:
    seconds: float
    requests: int
    connections: int
    max_open: int
    bytes_up: int
    bytes_down: int
    methods: dict[str, int] = field(default_factory=dict)


class Measured:
    """Zero the proxy's counters, time a block, then read the counters: one ``Sample``."""

    def __init__(self, wan: WanProxy) -> None:
        self.wan = wan
        self.sample: Sample | None = None
        self.started = 0.0

    def __enter__(self) -> Measured:
        self.wan.reset()
        self.started = time.perf_counter()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        seconds = time.perf_counter() - self.started
        if exc_type is None:
            self.sample = sample(seconds, self.wan.stats())

    @property
    def result(self) -> Sample:
        assert self.sample is not None
        return self.sample


def sample(seconds: float, stats: dict[str, Any]) -> Sample:
    return Sample(
        seconds=seconds,
        requests=stats["requests"],
        connections=stats["connections"],
        max_open=stats["max_open"],
        bytes_up=stats["bytes_up"],
        bytes_down=stats["bytes_down"],
        methods=stats["methods"],
    )


# ---- data and Orthanc (direct, not through the proxy) ----------------------------------------------------


def write_body(files: list[Path], path: Path) -> str:
    """One multipart/related STOW body of ``files``, as curl posts it; returns its boundary."""
    boundary = uuid.uuid4().hex
    with path.open("wb") as out:
        for file in files:
            out.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            out.write(file.read_bytes())
            out.write(b"\r\n")
        out.write(f"--{boundary}--\r\n".encode())
    return boundary


def orthanc_study(root: str, study_uid: str) -> str | None:
    with httpx.Client(base_url=root, timeout=60) as http:
        found = http.post("/tools/lookup", content=study_uid).json()
    return next((item["ID"] for item in found if item["Type"] == "Study"), None)


def orthanc_instances(root: str, study_uid: str) -> int:
    study = orthanc_study(root, study_uid)
    if study is None:
        return 0
    with httpx.Client(base_url=root, timeout=60) as http:
        return len(http.get(f"/studies/{study}/instances").json())


def orthanc_delete(root: str, study_uid: str) -> None:
    study = orthanc_study(root, study_uid)
    if study is not None:
        with httpx.Client(base_url=root, timeout=60) as http:
            http.delete(f"/studies/{study}").raise_for_status()


def orthanc_store(dicomweb_url: str, body: Path, boundary: str) -> None:
    with httpx.Client(timeout=TIMEOUT) as http:
        http.post(
            f"{dicomweb_url}/studies",
            content=body.read_bytes(),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
        ).raise_for_status()


# ---- curl --------------------------------------------------------------------------------------------------


def curl_get(url: str, out: Path, accept: str = ACCEPT_DICOM) -> list[str]:
    return [
        CURL,
        "-sS",
        "--fail",
        "--max-time",
        str(int(TIMEOUT)),
        "-H",
        f"Accept: {accept}",
        "-o",
        str(out),
        url,
    ]


def curl_post(url: str, body: Path, boundary: str) -> list[str]:
    return [
        CURL,
        "-sS",
        "--fail",
        "--max-time",
        str(int(TIMEOUT)),
        "-o",
        "/dev/null",
        "-H",
        f'Content-Type: multipart/related; type="application/dicom"; boundary={boundary}',
        "-H",
        "Accept: application/dicom+json",
        "-H",
        "Expect:",  # Orthanc sends no 100 Continue: do not wait a second for it
        "-X",
        "POST",
        "-T",
        str(body),
        url,
    ]


def run_all(commands: list[list[str]]) -> None:
    """Start every command at once and wait for all of them, within TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT + 10
    processes = [subprocess.Popen(c, stderr=subprocess.PIPE) for c in commands]
    try:
        for process in processes:
            _, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if process.returncode != 0:
                raise RuntimeError(
                    f"curl failed ({process.returncode}): {stderr.decode(errors='replace')[-500:]}"
                )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


# ---- the tools -----------------------------------------------------------------------------------------------


@dataclass
class Setup:
    url: str  # DICOMweb root through the proxy
    root: str  # Orthanc's REST root, direct (setup and clean-up only)
    study: str
    series: list[str]
    instances: int
    retrieve_bytes: int
    store_dir: Path
    store_study: str
    store_files: int
    store_bytes: int
    one_body: tuple[Path, str]
    parallel_bodies: list[tuple[Path, str]]
    out: Path


def fresh(out: Path) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


async def ours_retrieve(s: Setup, wan: WanProxy) -> Sample:
    out = fresh(s.out / "ours")
    config = Config.single(url=s.url, download_dir=out, timeout=TIMEOUT)
    async with DicomWebClient(config.server) as client:
        app = tool_context(config, client)
        await client.search_studies(limit=1)  # warm: a connection open, the server kind known
        with anyio.fail_after(TIMEOUT), Measured(wan) as m:
            result = await retrieve_instances(app, no_progress, study_uid=s.study)
    assert result.file_count == s.instances, result.file_count
    return m.result


async def ours_store(s: Setup, wan: WanProxy) -> Sample:
    config = Config.single(url=s.url, timeout=TIMEOUT)
    async with DicomWebClient(config.server) as client:
        app = tool_context(config, client)
        await client.search_studies(limit=1)
        with anyio.fail_after(TIMEOUT), Measured(wan) as m:
            stored = await store_instances(app, no_progress, paths=[str(s.store_dir)])
    assert stored.counts.failed == 0 and stored.counts.skipped == 0, stored.counts
    assert stored.counts.stored == s.store_files, stored.counts
    return m.result


@contextmanager
def dwc_client(url: str) -> Iterator[Any]:
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=url, timeout=TIMEOUT)
    try:
        yield client
    finally:
        client._session.close()  # it has no close of its own: leave no connection open for the next tool


def dwc_retrieve(s: Setup, wan: WanProxy) -> Sample:
    out = fresh(s.out / "dicomweb-client")
    with dwc_client(s.url) as client:
        client.search_for_studies(limit=1)
        with Measured(wan) as m:
            datasets = client.retrieve_study(s.study, media_types=(("application/dicom", "*"),))
            for ds in datasets:
                ds.save_as(out / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    assert len(datasets) == s.instances, len(datasets)
    return m.result


def dwc_store(s: Setup, wan: WanProxy) -> Sample:
    files = sorted(s.store_dir.rglob("*.dcm"))
    with dwc_client(s.url) as client:
        client.search_for_studies(limit=1)
        with Measured(wan) as m:
            client.store_instances([dcmread(p) for p in files])  # reading the files is part of its call
    return m.result


def curl_retrieve_one(s: Setup, wan: WanProxy) -> Sample:
    out = fresh(s.out / "curl")
    with Measured(wan) as m:
        run_all([curl_get(f"{s.url}/studies/{s.study}", out / "study.multipart")])
    assert (out / "study.multipart").stat().st_size > s.retrieve_bytes
    return m.result


def curl_retrieve_parallel(s: Setup, wan: WanProxy) -> Sample:
    out = fresh(s.out / "curl-parallel")
    commands = [
        curl_get(f"{s.url}/studies/{s.study}/series/{series}", out / f"{index}.multipart")
        for index, series in enumerate(s.series)
    ]
    with Measured(wan) as m:
        run_all(commands)
    assert sum(p.stat().st_size for p in out.iterdir()) > s.retrieve_bytes
    return m.result


def curl_store_one(s: Setup, wan: WanProxy) -> Sample:
    with Measured(wan) as m:
        run_all([curl_post(f"{s.url}/studies", *s.one_body)])
    return m.result


def curl_store_parallel(s: Setup, wan: WanProxy) -> Sample:
    commands = [curl_post(f"{s.url}/studies", body, boundary) for body, boundary in s.parallel_bodies]
    with Measured(wan) as m:
        run_all(commands)
    return m.result


async def ours_first(s: Setup, wan: WanProxy) -> tuple[Sample, Sample]:
    config = Config.single(url=s.url, timeout=60)  # server kind auto: the proxy's port tells nothing
    async with DicomWebClient(config.server) as client:
        with anyio.fail_after(TIMEOUT), Measured(wan) as first:
            await client.search_studies(limit=SEARCH_LIMIT)
        with anyio.fail_after(TIMEOUT), Measured(wan) as warm:
            await client.search_studies(limit=SEARCH_LIMIT)
    return first.result, warm.result


# What a host does between listing the tools and its first call: the model reads them and chooses.
MODEL_TURN_S = 1.5


async def session_first(s: Setup, wan: WanProxy) -> tuple[Sample, Sample]:
    """A host's session: ``dicomweb-mcp`` started over stdio, initialize, the tool list, the model's turn,
    then search_studies twice (the session's first call and a warm one)."""
    env = {"PATH": os.environ["PATH"], "DICOMWEB_URL": s.url, "DICOMWEB_DOWNLOAD_DIR": str(s.out / "session")}
    command = str(Path(sys.executable).parent / "dicomweb-mcp")
    arguments = {"limit": SEARCH_LIMIT}
    async with Client(StdioServerParameters(command=command, args=[], env=env)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        # The SDK's client compiles a tool's output-schema validator at its first result (10-20 ms on this
        # machine, and jsonschema's import before it): the host's own time, done here before measuring.
        schema = tools["search_studies"].output_schema or {}
        client.session._output_schema_validator("search_studies", schema)
        await anyio.sleep(MODEL_TURN_S)
        with anyio.fail_after(TIMEOUT), Measured(wan) as first:
            assert not (await client.call_tool("search_studies", arguments)).is_error
        with anyio.fail_after(TIMEOUT), Measured(wan) as warm:
            assert not (await client.call_tool("search_studies", arguments)).is_error
    return first.result, warm.result


def dwc_first(s: Setup, wan: WanProxy) -> tuple[Sample, Sample]:
    with dwc_client(s.url) as client:
        with Measured(wan) as first:
            client.search_for_studies(limit=SEARCH_LIMIT)
        with Measured(wan) as warm:
            client.search_for_studies(limit=SEARCH_LIMIT)
    return first.result, warm.result


def curl_first(s: Setup, wan: WanProxy) -> Sample:
    command = curl_get(f"{s.url}/studies?limit={SEARCH_LIMIT}", Path("/dev/null"), "application/dicom+json")
    with Measured(wan) as m:
        run_all([command])
    return m.result


# ---- cases, rows, targets -------------------------------------------------------------------------------


CURL_ONE = {"retrieve": "curl, one GET", "store": "curl, one POST"}
CURL_PARALLEL = {"retrieve": "curl, 8 GETs at once", "store": f"curl, {STORE_PARALLEL} POSTs at once"}


def retrieve_tools(s: Setup) -> dict[str, Callable[[WanProxy], Sample]]:
    return {
        "ours": lambda wan: anyio.run(ours_retrieve, s, wan),
        "dicomweb-client": lambda wan: dwc_retrieve(s, wan),
        CURL_ONE["retrieve"]: lambda wan: curl_retrieve_one(s, wan),
        CURL_PARALLEL["retrieve"]: lambda wan: curl_retrieve_parallel(s, wan),
    }


def store_tools(s: Setup) -> dict[str, Callable[[WanProxy], Sample]]:
    def cleared(tool: Callable[[Setup, WanProxy], Sample]) -> Callable[[WanProxy], Sample]:
        def run(wan: WanProxy) -> Sample:
            orthanc_delete(s.root, s.store_study)
            result = tool(s, wan)
            stored = orthanc_instances(s.root, s.store_study)
            assert stored == s.store_files, f"{stored} of {s.store_files} instances stored"
            return result

        return run

    return {
        "ours": cleared(lambda s, wan: anyio.run(ours_store, s, wan)),
        "dicomweb-client": cleared(dwc_store),
        CURL_ONE["store"]: cleared(curl_store_one),
        CURL_PARALLEL["store"]: cleared(curl_store_parallel),
    }


def first_tools(s: Setup) -> dict[str, Callable[[WanProxy], dict[str, Sample]]]:
    def pair(name: str, got: tuple[Sample, Sample]) -> dict[str, Sample]:
        return {f"{name}, first call": got[0], f"{name}, second call": got[1]}

    return {
        "ours": lambda wan: pair("ours", anyio.run(ours_first, s, wan)),
        "MCP session": lambda wan: pair("MCP session", anyio.run(session_first, s, wan)),
        "dicomweb-client": lambda wan: pair("dicomweb-client", dwc_first(s, wan)),
        "curl": lambda wan: {"curl, one GET (new connection)": curl_first(s, wan)},
    }


def rotated(names: list[str], run: int) -> list[str]:
    shift = run % len(names)
    return names[shift:] + names[:shift]


def spread(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def summarize(runs: list[dict[str, Sample]], size: int | None, case: str | None) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for tool in runs[0]:
        samples = [r[tool] for r in runs]
        seconds = [x.seconds for x in samples]
        row: dict[str, Any] = {
            "median_s": statistics.median(seconds),
            "min_s": min(seconds),
            "max_s": max(seconds),
            "mb_per_s": size / statistics.median(seconds) / MB if size else None,
            "requests": spread([x.requests for x in samples]),
            "connections": spread([x.connections for x in samples]),
            "max_open": spread([x.max_open for x in samples]),
            "requests_all": [x.requests for x in samples],
            "connections_all": [x.connections for x in samples],
            "methods": samples[-1].methods,
            "methods_shown": " + ".join(f"{n} {m}" for m, n in sorted(samples[-1].methods.items())),
        }
        if case in CURL_ONE:
            for key, reference in (("vs_curl_single", CURL_ONE[case]), ("vs_parallel", CURL_PARALLEL[case])):
                row[key] = statistics.median(r[reference].seconds / r[tool].seconds for r in runs)
        rows[tool] = row
    return rows


def table(summaries: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| case | tool | median s (min-max) | MB/s | requests | new connections (most open) | vs curl single "
        "| vs parallel reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, rows in summaries.items():
        for tool, row in rows.items():
            mbs = f"{row['mb_per_s']:.1f}" if row["mb_per_s"] else ""
            single = f"{row['vs_curl_single']:.2f}x" if "vs_curl_single" in row else ""
            parallel = f"{row['vs_parallel']:.2f}x" if "vs_parallel" in row else ""
            lines.append(
                f"| {case} | {tool} | {row['median_s']:.3f} ({row['min_s']:.3f}-{row['max_s']:.3f}) | {mbs} "
                f"| {row['requests']} ({row['methods_shown']}) | {row['connections']} ({row['max_open']}) "
                f"| {single} | {parallel} |"
            )
    return "\n".join(lines)


def targets(summaries: dict[str, dict[str, dict[str, Any]]], rtt: float) -> list[dict[str, Any]]:
    retrieve, store, first = (
        summaries["retrieve"]["ours"],
        summaries["store"]["ours"],
        summaries["first-call"],
    )
    extra = first["ours, first call"]["median_s"] - first["ours, second call"]["median_s"]
    session = first["MCP session, first call"]["median_s"] - first["MCP session, second call"]["median_s"]
    warm_requests = first["ours, second call"]["requests_all"]
    checks = [
        (
            "retrieve: ours >= 4x curl's single GET",
            retrieve["vs_curl_single"],
            4.0,
            f"{retrieve['vs_curl_single']:.3f}x",
        ),
        (
            "retrieve: ours >= 0.8x the parallel reference",
            retrieve["vs_parallel"],
            0.8,
            f"{retrieve['vs_parallel']:.3f}x",
        ),
        ("store: ours >= 2x one curl POST", store["vs_curl_single"], 2.0, f"{store['vs_curl_single']:.3f}x"),
        (
            f"store: ours >= 0.9x {STORE_PARALLEL} parallel POSTs",
            store["vs_parallel"],
            0.9,
            f"{store['vs_parallel']:.3f}x",
        ),
        (
            "first call within one RTT of a warm call",
            rtt - extra,
            0.0,
            f"first - warm = {1000 * extra:.0f} ms (RTT {1000 * rtt:.0f} ms)",
        ),
        (
            "an MCP session's first tool call within one RTT of a warm one",
            rtt - session,
            0.0,
            f"first - warm = {1000 * session:.0f} ms (RTT {1000 * rtt:.0f} ms)",
        ),
        ("warm calls one request each", -max(warm_requests), -1, f"requests per warm call: {warm_requests}"),
    ]
    return [
        {"target": name, "measured": shown, "met": bool(value >= threshold)}
        for name, value, threshold, shown in checks
    ]


def machine() -> str:
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, IndexError, ValueError):
        memory = ""
    orthanc = subprocess.run(
        ["Orthanc", "--version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout.split("\n")[0]
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs{memory}, Python {platform.python_version()}, {orthanc}"
    )


# ---- main ----------------------------------------------------------------------------------------------------


def prepare(workdir: Path, orthanc: Orthanc, url: str, write_to: Path) -> Setup:
    data = workdir / "data"
    log("generating data")
    retrieve_files = make_study(data / "retrieve", **RETRIEVE)
    store_files = make_study(data / "store", **STORE)
    headers = [dcmread(p, stop_before_pixels=True) for p in retrieve_files]
    store_study = str(dcmread(store_files[0], stop_before_pixels=True).StudyInstanceUID)
    bodies = workdir / "bodies"
    bodies.mkdir()
    one_body = (bodies / "all.multipart", write_body(store_files, bodies / "all.multipart"))
    share = len(store_files) // STORE_PARALLEL
    parallel_bodies = []
    for index in range(STORE_PARALLEL):
        part = store_files[index * share : (index + 1) * share if index < STORE_PARALLEL - 1 else None]
        path = bodies / f"part-{index}.multipart"
        parallel_bodies.append((path, write_body(part, path)))
    log("storing the retrieve study in Orthanc (direct)")
    study_body = workdir / "bodies" / "retrieve.multipart"
    orthanc_store(orthanc.dicomweb_url, study_body, write_body(retrieve_files, study_body))
    study_body.unlink()
    setup = Setup(
        url=url,
        root=orthanc.root,
        study=str(headers[0].StudyInstanceUID),
        series=sorted({str(h.SeriesInstanceUID) for h in headers}),
        instances=len(retrieve_files),
        retrieve_bytes=sum(p.stat().st_size for p in retrieve_files),
        store_dir=data / "store",
        store_study=store_study,
        store_files=len(store_files),
        store_bytes=sum(p.stat().st_size for p in store_files),
        one_body=one_body,
        parallel_bodies=parallel_bodies,
        out=write_to,
    )
    assert orthanc_instances(orthanc.root, setup.study) == setup.instances
    # Untimed, direct: Orthanc's caches and the page cache warm for every tool alike; one store and delete.
    run_all([curl_get(f"{orthanc.dicomweb_url}/studies/{setup.study}", Path("/dev/null"))])
    run_all([curl_post(f"{orthanc.dicomweb_url}/studies", *one_body)])
    orthanc_delete(orthanc.root, store_study)
    return setup


@contextmanager
def services(workdir: Path, args: argparse.Namespace) -> Iterator[tuple[Orthanc, WanProxy]]:
    orthanc = Orthanc(workdir / "orthanc")
    wan = WanProxy(
        orthanc.port,
        rtt_ms=args.rtt_ms,
        conn_mbit=args.conn_mbit,
        total_mbit=args.total_mbit,
        max_seconds=args.max_minutes * 60,
    )
    try:
        orthanc.start()
        wan.start()
        yield orthanc, wan
    finally:
        wan.stop()
        orthanc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--conn-mbit", type=float, default=100.0, help="per connection and direction")
    parser.add_argument("--total-mbit", type=float, default=1000.0, help="all connections, per direction")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", default="retrieve,store,first-call")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put data (default: a temp dir)")
    parser.add_argument(
        "--write-to", type=Path, default=None, help="where retrieved files go (default: workdir)"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=60.0, help="the proxy stops by itself after this"
    )
    args = parser.parse_args()
    wanted = args.cases.split(",")
    rtt = args.rtt_ms / 1000
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="dicomweb-wan-", dir=args.workdir))
    try:
        with services(workdir, args) as (orthanc, wan):
            url = wan.url("/dicom-web")
            log(
                f"Orthanc on 127.0.0.1:{orthanc.port}, behind the WAN proxy on {wan.address}: RTT {args.rtt_ms:g} ms, "
                f"{args.conn_mbit:g} Mbit/s per connection, {args.total_mbit:g} Mbit/s in total"
            )
            s = prepare(workdir, orthanc, url, (args.write_to or workdir) / "wan-out")
            cases: dict[str, dict[str, Callable[[WanProxy], Any]]] = {
                "retrieve": retrieve_tools(s),
                "store": store_tools(s),
                "first-call": first_tools(s),
            }
            sizes = {"retrieve": s.retrieve_bytes, "store": s.store_bytes, "first-call": None}
            runs: dict[str, list[dict[str, Sample]]] = {case: [] for case in wanted}
            for run in range(args.runs):
                for case in wanted:
                    tools = cases[case]
                    results: dict[str, Sample] = {}
                    for name in rotated(list(tools), run):
                        wan.wait_idle()  # the previous tool's connections closed: counts start clean
                        got = tools[name](wan)
                        for label, x in got.items() if isinstance(got, dict) else [(name, got)]:
                            results[label] = x
                            log(
                                f"run {run + 1}/{args.runs} {case:<10} {label:<32} {x.seconds:7.3f} s  "
                                f"{x.requests:3d} requests  {x.connections:2d} connections (most open {x.max_open})  "
                                f"{x.bytes_up / MB:6.1f} MB up {x.bytes_down / MB:6.1f} MB down"
                            )
                    runs[case].append(results)
            shutil.rmtree(s.out, ignore_errors=True)
        # The tools in a fixed order for the table, whatever order they ran in.
        order = {
            "retrieve": list(cases["retrieve"]),
            "store": list(cases["store"]),
            "first-call": [
                "ours, first call",
                "ours, second call",
                "MCP session, first call",
                "MCP session, second call",
                "dicomweb-client, first call",
                "dicomweb-client, second call",
                "curl, one GET (new connection)",
            ],
        }
        summaries = {
            case: {
                tool: row
                for tool, row in sorted(
                    summarize(runs[case], sizes[case], case).items(), key=lambda kv: order[case].index(kv[0])
                )
            }
            for case in wanted
        }
        header = (
            f"WAN: RTT {args.rtt_ms:g} ms, {args.conn_mbit:g} Mbit/s per connection, {args.total_mbit:g} Mbit/s in total "
            f"(user-space proxy on 127.0.0.1). {machine()}. Median of {args.runs} runs; ratios = speed relative to "
            f"the reference, per run, then the median. retrieve: {s.instances} instances in {len(s.series)} series, "
            f"{s.retrieve_bytes / MB:.1f} MB; store: {s.store_files} files, {s.store_bytes / MB:.1f} MB. Requests "
            f"and new connections as the proxy counted them during the measured call."
        )
        print(header)
        print()
        print(table(summaries))
        checked = targets(summaries, rtt) if set(wanted) >= {"retrieve", "store", "first-call"} else []
        if checked:
            print()
            for t in checked:
                print(f"- {t['target']}: {t['measured']}: {'met' if t['met'] else 'NOT met'}")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "wan.json").write_text(
            json.dumps(
                {
                    "link": {
                        "rtt_ms": args.rtt_ms,
                        "conn_mbit": args.conn_mbit,
                        "total_mbit": args.total_mbit,
                    },
                    "machine": machine(),
                    "runs": args.runs,
                    "seconds": time.perf_counter() - started,
                    "data": {
                        "retrieve": {
                            "instances": s.instances,
                            "series": len(s.series),
                            "bytes": s.retrieve_bytes,
                        },
                        "store": {"files": s.store_files, "bytes": s.store_bytes},
                    },
                    "summary": summaries,
                    "targets": checked,
                    "samples": {
                        case: [{k: asdict(v) for k, v in r.items()} for r in rs] for case, rs in runs.items()
                    },
                },
                indent=1,
            )
        )
        log(f"wrote {args.out / 'wan.json'} in {time.perf_counter() - started:.0f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
