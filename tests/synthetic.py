"""Synthetic DICOM studies made with pydicom, deterministic from a seed (tests and benchmarks)."""

from __future__ import annotations

import random
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root, for test data only


def _uid(rng: random.Random) -> str:
    return generate_uid(prefix=UID_ROOT, entropy_srcs=[str(rng.random())])


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
    paths = []
    for index in range(instances):
        sop_uid = _uid(rng)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uids[index % series]
        ds.PatientName = patient_name
        ds.PatientID = f"SYN{seed}"
        ds.StudyDate = "20240102"
        ds.StudyTime = "101500"
        ds.Modality = "OT"
        ds.SeriesNumber = index % series + 1
        ds.InstanceNumber = index + 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.PixelData = rng.randbytes(rows * columns * 2 * frames)
        path = directory / f"{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_search_corpus(directory: Path, *, studies: int, seed: int = 0) -> list[Path]:
    """``studies`` one-instance studies with varied patients and dates (2015-2024), for search benchmarks."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(studies):
        sop_uid = _uid(rng)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = _uid(rng)
        ds.SeriesInstanceUID = _uid(rng)
        ds.PatientName = f"Patient{index % 997:03d}^Given{index % 13}"
        ds.PatientID = f"P{index % 997:03d}"
        ds.PatientBirthDate = f"19{40 + index % 60:02d}0101"
        ds.PatientSex = "MF"[index % 2]
        ds.StudyDate = f"{2015 + index % 10}{1 + index % 12:02d}{1 + index % 28:02d}"
        ds.StudyTime = "083000"
        ds.AccessionNumber = f"ACC{index:06d}"
        ds.StudyDescription = ["CT CHEST", "MR BRAIN", "CR THORAX", "US ABDOMEN"][index % 4]
        ds.ReferringPhysicianName = "Referring^Doctor"
        ds.Modality = ["CT", "MR", "CR", "US"][index % 4]
        ds.SeriesNumber = 1
        ds.InstanceNumber = 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = 8
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = rng.randbytes(128)
        path = directory / f"{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
