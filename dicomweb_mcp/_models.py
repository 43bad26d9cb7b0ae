"""Plain result types of the DICOMweb client (no MCP here: the tool layer has its own pydantic models)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "FRAME_MEDIA_TYPES",
    "ChangeFeedEntry",
    "DeleteResult",
    "DicomFile",
    "QueryResult",
    "RenderedImage",
    "StoreOutcome",
    "StoreStatus",
]

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

# PS3.18 Table 8.7.3-2: the media type that carries frames in each transfer syntax. Anything not listed
# (the uncompressed ones, or '*') travels as application/octet-stream.
FRAME_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}

DicomJson = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DicomFile:
    """A local file known to be DICOM Part 10, with the UIDs read from its header."""

    path: Path
    size: int
    study_uid: str
    series_uid: str
    instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str | None = None


@dataclass(slots=True)
class QueryResult:
    """QIDO-RS matches as DICOM JSON datasets, plus anything the caller should know about the query."""

    datasets: list[DicomJson]
    warnings: list[str] = field(default_factory=list)


class StoreStatus(StrEnum):
    STORED = "stored"
    ALREADY_PRESENT = "already_present"
    FAILED = "failed"


@dataclass(slots=True)
class StoreOutcome:
    file: DicomFile
    status: StoreStatus
    reason_code: int | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeleteResult:
    level: Literal["study", "series", "instance"]
    study_uid: str
    series_uid: str | None
    instance_uid: str | None
    method: Literal["dicomweb", "orthanc-rest"]


@dataclass(frozen=True, slots=True)
class ChangeFeedEntry:
    sequence: int
    timestamp: str | None
    action: str | None
    state: str | None
    study_uid: str | None
    series_uid: str | None
    instance_uid: str | None
    partition: str | None = None
    metadata: DicomJson | None = None


@dataclass(frozen=True, slots=True)
class RenderedImage:
    content: bytes
    media_type: str
