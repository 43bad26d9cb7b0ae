"""dicom/dicomjson.py: plain values out of DICOM JSON elements as servers really send them."""

from __future__ import annotations

from typing import Any

import pytest

from dicomweb_mcp.dicom.dicomjson import element_value, element_values, sequence_items


@pytest.mark.parametrize(
    ("element", "values"),
    [
        ({"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}, ["Doe^Jane"]),
        ({"vr": "PN", "Value": [{"Ideographic": "山田^太郎"}]}, ["山田^太郎"]),
        ({"vr": "PN", "Value": [{"Phonetic": "ya^ta"}]}, ["ya^ta"]),
        ({"vr": "PN", "Value": [{}]}, []),
        ({"vr": "US", "Value": [512.0]}, [512]),
        ({"vr": "IS", "Value": [3.0, 4.0]}, [3, 4]),
        ({"vr": "DS", "Value": [2.0]}, [2.0]),  # a decimal string stays a float
        ({"vr": "LO", "Value": ["a", "", None, "b"]}, ["a", "b"]),
        ({"vr": "LO"}, []),
        ({"vr": "LO", "Value": []}, []),
        ({"vr": "SQ", "Value": [{"00100010": {"vr": "PN"}}]}, []),
        ({"vr": "OB", "BulkDataURI": "http://x/bulk"}, []),
    ],
)
def test_element_values(element: dict[str, Any], values: list[Any]) -> None:
    got = element_values({"00000001": element}, "00000001")
    assert got == values
    assert [type(v) for v in got] == [type(v) for v in values]


def test_absent_or_malformed_elements_have_no_values() -> None:
    assert element_values({}, "00100010") == []
    assert element_values({"00100010": "Doe"}, "00100010") == []


@pytest.mark.parametrize(
    ("value_list", "expected"), [([], None), (["CT"], "CT"), (["CT", "MR"], ["CT", "MR"])]
)
def test_element_value_is_one_value_or_a_list(value_list: list[str], expected: Any) -> None:
    assert element_value({"00080061": {"vr": "CS", "Value": value_list}}, "00080061") == expected


def test_sequence_items_keep_only_mappings() -> None:
    item = {"00081150": {"vr": "UI", "Value": ["1.2"]}}
    dataset = {"00081199": {"vr": "SQ", "Value": [item, "junk", None]}}
    assert sequence_items(dataset, "00081199") == [item]


@pytest.mark.parametrize("element", [{"vr": "SQ"}, {"vr": "SQ", "Value": None}, None, "x"])
def test_empty_or_odd_sequences_have_no_items(element: Any) -> None:
    assert sequence_items({"00081199": element}, "00081199") == []
