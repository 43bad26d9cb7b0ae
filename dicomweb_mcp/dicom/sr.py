"""A Structured Report's content tree (PS3.3 C.17.3) as indented text a person or a model reads.

Each content item is one line, ``Concept name: value``, indented by its depth; containers are headings.
Coded values carry their code (``Lung (SCT 39607008)``), numbers their unit (``12.5 mm``), references
the UID they point to. Works for every SR class (Basic Text, Enhanced, Comprehensive, 3D, Extensible...)
and every template inside them: it reads the tree, not a template. Takes a pydicom Dataset; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["code_text", "concept_name", "observer_name", "person_name", "sr_text"]

_INDENT = "  "
# (DCM, 121008) Person Observer Name: who made the observations, in the observation context.
_PERSON_OBSERVER = ("DCM", "121008")
# UCUM's "no unit": a count or a ratio.
_NO_UNIT = "1"


def code_text(item: Dataset) -> str:
    """``Meaning (SCHEME value)`` for one code sequence item."""
    meaning = str(item.get("CodeMeaning", "")).strip()
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue") or ""
    scheme = str(item.get("CodingSchemeDesignator", "")).strip()
    code = f"{scheme} {value}".strip()
    if meaning and code:
        return f"{meaning} ({code})"
    return meaning or code


def concept_name(item: Dataset) -> str:
    """The meaning of an item's ConceptNameCodeSequence, or an empty string."""
    names = item.get("ConceptNameCodeSequence")
    return str(names[0].get("CodeMeaning", "")).strip() if names else ""


def person_name(value: Any) -> str:
    """``Doe^Jane`` as ``Doe, Jane``: family name first, as reports list people."""
    text = str(value or "").strip()
    if not text:
        return ""
    parts = [p.strip() for p in text.split("=")[0].split("^")]
    family, given = parts[0], " ".join(p for p in parts[1:3] if p)
    return f"{family}, {given}" if family and given else family or given


def _number(item: Dataset) -> str:
    measured = item.get("MeasuredValueSequence")
    if not measured:
        qualifier = item.get("NumericValueQualifierCodeSequence")
        return code_text(qualifier[0]) if qualifier else "(no value)"
    value = measured[0]
    number = str(value.get("NumericValue", "")).strip()
    units = value.get("MeasurementUnitsCodeSequence")
    if not units:
        return number
    unit = units[0]
    symbol = str(unit.get("CodeValue", "")).strip()
    if symbol == _NO_UNIT:
        return number
    if str(unit.get("CodingSchemeDesignator", "")).upper() == "UCUM" and symbol:
        return f"{number} {symbol}"
    return f"{number} {unit.get('CodeMeaning') or symbol}".strip()


def _reference(item: Dataset) -> str:
    references = item.get("ReferencedSOPSequence")
    if not references:
        return ""
    reference = references[0]
    from .sopclass import sop_class_name

    text = f"{reference.get('ReferencedSOPInstanceUID', '')}"
    kind = sop_class_name(reference.get("ReferencedSOPClassUID")).split(" (")[0]
    frames = reference.get("ReferencedFrameNumber")
    if frames:
        values = frames if isinstance(frames, Sequence) and not isinstance(frames, str) else [frames]
        text += f" frame {', '.join(str(f) for f in values)}"
    return f"{kind} {text}".strip()


def _coordinates(item: Dataset) -> str:
    shape = str(item.get("GraphicType", "")).strip()
    data = item.get("GraphicData") or []
    dimensions = 3 if item.get("ValueType") == "SCOORD3D" else 2
    points = len(data) // dimensions
    text = f"{shape} with {points} point{'s' if points != 1 else ''}".strip()
    if dimensions == 2 and points:
        text += " (" + ", ".join(f"{data[i]:g},{data[i + 1]:g}" for i in range(0, 2 * min(points, 4), 2))
        text += ", …)" if points > 4 else ")"
    return text


def _value(item: Dataset) -> str:
    kind = str(item.get("ValueType", "")).upper()
    if kind == "TEXT":
        return str(item.get("TextValue", ""))
    if kind == "CODE":
        codes = item.get("ConceptCodeSequence")
        return code_text(codes[0]) if codes else ""
    if kind == "NUM":
        return _number(item)
    if kind == "PNAME":
        return person_name(item.get("PersonName"))
    if kind in ("DATE", "TIME", "DATETIME", "UIDREF"):
        keyword = {"DATE": "Date", "TIME": "Time", "DATETIME": "DateTime", "UIDREF": "UID"}[kind]
        return str(item.get(keyword, ""))
    if kind in ("IMAGE", "COMPOSITE", "WAVEFORM"):
        return _reference(item)
    if kind in ("SCOORD", "SCOORD3D"):
        return _coordinates(item)
    if kind == "TCOORD":
        return str(item.get("TemporalRangeType", ""))
    return ""


def _lines(items: Iterable[Dataset], depth: int) -> Iterable[str]:
    for item in items:
        indent = _INDENT * depth
        referenced = item.get("ReferencedContentItemIdentifier")
        if referenced:
            target = ".".join(str(n) for n in referenced)
            yield f"{indent}(see content item {target})"
            continue
        name = concept_name(item)
        if str(item.get("ValueType", "")).upper() == "CONTAINER":
            yield f"{indent}{name or 'Section'}:"
        else:
            value = _value(item)
            # A multi-line text keeps its lines, each indented under the item.
            value = value.replace("\r\n", "\n").replace("\n", "\n" + indent + _INDENT).rstrip()
            yield f"{indent}{name}: {value}" if name else f"{indent}{value}"
        yield from _lines(item.get("ContentSequence") or [], depth + 1)


def sr_text(dataset: Dataset) -> str:
    """The document's content tree as text: the title, then every content item."""
    title = concept_name(dataset)
    lines = [title] if title else []
    lines.extend(_lines(dataset.get("ContentSequence") or [], 1 if title else 0))
    return "\n".join(lines)


def _find_person_observer(items: Iterable[Dataset]) -> str:
    for item in items:
        names = item.get("ConceptNameCodeSequence")
        if names and (names[0].get("CodingSchemeDesignator"), names[0].get("CodeValue")) == _PERSON_OBSERVER:
            return person_name(item.get("PersonName"))
        found = _find_person_observer(item.get("ContentSequence") or [])
        if found:
            return found
    return ""


def observer_name(dataset: Dataset) -> str:
    """Who stands behind the report: the last verifying observer, else an author observer, else the
    person observer named in the observation context of the tree."""
    verifiers = dataset.get("VerifyingObserverSequence")
    if verifiers:
        return person_name(verifiers[-1].get("VerifyingObserverName"))
    for author in dataset.get("AuthorObserverSequence") or []:
        if author.get("PersonName"):
            return person_name(author.get("PersonName"))
    return _find_person_observer(dataset.get("ContentSequence") or [])
