"""The local renderer: one frame of a DICOM file to an 8-bit picture, the way a viewer shows it.

The grey-scale pipeline of PS3.4 N.2, in order: decode (pydicom's pixel-data plugins: Pillow for JPEG,
pylibjpeg-openjpeg for JPEG 2000, pydicom itself for RLE), modality LUT (rescale slope and intercept, or
a Modality LUT), VOI (a window or a VOI LUT), presentation (MONOCHROME1 and INVERSE inverted); then the
picture is scaled to the asked size. Colour (RGB, YBR, palette) is converted to RGB and not windowed.
Enhanced multi-frame objects keep their rescale and window per frame in functional groups: those are used.
Only the asked frame is read from the file, so memory holds one frame, not the instance.

numpy, Pillow and pydicom's pixel handlers are imported inside the functions: start-up never loads them.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..dicom.sopclass import sop_class_name
from ..dicom.windows import Window
from ..errors import InvalidInputError
from .checks import (
    STILL_WORKS,
    MalformedImageError,
    RenderError,
    check_image,
    frame_groups,
    header_value,
    pixel_bytes,
)
from .pictures import Picture

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from pydicom.dataset import Dataset

_PIXEL_DATA = 0x7FE00010

__all__ = [
    "DecoderMissingError",
    "MalformedImageError",
    "NotAnImageError",
    "RenderError",
    "fitted_size",
    "render_file",
]


class DecoderMissingError(RenderError):
    """The pixel data is compressed in a transfer syntax no installed decoder reads."""

    def __init__(self, transfer_syntax: str) -> None:
        self.transfer_syntax = transfer_syntax
        super().__init__(f"no installed decoder reads {transfer_syntax} pixel data")


class NotAnImageError(InvalidInputError):
    """The instance has no pixel data (a report, a presentation state, a key object selection...)."""


# Attributes the pixel pipeline reads, and the functional groups (PS3.3 C.7.6.16) that carry some of them
# per frame in enhanced multi-frame objects.
_PIXEL_KEYWORDS = (
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
    "PresentationLUTShape",
)
_FRAME_GROUPS = {
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}
_FUNCTIONS: dict[str, Literal["linear", "linear_exact", "sigmoid"]] = {
    "LINEAR": "linear",
    "LINEAR_EXACT": "linear_exact",
    "SIGMOID": "sigmoid",
}


def fitted_size(columns: int, rows: int, size: int) -> tuple[int, int]:
    """Width and height with the longest edge at most ``size``, the aspect ratio kept (never enlarged)."""
    longest = max(columns, rows)
    if longest <= size:
        return columns, rows
    scale = size / longest
    return max(1, round(columns * scale)), max(1, round(rows * scale))


def render_file(
    path: Path, *, frame: int | None, size: int, window: Window | Literal["auto"] | None
) -> Picture:
    """Render frame ``frame`` (from 1; None: the first) of the DICOM file at ``path``, its longest edge at
    most ``size``. ``window``: a window to apply, ``auto`` (min-max), or None for the image's own."""
    import pydicom
    from PIL import Image
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.pixels.utils import pixel_array

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many kinds for a damaged file
        raise RenderError(f"The instance could not be read as DICOM ({exc}).") from None
    uid = str(header_value(header, "SOPInstanceUID") or "(no SOP Instance UID)")
    length = _pixel_data_length(path)
    if length is None:
        raise NotAnImageError(_not_an_image(header))
    for keyword in ("Rows", "Columns"):
        if keyword not in header:
            raise MalformedImageError(uid, keyword, None, "it is missing, yet the instance has pixel data")
    shape = check_image(partial(header_value, header), uid)
    frames = shape.frames
    number = frame or 1
    if number > frames:
        raise InvalidInputError(f"frame {number} does not exist: this instance has {frames} frame(s).")
    syntax = header.file_meta.get("TransferSyntaxUID")
    if syntax is not None and syntax.is_compressed and not get_decoder(syntax).is_available:
        raise DecoderMissingError(syntax.name)
    needed = pixel_bytes(shape)
    if needed is not None and length != _UNDEFINED_LENGTH and length < needed:
        raise MalformedImageError(
            uid,
            "PixelData length",
            length,
            f"Rows {shape.rows} x Columns {shape.columns} x {shape.samples} sample(s) x "
            f"{shape.bits} bits x {frames} frame(s) need {needed} bytes",
        )
    if "PALETTE" in str(header.get("PhotometricInterpretation", "")).upper() and (
        "RedPaletteColorLookupTableDescriptor" not in header
    ):
        raise MalformedImageError(
            uid, "PhotometricInterpretation", "PALETTE COLOR", "the palette's lookup tables are missing"
        )
    try:
        pixels = pixel_array(path, index=number - 1)
    except Exception as exc:
        raise RenderError(
            f"The pixel data of frame {number} of instance {uid} could not be decoded ({exc}). " + STILL_WORKS
        ) from None
    attributes = _frame_attributes(header, number - 1)
    photometric = str(attributes.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    notes: list[str] = []
    applied: Window | None = None
    if photometric.startswith("MONOCHROME") and pixels.ndim == 2:
        grey, applied = _grey(pixels, attributes, window)
        if photometric == "MONOCHROME1" or attributes.get("PresentationLUTShape") == "INVERSE":
            grey = 1.0 - grey
        image = Image.fromarray(_to_bytes(grey), "L")
    else:
        image = Image.fromarray(_colour(pixels, attributes, header), "RGB")
        if window is not None:
            notes.append("a window does not apply to a colour image: shown as stored")
    width, height = fitted_size(image.width, image.height, size)
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    # A grey picture with no window had the instance's VOI LUT applied.
    label = applied.label() if applied else "instance VOI LUT" if image.mode == "L" else None
    return Picture("local", width, height, label, applied, frames, tuple(notes), image=image)


# The length an encapsulated (compressed) Pixel Data element has.
_UNDEFINED_LENGTH = 0xFFFFFFFF


def _pixel_data_length(path: Path) -> int | None:
    """The length of the file's Pixel Data element, read without its value; None when it has none."""
    import pydicom
    from pydicom.tag import Tag

    dataset = pydicom.dcmread(path, defer_size=256, specific_tags=["PixelData"])
    # The raw element keeps the length in the file; reading ``.value`` would load the pixel data.
    element = dataset._dict.get(Tag(_PIXEL_DATA))
    if element is None:
        return None
    length = getattr(element, "length", None)
    return int(length) if length is not None else len(element.value or b"")


def _not_an_image(header: Dataset) -> str:
    return (
        f"This instance is {sop_class_name(header.get('SOPClassUID'))}: it has no pixel data to render. "
        "Reports (SR, PDF) are read with read_report."
    )


def _frame_attributes(header: Dataset, index: int) -> Dataset:
    """The pixel attributes of one frame: the top level's, completed from the frame's own functional
    group and the shared one (enhanced multi-frame objects keep rescale and window there)."""
    from pydicom.dataset import Dataset

    view = Dataset()
    if "file_meta" in header.__dict__ or hasattr(header, "file_meta"):
        view.file_meta = header.file_meta  # a VOI or modality LUT in OW needs the byte order
    for keyword in _PIXEL_KEYWORDS:
        if keyword in header:
            setattr(view, keyword, header.get(keyword))
    for group in frame_groups(header, index):
        for sequence, keywords in _FRAME_GROUPS.items():
            items = group.get(sequence)
            if not items:
                continue
            for keyword in keywords:
                if keyword not in view and keyword in items[0]:
                    setattr(view, keyword, items[0].get(keyword))
    return view


def _first(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(
            value[0] if not isinstance(value, str | bytes) and hasattr(value, "__getitem__") else value
        )
    except (TypeError, ValueError, IndexError):
        return None


def _own_window(attributes: Dataset) -> Window | None:
    center, width = _first(attributes.get("WindowCenter")), _first(attributes.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    function = _FUNCTIONS.get(str(attributes.get("VOILUTFunction", "LINEAR")).upper(), "linear")
    return Window(center, width, function, "instance")


def _grey(
    pixels: NDArray[Any], attributes: Dataset, window: Window | Literal["auto"] | None
) -> tuple[NDArray[np.float64], Window | None]:
    """Modality LUT then VOI: display values from 0 to 1, and the window used (None for a VOI LUT)."""
    import numpy as np
    from pydicom.pixels.processing import apply_modality_lut, apply_voi

    values = np.asarray(apply_modality_lut(pixels, attributes), dtype=np.float64)
    if window is None:
        window = _own_window(attributes)
        if window is None and attributes.get("VOILUTSequence"):
            entries, first, bits = (int(v) for v in attributes.VOILUTSequence[0].LUTDescriptor)
            entries = entries or 65536  # 0 means 2**16 entries (PS3.3 C.11.2.1.1)
            # Clamped to the LUT's input range first: pydicom indexes the LUT in its output's integer
            # type, where an input far above the range would wrap around instead of taking the last entry.
            inputs = np.rint(np.clip(values, first, first + entries - 1)).astype(np.int64)
            out = np.asarray(apply_voi(inputs, attributes, index=0), dtype=np.float64)
            return np.clip(out / float(2 ** (bits or 16) - 1), 0.0, 1.0), None
    if not isinstance(window, Window):
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        window = Window((low + high) / 2, max(high - low, 1.0), "linear_exact", "auto")
    return apply_window(values, window), window


def apply_window(values: NDArray[Any], window: Window) -> NDArray[np.float64]:
    """PS3.3 C.11.2.1.2 (linear, linear exact) and C.11.2.1.3 (sigmoid), vectorised; 0..1."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if window.function == "sigmoid":
        out = 1.0 / (1.0 + np.exp(-4.0 * (x - window.center) / window.width))
    elif window.function == "linear_exact":
        out = (x - window.center) / window.width + 0.5
    else:
        out = (x - (window.center - 0.5)) / max(window.width - 1.0, 1e-9) + 0.5
    return np.asarray(np.clip(out, 0.0, 1.0), dtype=np.float64)


def _to_bytes(grey: NDArray[np.float64]) -> NDArray[np.uint8]:
    import numpy as np

    return np.asarray(np.rint(grey * 255.0), dtype=np.uint8)


def _colour(pixels: NDArray[Any], attributes: Dataset, header: Dataset) -> NDArray[np.uint8]:
    """RGB bytes from RGB, YBR (pydicom converts it when decoding) or palette colour pixel data (its
    lookup tables are in ``header``)."""
    import numpy as np
    from pydicom.pixels.processing import apply_color_lut

    photometric = str(attributes.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, header)
        bits = 16 if pixels.dtype.itemsize > 1 else 8
    else:
        bits = int(attributes.get("BitsStored") or 8)
    if pixels.ndim == 2:  # a grey image that is not labelled monochrome: show it as grey
        pixels = np.stack([pixels] * 3, axis=-1)
    if bits > 8:
        scaled = pixels.astype(np.float64) * (255.0 / float(2**bits - 1))
        return np.asarray(np.clip(np.rint(scaled), 0, 255), dtype=np.uint8)
    return np.asarray(pixels, dtype=np.uint8)
