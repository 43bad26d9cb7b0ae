"""The tutorial's three sample instances, regenerated with pydicom.

The repository stands alone: tests and the demo never read files from outside it. These functions rebuild
the tutorial's blue-circle, green-square and red-triangle files with the same UIDs and attributes, so every
figure the tutorial quotes (UIDs, search results, frame sizes) stays exact against a freshly seeded server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

TUTORIAL_STUDY_UID = "1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420"
ROWS = 979
COLUMNS = 985

_BACKGROUND = bytes((195, 195, 195))
# The originals carry these type 2 attributes empty; keep them so metadata responses match.
_EMPTY_VALUES = ("ContentDate", "AcquisitionDateTime", "ContentTime", "AccessionNumber", "PatientBirthDate")
_EMPTY_CODES = ("PatientPosition", "PatientOrientation", "Laterality")

Span = tuple[int, int] | None


@dataclass(frozen=True)
class TutorialInstance:
    name: str
    study_uid: str
    series_uid: str
    instance_uid: str
    frame_bytes: int = ROWS * COLUMNS * 3


@dataclass(frozen=True)
class _Drawing:
    series_number: int
    instance_number: int
    comment: str
    colour: bytes
    span: Callable[[int], Span]  # first and last filled column of a row, or None


# The shapes were hand-drawn in a paint program; these fits miss fewer than 140 of the ~964,000 pixels.
def _circle(row: int) -> Span:
    t = 1 - ((row - 510.5) / 275.5) ** 2
    if t <= 0:
        return None
    half = int(296.5 * math.sqrt(t) + 0.5)
    return 491 - half, 491 + half


def _square(row: int) -> Span:
    return (236, 748) if 240 <= row <= 736 else None


def _triangle(row: int) -> Span:
    if not 237 <= row <= 717:
        return None
    f = (row - 237) / 480
    return round(475.7 - 309.8 * f), round(480.3 + 308.9 * f)


TUTORIAL: tuple[TutorialInstance, ...] = (
    TutorialInstance(
        "blue-circle",
        TUTORIAL_STUDY_UID,
        "1.2.826.0.1.3680043.8.498.77033797676425927098669402985243398207",
        "1.2.826.0.1.3680043.8.498.13273713909719068980354078852867170114",
    ),
    TutorialInstance(
        "green-square",
        TUTORIAL_STUDY_UID,
        "1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652",
        "1.2.826.0.1.3680043.8.498.12714725698140337137334606354172323212",
    ),
    TutorialInstance(
        "red-triangle",
        TUTORIAL_STUDY_UID,
        "1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652",
        "1.2.826.0.1.3680043.8.498.47359123102728459884412887463296905395",
    ),
)

_DRAWINGS: dict[str, _Drawing] = {
    "blue-circle": _Drawing(2, 1, "Fake DICOM - Blue Circle", bytes((63, 72, 204)), _circle),
    "green-square": _Drawing(1, 2, "Fake DICOM - Green Square", bytes((34, 177, 76)), _square),
    "red-triangle": _Drawing(1, 1, "Fake DICOM - Red Triangle", bytes((237, 28, 36)), _triangle),
}


def _pixels(drawing: _Drawing) -> bytes:
    blank = _BACKGROUND * COLUMNS
    rows: list[bytes] = []
    for row in range(ROWS):
        span = drawing.span(row)
        if span is None:
            rows.append(blank)
        else:
            first, last = span
            rows.append(
                _BACKGROUND * first + drawing.colour * (last - first + 1) + _BACKGROUND * (COLUMNS - 1 - last)
            )
    return b"".join(rows)


def _dataset(instance: TutorialInstance) -> Dataset:
    drawing = _DRAWINGS[instance.name]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(instance.instance_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = instance.instance_uid
    ds.StudyDate = "20200922"
    ds.StudyTime = "120000"
    ds.Modality = "OT"
    ds.ConversionType = "SYN"
    ds.ReferringPhysicianName = "Doctor Doc"
    ds.PatientName = "Anony Mous"
    ds.PatientID = "ID1"
    ds.PatientSex = "F"
    ds.PatientAge = "024Y"
    ds.StudyInstanceUID = instance.study_uid
    ds.SeriesInstanceUID = instance.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = drawing.series_number
    ds.InstanceNumber = drawing.instance_number
    ds.ImageComments = drawing.comment
    for keyword in _EMPTY_VALUES + _EMPTY_CODES:
        setattr(ds, keyword, "")
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = ROWS
    ds.Columns = COLUMNS
    ds.PixelSpacing = ["1.0", "1.0"]
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.SmallestImagePixelValue = 0
    ds.LargestImagePixelValue = 255
    # Odd length on purpose, as in the originals: pydicom writes the trailing pad byte.
    ds.add_new(0x7FE00010, "OB", _pixels(drawing))
    return ds


def write_tutorial_files(directory: Path) -> dict[str, Path]:
    """Write <name>.dcm for each tutorial instance into directory, replacing any existing file."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for instance in TUTORIAL:
        path = directory / f"{instance.name}.dcm"
        _dataset(instance).save_as(path, enforce_file_format=True)
        paths[instance.name] = path
    return paths
