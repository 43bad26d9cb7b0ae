"""Summaries of DICOM JSON datasets: the few attributes an agent needs, by readable names.

Which attributes a summary has is data (keyword lists), turned into tags through the one dictionary
module; values are read with the DICOM JSON accessors of the ``dicom`` package.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from ..dicom.dicomjson import DicomJson, element_value
from ..dicom.dictionary import resolve_attribute, tag_of

__all__ = [
    "INSTANCE_FIELDS",
    "METADATA_FIELDS",
    "SERIES_FIELDS",
    "STUDY_FIELDS",
    "extra_fields",
    "summarize",
]


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
# Tags are looked up on first use: the dictionary (pydicom's) is not loaded at start-up.
_tag = functools.cache(tag_of)


def summarize(dataset: DicomJson, fields: Mapping[str, str]) -> dict[str, Any]:
    """The summary fields that have a value in ``dataset`` (absent and empty ones are left out)."""
    summary: dict[str, Any] = {}
    for name, keyword in fields.items():
        value = element_value(dataset, _tag(keyword))
        if value is None:
            continue
        if name in _ALWAYS_LISTS and not isinstance(value, list):
            value = [value]
        summary[name] = value
    return summary


def extra_fields(dataset: DicomJson, names: Iterable[str], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Values of requested attributes (keywords or tags), keyed by keyword, for ``include_fields``;
    ``all`` means every attribute the server returned that has a plain value."""
    skipped = set(skip)
    extras: dict[str, Any] = {}
    wanted = list(names)
    if any(name.strip().lower() == "all" for name in wanted):
        wanted = [tag for tag in dataset if len(tag) == 8]
    for name in wanted:
        attribute = resolve_attribute(name)
        key = attribute.keyword or attribute.tag
        if key in skipped:
            continue
        value = element_value(dataset, attribute.tag)
        if value is not None:
            extras[key] = value
    return extras
