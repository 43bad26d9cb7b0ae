"""Reading DICOM JSON (PS3.18 F.2): the plain values of an element, the items of a sequence.

A person name becomes its Alphabetic string; empty values, sequences and bulk data give no values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DicomJson", "element_value", "element_values", "sequence_items"]

DicomJson = Mapping[str, Any]


def _plain(value: Any, vr: str) -> Any:
    if vr == "PN" and isinstance(value, Mapping):
        return value.get("Alphabetic") or value.get("Ideographic") or value.get("Phonetic")
    if isinstance(value, float) and value.is_integer() and vr in ("IS", "US", "UL", "SS", "SL"):
        return int(value)
    return value


def element_values(dataset: DicomJson, tag: str) -> list[Any]:
    """The plain values of one element: empty when it is absent, empty, a sequence or bulk data."""
    element = dataset.get(tag)
    if not isinstance(element, Mapping):
        return []
    vr = str(element.get("vr", ""))
    if vr == "SQ":
        return []
    values = [_plain(v, vr) for v in element.get("Value") or []]
    return [v for v in values if v is not None and v != ""]


def element_value(dataset: DicomJson, tag: str) -> Any:
    """The plain value of one element (a list when it has several), or None when it has none."""
    values = element_values(dataset, tag)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def sequence_items(dataset: DicomJson, tag: str) -> list[DicomJson]:
    """The items of a sequence element (Orthanc sends an empty one as ``{"vr": "SQ"}``)."""
    element = dataset.get(tag)
    items = element.get("Value") if isinstance(element, Mapping) else None
    return [item for item in items or [] if isinstance(item, Mapping)]
