"""Generated images with known values, for the rendering tests and the benchmark: CT slices with bands of
known Hounsfield units (air, lung, soft tissue, bone) stored through a rescale, MONOCHROME1, multi-frame,
JPEG baseline (grey and colour), and a noisy chest-like phantom whose JPEG size is realistic."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

UID_ROOT = "1.2.826.0.1.3680043.8.498."
# Four vertical bands, left to right: air, lung, soft tissue, bone.
HU_BANDS = (-1000, -700, 40, 1000)
PATIENT = {
    "PatientName": "Look^Test",
    "PatientID": "LOOK1",
    "PatientBirthDate": "19600203",
    "PatientSex": "M",
    "StudyDate": "20240315",
    "StudyTime": "101500",
    "StudyDescription": "CT CHEST",
    "AccessionNumber": "ACC42",
    "ReferringPhysicianName": "Referring^Doctor",
    "StudyID": "1",
}


def uid() -> str:
    return generate_uid(prefix=UID_ROOT)


@dataclass(frozen=True)
class Instance:
    path: Path
    study_uid: str
    series_uid: str
    instance_uid: str

    @property
    def reference(self) -> dict[str, str]:
        return {"study_uid": self.study_uid, "series_uid": self.series_uid, "instance_uid": self.instance_uid}


def base_dataset(
    sop_class: str, *, study_uid: str, series_uid: str, modality: str, **attributes: Any
) -> Dataset:
    """A dataset with file meta, patient and study attributes; ``attributes`` override or add."""
    instance_uid = uid()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = instance_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = instance_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    for keyword, value in {**PATIENT, **attributes}.items():
        setattr(ds, keyword, value)
    return ds


def save(ds: Dataset, directory: Path) -> Instance:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return Instance(path, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def banded_hu(rows: int, columns: int) -> np.ndarray:
    hu = np.empty((rows, columns), dtype=np.int16)
    for index, value in enumerate(HU_BANDS):
        hu[:, index * columns // 4 : (index + 1) * columns // 4] = value
    return hu


def band_centres(width: int) -> list[int]:
    """The x of each band's middle in a picture ``width`` pixels wide."""
    return [int((index + 0.5) * width / 4) for index in range(4)]


def phantom_hu(size: int, seed: int = 0, level: int = 0) -> np.ndarray:
    """A chest-like slice: air, a soft-tissue body, two lungs, a spine; noise as a scanner has it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    hu = np.full((size, size), -1000.0)
    hu[((x - 0.5) / 0.42) ** 2 + ((y - 0.5) / 0.32) ** 2 <= 1] = 40 + level
    for centre in (0.32, 0.68):
        hu[((x - centre) / 0.14) ** 2 + ((y - 0.47) / 0.22) ** 2 <= 1] = -800
    hu[((x - 0.5) / 0.05) ** 2 + ((y - 0.72) / 0.05) ** 2 <= 1] = 900
    hu += rng.normal(0, 12, hu.shape)
    return np.clip(hu, -1024, 3000).astype(np.int16)


def ct_dataset(
    hu: np.ndarray,
    *,
    study_uid: str,
    series_uid: str,
    slope: float = 1.0,
    intercept: float = -1024.0,
    window: tuple[float, float] | None = (40, 400),
    photometric: str = "MONOCHROME2",
    **attributes: Any,
) -> Dataset:
    """A CT image storing ``hu`` (one frame, or frames along the first axis) through slope and intercept."""
    frames = hu.shape[0] if hu.ndim == 3 else 1
    rows, columns = hu.shape[-2:]
    ds = base_dataset(CTImageStorage, study_uid=study_uid, series_uid=series_uid, modality="CT", **attributes)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if frames > 1:
        ds.NumberOfFrames = frames
    stored = np.rint((hu.astype(np.float64) - intercept) / slope).astype(np.int16)
    ds.PixelData = stored.tobytes()
    return ds


def axial_ct(
    hu: np.ndarray,
    *,
    study_uid: str,
    series_uid: str,
    number: int,
    z: float,
    origin: tuple[float, float] = (0.0, 0.0),
    spacing: float = 1.0,
    **attributes: Any,
) -> Dataset:
    """``ct_dataset`` as the ``number``th axial slice of a series: its first pixel at ``(*origin, z)``
    in the patient's coordinates, pixels ``spacing`` mm apart."""
    return ct_dataset(
        hu,
        study_uid=study_uid,
        series_uid=series_uid,
        InstanceNumber=number,
        ImagePositionPatient=[*origin, z],
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
        PixelSpacing=[spacing, spacing],
        **attributes,
    )


def ct_slice(
    directory: Path, *, study_uid: str | None = None, series_uid: str | None = None, **kw: Any
) -> Instance:
    """A 512 x 512 CT slice of the four HU bands (rows and columns can be given too)."""
    rows, columns = kw.pop("rows", 512), kw.pop("columns", 512)
    ds = ct_dataset(
        banded_hu(rows, columns), study_uid=study_uid or uid(), series_uid=series_uid or uid(), **kw
    )
    return save(ds, directory)


def jpeg_dataset(
    pixels: np.ndarray, *, study_uid: str, series_uid: str, quality: int = 95, **attributes: Any
) -> Dataset:
    """8-bit grey (2-D) or RGB (3-D) pixels compressed as JPEG baseline by Pillow and encapsulated
    (pydicom has no JPEG baseline encoder); RGB is stored as YBR_FULL_422, as cameras and archives do."""
    colour = pixels.ndim == 3
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB" if colour else "L").save(buffer, "JPEG", quality=quality)
    sop = SecondaryCaptureImageStorage
    ds = base_dataset(sop, study_uid=study_uid, series_uid=series_uid, modality="OT", **attributes)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.ConversionType = "SYN"
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "YBR_FULL_422" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    return ds
