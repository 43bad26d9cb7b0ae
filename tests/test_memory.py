"""Retrieving, storing or transferring a study larger than 200 MB keeps the client's memory bounded (peak
RSS)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from dicomweb_mcp import DicomFile, DicomWebClient, StoreStatus, collect_dicom_files
from dicomweb_mcp.dicom.reference import Reference
from tests.support.orthanc import Orthanc
from tests.support.samples import REPO
from tests.support.synthetic import make_study

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

INSTANCES = 48
ROWS = COLUMNS = 1536  # 4.5 MiB of pixel data each: 216 MiB in all
MAX_GROWTH_MIB = 64


def large_study(directory: Path, seed: int) -> list[DicomFile]:
    make_study(directory, instances=INSTANCES, series=2, rows=ROWS, columns=COLUMNS, seed=seed)
    files, skipped = collect_dicom_files([directory])
    assert not skipped and len(files) == INSTANCES
    assert sum(f.size for f in files) > 200 * 1024 * 1024
    return files


async def probe(
    mode: str, url: str, study_uid: str, directory: Path, *extra: str
) -> tuple[dict[str, Any], float]:
    """Run tests.support.memory_probe in a fresh process; return its report and the peak RSS growth in MiB."""
    result = await anyio.run_process(
        [sys.executable, "-m", "tests.support.memory_probe", mode, url, study_uid, str(directory), *extra],
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    growth = (report["peak_kib"] - report["baseline_kib"]) / 1024
    print(
        f"{mode}: {report['bytes'] / 2**20:.0f} MiB in {report['files']} files; peak RSS growth {growth:.1f} MiB"
    )
    return report, growth


async def test_large_retrieve_memory_is_bounded(client: DicomWebClient, tmp_path: Path) -> None:
    files = large_study(tmp_path / "source", seed=200)
    outcomes = await client.store_instances(files, batch_count=16)
    assert all(o.status is StoreStatus.STORED for o in outcomes)
    report, growth = await probe("retrieve", client.config.url, files[0].study_uid, tmp_path / "out")
    assert report["files"] == INSTANCES
    assert report["bytes"] == sum(f.size for f in files)  # stored as sent, returned as stored
    assert growth < MAX_GROWTH_MIB
    first = files[0]
    saved = tmp_path / "out" / first.study_uid / first.series_uid / f"{first.instance_uid}.dcm"
    assert saved.read_bytes() == first.path.read_bytes()


async def test_large_store_memory_is_bounded(client: DicomWebClient, tmp_path: Path) -> None:
    files = large_study(tmp_path / "source", seed=201)
    report, growth = await probe("store", client.config.url, files[0].study_uid, tmp_path / "source")
    assert report["files"] == INSTANCES and report["bytes"] == sum(f.size for f in files)
    assert growth < MAX_GROWTH_MIB
    stored = await client.search_instances(limit=100, scope=Reference(files[0].study_uid))
    assert len(stored.datasets) == INSTANCES


async def test_large_transfer_memory_is_bounded(
    client: DicomWebClient, second_orthanc: Orthanc, tmp_path: Path
) -> None:
    second_orthanc.clear()
    files = large_study(tmp_path / "source", seed=202)
    outcomes = await client.store_instances(files, batch_count=16)
    assert all(o.status is StoreStatus.STORED for o in outcomes)
    downloads = tmp_path / "downloads"
    report, growth = await probe(
        "transfer", client.config.url, files[0].study_uid, downloads, second_orthanc.dicomweb_url
    )
    assert report["files"] == INSTANCES and report["bytes"] == sum(f.size for f in files)
    assert growth < MAX_GROWTH_MIB
    assert second_orthanc.statistics()["CountInstances"] == INSTANCES
    # The spool is bounded and removed: nothing of the study stays on local disk.
    assert not any(p.is_file() for p in downloads.rglob("*"))
