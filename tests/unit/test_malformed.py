"""Malformed values archives hold (issue 18): each is refused with a message naming the instance, the
attribute and its value, and what still works; none escapes as a bare exception (ValueError from int(),
pydantic's ValidationError, a decoder's error)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import CTImageStorage

from dicomweb_mcp.imaging.checks import MalformedImageError, count_value
from dicomweb_mcp.imaging.render import render_file
from dicomweb_mcp.tools.rendering import _server_plan
from tests.support.malformed import Mutation, malformed_ct


def us(value: int) -> bytes:
    return struct.pack("<H", value)


@pytest.mark.parametrize(
    ("mutation", "named"),
    [
        (Mutation("NumberOfFrames", b"1A"), "its NumberOfFrames is '1A'"),
        (Mutation("NumberOfFrames", b"-1"), "its NumberOfFrames is '-1'"),
        (Mutation("NumberOfFrames", b"1000000000"), "its PixelData length is 2048"),
        (Mutation("Rows", us(0)), "its Rows is 0"),
        (Mutation("Columns", us(65535)), "its PixelData length is 2048"),
        (Mutation("Rows", us(1) + us(2)), "its Rows is [1, 2]"),
        (Mutation("BitsAllocated", us(12)), "its BitsAllocated is 12"),
        (Mutation("BitsStored", us(17)), "its BitsStored is 17"),
        (Mutation("SamplesPerPixel", us(3)), "its SamplesPerPixel is 3"),
        (Mutation("PixelRepresentation", us(2)), "its PixelRepresentation is 2"),
        (
            Mutation("PhotometricInterpretation", b"MONOCHROME3"),
            "its PhotometricInterpretation is 'MONOCHROME3'",
        ),
        (Mutation("PhotometricInterpretation", b"PALETTE COLOR"), "lookup tables are missing"),
        (Mutation("PixelData", b"1000"), "its PixelData length is 1000"),
    ],
    ids=str,
)
def test_a_malformed_image_attribute_is_refused_by_name(
    tmp_path: Path, mutation: Mutation, named: str
) -> None:
    instance = malformed_ct(tmp_path, mutation)
    with pytest.raises(MalformedImageError) as refused:
        render_file(instance.path, frame=None, size=64, window=None)
    message = str(refused.value)
    assert instance.instance_uid in message and named in message
    assert "retrieve_metadata" in message and "retrieve_instances" in message


def test_rows_missing_beside_pixel_data_is_named(tmp_path: Path) -> None:
    instance = malformed_ct(tmp_path, Mutation("PatientName", b"X"))
    import pydicom

    ds = pydicom.dcmread(instance.path)
    del ds.Rows
    ds.save_as(instance.path)
    with pytest.raises(MalformedImageError, match=r"its Rows is None \(it is missing"):
        render_file(instance.path, frame=None, size=64, window=None)


def test_a_number_of_frames_of_zero_is_read_as_one(tmp_path: Path) -> None:
    instance = malformed_ct(tmp_path, Mutation("NumberOfFrames", b"0"))
    assert render_file(instance.path, frame=None, size=64, window=None).frames == 1


def metadata(**values: tuple[str, Any]) -> dict[str, Any]:
    from dicomweb_mcp.dicom.dicomjson import json_key

    return {json_key(k): {"vr": vr, "Value": [v]} for k, (vr, v) in values.items()}


GOOD = {
    "SOPClassUID": ("UI", CTImageStorage),
    "SOPInstanceUID": ("UI", "1.2.3"),
    "Rows": ("US", 32),
    "Columns": ("US", 32),
    "BitsAllocated": ("US", 16),
    "PhotometricInterpretation": ("CS", "MONOCHROME2"),
}


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("NumberOfFrames", ("IS", "1A")),
        ("Rows", ("US", 0)),
        ("Columns", ("US", 0)),
        ("BitsAllocated", ("US", 24)),
    ],
)
def test_the_server_is_not_asked_for_a_picture_of_malformed_metadata(
    keyword: str, value: tuple[str, Any]
) -> None:
    # Orthanc drops the connection when asked to render an image of 0 rows; int("1A") raised ValueError.
    with pytest.raises(MalformedImageError, match=f"Instance 1.2.3 .*its {keyword} is"):
        _server_plan(metadata(**{**GOOD, keyword: value}), None, 64, None, "1.2.3")


def test_metadata_without_rows_but_with_pixel_data_is_malformed_not_a_report() -> None:
    data = metadata(**{k: v for k, v in GOOD.items() if k != "Rows"})
    data["7FE00010"] = {"vr": "OW", "BulkDataURI": "http://x/bulk"}
    with pytest.raises(MalformedImageError, match="its Rows is None"):
        _server_plan(data, None, 64, None, "1.2.3")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, 7),
        ("7", 7),
        (" 7 ", 7),
        (7.0, 7),
        ("1A", None),
        (2.5, None),
        (-1, None),
        ("", None),
        ([1, 2], None),
        (True, None),
    ],
)
def test_count_value(value: Any, expected: int | None) -> None:
    assert count_value(value) == expected
