"""The tools' argument types: one definition each, shared by every tool that takes the argument.

UIDs are validated by pydantic before a tool body runs; their pattern is in the published schema too.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from ..dicom.validation import UID_PATTERN, validate_uid

UID_JSON_SCHEMA = {"pattern": UID_PATTERN, "maxLength": 64}


def uid_validator(name: str) -> AfterValidator:
    return AfterValidator(lambda value: validate_uid(value, name))


StudyUid = Annotated[
    str,
    uid_validator("study_uid"),
    Field(description="Study Instance UID (digits and dots).", json_schema_extra=UID_JSON_SCHEMA),
]
SeriesUid = Annotated[
    str,
    uid_validator("series_uid"),
    Field(description="Series Instance UID.", json_schema_extra=UID_JSON_SCHEMA),
]
InstanceUid = Annotated[
    str,
    uid_validator("instance_uid"),
    Field(description="SOP Instance UID.", json_schema_extra=UID_JSON_SCHEMA),
]
OptionalStudyUid = Annotated[StudyUid | None, Field(description="Study Instance UID.")]
OptionalSeriesUid = Annotated[SeriesUid | None, Field(description="Series Instance UID.")]
OptionalInstanceUid = Annotated[InstanceUid | None, Field(description="SOP Instance UID.")]
Filters = Annotated[
    dict[str, str | list[str]] | None,
    Field(
        description='Other attributes to match, by DICOM keyword or tag, e.g. {"BodyPartExamined": "CHEST", '
        '"00081030": "CT*"}. A list is a UID list (any of).'
    ),
]
IncludeFields = Annotated[
    list[str] | None,
    Field(description='Extra attributes to return (keywords or tags), or ["all"]; shown in extra_fields.'),
]
Fuzzy = Annotated[bool, Field(description="Fuzzy matching of person names, where the server supports it.")]
Limit = Annotated[int, Field(ge=1, le=200, description="Maximum number of results (1-200).")]
Offset = Annotated[int, Field(ge=0, description="Number of results to skip (paging: pass next_offset).")]
TransferSyntax = Annotated[
    str,
    Field(
        description="Transfer syntax UID, or '*' for as stored.",
        pattern=r"^(\*|[0-9]+(\.[0-9]+)*)$",
        max_length=64,
    ),
]
