"""Retrieving or storing a study larger than 200 MB keeps the client's memory bounded (peak RSS)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest

from dicomweb_mcp import DicomWebClient, StoreStatus, collect_dicom_files
from tests.conftest import REPO
from tests.synthetic import make_study

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

INSTANCES = 48
ROWS = COLUMNS = 1536  # 4.5 MiB of pixel data each: 216 MiB in all
MAX_GROWTH_MIB = 64


async def test_large_retrieve_memory_is_bounded(client: DicomWebClient, tmp_path: Path) -> None:
    make_study(tmp_path / "source", instances=INSTANCES, series=2, rows=ROWS, columns=COLUMNS, seed=200)
    files, skipped = collect_dicom_files([tmp_path / "source"])
    assert not skipped and len(files) == INSTANCES
    total = sum(f.size for f in files)
    assert total > 200 * 1024 * 1024
    outcomes = await client.store_instances(files, batch_count=16)
    assert all(o.status is StoreStatus.STORED for o in outcomes)

    result = await anyio.run_process(
        [
            sys.executable,
            "-m",
            "tests.memory_probe",
            "retrieve",
            client.config.url,
            files[0].study_uid,
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    growth_mib = (report["peak_kib"] - report["baseline_kib"]) / 1024
    print(
        f"retrieved {report['bytes'] / 2**20:.0f} MiB in {report['files']} files; peak RSS growth {growth_mib:.1f} MiB"
    )
    assert report["files"] == INSTANCES
    assert report["bytes"] == total  # stored as sent, returned as stored
    assert growth_mib < MAX_GROWTH_MIB
    first = files[0]
    saved = tmp_path / "out" / first.study_uid / first.series_uid / f"{first.instance_uid}.dcm"
    assert saved.read_bytes() == first.path.read_bytes()


async def test_large_store_memory_is_bounded(client: DicomWebClient, tmp_path: Path) -> None:
    make_study(tmp_path / "source", instances=INSTANCES, series=2, rows=ROWS, columns=COLUMNS, seed=201)
    files, _ = collect_dicom_files([tmp_path / "source"])
    total = sum(f.size for f in files)
    assert total > 200 * 1024 * 1024
    result = await anyio.run_process(
        [
            sys.executable,
            "-m",
            "tests.memory_probe",
            "store",
            client.config.url,
            files[0].study_uid,
            str(tmp_path / "source"),
        ],
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    growth_mib = (report["peak_kib"] - report["baseline_kib"]) / 1024
    print(
        f"stored {report['bytes'] / 2**20:.0f} MiB in {report['files']} files; peak RSS growth {growth_mib:.1f} MiB"
    )
    assert report["files"] == INSTANCES and report["bytes"] == total
    assert growth_mib < MAX_GROWTH_MIB
    stored = await client.search_instances(study_uid=files[0].study_uid, limit=100)
    assert len(stored.datasets) == INSTANCES
