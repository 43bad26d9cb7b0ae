"""dicomweb/changefeed.py: the API version in a URL, argument checks, and entries read case-insensitively."""

from __future__ import annotations

from typing import Any

import pytest

from dicomweb_mcp.dicomweb.changefeed import (
    change_feed_entry,
    change_feed_version,
    check_change_feed_arguments,
)
from dicomweb_mcp.errors import InvalidInputError


@pytest.mark.parametrize(
    ("url", "version"),
    [
        ("https://ws-svc.dicom.azurehealthcareapis.com/v2", 2),
        ("https://ws-svc.dicom.azurehealthcareapis.com/v1", 1),
        ("https://ws-svc.dicom.azurehealthcareapis.com/v1.0-prerelease", 1),
        ("https://host/dicom/v3/", 3),
        ("https://host/dicom", 1),  # no version segment: v1
        ("https://host/v2x/dicom", 1),  # not a version segment
        ("https://host/dicom?api=v2", 1),  # the query string is not the path
    ],
)
def test_version_from_the_url(url: str, version: int) -> None:
    assert change_feed_version(url) == version


@pytest.mark.parametrize(
    ("version", "offset", "limit", "start", "end"),
    [
        (1, 0, 100, None, None),
        (2, 5, 200, "2024-01-01T00:00:00Z", None),
        (2, 0, None, None, "2024-02-01T00:00:00Z"),
    ],
)
def test_valid_arguments_pass(
    version: int, offset: int, limit: int | None, start: str | None, end: str | None
) -> None:
    check_change_feed_arguments(version, offset, limit, start, end)


@pytest.mark.parametrize(
    ("version", "offset", "limit", "start", "message"),
    [
        (1, -1, None, None, "between 1 and 100"),
        (1, 0, 101, None, "between 1 and 100"),
        (2, 0, 201, None, "between 1 and 200"),
        (2, 0, 0, None, "between 1 and 200"),
        (1, 0, 10, "2024-01-01T00:00:00Z", "need the v2 API"),
    ],
)
def test_bad_arguments_are_refused(
    version: int, offset: int, limit: int | None, start: str | None, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        check_change_feed_arguments(version, offset, limit, start, None)


def test_an_entry_with_camel_and_pascal_case_keys() -> None:
    item: dict[str, Any] = {
        "Sequence": 7,
        "studyInstanceUid": "1.2",
        "SeriesInstanceUID": "1.2.3",
        "sopInstanceUid": "1.2.3.4",
        "action": "Create",
        "timestamp": "2024-03-15T10:15:00Z",
        "state": "Current",
        "partitionName": "Microsoft.Default",
        "metadata": {"00100010": {"vr": "PN"}},
    }
    entry = change_feed_entry(item)
    assert (entry.sequence, entry.study_uid, entry.series_uid, entry.instance_uid) == (
        7,
        "1.2",
        "1.2.3",
        "1.2.3.4",
    )
    assert (entry.action, entry.state, entry.partition) == ("Create", "Current", "Microsoft.Default")
    assert entry.timestamp == "2024-03-15T10:15:00Z" and entry.metadata == item["metadata"]


@pytest.mark.parametrize(("sequence", "read"), [("12", 12), (None, -1), ("twelve", -1), ([], -1)])
def test_an_unreadable_sequence_is_minus_one(sequence: Any, read: int) -> None:
    assert change_feed_entry({"sequence": sequence}).sequence == read


def test_missing_fields_are_none_and_odd_metadata_dropped() -> None:
    entry = change_feed_entry({"sequence": 1, "metadata": "not a dataset"})
    assert entry.study_uid is None and entry.action is None and entry.metadata is None
