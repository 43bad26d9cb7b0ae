"""One measurement, run in a fresh process so that its peak RSS is its own.

    python -m benchmarks.measure CASE TOOL '{"json": "arguments"}'

prints one JSON object: seconds, bytes, items, rss_base_kib (after imports and warm-up), rss_peak_kib
(VmHWM, reset after the warm-up: getrusage would report the forking parent's peak). For curl, the numbers
are curl's own, its peak RSS measured by GNU time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from dicomweb_mcp import Config, DicomWebClient, resolve_attribute
from dicomweb_mcp.tools.context import no_progress
from dicomweb_mcp.tools.retrieve import retrieve_frames, retrieve_instances
from dicomweb_mcp.tools.write import store_instances
from tests.support.mcp import tool_context
from tests.support.memory_probe import peak_rss_kib, reset_peak_rss

Result = dict[str, Any]
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'


def measured(seconds: float, size: int, items: int, base: int) -> Result:
    return {
        "seconds": seconds,
        "bytes": size,
        "items": items,
        "rss_base_kib": base,
        "rss_peak_kib": peak_rss_kib(),
    }


def dir_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


# ---- this project -----------------------------------------------------------------------------------


async def ours(case: str, a: dict[str, Any]) -> Result:
    config = Config.single(url=a["url"], download_dir=Path(a["out"]), timeout=600, server_kind="orthanc")  # type: ignore[arg-type]
    async with DicomWebClient(config.server) as client:
        app = tool_context(config, client)
        await client.search_studies(limit=1)  # warm: connection open, kind known
        resolve_attribute("PatientName")  # the DICOM dictionary loads on first use: once, not per study
        base = reset_peak_rss()
        started = time.perf_counter()
        if case in ("retrieve-large", "retrieve-many"):
            result = await retrieve_instances(app, no_progress, study_uid=a["study"])
            size, items = result.total_bytes, result.file_count
        elif case in ("frames", "frames-each"):
            frames = list(range(1, a["frames"] + 1))
            batches = [frames] if case == "frames" else [[n] for n in frames]
            size = items = 0
            for batch in batches:
                got = await retrieve_frames(
                    app,
                    study_uid=a["study"],
                    series_uid=a["series"],
                    instance_uid=a["instance"],
                    frames=batch,
                )
                size += got.total_bytes
                items += got.frame_count
        elif case in ("store-many", "store-large"):
            stored = await store_instances(app, no_progress, paths=[a["source"]])
            assert stored.counts.failed == 0 and stored.counts.skipped == 0, stored.counts
            items = stored.counts.stored + stored.counts.already_present
            size = sum(p.stat().st_size for p in Path(a["source"]).rglob("*") if p.is_file())
        else:
            raise SystemExit(f"unknown case {case}")
        seconds = time.perf_counter() - started
    return measured(seconds, size, items, base)


# ---- dicomweb-client --------------------------------------------------------------------------------


def dicomweb_client(case: str, a: dict[str, Any]) -> Result:
    from dicomweb_client.api import DICOMwebClient
    from pydicom import dcmread

    client = DICOMwebClient(url=a["url"])
    client.search_for_studies(limit=1)
    base = reset_peak_rss()
    out = Path(a["out"])
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    size = items = 0
    if case in ("retrieve-large", "retrieve-many"):
        # The documented way to walk a study: iterate its datasets and save each one.
        for ds in client.iter_study(a["study"], media_types=(("application/dicom", "*"),)):
            path = out / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            size += path.stat().st_size
            items += 1
    elif case in ("frames", "frames-each"):
        frames = list(range(1, a["frames"] + 1))
        batches = [frames] if case == "frames" else [[n] for n in frames]
        for batch in batches:
            for number, data in zip(
                batch,
                client.retrieve_instance_frames(
                    a["study"],
                    a["series"],
                    a["instance"],
                    batch,
                    media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),),
                ),
                strict=True,
            ):
                (out / f"frame-{number}.raw").write_bytes(data)
                size += len(data)
                items += 1
    elif case in ("store-many", "store-large"):
        files = sorted(p for p in Path(a["source"]).rglob("*.dcm"))
        batch_count = a.get("batch", 100)
        for start in range(0, len(files), batch_count):
            datasets = [dcmread(p) for p in files[start : start + batch_count]]
            client.store_instances(datasets)
            items += len(datasets)
            size += sum(p.stat().st_size for p in files[start : start + batch_count])
    else:
        raise SystemExit(f"unknown case {case}")
    seconds = time.perf_counter() - started
    return measured(seconds, size, items, base)


# ---- curl: the wire --------------------------------------------------------------------------------


def curl(case: str, a: dict[str, Any]) -> Result:
    binary = shutil.which("curl") or "/usr/bin/curl"
    out = Path(a["out"])
    out.mkdir(parents=True, exist_ok=True)
    command = [binary, "-sS", "--fail"]
    if case in ("retrieve-large", "retrieve-many"):
        command += [
            "-H",
            f"Accept: {ACCEPT_DICOM}",
            "-o",
            str(out / "study.multipart"),
            f"{a['url']}/studies/{a['study']}",
        ]
    elif case in ("frames", "frames-each"):
        base = f"{a['url']}/studies/{a['study']}/series/{a['series']}/instances/{a['instance']}/frames/"
        if case == "frames":
            command += ["-H", f"Accept: {ACCEPT_FRAMES}", "-o", str(out / "frames.multipart")]
            command.append(base + ",".join(str(n) for n in range(1, a["frames"] + 1)))
        else:  # one transfer per frame, one connection reused, as a client looping over frames would
            command += ["-H", f"Accept: {ACCEPT_FRAMES}"]
            for n in range(1, a["frames"] + 1):
                command += ["-o", str(out / f"frame-{n}.multipart"), base + str(n)]
    elif case in ("store-many", "store-large"):
        # The same multipart batches, built beforehand (untimed): the wire limit of posting them.
        first = True
        for body in sorted(Path(a["bodies"]).glob("*.multipart")):
            if not first:
                command.append("--next")
            first = False
            boundary = body.with_suffix(".boundary").read_text()
            command += [
                "-sS",
                "--fail",
                "-o",
                "/dev/null",
                "-H",
                f'Content-Type: multipart/related; type="application/dicom"; boundary={boundary}',
                "-H",
                "Accept: application/dicom+json",
                # Stream the file (--data-binary @ would load it into memory) and do not wait a second
                # for a "100 Continue" that Orthanc never sends.
                "-H",
                "Expect:",
                "-X",
                "POST",
                "-T",
                str(body),
                f"{a['url']}/studies",
            ]
    else:
        raise SystemExit(f"unknown case {case}")
    # GNU time forks a small process and reports curl's own peak RSS (%M, KiB) on its last stderr line.
    timer = shutil.which("time") and Path("/usr/bin/time")
    if timer and timer.exists():
        command = [str(timer), "-f", "%M", *command]
    started = time.perf_counter()
    completed = subprocess.run(command, check=True, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    lines = completed.stderr.strip().splitlines()
    peak = int(lines[-1]) if timer and lines and lines[-1].isdigit() else 0
    if case.startswith("store"):
        size = sum(p.stat().st_size for p in Path(a["bodies"]).glob("*.multipart"))
        items = a["items"]
    else:
        size, items = dir_size(out)
        items = a.get("items", items)
    return {"seconds": seconds, "bytes": size, "items": items, "rss_base_kib": 0, "rss_peak_kib": peak}


TOOLS: dict[str, Callable[[str, dict[str, Any]], Result]] = {
    "ours": lambda case, arguments: anyio.run(ours, case, arguments),
    "dicomweb-client": dicomweb_client,
    "curl": curl,
}


def main() -> None:
    case, tool, arguments = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    print(json.dumps(TOOLS[tool](case, arguments)))


if __name__ == "__main__":
    main()
