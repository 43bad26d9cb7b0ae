"""The tutorial's three instances as the tests use them: generated once per session, read as DicomFiles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dicomweb_mcp import DicomFile, read_dicom_file
from tests.support.tutorial import write_tutorial_files

REPO = Path(__file__).resolve().parents[2]


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


def make_samples(directory: Path) -> Samples:
    """Write the tutorial files into ``directory`` and read them back as the store tool would."""
    files = {}
    for name, path in write_tutorial_files(directory).items():
        result = read_dicom_file(path)
        assert isinstance(result, DicomFile), f"generated sample {name} is unreadable: {result}"
        files[name.split("-")[0]] = result
    return Samples(**files)
