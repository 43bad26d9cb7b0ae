"""Pictures as bytes: JPEG sized to a byte budget, PNG, and reading a picture a server rendered.

A picture meant for a model must be small (hosts cap a result's size): without an explicit quality, a
JPEG is encoded at the highest quality that fits a budget proportional to its pixel count (20 KB for
512 x 512). Pillow is imported inside the functions.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..dicom.windows import Window

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["MediaType", "Picture", "decode", "dimensions", "encode", "fit_budget", "jpeg_budget"]

MediaType = Literal["image/jpeg", "image/png"]
Renderer = Literal["server", "local"]


@dataclass(frozen=True)
class Picture:
    """One frame as a picture, from the renderer (here or the server's) to the tool's result: the pixels
    made here (``image``) or the bytes a server encoded (``data``, in ``media_type``)."""

    renderer: Renderer
    width: int
    height: int
    # The window applied, for a result ("lung -600/1500", "auto", "instance VOI LUT"); None for colour.
    label: str | None = None
    # Its numbers, here or asked of the server; None when none is known (the server's own min-max, a VOI
    # LUT, colour).
    window: Window | None = None
    frames: int | None = None  # the instance's frame count, when it was read here
    notes: tuple[str, ...] = ()
    image: Image | None = None
    data: bytes | None = None
    media_type: str | None = None

    def pixels(self) -> Image:
        """The picture decoded (a contact sheet's tile, a picture to encode again)."""
        if self.image is not None:
            return self.image
        assert self.data is not None
        return decode(self.data)

    def encoded(self, media_type: MediaType, quality: int | None) -> bytes:
        """The picture in ``media_type``: the server's bytes when they fit, else encoded here (a JPEG
        without an explicit quality within the budget of its size)."""
        if self.data is not None and self.media_type == media_type:
            if media_type == "image/png" or quality is not None:
                return self.data
            budget = jpeg_budget(self.width, self.height)
            return self.data if len(self.data) <= budget else fit_budget(decode(self.data), budget)
        return encode(self.pixels(), media_type, quality)


# 20 KB for a 512 x 512 picture (0.6 bits a pixel), a few KB at least.
_BYTES_PER_PIXEL = 20_000 / (512 * 512)
_MIN_BUDGET = 3_000
# Tried from the best down; below 30 a grey picture shows blocks a model may take for structure.
_QUALITIES = (90, 85, 80, 75, 70, 65, 60, 55, 50, 45, 40, 35, 30)


def jpeg_budget(width: int, height: int) -> int:
    return max(_MIN_BUDGET, int(width * height * _BYTES_PER_PIXEL))


def _jpeg(image: Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def encode(
    image: Image, media_type: MediaType, quality: int | None = None, budget: int | None = None
) -> bytes:
    """Encode ``image``: PNG (lossless), JPEG at ``quality``, or JPEG at the best quality within
    ``budget`` bytes (default: ``jpeg_budget`` of its size)."""
    if media_type == "image/png":
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=6)
        return buffer.getvalue()
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if quality is not None:
        return _jpeg(image, quality)
    return fit_budget(image, budget if budget is not None else jpeg_budget(*image.size))


def fit_budget(image: Image, budget: int) -> bytes:
    """The best JPEG of ``image`` within ``budget`` bytes, or the smallest tried when none fits."""
    low, high = 0, len(_QUALITIES) - 1
    best: bytes | None = None
    # Binary search over the quality ladder (sizes fall as quality falls): about 4 encodes, not 13.
    while low <= high:
        middle = (low + high) // 2
        data = _jpeg(image, _QUALITIES[middle])
        if len(data) <= budget:
            best, high = data, middle - 1
        else:
            low = middle + 1
    return best if best is not None else _jpeg(image, _QUALITIES[-1])


def decode(data: bytes) -> Image:
    """A picture a server sent, decoded (for the contact sheet or to re-encode it within a budget)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a picture's header, or None when it is not a picture Pillow reads."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None
