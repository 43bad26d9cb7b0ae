"""Validation of what goes into URLs, file names and queries: UIDs, dates, times, frame numbers.

Everything here raises ``InvalidInputError`` with a message that says what a valid value looks like, so
that bad input is refused before any request is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

from ..errors import InvalidInputError

__all__ = [
    "UID_PATTERN",
    "is_valid_uid",
    "normalize_date_range",
    "normalize_time_range",
    "validate_frames",
    "validate_uid",
]

# PS3.5 9.1: components of digits separated by dots, no leading zero in a multi-digit component,
# at most 64 characters. Servers and real archives do contain leading zeros now and then, so only the
# character set and length are enforced: that is what keeps URLs and file names safe.
UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
_UID_RE = re.compile(UID_PATTERN)
_DATE_RE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
_TIME_RE = re.compile(r"^(\d{2})(:?(\d{2})(:?(\d{2})(\.\d{1,6})?)?)?$")


def is_valid_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and _UID_RE.match(value) is not None


def validate_uid(value: str, what: str = "UID") -> str:
    """Return ``value`` if it is a syntactically valid DICOM UID, else raise ``InvalidInputError``."""
    if not isinstance(value, str) or not is_valid_uid(value):
        shown = repr(value)[:80]
        raise InvalidInputError(
            f"{what} {shown} is not a valid DICOM UID: it must be digits separated by dots, "
            "at most 64 characters (for example 1.2.840.113619.2.55.3)."
        )
    return value


def _normalize_date(value: str) -> str:
    match = _DATE_RE.match(value.strip())
    if not match:
        raise ValueError(value)
    year, month, day = (int(g) for g in match.groups())
    date(year, month, day)  # raises ValueError for 2020-02-30 and the like
    return f"{year:04d}{month:02d}{day:02d}"


def normalize_date_range(value: str, what: str = "date") -> str:
    """Accept ``YYYYMMDD``, ``YYYY-MM-DD`` or a range of them (``A-B``, ``A-``, ``-B``); return DICOM form."""
    text = value.strip()
    try:
        if _DATE_RE.match(text):
            return _normalize_date(text)
        start, end = _split_range(text)
        return f"{_normalize_date(start) if start else ''}-{_normalize_date(end) if end else ''}"
    except ValueError:
        raise InvalidInputError(
            f"{what} {value!r} is not a date or date range: use YYYYMMDD or YYYY-MM-DD, or a range "
            "such as 20200101-20201231 (open ends allowed: 20200101- or -20201231)."
        ) from None


def _split_range(text: str) -> tuple[str, str]:
    """Split a DICOM range on its separating hyphen, which for ISO dates is not the first hyphen."""
    if text.count("-") == 1:
        start, end = text.split("-")
    else:
        # ISO dates contain hyphens themselves: a range of them is "YYYY-MM-DD-YYYY-MM-DD" or with a
        # separator padded by spaces. The separator is the hyphen that leaves a date on both sides.
        for i, ch in enumerate(text):
            if ch == "-" and _is_date_or_empty(text[:i]) and _is_date_or_empty(text[i + 1 :]):
                start, end = text[:i], text[i + 1 :]
                break
        else:
            raise ValueError(text)
    start, end = start.strip(), end.strip()
    if not start and not end:
        raise ValueError(text)
    return start, end


def _is_date_or_empty(text: str) -> bool:
    return not text.strip() or _DATE_RE.match(text.strip()) is not None


def normalize_time_range(value: str, what: str = "time") -> str:
    """Accept ``HHMMSS`` (or ``HH:MM:SS``, fractions allowed) or a range of them; return DICOM form."""

    def one(part: str) -> str:
        match = _TIME_RE.match(part.strip())
        if not match:
            raise ValueError(part)
        digits = part.strip().replace(":", "")
        hh, mm, ss = int(digits[0:2]), int(digits[2:4] or 0), int(digits[4:6] or 0)
        if hh > 23 or mm > 59 or ss > 60:
            raise ValueError(part)
        return digits

    text = value.strip()
    try:
        if "-" not in text:
            return one(text)
        start, _, end = text.partition("-")
        if not start.strip() and not end.strip():
            raise ValueError(text)
        return f"{one(start) if start.strip() else ''}-{one(end) if end.strip() else ''}"
    except ValueError:
        raise InvalidInputError(
            f"{what} {value!r} is not a time or time range: use HHMMSS or HH:MM:SS, or a range such as "
            "080000-120000."
        ) from None


def validate_frames(frames: Iterable[int]) -> list[int]:
    """Frame numbers are 1-based positive integers; at least one, no duplicates needed."""
    result = list(frames)
    if not result:
        raise InvalidInputError("No frame numbers given: pass a list of 1-based frame numbers such as [1].")
    for number in result:
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise InvalidInputError(
                f"Frame number {number!r} is invalid: frames are numbered from 1 (the first frame is 1)."
            )
    return result
