from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicomweb_mcp import Config, DicomFile, DicomWebClient, read_dicom_file
from tests.support.orthanc import Orthanc

REPO = Path(__file__).resolve().parents[1]
# The tutorial files live beside the repository (../shared), never inside it.
SAMPLES = Path(os.environ.get("DICOMWEB_MCP_SAMPLES", REPO.parent / "shared" / "sample-dicom"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Samples:
    blue: DicomFile
    green: DicomFile
    red: DicomFile

    @property
    def all(self) -> list[DicomFile]:
        return [self.blue, self.green, self.red]

    @property
    def study_uid(self) -> str:
        return self.blue.study_uid


@pytest.fixture(scope="session")
def samples() -> Samples:
    files = {}
    for name in ("blue-circle", "green-square", "red-triangle"):
        result = read_dicom_file(SAMPLES / f"{name}.dcm")
        assert isinstance(result, DicomFile), f"sample {name} missing or unreadable in {SAMPLES}: {result}"
        files[name.split("-")[0]] = result
    return Samples(**files)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    server = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def empty_orthanc(orthanc: Orthanc) -> Orthanc:
    orthanc.clear()
    return orthanc


@pytest.fixture
def orthanc_config(empty_orthanc: Orthanc, tmp_path: Path) -> Config:
    return Config(url=empty_orthanc.dicomweb_url, download_dir=tmp_path / "downloads", timeout=30)


@pytest.fixture
async def client(orthanc_config: Config) -> AsyncIterator[DicomWebClient]:
    async with DicomWebClient(orthanc_config) as c:
        yield c
