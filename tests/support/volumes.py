"""Generated image series of known geometry, for the volume tests: single-frame CT and MR slices placed by
a ``Grid`` (origin, direction cosines, spacings, the step between slices), every voxel a different value so
that a voxel found in a NIfTI file says which DICOM pixel it came from; and an enhanced multi-frame CT or
MR object built from such a series, its geometry and rescale only in functional groups."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedCTImageStorage, EnhancedMRImageStorage, MRImageStorage

from tests.support.imaging import base_dataset, ct_dataset, save, uid

Vector = tuple[float, float, float]


@dataclass(frozen=True)
class Grid:
    """Where the slices of a generated series lie (LPS, mm); ``step`` goes from one slice to the next."""

    origin: Vector = (0.0, 0.0, 0.0)
    row: Vector = (1.0, 0.0, 0.0)
    column: Vector = (0.0, 1.0, 0.0)
    step: Vector = (0.0, 0.0, 2.5)
    pixel_spacing: tuple[float, float] = (0.7, 0.9)  # between rows, between columns
    rows: int = 6
    columns: int = 8
    slices: int = 5

    def position(self, k: int) -> list[float]:
        return [self.origin[a] + k * self.step[a] for a in range(3)]


def unique_values(grid: Grid, *, first: int) -> np.ndarray:
    """(slices, rows, columns) values, each different: ``first``, ``first + 1``, ..."""
    count = grid.slices * grid.rows * grid.columns
    return (np.arange(count, dtype=np.int64) + first).reshape(grid.slices, grid.rows, grid.columns)


def mr_dataset(values: np.ndarray, *, study_uid: str, series_uid: str, **attributes: Any) -> Dataset:
    """An MR image storing ``values`` as unsigned 16-bit pixels, no rescale."""
    ds = base_dataset(MRImageStorage, study_uid=study_uid, series_uid=series_uid, modality="MR", **attributes)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = values.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = values.astype(np.uint16).tobytes()
    return ds


def series(
    directory: Path,
    grid: Grid,
    *,
    modality: str = "CT",
    order: str = "shuffled",
    seed: int = 0,
    values: np.ndarray | None = None,
    **kw: Any,
) -> list[Path]:
    """One file per slice of ``grid``; the list in ``order``: ``sorted``, ``reversed`` or ``shuffled``.
    ``values`` (slices, rows, columns), else each different: CT stores Hounsfield units from -1000 through
    its rescale (``slope``, ``intercept`` among ``kw``), MR values from 1."""
    study_uid, series_uid = uid(), uid()
    if values is None:
        values = unique_values(grid, first=-1000 if modality == "CT" else 1)
    assert values.shape == (grid.slices, grid.rows, grid.columns)
    common = {
        "ImageOrientationPatient": [*grid.row, *grid.column],
        "PixelSpacing": list(grid.pixel_spacing),
        "SeriesDescription": "volume test",
        "Manufacturer": "Acme",
        "ManufacturerModelName": "Scan 1",
        **kw,
    }
    paths = []
    for k in range(grid.slices):
        attributes = {**common, "ImagePositionPatient": grid.position(k), "InstanceNumber": k + 1}
        if modality == "CT":
            attributes.setdefault("KVP", 120)
            ds = ct_dataset(values[k], study_uid=study_uid, series_uid=series_uid, **attributes)
        else:
            attributes = {"EchoTime": 30, "RepetitionTime": 2000, "MagneticFieldStrength": 3, **attributes}
            ds = mr_dataset(values[k], study_uid=study_uid, series_uid=series_uid, **attributes)
        paths.append(save(ds, directory).path)
    if order == "reversed":
        paths.reverse()
    elif order == "shuffled":
        random.Random(seed).shuffle(paths)
    return paths


# Attributes that move into functional groups in an enhanced object (PS3.3 C.7.6.16.2).
_PER_FRAME = ("ImagePositionPatient",)
_SHARED = ("ImageOrientationPatient", "PixelSpacing", "SliceThickness", "RescaleSlope", "RescaleIntercept")


def enhanced(paths: list[Path], directory: Path, *, seed: int = 1) -> Path:
    """One enhanced multi-frame object with the frames of the single-frame files ``paths``, in shuffled
    order; geometry, rescale and MR timing only in functional groups, none at the top level."""
    sources = [pydicom.dcmread(p) for p in paths]
    random.Random(seed).shuffle(sources)
    first = sources[0]
    mr = first.Modality == "MR"
    sop = EnhancedMRImageStorage if mr else EnhancedCTImageStorage
    ds = base_dataset(sop, study_uid=first.StudyInstanceUID, series_uid=uid(), modality=first.Modality)
    for keyword in ("SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
                    "BitsStored", "HighBit", "PixelRepresentation", "SeriesDescription", "Manufacturer",
                    "ManufacturerModelName", "KVP", "MagneticFieldStrength"):  # fmt: skip
        if keyword in first:
            setattr(ds, keyword, first.get(keyword))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.NumberOfFrames = len(sources)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = first.PixelSpacing
    if "SliceThickness" in first:
        measures.SliceThickness = first.SliceThickness
    shared.PixelMeasuresSequence = Sequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = first.ImageOrientationPatient
    shared.PlaneOrientationSequence = Sequence([orientation])
    if "RescaleSlope" in first:
        transformation = Dataset()
        transformation.RescaleSlope, transformation.RescaleIntercept = (
            first.RescaleSlope,
            first.RescaleIntercept,
        )
        transformation.RescaleType = first.get("RescaleType", "US")
        shared.PixelValueTransformationSequence = Sequence([transformation])
    if mr:
        timing = Dataset()
        timing.RepetitionTime, timing.FlipAngle = first.RepetitionTime, 15
        shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for source in sources:
        group, position = Dataset(), Dataset()
        position.ImagePositionPatient = source.ImagePositionPatient
        group.PlanePositionSequence = Sequence([position])
        if mr:
            echo = Dataset()
            echo.EffectiveEchoTime = source.EchoTime
            group.MREchoSequence = Sequence([echo])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    for keyword in (*_PER_FRAME, *_SHARED, "EchoTime", "RepetitionTime"):
        assert keyword not in ds, keyword  # geometry must come from the functional groups
    ds.PixelData = b"".join(source.PixelData for source in sources)
    return save(ds, directory).path


def ras_of_pixels(paths: list[Path]) -> dict[int, np.ndarray]:
    """For every stored value of single-frame ``paths`` (after rescale), the RAS coordinate of its pixel,
    computed from the file's own Image Position, Image Orientation and Pixel Spacing."""
    where: dict[int, np.ndarray] = {}
    for path in paths:
        ds = pydicom.dcmread(path)
        position = np.array([float(v) for v in ds.ImagePositionPatient])
        cosines = np.array([float(v) for v in ds.ImageOrientationPatient])
        row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
        values = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(
            ds.get("RescaleIntercept", 0)
        )
        for r in range(ds.Rows):
            for c in range(ds.Columns):
                lps = position + c * column_spacing * cosines[:3] + r * row_spacing * cosines[3:]
                where[round(values[r, c])] = lps * np.array([-1.0, -1.0, 1.0])
    return where
