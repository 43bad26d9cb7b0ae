"""What goes into DICOMweb URLs besides the resource path (``Reference.path``): transfer syntaxes and the
parameters of a rendered request, checked."""

from __future__ import annotations

from ..dicom.validation import validate_uid
from ..errors import InvalidInputError

__all__ = ["rendered_query", "transfer_syntax_value"]


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
