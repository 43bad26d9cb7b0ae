"""DICOMweb resource paths, built only from validated UIDs (they go into URLs and, later, file names)."""

from __future__ import annotations

from typing import Literal

from ..dicom.validation import validate_uid
from ..errors import InvalidInputError

__all__ = ["Level", "level_path", "rendered_query", "transfer_syntax_value"]

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


def rendered_query(
    media_type: str,
    quality: int | None,
    viewport: tuple[int, int] | None,
    window: tuple[float, float, str] | None,
) -> str:
    """The query string (with its ``?``, or empty) of a WADO-RS rendered request, checked first."""
    if media_type not in ("image/jpeg", "image/png"):
        raise InvalidInputError(f"media_type {media_type!r} must be image/jpeg or image/png.")
    parameters = []
    if quality is not None:
        if not 1 <= quality <= 100:
            raise InvalidInputError(f"quality {quality} must be between 1 and 100.")
        parameters.append(f"quality={quality}")
    if viewport is not None:
        width, height = viewport
        if width < 1 or height < 1:
            raise InvalidInputError(f"viewport {width}x{height} must be at least 1x1.")
        parameters.append(f"viewport={int(width)},{int(height)}")
    if window is not None:
        center, window_width, function = window
        if function not in ("linear", "sigmoid"):
            raise InvalidInputError(f"window function {function!r} must be linear or sigmoid.")
        parameters.append(f"window={center:g},{window_width:g},{function}")
    return f"?{'&'.join(parameters)}" if parameters else ""
