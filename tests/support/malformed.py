"""Malformed values written into generated instances as raw bytes, past pydicom's checks, the way a
faulty modality or a careless converter writes them: numbers that are not numbers, sizes of zero or
far too large, pixel data of the wrong length, unknown photometric interpretations, broken names and dates."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from .imaging import Instance, ct_dataset, save, uid

__all__ = ["Mutation", "malformed_ct", "raw_value", "set_raw"]


@dataclass(frozen=True)
class Mutation:
    """One attribute set to one malformed value: the bytes as written, and the VR they are written with
    (the dictionary's unless a value of another kind is forced in, such as text in a US attribute)."""

    keyword: str
    value: bytes
    vr: str | None = None

    def __str__(self) -> str:
        return f"{self.keyword}={self.value[:40]!r}" + (f" as {self.vr}" if self.vr else "")


def raw_value(keyword: str, value: int | str | bytes) -> bytes:
    """``value`` as the bytes of ``keyword``'s VR: binary for US/SS, text otherwise (padded to even)."""
    if isinstance(value, int):
        vr = dictionary_VR(keyword)
        if vr in ("US", "SS"):
            return struct.pack("<H" if vr == "US" else "<h", value)
        value = str(value)
    data = value.encode("latin-1", "replace") if isinstance(value, str) else value
    return data + (b" " if len(data) % 2 else b"")


def set_raw(ds: Dataset, keyword: str, data: bytes, vr: str | None = None) -> None:
    """Put ``data`` in ``ds`` as ``keyword``'s value exactly, unparsed (odd lengths padded with a space)."""
    tag = Tag(tag_for_keyword(keyword))
    if len(data) % 2:
        data += b"\0" if keyword == "PixelData" else b" "
    chosen = vr or dictionary_VR(keyword)
    if chosen == "OB or OW":
        chosen = "OW"
    ds._dict[tag] = RawDataElement(tag, chosen, len(data), data, 0, False, True)


def malformed_ct(directory: Path, mutation: Mutation, *, series_uid: str | None = None) -> Instance:
    """A valid 32 x 32 CT slice (a window, a rescale) with one attribute replaced by a malformed value."""
    hu = np.full((32, 32), -1000, np.int16)
    hu[8:24, 8:24] = 40
    ds = ct_dataset(hu, study_uid=uid(), series_uid=series_uid or uid(), window=(40, 400))
    if mutation.keyword == "PixelData":
        pixels = bytes(ds.PixelData)
        # A length below the image's is a cut; above it, padding after the last frame.
        length = int(mutation.value.decode())
        data = pixels[:length] if length <= len(pixels) else pixels + bytes(length - len(pixels))
        set_raw(ds, "PixelData", data, "OW")
    else:
        set_raw(ds, mutation.keyword, mutation.value, mutation.vr)
    return save(ds, directory)
