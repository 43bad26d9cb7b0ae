"""Where each slice of an image series lies in the patient, and the grid they make: checked, sorted, and
written as the affine that maps voxel indices to patient coordinates.

Geometry comes from Image Position (Patient), Image Orientation (Patient) and Pixel Spacing, top level in
single-frame objects and per frame in the functional groups of enhanced multi-frame objects (PS3.3
C.7.6.16.2). Slices are sorted along the slice normal, their spacing measured from positions (never from
Slice Thickness), and a series that is not one regular stack is refused by name: no pixel data, several
orientations or sizes, shared positions (echoes, phases), uneven spacing, missing attributes. A gantry
tilt is kept exactly as a sheared affine, with a warning. DICOM is LPS; ``ras_affine`` gives NIfTI's RAS.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..dicom.sopclass import sop_class_name
from ..errors import InvalidInputError
from .checks import MalformedImageError, check_image, frame_groups, header_value

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from pydicom.dataset import Dataset

__all__ = ["NotAVolumeError", "Slice", "Stack", "read_slices", "stack_slices"]

Vector = tuple[float, float, float]

# Cosines that differ by less than this are one orientation (scanners round them to about 6 digits).
_COSINE_TOLERANCE = 1e-3
# Millimetres: below this two positions or spacings are the same.
_MM_TOLERANCE = 1e-3
# Relative: slice spacings within this fraction of the median are one spacing (positions are rounded).
_SPACING_TOLERANCE = 0.01
# Degrees: a step this far off the slice normal is a gantry tilt worth a warning.
_TILT_DEGREES = 0.01


class NotAVolumeError(InvalidInputError):
    """The files are not one regular stack of image slices, so no volume is made of them."""


@dataclass(frozen=True)
class Slice:
    """One frame of one file, with what places it in the patient (LPS, millimetres) and its rescale."""

    path: Path
    frame: int | None  # index in a multi-frame file; None for a single-frame file
    position: Vector
    row_cosines: Vector  # direction of increasing column index (along a row)
    column_cosines: Vector  # direction of increasing row index (down a column)
    pixel_spacing: tuple[float, float]  # (between rows, between columns), as DICOM orders it
    rows: int
    columns: int
    slope: float
    intercept: float


@dataclass(frozen=True)
class Stack:
    """Slices in order along the normal and the LPS affine of their grid (voxel (i, j, k) = column i,
    row j, slice k)."""

    slices: tuple[Slice, ...]
    affine_lps: tuple[tuple[float, ...], ...]
    slice_spacing: float  # distance between slice planes, from the positions
    tilt: float  # degrees between the step from slice to slice and the normal (gantry tilt); 0 when none
    warnings: tuple[str, ...]

    def ras_affine(self) -> NDArray[np.float64]:
        """The affine in NIfTI's RAS: DICOM's x (to the left) and y (to the back) negated."""
        import numpy as np

        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.array(self.affine_lps, dtype=np.float64)


def read_slices(path: Path, header: Dataset) -> list[Slice]:
    """The slices of one file whose header (read without pixel data) is ``header``."""
    name = path.name
    if "Rows" not in header or "Columns" not in header:
        raise NotAVolumeError(
            f"{name} is {sop_class_name(header.get('SOPClassUID'))}, which has no pixel data: only image "
            "series (CT, MR, PET...) become volumes."
        )
    # The same checks as a picture's: a malformed Rows or Number of Frames is refused by name.
    try:
        shape = check_image(partial(header_value, header), name)
    except MalformedImageError as exc:
        raise NotAVolumeError(f"{name}'s {exc.keyword} is {exc.value!r}: no volume is made of it.") from None
    photometric = str(header_value(header, "PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    if not photometric.startswith("MONOCHROME"):
        raise NotAVolumeError(
            f"{name} holds {photometric} pixels: volumes are made of grey (MONOCHROME) images."
        )
    if "ModalityLUTSequence" in header:
        raise NotAVolumeError(f"{name} maps its values through a Modality LUT, which volumes do not apply.")
    frames, rows, columns = shape.frames, shape.rows, shape.columns
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if frames > 1 and not per_frame and "SharedFunctionalGroupsSequence" not in header:
        raise NotAVolumeError(
            f"{name} has {frames} frames but no functional groups giving each frame's position: "
            "only enhanced multi-frame objects are converted frame by frame."
        )
    result = []
    for index in range(frames) if per_frame or frames > 1 else [None]:

        def get(sequence: str, keyword: str, frame: int | None = index) -> Any:
            return _frame_value(header, frame, sequence, keyword)

        orientation = _numbers(
            name, "ImageOrientationPatient", get("PlaneOrientationSequence", "ImageOrientationPatient"), 6
        )
        spacing = _numbers(name, "PixelSpacing", get("PixelMeasuresSequence", "PixelSpacing"), 2)
        position = _numbers(
            name, "ImagePositionPatient", get("PlanePositionSequence", "ImagePositionPatient"), 3
        )
        slope = get("PixelValueTransformationSequence", "RescaleSlope")
        intercept = get("PixelValueTransformationSequence", "RescaleIntercept")
        row, column = _unit_pair(name, orientation)
        if min(spacing) <= 0:
            raise NotAVolumeError(f"{name} has a PixelSpacing of {list(spacing)}: spacings must be positive.")
        result.append(
            Slice(
                path,
                index,
                (position[0], position[1], position[2]),
                row,
                column,
                (spacing[0], spacing[1]),
                rows,
                columns,
                _numbers(name, "RescaleSlope", slope, 1)[0] if slope not in (None, "") else 1.0,
                _numbers(name, "RescaleIntercept", intercept, 1)[0] if intercept not in (None, "") else 0.0,
            )
        )
    return result


def _frame_value(header: Dataset, frame: int | None, sequence: str, keyword: str) -> Any:
    """``keyword`` from the frame's functional group, the shared group, or the top level, in that order."""
    for group in frame_groups(header, frame):
        items = group.get(sequence)
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return header.get(keyword)


def _numbers(name: str, keyword: str, value: Any, count: int) -> tuple[float, ...]:
    if value is None or value == "":
        raise NotAVolumeError(f"{name} has no {keyword}: without it the slice cannot be placed in space.")
    try:
        values = value if isinstance(value, Sequence) and not isinstance(value, str | bytes) else [value]
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise NotAVolumeError(f"{name} has a {keyword} of {value!r}: it must be {count} finite numbers.")
    return numbers


def _unit_pair(name: str, orientation: tuple[float, ...]) -> tuple[Vector, Vector]:
    """The row and column direction cosines, normalised, refused unless two orthogonal unit vectors."""
    row, column = orientation[:3], orientation[3:]
    row_norm, column_norm = math.hypot(*row), math.hypot(*column)
    if (
        abs(row_norm - 1) > _COSINE_TOLERANCE
        or abs(column_norm - 1) > _COSINE_TOLERANCE
        or (abs(_dot(row, column)) > _COSINE_TOLERANCE)
    ):
        raise NotAVolumeError(
            f"{name} has an ImageOrientationPatient of {list(orientation)}: it must be two orthogonal unit "
            "vectors."
        )
    return _scaled(row, 1 / row_norm), _scaled(column, 1 / column_norm)


def stack_slices(slices: Sequence[Slice], *, thickness: float | None = None) -> Stack:
    """The slices sorted along their normal, checked to form one regular grid, and its affine.

    ``thickness``: the slice thickness to use as spacing when there is only one slice."""
    if not slices:
        raise NotAVolumeError("No slices were given: a volume needs at least one image.")
    first = slices[0]
    for other in slices[1:]:
        _same(first, other, "Rows x Columns", (first.rows, first.columns), (other.rows, other.columns), 0)
        _same(first, other, "PixelSpacing", first.pixel_spacing, other.pixel_spacing, _MM_TOLERANCE)
        _same(
            first,
            other,
            "ImageOrientationPatient",
            first.row_cosines + first.column_cosines,
            other.row_cosines + other.column_cosines,
            _COSINE_TOLERANCE,
        )
    normal = _cross(first.row_cosines, first.column_cosines)
    ordered = sorted(slices, key=lambda s: _dot(normal, s.position))
    distances = [_dot(normal, s.position) for s in ordered]
    gaps = [b - a for a, b in itertools.pairwise(distances)]
    warnings: list[str] = []
    if any(gap < _MM_TOLERANCE for gap in gaps):
        at = next(d for d, gap in zip(distances, gaps, strict=False) if gap < _MM_TOLERANCE)
        raise NotAVolumeError(
            f"Several slices lie at the same position ({at:.3f} mm along the slice normal): the series holds "
            "more than one volume (echoes, phases, time points) or duplicate instances; volumes are 3-D."
        )
    if gaps:
        spacing = sorted(gaps)[len(gaps) // 2]
        if max(abs(gap - spacing) for gap in gaps) > max(_SPACING_TOLERANCE * spacing, _MM_TOLERANCE):
            raise NotAVolumeError(
                f"The slice spacing varies from {min(gaps):.3f} to {max(gaps):.3f} mm: a slice is missing or "
                "the series mixes acquisitions, and a volume needs one spacing."
            )
        step = _scaled(_minus(ordered[-1].position, ordered[0].position), 1 / (len(ordered) - 1))
        for k, piece in enumerate(ordered):
            expected = _plus(ordered[0].position, _scaled(step, k))
            off = math.dist(expected, piece.position)
            if off > max(_SPACING_TOLERANCE * spacing, _MM_TOLERANCE):
                raise NotAVolumeError(
                    f"The slices do not lie on one line: slice {k + 1} is {off:.3f} mm from where a regular "
                    "stack puts it (the series mixes fields of view)."
                )
        slice_spacing = _dot(normal, step)
        tilt = math.degrees(math.acos(min(1.0, slice_spacing / math.hypot(*step))))
        if tilt < _TILT_DEGREES:
            tilt = 0.0
        else:
            warnings.append(
                f"The slices are stacked {tilt:.2f} degrees off their normal (gantry tilt): the affine is "
                "sheared so that every voxel lies where the scanner put it; qform is left unset, and tools "
                "that assume orthogonal axes must resample."
            )
    else:
        tilt = 0.0
        slice_spacing = thickness if thickness and thickness > 0 else 1.0
        step = _scaled(normal, slice_spacing)
        warnings.append(
            f"One slice: its thickness along the normal is taken from "
            f"{'SliceThickness' if thickness and thickness > 0 else 'nothing (1 mm assumed)'}."
        )
    row_spacing, column_spacing = first.pixel_spacing
    columns = (
        _scaled(first.row_cosines, column_spacing),
        _scaled(first.column_cosines, row_spacing),
        step,
        ordered[0].position,
    )
    affine = (*(tuple(column[axis] for column in columns) for axis in range(3)), (0.0, 0.0, 0.0, 1.0))
    return Stack(tuple(ordered), affine, slice_spacing, tilt, tuple(warnings))


def _same(
    first: Slice, other: Slice, what: str, a: tuple[Any, ...], b: tuple[Any, ...], tolerance: float
) -> None:
    if any(abs(x - y) > tolerance for x, y in zip(a, b, strict=True)):
        raise NotAVolumeError(
            f"The series mixes images of different {what}: {_where(first)} has {list(a)} and "
            f"{_where(other)} has {list(b)} (a localizer or another acquisition in the series?)."
        )


def _where(piece: Slice) -> str:
    return piece.path.name if piece.frame is None else f"frame {piece.frame + 1} of {piece.path.name}"


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _cross(a: Vector, b: Vector) -> Vector:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _scaled(a: Sequence[float], factor: float) -> Vector:
    return (a[0] * factor, a[1] * factor, a[2] * factor)


def _plus(a: Vector, b: Vector) -> Vector:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _minus(a: Vector, b: Vector) -> Vector:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])
