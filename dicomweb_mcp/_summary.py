"""DICOM JSON (PS3.18 F.2) to plain values an agent can read.

A person name becomes its Alphabetic string, one value a scalar, several a list; empty attributes,
sequences and bulk data are left out. Which attributes a summary has is data (keyword lists), turned
into tags through the one dictionary module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._dictionary import resolve_attribute, tag_of

__all__ = [
    "INSTANCE_FIELDS",
    "METADATA_FIELDS",
    "SERIES_FIELDS",
    "SOP_INSTANCE_UID",
    "STUDY_FIELDS",
    "element_value",
    "element_values",
    "extra_fields",
    "sequence_items",
    "summarize",
]

DicomJson = Mapping[str, Any]

# Summary field name -> DICOM keyword. Order is the order in results.
STUDY_FIELDS: dict[str, str] = {
    "study_uid": "StudyInstanceUID",
    "patient_name": "PatientName",
    "patient_id": "PatientID",
    "patient_birth_date": "PatientBirthDate",
    "patient_sex": "PatientSex",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "accession_number": "AccessionNumber",
    "study_description": "StudyDescription",
    "modalities": "ModalitiesInStudy",
    "number_of_series": "NumberOfStudyRelatedSeries",
    "number_of_instances": "NumberOfStudyRelatedInstances",
}
SERIES_FIELDS: dict[str, str] = {
    "study_uid": "StudyInstanceUID",
    "series_uid": "SeriesInstanceUID",
    "modality": "Modality",
    "series_number": "SeriesNumber",
    "series_description": "SeriesDescription",
    "series_date": "SeriesDate",
    "body_part_examined": "BodyPartExamined",
    "number_of_instances": "NumberOfSeriesRelatedInstances",
}
INSTANCE_FIELDS: dict[str, str] = {
    "study_uid": "StudyInstanceUID",
    "series_uid": "SeriesInstanceUID",
    "instance_uid": "SOPInstanceUID",
    "sop_class_uid": "SOPClassUID",
    "instance_number": "InstanceNumber",
    "modality": "Modality",
    "rows": "Rows",
    "columns": "Columns",
    "number_of_frames": "NumberOfFrames",
}
METADATA_FIELDS: dict[str, str] = {
    "instance_uid": "SOPInstanceUID",
    "series_uid": "SeriesInstanceUID",
    "sop_class_uid": "SOPClassUID",
    "instance_number": "InstanceNumber",
    "modality": "Modality",
    "series_number": "SeriesNumber",
    "series_description": "SeriesDescription",
    "rows": "Rows",
    "columns": "Columns",
    "number_of_frames": "NumberOfFrames",
    "photometric_interpretation": "PhotometricInterpretation",
    "bits_allocated": "BitsAllocated",
    "transfer_syntax_uid": "TransferSyntaxUID",
}
# Fields that are lists whatever their multiplicity, so an agent never has to check.
_ALWAYS_LISTS = frozenset({"modalities"})
SOP_INSTANCE_UID = tag_of("SOPInstanceUID")
_TAGS: dict[str, str] = {
    kw: tag_of(kw)
    for fields in (STUDY_FIELDS, SERIES_FIELDS, INSTANCE_FIELDS, METADATA_FIELDS)
    for kw in fields.values()
}


def _plain(value: Any, vr: str) -> Any:
    if vr == "PN" and isinstance(value, Mapping):
        return value.get("Alphabetic") or value.get("Ideographic") or value.get("Phonetic")
    if isinstance(value, float) and value.is_integer() and vr in ("IS", "US", "UL", "SS", "SL"):
        return int(value)
    return value


def element_values(dataset: DicomJson, tag: str) -> list[Any]:
    """The plain values of one element: empty when it is absent, empty, a sequence or bulk data."""
    element = dataset.get(tag)
    if not isinstance(element, Mapping):
        return []
    vr = str(element.get("vr", ""))
    if vr == "SQ":
        return []
    values = [_plain(v, vr) for v in element.get("Value") or []]
    return [v for v in values if v is not None and v != ""]


def element_value(dataset: DicomJson, tag: str) -> Any:
    """The plain value of one element (a list when it has several), or None when it has none."""
    values = element_values(dataset, tag)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def sequence_items(dataset: DicomJson, tag: str) -> list[DicomJson]:
    """The items of a sequence element (Orthanc sends an empty one as ``{"vr": "SQ"}``)."""
    element = dataset.get(tag)
    items = element.get("Value") if isinstance(element, Mapping) else None
    return [item for item in items or [] if isinstance(item, Mapping)]


def summarize(dataset: DicomJson, fields: Mapping[str, str]) -> dict[str, Any]:
    """The summary fields that have a value in ``dataset`` (absent and empty ones are left out)."""
    summary: dict[str, Any] = {}
    for name, keyword in fields.items():
        value = element_value(dataset, _TAGS[keyword])
        if value is None:
            continue
        if name in _ALWAYS_LISTS and not isinstance(value, list):
            value = [value]
        summary[name] = value
    return summary


def extra_fields(dataset: DicomJson, names: Iterable[str], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Values of requested attributes (keywords or tags), keyed by keyword, for ``include_fields``."""
    skipped = set(skip)
    extras: dict[str, Any] = {}
    for name in names:
        attribute = resolve_attribute(name)
        key = attribute.keyword or attribute.tag
        if key in skipped:
            continue
        value = element_value(dataset, attribute.tag)
        if value is not None:
            extras[key] = value
    return extras
