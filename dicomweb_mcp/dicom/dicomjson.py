"""Reading DICOM JSON (PS3.18 F.2): the plain values of an element, the items of a sequence.

A person name becomes its Alphabetic string; empty values, sequences and bulk data give no values.
Elements are named by keyword (``SOPInstanceUID``) or by the key DICOM JSON uses (``00080018``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from .dictionary import tag_of

__all__ = ["DicomJson", "element_value", "element_values", "json_key", "sequence_items"]

DicomJson = Mapping[str, Any]

_JSON_KEY = re.compile(r"[0-9A-F]{8}")


@cache
def json_key(name: str) -> str:
    """The DICOM JSON key of an element named by keyword or by its key (eight upper-case hex digits).

    Converted once per name: a key is taken as it is, without loading the dictionary (pydicom), so
    reading by key costs no start-up time; a keyword is looked up in the dictionary on its first use.
    """
    return name if _JSON_KEY.fullmatch(name) else tag_of(name)


def _plain(value: Any, vr: str) -> Any:
    if vr == "PN" and isinstance(value, Mapping):
        return value.get("Alphabetic") or value.get("Ideographic") or value.get("Phonetic")
    if isinstance(value, float) and value.is_integer() and vr in ("IS", "US", "UL", "SS", "SL"):
        return int(value)
    return value


def element_values(dataset: DicomJson, name: str) -> list[Any]:
    """The plain values of one element: empty when it is absent, empty, a sequence or bulk data."""
    element = dataset.get(json_key(name))
    if not isinstance(element, Mapping):
        return []
    vr = str(element.get("vr", ""))
    if vr == "SQ":
        return []
    values = [_plain(v, vr) for v in element.get("Value") or []]
    return [v for v in values if v is not None and v != ""]


def element_value(dataset: DicomJson, name: str) -> Any:
    """The plain value of one element (a list when it has several), or None when it has none."""
    values = element_values(dataset, name)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def sequence_items(dataset: DicomJson, name: str) -> list[DicomJson]:
    """The items of a sequence element (Orthanc sends an empty one as ``{"vr": "SQ"}``)."""
    element = dataset.get(json_key(name))
    items = element.get("Value") if isinstance(element, Mapping) else None
    return [item for item in items or [] if isinstance(item, Mapping)]
