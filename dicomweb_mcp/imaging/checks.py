"""The image attributes a picture is made from, checked before anything is decoded or asked of a server.

Archives hold malformed values (a Number of Frames of ``1A``, Rows of 0, Bits Allocated of 12, palette
colour without its tables). Each is refused here with a message that names the instance, the attribute
and its value, and says what still works, instead of failing deep inside a decoder or a server.
The same checks read a pydicom header (a file rendered here) and DICOM JSON metadata (a server's picture).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import DicomWebError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["ImageShape", "MalformedImageError", "RenderError", "check_image", "count_value", "pixel_bytes"]

# What an agent can still do with an instance no picture is made of.
STILL_WORKS = (
    "Its metadata (retrieve_metadata) and its file as stored (retrieve_instances) can still be retrieved."
)


class RenderError(DicomWebError):
    """The instance's pixel data could not be turned into a picture."""


class MalformedImageError(RenderError):
    """An attribute a picture is made from holds a value no picture can be made with."""

    def __init__(self, instance_uid: str, keyword: str, value: Any, reason: str) -> None:
        self.instance_uid, self.keyword, self.value = instance_uid, keyword, value
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        super().__init__(
            f"Instance {instance_uid} cannot be shown as a picture: its {keyword} is {shown} ({reason}). "
            + STILL_WORKS
        )


# Photometric interpretations PS3.3 C.7.6.3.1.2 defines (retired ones left out), with their samples.
_SAMPLES = {
    "MONOCHROME1": 1,
    "MONOCHROME2": 1,
    "PALETTE COLOR": 1,
    "RGB": 3,
    "YBR_FULL": 3,
    "YBR_FULL_422": 3,
    "YBR_PARTIAL_420": 3,
    "YBR_ICT": 3,
    "YBR_RCT": 3,
}
_BITS_ALLOCATED = frozenset({1, 8, 16, 32})


@dataclass(frozen=True)
class ImageShape:
    rows: int
    columns: int
    frames: int
    samples: int
    bits: int | None  # Bits Allocated, when the attributes say


def count_value(value: Any) -> int | None:
    """A non-negative integer from an IS/US value as servers and files give it (``7``, ``"7 "``,
    ``7.0``), or None when it is not one (``"1A"``, ``2.5``, several values, a negative number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+").isdigit():
        number = int(value.strip())
    else:
        return None
    return number if number >= 0 else None


def check_image(get: Callable[[str], Any], instance_uid: str) -> ImageShape:
    """The shape of an image from its attributes (``get(keyword)``: the value, None when absent); a
    ``MalformedImageError`` naming the first attribute no picture can be made with."""

    def refuse(keyword: str, value: Any, reason: str) -> MalformedImageError:
        return MalformedImageError(instance_uid, keyword, value, reason)

    def number(keyword: str, default: int | None = None) -> int | None:
        value = get(keyword)
        if value is None or value == "":
            return default
        parsed = count_value(value)
        if parsed is None:
            raise refuse(keyword, value, "not a whole number of 0 or more")
        return parsed

    rows, columns = number("Rows"), number("Columns")
    for keyword, size in (("Rows", rows), ("Columns", columns)):
        if not size:  # None cannot happen for an image (the caller checked), 0 can
            raise refuse(keyword, get(keyword), "an image needs at least one")
    assert rows is not None and columns is not None
    # PS3.3 says at least 1; 0 is read as 1, as pydicom reads it.
    frames = number("NumberOfFrames", 1) or 1
    bits = number("BitsAllocated")
    if bits is not None and bits not in _BITS_ALLOCATED:
        raise refuse("BitsAllocated", get("BitsAllocated"), "pictures are made from 1, 8, 16 or 32 bits")
    stored = number("BitsStored")
    if stored is not None and bits is not None and not 1 <= stored <= bits:
        raise refuse("BitsStored", get("BitsStored"), f"it must be from 1 to Bits Allocated ({bits})")
    representation = number("PixelRepresentation")
    if representation is not None and representation > 1:
        raise refuse("PixelRepresentation", get("PixelRepresentation"), "it must be 0 or 1")
    photometric = get("PhotometricInterpretation")
    name = str(photometric).strip().upper() if photometric is not None else "MONOCHROME2"
    if name not in _SAMPLES:
        raise refuse("PhotometricInterpretation", photometric, "not one the standard defines")
    samples = number("SamplesPerPixel", _SAMPLES[name])
    if samples != _SAMPLES[name]:
        raise refuse("SamplesPerPixel", get("SamplesPerPixel"), f"{name} has {_SAMPLES[name]}")
    return ImageShape(rows, columns, frames, _SAMPLES[name], bits)


def pixel_bytes(shape: ImageShape) -> int | None:
    """Bytes of native (uncompressed) pixel data the shape needs, or None when Bits Allocated is unknown."""
    if shape.bits is None:
        return None
    return (shape.rows * shape.columns * shape.samples * shape.frames * shape.bits + 7) // 8


def header_value(header: Dataset, keyword: str) -> Any:
    """An attribute's value, or its bytes as stored when pydicom cannot read them as its VR says (so that a
    check can name the malformed value rather than call it missing)."""
    try:
        return header.get(keyword)
    except Exception:  # pydicom raises several kinds for a value it cannot convert
        from pydicom.datadict import tag_for_keyword
        from pydicom.tag import Tag

        tag = tag_for_keyword(keyword)
        raw = header._dict.get(Tag(tag)) if tag is not None else None
        return getattr(raw, "value", None)


def frame_groups(header: Dataset, frame: int | None) -> list[Dataset]:
    """The functional groups that describe frame ``frame`` (0-based) of an enhanced multi-frame object, the
    frame's own first and then the shared one; none for other objects."""
    groups: list[Dataset] = []
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if frame is not None and per_frame and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = header.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    return groups
