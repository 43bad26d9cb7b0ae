"""dicom/validation.py: UIDs, dates, times, frames and scopes checked before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest

from dicomweb_mcp.dicom.validation import (
    is_valid_uid,
    normalize_date_range,
    normalize_time_range,
    validate_frames,
    validate_uid,
)
from dicomweb_mcp.errors import InvalidInputError


@pytest.mark.parametrize(("value", "valid"), [("1" * 64, True), ("1" * 65, False), ("1." * 31 + "1", True)])
def test_uid_length_limit_is_64(value: str, valid: bool) -> None:
    assert len(value) <= 64 or not valid
    assert is_valid_uid(value) is valid


def test_uids_with_leading_zeros_are_accepted() -> None:
    # Real archives hold them; only the characters and length keep URLs and file names safe.
    assert validate_uid("1.02.003") == "1.02.003"


@pytest.mark.parametrize("value", [None, 123, ["1.2"]])
def test_a_uid_that_is_not_text_is_refused(value: Any) -> None:
    with pytest.raises(InvalidInputError, match="study_uid"):
        validate_uid(value, "study_uid")


def test_the_refusal_shows_at_most_80_characters_of_a_huge_value() -> None:
    with pytest.raises(InvalidInputError) as caught:
        validate_uid("9" * 10_000)
    assert "9" * 81 not in str(caught.value) and "9" * 70 in str(caught.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2024-02-29", "20240229"),  # a leap day
        ("  20200101  ", "20200101"),
        ("2020-0101", "20200101"),  # either hyphen may be left out
        ("20200101 - 20200131", "20200101-20200131"),
        ("2020-01-01-", "20200101-"),
        ("-2020-12-31", "-20201231"),
        ("2020-01-01-20201231", "20200101-20201231"),
    ],
)
def test_date_forms_become_dicom_form(given: str, expected: str) -> None:
    assert normalize_date_range(given) == expected


@pytest.mark.parametrize(
    "given", ["2023-02-29", "20200132", "20200001", "2020-1-1", "", "--", "2020-01-01--"]
)
def test_impossible_or_malformed_dates_are_refused(given: str) -> None:
    with pytest.raises(InvalidInputError, match="not a date or date range"):
        normalize_date_range(given, "StudyDate")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("12", "12"),
        ("1230", "1230"),
        ("12:30", "1230"),
        ("12:30:45", "123045"),
        ("123045.123456", "123045.123456"),
        ("235960", "235960"),  # a leap second
        ("080000-120000", "080000-120000"),
        ("08:00-", "0800-"),
        ("-17:00", "-1700"),
    ],
)
def test_time_forms_become_dicom_form(given: str, expected: str) -> None:
    assert normalize_time_range(given) == expected


@pytest.mark.parametrize("given", ["24", "1260", "123061", "1", "12:3", "123045.1234567", "-", "ab"])
def test_impossible_or_malformed_times_are_refused(given: str) -> None:
    with pytest.raises(InvalidInputError, match="StudyTime"):
        normalize_time_range(given, "StudyTime")


@pytest.mark.parametrize("frames", [[1], [3, 1, 3], range(1, 5)])
def test_positive_frame_numbers_come_back_as_a_list(frames: Any) -> None:
    assert validate_frames(frames) == list(frames)


@pytest.mark.parametrize(
    ("frames", "message"),
    [([], "No frame numbers"), ([0], "numbered from 1"), ([1, -2], "-2"), ([True], "True"), (["1"], "'1'")],
)
def test_bad_frame_numbers_are_refused(frames: list[Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        validate_frames(frames)
