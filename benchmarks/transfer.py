"""The transfer benchmark: one study copied from one Orthanc to another, four ways.

    python -m benchmarks.transfer [--mb 200 --runs 3] [--wan --rtt-ms 40]

- ``transfer``: this project's transfer_instances (WADO-RS streamed through a bounded spool into STOW-RS).
- ``transfer-deid``: the same with deidentify=true (PS3.15 Basic Profile applied to every instance).
- ``retrieve+store``: this project's retrieve_instances to disk, then store_instances of that directory.
- ``dicomweb-client``: dicomweb-client's retrieve_study (the instances as pydicom data sets, in memory)
  then store_instances of those data sets, the natural way to copy a study with that library.

The study is made with pydicom (fixed seed: 512 x 512 16-bit images, about 0.5 MB each, in 4 series) and
stored into the source once. Every case runs in a fresh process (tests/support style: peak RSS from
/proc/self/status VmHWM, reset after the imports and a first request), after the destination is emptied,
and counts as done only when the destination then holds every instance. Cases run in a different order
each run; times and peaks are medians. With ``--wan`` each Orthanc sits behind benchmarks/wanproxy.py (a
shaping proxy on loopback: RTT, per-connection and total rates). Results also go to
benchmarks/results/transfer.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio

from benchmarks.wanproxy import WanProxy
from dicomweb_mcp import DicomWebClient, collect_dicom_files
from dicomweb_mcp.config import ServerConfig
from tests.support.orthanc import Orthanc
from tests.support.synthetic import make_study

REPO = Path(__file__).resolve().parents[1]
CASES = ("transfer", "transfer-deid", "retrieve+store", "dicomweb-client")
INSTANCE_BYTES = 512 * 512 * 2
TIMEOUT = 900


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def servers(workdir: Path, args: argparse.Namespace) -> Iterator[tuple[Orthanc, Orthanc, str, str]]:
    """Two Orthancs, and the DICOMweb URLs to reach them (through a WAN proxy each with --wan)."""
    with ExitStack() as stack:
        ends = []
        for name in ("source", "destination"):
            orthanc = Orthanc(workdir / name).start()
            stack.callback(orthanc.stop)
            url = orthanc.dicomweb_url
            if args.wan:
                proxy = WanProxy(orthanc.port, rtt_ms=args.rtt_ms, conn_mbit=args.conn_mbit, max_seconds=3600)
                proxy.start()
                stack.callback(proxy.stop)
                url = proxy.url("/dicom-web")
            ends.append((orthanc, url))
        (source, source_url), (destination, destination_url) = ends
        yield source, destination, source_url, destination_url


def prepare(workdir: Path, source: Orthanc, megabytes: int) -> tuple[str, int, int]:
    """The study in the source: its UID, instance count and bytes."""
    instances = max(8, megabytes * 1_000_000 // INSTANCE_BYTES)
    paths = make_study(workdir / "study", instances=instances, series=4, rows=512, columns=512, seed=12)
    files, _ = collect_dicom_files(paths)

    async def store() -> None:
        async with DicomWebClient(ServerConfig(url=source.dicomweb_url, timeout=300)) as client:
            await client.store_instances(files)

    anyio.run(store)
    assert source.statistics()["CountInstances"] == instances
    return files[0].study_uid, instances, sum(f.size for f in files)


def run_case(case: str, source: str, destination: str, study_uid: str, workdir: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.transfer_case",
            case,
            source,
            destination,
            study_uid,
            str(workdir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{result.stderr[-2000:]}")
    return dict(json.loads(result.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=200, help="study size")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--wan", action="store_true", help="each Orthanc behind a shaping proxy")
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--conn-mbit", type=float, default=100.0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    cases = args.cases.split(",")
    with tempfile.TemporaryDirectory(prefix="dicomweb-transfer-") as temporary:
        workdir = Path(temporary)
        with servers(workdir, args) as (source, destination, source_url, destination_url):
            log(f"making and storing a {args.mb} MB study in the source")
            study_uid, instances, size = prepare(workdir, source, args.mb)
            log(f"{instances} instances, {size / 1e6:.1f} MB; {args.runs} runs of {', '.join(cases)}")
            samples: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
            for run in range(args.runs):
                order = cases[run % len(cases) :] + cases[: run % len(cases)]
                for case in order:
                    destination.clear()
                    sample = run_case(case, source_url, destination_url, study_uid, workdir / f"run-{case}")
                    held = destination.statistics()["CountInstances"]
                    if held != instances:
                        raise RuntimeError(f"{case}: the destination holds {held} of {instances} instances")
                    samples[case].append(sample)
                    log(
                        f"run {run + 1} {case}: {sample['seconds']:.2f} s, peak +{sample['peak_mib']:.0f} MiB"
                    )
    report: dict[str, Any] = {
        "study": {"instances": instances, "bytes": size},
        "wan": {"rtt_ms": args.rtt_ms, "conn_mbit": args.conn_mbit} if args.wan else None,
        "cases": {},
    }
    print(f"\ntransfer of {instances} instances, {size / 1e6:.0f} MB ({'WAN' if args.wan else 'loopback'}):")
    print(f"  {'case':<18} {'seconds':>8} {'MB/s':>7} {'peak RSS +MiB':>14} {'vs transfer':>12}")
    base = statistics.median(s["seconds"] for s in samples[cases[0]]) if "transfer" in cases else None
    for case in cases:
        seconds = statistics.median(s["seconds"] for s in samples[case])
        peak = statistics.median(s["peak_mib"] for s in samples[case])
        ratio = f"{seconds / base:.2f}x" if base else "-"
        report["cases"][case] = {"seconds": seconds, "mb_per_s": size / 1e6 / seconds, "peak_mib": peak}
        print(f"  {case:<18} {seconds:>8.2f} {size / 1e6 / seconds:>7.1f} {peak:>14.1f} {ratio:>12}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
