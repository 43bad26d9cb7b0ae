"""The UIDs of a DICOM Part 10 file, read from its first bytes without pydicom.

Every saved instance and every file to upload needs its study, series and instance UIDs. pydicom parses
far more than that, a cost a study of thousands of small instances pays thousands of times; walking the
few elements before group 0020 here costs next to nothing. Only the common encodings are walked
(explicit and implicit VR little endian, including sequences of undefined length); anything else, or a
header that does not fit in the bytes given, returns None and the caller falls back to pydicom.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["HEAD_BYTES", "Part10Header", "is_part10", "read_header"]

HEAD_BYTES = 64 * 1024  # enough for the header of almost every real instance

_IMPLICIT_LE = "1.2.840.10008.1.2"
_NOT_WALKED = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})  # big endian, deflated
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_WANTED = {
    0x00080016: "sop_class_uid",
    0x00080018: "instance_uid",
    0x0020000D: "study_uid",
    0x0020000E: "series_uid",
}
_LAST = 0x0020000E
_MAX_DEPTH = 16  # sequences nested deeper than this before group 0020 go to pydicom
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TAG = struct.Struct("<HH")


@dataclass(frozen=True, slots=True)
class Part10Header:
    transfer_syntax_uid: str | None
    sop_class_uid: str | None
    instance_uid: str | None
    study_uid: str | None
    series_uid: str | None


class _Short(Exception):
    """The bytes end before the elements needed: let pydicom read the whole file."""


def is_part10(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def _text(value: bytes) -> str:
    return value.rstrip(b"\x00 ").decode("ascii", errors="replace").strip()


def _element(data: bytes, pos: int, explicit: bool) -> tuple[int, bytes, int, int]:
    """(tag, vr, value length, header length) of the element at ``pos``."""
    if pos + 8 > len(data):
        raise _Short
    group, elem = _TAG.unpack_from(data, pos)
    tag = group << 16 | elem
    if not explicit or group == 0xFFFE:  # items and delimiters carry no VR in any encoding
        return tag, b"", _U32.unpack_from(data, pos + 4)[0], 8
    vr = data[pos + 4 : pos + 6]
    if vr in _LONG_VRS:
        if pos + 12 > len(data):
            raise _Short
        return tag, vr, _U32.unpack_from(data, pos + 8)[0], 12
    return tag, vr, _U16.unpack_from(data, pos + 6)[0], 8


def _skip_sequence(data: bytes, pos: int, explicit: bool, depth: int = 0) -> int:
    """Skip the items of a sequence of undefined length; return the position after its delimiter."""
    if depth > _MAX_DEPTH:
        raise _Short  # a hostile nesting: pydicom, or its error, decides
    while True:
        tag, _, length, header = _element(data, pos, False)
        pos += header
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _Short  # malformed: not ours to judge, pydicom will say
        if length == _UNDEFINED:
            pos = _skip_elements(data, pos, explicit, until_item_end=True, depth=depth + 1)
        else:
            pos += length


def _skip_elements(data: bytes, pos: int, explicit: bool, *, until_item_end: bool, depth: int) -> int:
    while True:
        tag, vr, length, header = _element(data, pos, explicit)
        if until_item_end and tag == _ITEM_END:
            return pos + header
        pos += header
        if length == _UNDEFINED:
            # A sequence, or UN of undefined length whose content is implicit VR (PS3.5 6.2.2).
            pos = _skip_sequence(data, pos, explicit and vr != b"UN", depth + 1)
        else:
            pos += length


def read_header(head: bytes) -> Part10Header | None:
    """The UIDs in ``head`` (the first bytes of a Part 10 file), or None if pydicom must read the file.

    A UID that is absent comes back as None; values are returned as found, unvalidated.
    """
    if not is_part10(head):
        return None
    try:
        pos = 132
        transfer_syntax = None
        while pos + 8 <= len(head) and _U16.unpack_from(head, pos)[0] == 0x0002:  # the file meta group
            tag, _, length, header = _element(head, pos, True)
            if tag == 0x00020010:
                transfer_syntax = _text(head[pos + header : pos + header + length])
            pos += header + length
        if not transfer_syntax or transfer_syntax in _NOT_WALKED:
            return None
        explicit = transfer_syntax != _IMPLICIT_LE
        found: dict[str, str] = {}
        while True:
            if pos + 8 > len(head):
                raise _Short
            tag, vr, length, header = _element(head, pos, explicit)
            if tag > _LAST:
                break
            pos += header
            if length == _UNDEFINED:
                pos = _skip_sequence(head, pos, explicit and vr != b"UN")
                continue
            if tag in _WANTED:
                if pos + length > len(head) or (explicit and vr != b"UI"):
                    raise _Short  # not where or what a UID should be: let pydicom judge
                found[_WANTED[tag]] = _text(head[pos : pos + length])
            pos += length
            if tag == _LAST:
                break
    except (_Short, struct.error):
        return None
    return Part10Header(
        transfer_syntax_uid=transfer_syntax,
        # The dataset's own UIDs only, as pydicom reads them: the file meta's copies are not a substitute.
        sop_class_uid=found.get("sop_class_uid"),
        instance_uid=found.get("instance_uid"),
        study_uid=found.get("study_uid"),
        series_uid=found.get("series_uid"),
    )
