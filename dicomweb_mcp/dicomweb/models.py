"""What the DICOMweb client returns. Records (deletions, change feed entries) are what tools return too."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from ..errors import DicomWebError
from ..files.dicomfiles import DicomFile
from ..records import Record

__all__ = [
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "FRAME_MEDIA_TYPES",
    "ChangeFeedEntry",
    "DeleteResult",
    "QueryResult",
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
    # Set when the whole request failed (credentials, an unreachable server), not this instance alone.
    error: DicomWebError | None = None


class DeleteResult(Record):
    deleted: bool
    level: Literal["study", "series", "instance"]
    study_uid: str
    series_uid: str | None = None
    instance_uid: str | None = None
    method: Literal["dicomweb", "orthanc-rest"]


class ChangeFeedEntry(Record):
    sequence: int
    timestamp: str | None = None
    action: str | None = None
    state: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    instance_uid: str | None = None
    # Kept for the caller (the metadata is saved to a file), never sent back in a result.
    partition: SkipJsonSchema[str | None] = Field(None, exclude=True)
    metadata: SkipJsonSchema[DicomJson | None] = Field(None, exclude=True)
