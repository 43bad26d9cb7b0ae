"""DICOMweb resource paths, built only from validated UIDs (they go into URLs and, later, file names)."""

from __future__ import annotations

from typing import Literal

from ..dicom.validation import validate_uid
from ..errors import InvalidInputError

__all__ = ["Level", "level_path", "transfer_syntax_value"]

Level = Literal["study", "series", "instance"]


def level_path(study_uid: str, series_uid: str | None, instance_uid: str | None) -> tuple[Level, str]:
    """Validate the UIDs of a study/series/instance reference and build its path."""
    path = f"/studies/{validate_uid(study_uid, 'study_uid')}"
    if series_uid is None:
        if instance_uid is not None:
            raise InvalidInputError("instance_uid needs series_uid too: give both, or neither.")
        return "study", path
    path += f"/series/{validate_uid(series_uid, 'series_uid')}"
    if instance_uid is None:
        return "series", path
    return "instance", path + f"/instances/{validate_uid(instance_uid, 'instance_uid')}"


def transfer_syntax_value(value: str) -> str:
    """A transfer syntax UID, or ``*`` (as stored)."""
    return value if value == "*" else validate_uid(value, "transfer_syntax")
