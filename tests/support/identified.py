"""A study full of what de-identification must remove: names, IDs, dates, institution, physicians, private
tags, UIDs in references. Deterministic from a seed; the values to look for afterwards come with it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from .synthetic import _uid


@dataclass
class IdentifiedStudy:
    paths: list[Path]
    study_uid: str
    series_uids: list[str]
    instance_uids: list[str]
    frame_of_reference_uid: str
    # Text that must not survive de-identification anywhere in a file.
    identifying: list[str] = field(default_factory=list)

    @property
    def original_uids(self) -> list[str]:
        return [self.study_uid, *self.series_uids, *self.instance_uids, self.frame_of_reference_uid]


def make_identified_study(
    directory: Path, *, series: int = 2, per_series: int = 3, rows: int = 32, columns: int = 32, seed: int = 0
) -> IdentifiedStudy:
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    patient = f"Lovelace^Ada{seed}"
    values = {
        "PatientName": patient,
        "PatientID": f"MRN{seed:04d}77",
        "PatientBirthDate": "19151210",
        "AccessionNumber": f"ACC{seed:04d}91",
        "InstitutionName": "Saint Elsewhere Hospital",
        "ReferringPhysicianName": "Watson^John",
        "PerformingPhysicianName": "Holmes^Sherlock",
        "OperatorsName": "Hudson^Martha",
        "OtherPatientIDs": f"ALT{seed:04d}55",
        "PatientAddress": "221B Baker Street",
    }
    study_uid, frame_of_reference = _uid(rng), _uid(rng)
    series_uids = [_uid(rng) for _ in range(series)]
    instance_uids = [_uid(rng) for _ in range(series * per_series)]
    paths = []
    for index, sop_uid in enumerate(instance_uids):
        series_index = index // per_series
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uids[series_index]
        ds.FrameOfReferenceUID = frame_of_reference
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.StudyDate, ds.SeriesDate, ds.ContentDate = "20240315", "20240315", "20240315"
        ds.StudyTime = "101500"
        ds.AcquisitionDateTime = "20240315101530"
        ds.Modality = "CT"
        ds.StudyDescription = f"CT chest for {patient}"
        ds.SeriesDescription = f"Series {series_index + 1}"
        ds.StudyID = f"S{seed}"
        ds.SeriesNumber = series_index + 1
        ds.InstanceNumber = index % per_series + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        if index % per_series:
            # Each image after the first refers to the first of its series.
            reference = Dataset()
            reference.ReferencedSOPClassUID = CTImageStorage
            reference.ReferencedSOPInstanceUID = instance_uids[series_index * per_series]
            ds.ReferencedImageSequence = Sequence([reference])
        block = ds.private_block(0x0009, "ACME Imaging", create=True)
        block.add_new(0x10, "LO", f"private note on {patient}")
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, columns
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = rng.randbytes(rows * columns * 2)
        path = directory / f"{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    identifying = [
        *values.values(),
        "Lovelace",
        "Elsewhere",
        "Baker Street",
        "ACME Imaging",
        "20240315",
        "19151210",
    ]
    return IdentifiedStudy(paths, study_uid, series_uids, instance_uids, frame_of_reference, identifying)
