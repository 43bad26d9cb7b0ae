"""STOW-RS responses turned into one outcome per file sent.

The rule that matters: an instance counts as stored only when the server names it in
ReferencedSOPSequence. Orthanc silently drops parts it does not like and still answers 200.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._models import DicomFile, StoreOutcome, StoreStatus
from ._summary import element_values, sequence_items

__all__ = [
    "FAILED_SOP_SEQUENCE",
    "FAILURE_REASONS",
    "REFERENCED_SOP_SEQUENCE",
    "WARNING_REASONS",
    "outcomes_from_response",
]

# PS3.18 / PS3.4 status codes and the Azure DICOM service's own, as data.
FAILURE_REASONS: Mapping[int, str] = {
    0x0110: "processing failure",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xA700: "out of resources",
    0xA900: "data set does not match the SOP class, or its study does not match the request's study",
    43265: "the instance's StudyInstanceUID does not match the study named in the request",
    45070: "an instance with the same study, series and SOP instance UIDs is already stored",
    45071: "the instance is being stored by another request, or an earlier attempt failed and is not "
    "cleaned up yet: try again later",
    0xC000: "the server cannot understand the file",
}
WARNING_REASONS: Mapping[int, str] = {
    1: "stored with validation warnings",
    0xB000: "data elements were coerced",
    0xB006: "elements were discarded",
    0xB007: "data set does not match the SOP class (stored with validation warnings)",
}
ALREADY_STORED = 45070

REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
_SOP_INSTANCE_UID = "00081155"
_FAILURE_REASON = "00081197"
_WARNING_REASON = "00081196"


def _uid(item: Mapping[str, Any]) -> str | None:
    values = element_values(item, _SOP_INSTANCE_UID)
    return str(values[0]) if values else None


def _codes(item: Mapping[str, Any], tag: str) -> list[int]:
    return [int(v) for v in element_values(item, tag) if isinstance(v, int | str) and str(v).isdigit()]


def _describe(code: int, table: Mapping[int, str]) -> str:
    text = table.get(code)
    return f"{text} (code {code}, 0x{code:04X})" if text else f"code {code} (0x{code:04X})"


def outcomes_from_response(
    dataset: Mapping[str, Any],
    sent: Sequence[DicomFile],
    *,
    known_before: Iterable[str] = (),
    retried: bool = False,
) -> list[StoreOutcome]:
    """One outcome per file in ``sent``, in order.

    ``known_before``: SOP instance UIDs the server had before this request. ``retried``: the request was
    sent more than once, so "already stored" may be this request's own earlier attempt; it counts as
    stored unless the UID was known before.
    """
    referenced = {_uid(item): item for item in sequence_items(dataset, REFERENCED_SOP_SEQUENCE)}
    failed: dict[str, Mapping[str, Any]] = {}
    anonymous_failures: list[int] = []
    for item in sequence_items(dataset, FAILED_SOP_SEQUENCE):
        uid = _uid(item)
        if uid:
            failed[uid] = item
        else:
            anonymous_failures.extend(_codes(item, _FAILURE_REASON))
    already = set(known_before)
    outcomes = []
    for file in sent:
        uid = file.instance_uid
        if uid in failed:
            codes = _codes(failed[uid], _FAILURE_REASON)
            code = codes[0] if codes else None
            if code == ALREADY_STORED and retried and uid not in already:
                outcomes.append(StoreOutcome(file, StoreStatus.STORED))
            elif code == ALREADY_STORED:
                outcomes.append(StoreOutcome(file, StoreStatus.ALREADY_PRESENT, code, FAILURE_REASONS[code]))
            else:
                reason = _describe(code, FAILURE_REASONS) if code is not None else "no reason given"
                outcomes.append(StoreOutcome(file, StoreStatus.FAILED, code, reason))
        elif uid in referenced:
            warnings = [_describe(c, WARNING_REASONS) for c in _codes(referenced[uid], _WARNING_REASON)]
            status = StoreStatus.ALREADY_PRESENT if uid in already else StoreStatus.STORED
            outcomes.append(StoreOutcome(file, status, warnings=warnings))
        else:
            reason = (
                "the server did not acknowledge this instance, so it was not stored "
                "(some servers drop parts silently)"
            )
            code = anonymous_failures[0] if anonymous_failures else None
            if code is not None:
                reason = f"{_describe(code, FAILURE_REASONS)}; {reason}"
            outcomes.append(StoreOutcome(file, StoreStatus.FAILED, code, reason))
    return outcomes
