"""An image series on disk to one NIfTI volume (``.nii.gz``) and a JSON sidecar of what researchers need.

nibabel writes the file; the geometry is this package's own (geometry.py): slices sorted along their
normal, spacing from positions, LPS turned into RAS, enhanced multi-frame objects read frame by frame.
Voxels hold modality values (Hounsfield units for CT) with the rescale already applied: int16 when every
value is a whole number that fits, float32 otherwise, and scl_slope 1, scl_inter 0 either way, so a reader
that ignores the scaling fields reads the same numbers. The sidecar uses the key names dcm2niix writes
(BIDS), and carries no patient identifier and no UID unless the caller passes de-identified ones in.

numpy, nibabel and pydicom are imported inside the functions: start-up never loads them.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .. import __version__
from ..errors import InvalidInputError, local_file_error
from ..records import Record
from .checks import RenderError, frame_groups
from .geometry import NotAVolumeError, Stack, read_slices, stack_slices

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from pydicom.dataset import Dataset

__all__ = ["NiftiVolume", "NotAVolumeError", "series_to_nifti"]

# A file name, not a path: letters, digits, dot, dash and underscore, starting with a letter or digit.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_INT16 = (-32768, 32767)

# Sidecar keys (dcm2niix's BIDS names) and the DICOM keywords they come from, first found wins; the factor
# turns DICOM's milliseconds into BIDS's seconds. Nothing here identifies the patient.
_SIDECAR: tuple[tuple[str, tuple[str, ...], float | None], ...] = (
    ("Modality", ("Modality",), None),
    ("Manufacturer", ("Manufacturer",), None),
    ("ManufacturersModelName", ("ManufacturerModelName",), None),
    ("SeriesDescription", ("SeriesDescription",), None),
    ("SeriesNumber", ("SeriesNumber",), None),
    ("BodyPartExamined", ("BodyPartExamined",), None),
    ("ImageType", ("ImageType", "FrameType"), None),
    ("SliceThickness", ("SliceThickness",), None),
    ("KVP", ("KVP",), None),
    ("XRayTubeCurrent", ("XRayTubeCurrent",), None),
    ("ConvolutionKernel", ("ConvolutionKernel",), None),
    ("ContrastBolusAgent", ("ContrastBolusAgent",), None),
    ("MagneticFieldStrength", ("MagneticFieldStrength",), None),
    ("EchoTime", ("EchoTime", "EffectiveEchoTime"), 0.001),
    ("RepetitionTime", ("RepetitionTime",), 0.001),
    ("InversionTime", ("InversionTime",), 0.001),
    ("FlipAngle", ("FlipAngle",), None),
)


class NiftiVolume(Record):
    """A volume written: its files, its size in voxels (columns, rows, slices), the millimetres between
    columns, rows and slice planes, how voxels are stored, and what the caller should know."""

    nifti: Path
    sidecar: Path
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    data_type: Literal["int16", "float32"]
    warnings: tuple[str, ...] = ()


def series_to_nifti(
    files: Sequence[Path],
    out_dir: Path,
    *,
    name: str,
    sidecar_fields: Mapping[str, Any] | None = None,
) -> NiftiVolume:
    """Write the image series in ``files`` (any order) as ``out_dir/name.nii.gz`` and ``out_dir/name.json``.

    ``sidecar_fields`` are added to the sidecar as given (for example de-identified UIDs). Raises
    ``NotAVolumeError`` when the files are not one regular stack of grey images, ``InvalidInputError``
    for a bad name, ``LocalFileError`` when a file cannot be read or written, ``RenderError`` when pixel
    data cannot be decoded. The ``.nii.gz`` gets its name last: when it exists, both files are whole."""
    if not _NAME.fullmatch(name):
        raise InvalidInputError(
            f"The volume name {name!r} must be a file name: letters, digits, '.', '-' and '_', starting "
            "with a letter or digit."
        )
    if not files:
        raise NotAVolumeError("No files were given: a volume needs at least one image.")
    headers = {path: _header(path) for path in files}
    _one_series(headers)
    slices = [piece for path, header in headers.items() for piece in read_slices(path, header)]
    first_header = next(iter(headers.values()))
    thickness = _plain(_find(first_header, "SliceThickness"))
    stack = stack_slices(slices, thickness=thickness if isinstance(thickness, float) else None)
    data = _voxels(stack)
    data_type: Literal["int16", "float32"] = "int16" if _fits_int16(data) else "float32"
    sidecar = _sidecar(headers[stack.slices[0].path], stack, data_type)
    sidecar.update(sidecar_fields or {})
    nifti_path, sidecar_path = out_dir / f"{name}.nii.gz", out_dir / f"{name}.json"
    _write(data, data_type, stack, sidecar, nifti_path, sidecar_path)
    shape = (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]))
    return NiftiVolume(
        nifti=nifti_path,
        sidecar=sidecar_path,
        shape=shape,
        spacing=_spacing(stack),
        data_type=data_type,
        warnings=stack.warnings,
    )


def _header(path: Path) -> Dataset:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except OSError as exc:
        raise local_file_error(exc) from None
    except InvalidDicomError:
        raise NotAVolumeError(f"{path.name} is not a DICOM file (no DICM preamble).") from None
    except Exception as exc:  # pydicom raises many kinds for a damaged file
        raise NotAVolumeError(f"{path.name} could not be read as DICOM ({exc}).") from None


def _one_series(headers: Mapping[Path, Dataset]) -> None:
    """Refuse files of several series: each series is a volume of its own."""
    series = {str(h.get("SeriesInstanceUID")) for h in headers.values() if h.get("SeriesInstanceUID")}
    if len(series) > 1:
        raise NotAVolumeError(
            f"The files belong to {len(series)} series: convert each series into a volume of its own."
        )


def _voxels(stack: Stack) -> NDArray[np.float32]:
    """The modality values as (columns, rows, slices), each frame decoded once, in the stack's order."""
    import numpy as np
    from pydicom.pixels.utils import iter_pixels, pixel_array

    first = stack.slices[0]
    data = np.empty((first.columns, first.rows, len(stack.slices)), dtype=np.float32)
    wanted: dict[Path, dict[int | None, int]] = {}
    for k, piece in enumerate(stack.slices):
        wanted.setdefault(piece.path, {})[piece.frame] = k
    for path, places in wanted.items():
        try:
            if None in places:
                frames: Any = [(None, pixel_array(path))]
            else:
                indices = sorted(i for i in places if i is not None)
                frames = zip(indices, iter_pixels(path, indices=indices), strict=True)
            for frame, pixels in frames:
                k = places[frame]
                piece = stack.slices[k]
                # Transposed: NIfTI's first index runs along a row (DICOM's column index).
                data[:, :, k] = (pixels.astype(np.float64) * piece.slope + piece.intercept).T
        except OSError as exc:
            raise local_file_error(exc) from None
        except Exception as exc:  # pydicom's decoders raise many kinds
            raise RenderError(f"The pixel data of {path.name} could not be decoded ({exc}).") from None
    return data


def _fits_int16(data: NDArray[np.float32]) -> bool:
    import numpy as np

    if data.size == 0:
        return True
    low, high = float(data.min()), float(data.max())
    return _INT16[0] <= low and high <= _INT16[1] and bool(np.all(data == np.rint(data)))


def _write(
    data: NDArray[np.float32],
    data_type: str,
    stack: Stack,
    sidecar: dict[str, Any],
    nifti_path: Path,
    sidecar_path: Path,
) -> None:
    """Both files to temporary names beside their final ones, then renamed, so a final name is whole."""
    import nibabel as nib

    affine = stack.ras_affine()
    image = nib.Nifti1Image(data.astype(data_type), affine)
    image.set_sform(affine, code="scanner")
    # A quaternion cannot hold a shear: with a gantry tilt only the sform is set, and exact.
    if stack.tilt:
        image.set_qform(None, code="unknown")
    else:
        image.set_qform(affine, code="scanner")
    image.header.set_xyzt_units("mm")
    # Written as 1 and 0 rather than nibabel's NaN ("unscaled"), which not every reader takes as such.
    image.header.set_slope_inter(1.0, 0.0)
    token = uuid.uuid4().hex
    temporary_nifti = nifti_path.with_name(f".{token}.partial.nii.gz")
    temporary_sidecar = sidecar_path.with_name(f".{token}.partial.json")
    try:
        nifti_path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(image, temporary_nifti)
        temporary_sidecar.write_text(json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n", "utf-8")
        os.replace(temporary_sidecar, sidecar_path)
        os.replace(temporary_nifti, nifti_path)  # last: a .nii.gz under its name means both are whole
    except OSError as exc:
        raise local_file_error(exc) from None
    finally:
        for leftover in (temporary_nifti, temporary_sidecar):
            leftover.unlink(missing_ok=True)


def _spacing(stack: Stack) -> tuple[float, float, float]:
    """Millimetres between columns, between rows and between slice planes (the sidecar's VoxelSpacing)."""
    row_spacing, column_spacing = stack.slices[0].pixel_spacing
    return (column_spacing, row_spacing, round(stack.slice_spacing, 6))


def _sidecar(header: Dataset, stack: Stack, data_type: str) -> dict[str, Any]:
    """What a researcher needs beside the voxels, from the first slice's file, plus the grid measured."""
    first = stack.slices[0]
    out: dict[str, Any] = {}
    for key, keywords, factor in _SIDECAR:
        for keyword in keywords:
            value = _plain(_find(header, keyword))
            if value is not None:
                out[key] = round(value * factor, 9) if factor and isinstance(value, float) else value
                break
    out.update(
        {
            "PixelSpacing": list(first.pixel_spacing),
            "SpacingBetweenSlices": round(stack.slice_spacing, 6),
            "VoxelSpacing": list(_spacing(stack)),
            "NumberOfSlices": len(stack.slices),
            "ImageOrientationPatientDICOM": [*first.row_cosines, *first.column_cosines],
            "DataType": data_type,
            "ConversionSoftware": "dicomweb-mcp",
            "ConversionSoftwareVersion": __version__,
        }
    )
    if stack.warnings:
        out["ConversionWarnings"] = list(stack.warnings)
    return out


def _find(header: Dataset, keyword: str) -> Any:
    """``keyword`` at the top level, else in the first frame's or the shared functional groups (enhanced MR
    keeps echo and repetition times there)."""
    if keyword in header:
        return header.get(keyword)
    for group in frame_groups(header, 0):
        for element in group:
            if element.VR == "SQ" and element.value and keyword in element.value[0]:
                return element.value[0].get(keyword)
    return None


def _plain(value: Any) -> Any:
    """A JSON value from a pydicom one: numbers as numbers, several values as a list; None when empty."""
    from pydicom.multival import MultiValue

    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        items = [_plain(v) for v in value]
        return [v for v in items if v is not None] or None
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value).strip() or None
