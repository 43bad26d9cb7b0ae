"""The cohort benchmark: a cohort of small studies copied from one Orthanc to another by a cohort job, its
speed against the link's, the server's memory, and a server killed with SIGKILL mid-job.

    python -m benchmarks.cohort [--studies 500] [--runs 1] [--wan --rtt-ms 40 --conn-mbit 100]

Two Orthancs on 127.0.0.1 (tests.support.orthanc), each behind its own benchmarks/wanproxy.py: with
``--wan`` the proxies shape (RTT, per-connection and total rates); without it they only count. The studies
are made with pydicom (fixed seeds, nothing committed): ``--instances`` 16-bit images of ``--size`` pixels
square in two series each, stored into the source directly. The server is ``dicomweb-mcp serve`` run as a
subprocess over stdio with the MCP SDK's client, as a host runs it, with the two Orthancs as named servers
reached through the proxies.

- link: the reference the job is measured against. A plain httpx client, as many studies at once as the
  job works on (DICOMWEB_JOB_CONCURRENCY), each study one GET of the whole study from the source and the
  same bytes POSTed to the destination: the fewest requests a study can be copied in, through the same
  proxies. The configured rate times connections (4 x 12.5 MB/s) would be no reference for studies of
  half a megabyte: each costs round trips that no bandwidth shortens.
- memory: the same job with ``--memory-studies`` studies (100), then with ``--studies`` (500), each in a
  fresh server; the server's VmRSS sampled every 50 ms from /proc/<pid>/status (start: after its first
  calls to both servers), and its VmHWM at the end.
- throughput: start_cohort, then cohort_status with wait until the job has finished; studies/s and MB/s
  of DICOM files, requests and new connections as each proxy counted them.
- restart: the job again (destination emptied, a new download directory), the server killed with SIGKILL
  once a third of the studies are done, started again on the same download directory; it resumes at
  once (the killed process is known to have ended). Counted: STOW requests at the destination against a job that
  was not killed, and every study's instances at the destination (Orthanc's REST API).

Each destination is checked whole after each job. Targets are checked at the end, and the exit status is 1
if any was missed; the results also go to benchmarks/results/cohort.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client, StdioServerParameters

from benchmarks.wanproxy import WanProxy
from dicomweb_mcp import Config, DicomWebClient, collect_dicom_files
from dicomweb_mcp.config import DEFAULT_JOB_CONCURRENCY
from tests.support.orthanc import Orthanc  # run as python -m benchmarks.cohort from the repository
from tests.support.synthetic import make_study

REPO = Path(__file__).resolve().parents[1]
COMMAND = str(Path(sys.executable).parent / "dicomweb-mcp")
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
MB = 1e6
MIB = 1024 * 1024
SAMPLE_SECONDS = 0.05
JOB_TIMEOUT = 1800.0
# The server's memory may grow this much over its start during a job, and its peak with 500 studies may
# exceed its peak with 100 by this much: more would be memory that grows with the cohort.
MAX_GROWTH_MIB = 100.0
MAX_PEAK_DRIFT_MIB = 20.0
LINK_RATIO = 0.8


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- the two Orthancs and their proxies ------------------------------------------------------------------


@dataclass
class End:
    orthanc: Orthanc
    proxy: WanProxy

    @property
    def url(self) -> str:
        return self.proxy.url("/dicom-web")


@contextmanager
def ends(workdir: Path, args: argparse.Namespace) -> Iterator[tuple[End, End]]:
    with ExitStack() as stack:
        made = []
        for name in ("source", "destination"):
            orthanc = Orthanc(workdir / name).start()
            stack.callback(orthanc.stop)
            shaped = {"rtt_ms": args.rtt_ms, "conn_mbit": args.conn_mbit, "total_mbit": args.total_mbit}
            counting = {"rtt_ms": 0.0, "conn_mbit": None, "total_mbit": None, "handshake": False}
            proxy = WanProxy(orthanc.port, max_seconds=7200, **(shaped if args.wan else counting))  # type: ignore[arg-type]
            proxy.start()
            stack.callback(proxy.stop)
            made.append(End(orthanc, proxy))
        yield made[0], made[1]


async def prepare(workdir: Path, source: Orthanc, args: argparse.Namespace) -> tuple[list[str], int, int]:
    """The studies in the source: their UIDs, instances a study, and bytes in all."""
    directories = []
    for seed in range(args.studies):
        directory = workdir / "studies" / f"{seed:05d}"
        make_study(
            directory,
            instances=args.instances,
            series=2,
            rows=args.size,
            columns=args.size,
            seed=1000 + seed,
            patient_name=f"Cohort^{seed}",
        )
        directories.append(directory)
    files, _ = collect_dicom_files(directories)
    uids = list(dict.fromkeys(f.study_uid for f in files))

    async with DicomWebClient(Config.single(url=source.dicomweb_url, timeout=600).server) as client:
        await client.store_instances(files)
    held = source.statistics()["CountInstances"]
    assert held == len(files), f"the source holds {held} of {len(files)} instances"
    return uids, args.instances, sum(f.size for f in files)


def check_whole(orthanc: Orthanc, uids: list[str], per_study: int) -> dict[str, int]:
    counts = {uid: count for uid, (_, count) in orthanc.held_studies().items()}
    wrong = {uid: counts.get(uid, 0) for uid in uids if counts.get(uid, 0) != per_study}
    extra = set(counts) - set(uids)
    if wrong or extra:
        raise RuntimeError(
            f"destination: {len(wrong)} studies not whole ({list(wrong.items())[:3]}), {extra=}"
        )
    return counts


def proxy_counts(source: End, destination: End) -> dict[str, Any]:
    return {"source": source.proxy.stats(), "destination": destination.proxy.stats()}


def reset(source: End, destination: End) -> None:
    for end in (source, destination):
        end.proxy.wait_idle()
        end.proxy.reset()


# ---- the link: plain GET and POST, a study each, as many at once as the job ------------------------------


async def link(source: End, destination: End, uids: list[str], concurrency: int) -> float:
    """Seconds to copy every study with one GET and one POST each, ``concurrency`` studies at once."""
    queue = list(reversed(uids))
    async with httpx.AsyncClient(timeout=300) as http:

        async def worker() -> None:
            while queue:
                uid = queue.pop()
                got = await http.get(f"{source.url}/studies/{uid}", headers={"Accept": ACCEPT_DICOM})
                got.raise_for_status()
                sent = await http.post(
                    f"{destination.url}/studies",
                    content=got.content,
                    headers={"Content-Type": got.headers["content-type"], "Accept": "application/dicom+json"},
                )
                sent.raise_for_status()

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(concurrency):
                group.start_soon(worker)
        return time.perf_counter() - started


# ---- the server as a host runs it, and its memory ------------------------------------------------------------


def server_pid() -> int:
    """The ``dicomweb-mcp`` process this process started (the stdio client's child)."""
    children: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            children += [int(p) for p in (task / "children").read_text().split()]
    for pid in children:
        with contextlib.suppress(OSError):
            if b"dicomweb-mcp" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    raise RuntimeError("the dicomweb-mcp process was not found among this process's children")


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


@dataclass
class Memory:
    """VmRSS of a process, sampled in a thread until stopped."""

    pid: int
    samples: list[int] = field(default_factory=list)
    hwm_kib: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.samples.append(status_kib(self.pid, "VmRSS"))
            self._stop.wait(SAMPLE_SECONDS)

    def start(self) -> Memory:
        self.samples.append(status_kib(self.pid, "VmRSS"))
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        with contextlib.suppress(OSError, RuntimeError):
            self.samples.append(status_kib(self.pid, "VmRSS"))
            self.hwm_kib = status_kib(self.pid, "VmHWM")
        self._stop.set()
        self._thread.join()
        return {
            "start_mib": self.samples[0] / 1024,
            "peak_mib": max(self.samples) / 1024,
            "end_mib": self.samples[-1] / 1024,
            "hwm_mib": self.hwm_kib / 1024,
            "samples": len(self.samples),
        }


def server_env(workdir: Path, source: End, destination: End, downloads: Path) -> dict[str, str]:
    servers = workdir / "servers.toml"
    servers.write_text(
        f'[servers.source]\nurl = "{source.url}"\nkind = "orthanc"\n\n'
        f'[servers.destination]\nurl = "{destination.url}"\nkind = "orthanc"\n'
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(workdir), "DICOMWEB_SERVERS": str(servers)}
    env["DICOMWEB_DOWNLOAD_DIR"] = str(downloads)
    for name in ("DICOMWEB_JOB_CONCURRENCY", "DICOMWEB_CONCURRENCY"):  # a tuning run passes them on
        if name in os.environ:
            env[name] = os.environ[name]
    return env


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"{tool} failed: {result.content}")
    return result.structured_content


def serve(env: dict[str, str]) -> Client:
    return Client(StdioServerParameters(command=COMMAND, args=["serve"], env=env))


async def warm(client: Client) -> None:
    """Connections open and each server's answers seen, as for any call after a session's first."""
    for server in ("source", "destination"):
        await call(client, "search_studies", server=server, limit=1)


async def finished(client: Client, job_id: str) -> dict[str, Any]:
    with anyio.fail_after(JOB_TIMEOUT):
        while True:
            status = await call(client, "cohort_status", job_id=job_id, wait=60)
            if status["state"] != "running":
                return status


async def job(env: dict[str, str], uids: list[str], source: End, destination: End) -> dict[str, Any]:
    """One cohort job in a fresh server: seconds, memory, proxy counts, the final status."""
    async with serve(env) as client:
        await warm(client)
        memory = Memory(server_pid()).start()
        reset(source, destination)
        started = time.perf_counter()
        begun = await call(
            client, "start_cohort", study_uids=uids, destination="destination", server="source"
        )
        status = await finished(client, begun["job_id"])
        seconds = time.perf_counter() - started
        counted = proxy_counts(source, destination)
        used = memory.stop()
    if status["state"] != "finished" or status["studies"]["done"] != len(uids):
        raise RuntimeError(f"the job did not finish whole: {status}")
    return {"seconds": seconds, "memory": used, "proxies": counted, "bytes": status["bytes"]}


async def killed(
    env: dict[str, str], uids: list[str], source: End, destination: End, kill_at: int
) -> dict[str, Any]:
    """The job, its server killed with SIGKILL once ``kill_at`` studies are done, then a new server on the
    same download directory until it has finished."""
    reset(source, destination)
    started = time.perf_counter()
    with contextlib.suppress(Exception):  # the session's end finds its server gone: nothing to close
        async with serve(env) as client:
            await warm(client)
            pid = server_pid()
            begun = await call(
                client, "start_cohort", study_uids=uids, destination="destination", server="source"
            )
            job_id = begun["job_id"]
            while True:
                status = await call(client, "cohort_status", job_id=job_id)
                if status["studies"]["done"] >= kill_at or status["state"] != "running":
                    break
                await anyio.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
            at_kill = {"seconds": time.perf_counter() - started, "studies": status["studies"]}
            posts_at_kill = destination.proxy.stats()["methods"].get("POST", 0)
    log(f"killed the server at {at_kill['studies']}; starting another on the same download directory")
    restarted = time.perf_counter()
    async with serve(env) as client:
        resumed_after = None
        with anyio.fail_after(JOB_TIMEOUT):
            while True:
                status = await call(client, "cohort_status", job_id=job_id, wait=5)
                if resumed_after is None and status.get("note") is None:
                    resumed_after = time.perf_counter() - restarted
                if status["state"] != "running":
                    break
    if status["state"] != "finished" or status["studies"]["done"] != len(uids):
        raise RuntimeError(f"the resumed job did not finish whole: {status}")
    manifest = [json.loads(line) for line in Path(status["manifest"]).read_text().splitlines()]
    return {
        "at_kill": at_kill,
        "posts_at_kill": posts_at_kill,
        "resumed_after_s": resumed_after,
        "restart_to_end_s": time.perf_counter() - restarted,
        "proxies": proxy_counts(source, destination),
        "studies_already_present": sum(1 for row in manifest if row.get("already_present")),
        "instances_already_present": sum(row.get("already_present", 0) for row in manifest),
        "attempts_over_one": sum(1 for row in manifest if row.get("attempts", 1) > 1),
    }


# ---- the report ------------------------------------------------------------------------------------------------


def restart_checks(
    restart: dict[str, Any], unkilled: dict[str, Any], studies: int, per_study: int
) -> list[tuple[str, bool, str]]:
    """Print the restart's counts (adding them to ``restart``) and return its targets."""
    clean_posts = unkilled["proxies"]["destination"]["methods"].get("POST", 0)
    posts = restart["proxies"]["destination"]["methods"].get("POST", 0)
    restart |= {
        "stow_requests": posts,
        "stow_requests_unkilled": clean_posts,
        "stow_requests_repeated": posts - clean_posts,
    }
    # At most one request a study under way can be cut off by the kill and sent again: what the destination
    # answered is looked up and left out.
    running = in_flight = restart["at_kill"]["studies"]["running"]
    print(
        f"\nSIGKILL after {restart['at_kill']['studies']['done']} studies done ({running} running); "
        f"resumed {restart['resumed_after_s']:.0f} s after the restart; "
        f"STOW requests {posts} against {clean_posts} unkilled ({posts - clean_posts} repeated); studies "
        f"answered already present: {restart['studies_already_present']} "
        f"({restart['instances_already_present']} instances); instances a study at the destination: "
        f"{restart['instances_per_study']}\n"
    )
    return [
        (
            "restart: every study's instances at the destination exactly once",
            restart["instances_per_study"] == [per_study],
            str(restart["instances_per_study"]),
        ),
        (
            "restart: no STOW repeated beyond one cut off per study running at the kill",
            posts - clean_posts <= in_flight,
            f"{posts - clean_posts} (at most {in_flight})",
        ),
    ]


def requests_line(counted: dict[str, Any]) -> str:
    parts = []
    for side in ("source", "destination"):
        c = counted[side]
        methods = " + ".join(f"{n} {m}" for m, n in sorted(c["methods"].items()))
        parts.append(
            f"{side}: {c['requests']} ({methods}), {c['connections']} conn (most open {c['max_open']})"
        )
    return "; ".join(parts)


async def main(args: argparse.Namespace) -> list[str]:
    concurrency = int(os.environ.get("DICOMWEB_JOB_CONCURRENCY", DEFAULT_JOB_CONCURRENCY))
    results: dict[str, Any] = {
        "arguments": vars(args) | {"out": str(args.out)},
        "job_concurrency": concurrency,
    }
    with tempfile.TemporaryDirectory(prefix="dicomweb-cohort-") as temporary:
        workdir = Path(temporary)
        with ends(workdir, args) as (source, destination):
            log(f"making and storing {args.studies} studies of {args.instances} instances in the source")
            uids, per_study, size = await prepare(workdir, source.orthanc, args)
            mb = size / MB
            results["cohort"] = {"studies": len(uids), "instances": per_study * len(uids), "bytes": size}
            log(f"{len(uids)} studies, {mb:.1f} MB; link reference at {concurrency} studies at once")
            links, runs = [], []
            for run in range(args.runs):
                destination.orthanc.clear()
                reset(source, destination)
                seconds = await link(source, destination, uids, concurrency)
                check_whole(destination.orthanc, uids, per_study)
                links.append({"seconds": seconds, "proxies": proxy_counts(source, destination)})
                log(f"link run {run + 1}: {seconds:.1f} s, {mb / seconds:.1f} MB/s")
            small = uids[: args.memory_studies]
            destination.orthanc.clear()
            log(f"the job with {len(small)} studies (memory)")
            results["small"] = await job(
                server_env(workdir, source, destination, workdir / "dl-small"), small, source, destination
            )
            check_whole(destination.orthanc, small, per_study)
            for run in range(args.runs):
                destination.orthanc.clear()
                env = server_env(workdir, source, destination, workdir / f"dl-{run}")
                measured = await job(env, uids, source, destination)
                check_whole(destination.orthanc, uids, per_study)
                runs.append(measured)
                log(
                    f"job run {run + 1}: {measured['seconds']:.1f} s, {mb / measured['seconds']:.1f} MB/s, "
                    f"RSS {measured['memory']}"
                )
            restart = None
            if not args.no_restart:
                destination.orthanc.clear()
                kill_at = max(1, len(uids) // 3)
                log(f"the job killed with SIGKILL after {kill_at} studies, then resumed")
                env = server_env(workdir, source, destination, workdir / "dl-killed")
                restart = await killed(env, uids, source, destination, kill_at)
                counts = check_whole(destination.orthanc, uids, per_study)
                restart["instances_per_study"] = sorted(set(counts.values()))
    link_s = statistics.median(r["seconds"] for r in links)
    job_s = statistics.median(r["seconds"] for r in runs)
    last = runs[-1]
    results |= {
        "link": {
            "seconds": link_s,
            "mb_per_s": mb / link_s,
            "studies_per_s": len(uids) / link_s,
            "runs": links,
        },
        "job": {"seconds": job_s, "mb_per_s": mb / job_s, "studies_per_s": len(uids) / job_s, "runs": runs},
        "ratio_to_link": link_s / job_s,
        "restart": restart,
    }
    memory_small, memory_full = results["small"]["memory"], last["memory"]
    where = f"WAN {args.rtt_ms:g} ms RTT, {args.conn_mbit:g} Mbit/s a connection" if args.wan else "loopback"
    print(
        f"\nCohort of {len(uids)} studies ({per_study} instances, {mb / len(uids) * 1000:.0f} KB each; "
        f"{mb:.0f} MB), {where}; {concurrency} studies at once; median of {args.runs} runs\n"
    )
    print("| | seconds | studies/s | MB/s | requests, connections |\n|---|---|---|---|---|")
    print(
        f"| link: GET + POST a study, {concurrency} at once | {link_s:.1f} | {len(uids) / link_s:.1f} "
        f"| {mb / link_s:.1f} | {requests_line(links[-1]['proxies'])} |"
    )
    print(
        f"| cohort job (start_cohort, cohort_status) | {job_s:.1f} | {len(uids) / job_s:.1f} "
        f"| {mb / job_s:.1f} | {requests_line(last['proxies'])} |"
    )
    print("\n| server RSS MiB | start | peak (sampled) | end | VmHWM |\n|---|---|---|---|---|")
    for label, used in ((f"{len(small)} studies", memory_small), (f"{len(uids)} studies", memory_full)):
        print(
            f"| {label} | {used['start_mib']:.0f} | {used['peak_mib']:.0f} | {used['end_mib']:.0f} "
            f"| {used['hwm_mib']:.0f} |"
        )
    growth = max(
        memory_full["peak_mib"] - memory_full["start_mib"],
        memory_small["peak_mib"] - memory_small["start_mib"],
    )
    drift = memory_full["peak_mib"] - memory_small["peak_mib"]
    checks = [
        (f"throughput >= {LINK_RATIO}x the link", link_s / job_s >= LINK_RATIO, f"{link_s / job_s:.2f}x"),
        (f"memory: peak - start <= {MAX_GROWTH_MIB:g} MiB", growth <= MAX_GROWTH_MIB, f"{growth:.0f} MiB"),
        (
            f"memory flat: peak({len(uids)}) - peak({len(small)}) <= {MAX_PEAK_DRIFT_MIB:g} MiB",
            drift <= MAX_PEAK_DRIFT_MIB,
            f"{drift:.0f} MiB",
        ),
    ]
    if restart is not None:
        checks += restart_checks(restart, last, len(uids), per_study)
    results["targets"] = [{"target": name, "met": met, "measured": shown} for name, met, shown in checks]
    for name, met, shown in checks:
        print(f"{'met   ' if met else 'MISSED'} {name}: {shown}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cohort.json").write_text(json.dumps(results, indent=1))
    return [name for name, met, _ in checks if not met]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument(
        "--memory-studies", type=int, default=100, help="the smaller job memory is compared with"
    )
    parser.add_argument("--instances", type=int, default=4, help="a study's instances (in two series)")
    parser.add_argument("--size", type=int, default=224, help="rows and columns of each image")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--wan", action="store_true", help="the proxies shape as a WAN (else they only count)"
    )
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--conn-mbit", type=float, default=100.0)
    parser.add_argument("--total-mbit", type=float, default=1000.0)
    parser.add_argument("--no-restart", action="store_true", help="leave out the SIGKILL part (tuning runs)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    # A missed target fails the run, so a script that runs the benchmark notices it.
    sys.exit(1 if anyio.run(main, parser.parse_args()) else 0)
