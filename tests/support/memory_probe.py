"""Run in a fresh process by the memory tests: retrieve a whole study to disk, or store a directory,
and report the peak RSS growth.

Peak RSS is read from /proc/self/status (VmHWM), reset after the warm-up through /proc/self/clear_refs.
getrusage's ru_maxrss would not do: a child inherits the peak of the parent it was forked from, which
hides any growth smaller than the parent's size.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from dicomweb_mcp import Config, DicomWebClient, StoreStatus, collect_dicom_files
from dicomweb_mcp.files.store import FileStore
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


async def main(mode: str, url: str, study_uid: str, directory: Path) -> None:
    async with DicomWebClient(Config(url=url, timeout=120)) as client:
        await client.search_studies({"StudyInstanceUID": study_uid})
        if mode == "retrieve":
            baseline = reset_peak_rss()
            async with client.stream_instances(study_uid) as reader:
                saved = await save_all(FileStore(directory), reader, directory)
            count, size = len(saved), sum(f.size_bytes for f in saved)
        else:  # store: every file under directory, streamed from disk
            files, _ = collect_dicom_files([directory])
            baseline = reset_peak_rss()
            outcomes = await client.store_instances(files)
            count = sum(o.status is StoreStatus.STORED for o in outcomes)
            size = sum(f.size for f in files)
        peak = peak_rss_kib()
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "files": count, "bytes": size}))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]))
