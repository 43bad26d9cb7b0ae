"""Synthetic DICOM studies made with pydicom, deterministic from a seed (tests and benchmarks)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root, for test data only


def _uid(rng: random.Random) -> str:
    return generate_uid(prefix=UID_ROOT, entropy_srcs=[str(rng.random())])


def _write_image(
    path: Path, rng: random.Random, *, rows: int, columns: int, frames: int = 1, **attributes: Any
) -> Path:
    """One 16-bit monochrome secondary-capture instance with random pixels and the given attributes."""
    sop_uid = _uid(rng)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = rng.randbytes(rows * columns * 2 * frames)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_study(
    directory: Path,
    *,
    instances: int,
    series: int = 1,
    rows: int = 64,
    columns: int = 64,
    frames: int = 1,
    seed: int = 0,
    patient_name: str = "Synthetic^Patient",
) -> list[Path]:
    """Write one study of ``instances`` 16-bit monochrome images spread over ``series`` series."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    study_uid = _uid(rng)
    series_uids = [_uid(rng) for _ in range(series)]
    return [
        _write_image(
            directory / f"{index:05d}.dcm",
            rng,
            rows=rows,
            columns=columns,
            frames=frames,
            StudyInstanceUID=study_uid,
            SeriesInstanceUID=series_uids[index % series],
            PatientName=patient_name,
            PatientID=f"SYN{seed}",
            StudyDate="20240102",
            StudyTime="101500",
            Modality="OT",
            SeriesNumber=index % series + 1,
            InstanceNumber=index + 1,
        )
        for index in range(instances)
    ]


def make_search_corpus(directory: Path, *, studies: int, seed: int = 0) -> list[Path]:
    """``studies`` one-instance studies with varied patients and dates (2015-2024), for search benchmarks."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    return [
        _write_image(
            directory / f"{index:05d}.dcm",
            rng,
            rows=8,
            columns=8,
            StudyInstanceUID=_uid(rng),
            SeriesInstanceUID=_uid(rng),
            PatientName=f"Patient{index % 997:03d}^Given{index % 13}",
            PatientID=f"P{index % 997:03d}",
            PatientBirthDate=f"19{40 + index % 60:02d}0101",
            PatientSex="MF"[index % 2],
            StudyDate=f"{2015 + index % 10}{1 + index % 12:02d}{1 + index % 28:02d}",
            StudyTime="083000",
            AccessionNumber=f"ACC{index:06d}",
            StudyDescription=["CT CHEST", "MR BRAIN", "CR THORAX", "US ABDOMEN"][index % 4],
            ReferringPhysicianName="Referring^Doctor",
            Modality=["CT", "MR", "CR", "US"][index % 4],
            SeriesNumber=1,
            InstanceNumber=1,
        )
        for index in range(studies)
    ]
