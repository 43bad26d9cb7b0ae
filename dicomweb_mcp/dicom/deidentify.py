"""De-identification: DICOM PS3.15 Annex E, the Basic Application Level Confidentiality Profile, with the
Retain Longitudinal Temporal Information with Modified Dates and Clean Descriptors options.

The attribute actions are the standard's Table E.1-1 (confidentiality_profile.py). How each action is
carried out here:

- X: removed. Z: emptied (Patient's Name and ID get the patient's pseudonym, a dummy the profile allows,
  so that one patient's studies stay linkable). D: a dummy of the element's VR. U: the UID replaced
  through the pseudonyms, the same source UID always giving the same new UID, inside sequences too, so
  references between instances still resolve. K: kept.
- Where the table gives a choice that depends on the IOD's attribute type, the one that keeps every
  object conformant whatever the type is taken (``ProfileRule.action``).
- Sequences: X removes one, Z and D empty it (the report content of a Structured Report, Content
  Sequence, is D: a de-identified SR keeps no text), U and K keep it and act on its items.
- Private attributes (odd groups) are all removed.
- Modified Dates: dates and date-times are shifted by the patient's number of days (one shift per
  patient); times are kept, since a shift by whole days does not change them.
- Clean Descriptors: a description is kept with every identifying value found in the same data set (the
  patient's names and their parts, IDs, accession number, institution, physicians and operators, dates)
  cut out of it. Without the option a descriptor takes the Basic Profile action (usually X).

Pixel data is never changed: images whose pixels may carry text (BurnedInAnnotation YES; ultrasound,
secondary capture and other kinds that often do) are reported in warnings.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from .confidentiality_profile import ConfidentialityProfile, ProfileRule, load_profile

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["DeidentifyOptions", "DeidentifyReport", "Pseudonyms", "deidentify_dataset"]

# CID 7050 (De-identification Method): the profile and the options applied.
_BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
_CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")
# Kinds of image whose pixels often carry text (patient name, dates) burned in.
_BURNED_IN_MODALITIES = frozenset({"US", "SC", "XC", "ES", "GM", "OT", "DOC"})
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS", "AE"})
# Identifying values shorter than this are not cut out of descriptions (one letter would cut too much).
_MIN_CLEANED = 2
_MIN_SPLIT = 3
# Values this short or shorter are cut only as whole words.
_WHOLE_WORD = 4
# UID attributes that name a definition, not anything of an archive: kept whatever their value.
_KEPT_UIDS = frozenset(
    {"CodingSchemeUID", "ContextUID", "ContextGroupExtensionCreatorUID", "ImplementationClassUID"}
)
_DUMMIES: dict[str, Any] = {
    "PN": "ANONYMOUS",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "CS": "ANONYMIZED",
    "AE": "ANONYMIZED",
}


class Pseudonyms(Protocol):
    """Where replacement values come from: the same input always gives the same output."""

    def uid(self, original: str) -> str: ...
    def date_shift_days(self, patient_key: str) -> int: ...
    def patient_id(self, patient_key: str) -> str: ...
    def patient_name(self, patient_key: str) -> str: ...


@dataclass(frozen=True)
class DeidentifyOptions:
    modified_dates: bool = True
    clean_descriptors: bool = True


@dataclass
class DeidentifyReport:
    study_uid: str
    series_uid: str
    instance_uid: str
    warnings: list[str] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)


def deidentify_dataset(ds: Dataset, pseudonyms: Pseudonyms, options: DeidentifyOptions) -> DeidentifyReport:
    """De-identify ``ds`` (and its file meta) in place."""
    warnings = burned_in_warnings(ds)
    patient_key = str(ds.get("PatientID") or "") or str(ds.get("PatientName") or "") or "unknown"
    work = _Work(
        load_profile(),
        pseudonyms,
        options,
        patient_key,
        pseudonyms.date_shift_days(patient_key) if options.modified_dates else 0,
        _identifying_values(ds),
    )
    work.dataset(ds)
    _new_file_meta(ds)
    _mark(ds, options)
    return DeidentifyReport(
        str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), warnings, work.actions
    )


def _new_file_meta(ds: Dataset) -> None:
    """A file meta group of the essentials only, and an empty preamble: both can carry anything (sending
    and receiving AE titles, private information, a vendor's text in the preamble)."""
    from pydicom.dataset import FileMetaDataset

    old = getattr(ds, "file_meta", None)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if old is not None and "TransferSyntaxUID" in old:
        meta.TransferSyntaxUID = old.TransferSyntaxUID
    ds.file_meta = meta
    if getattr(ds, "preamble", None) is not None:
        ds.preamble = b"\x00" * 128


def burned_in_warnings(ds: Dataset) -> list[str]:
    flag = str(ds.get("BurnedInAnnotation") or "").upper()
    if flag == "YES":
        return ["BurnedInAnnotation is YES: text in the pixels may identify the patient (pixels are kept)"]
    if flag == "NO":
        return []
    modality = str(ds.get("Modality") or "")
    sop_class = str(ds.get("SOPClassUID") or "")
    if modality in _BURNED_IN_MODALITIES or sop_class.startswith(_SECONDARY_CAPTURE):
        kind = "a secondary capture" if sop_class.startswith(_SECONDARY_CAPTURE) else f"a {modality} image"
        return [f"{kind} without BurnedInAnnotation: its pixels may carry identifying text (pixels are kept)"]
    return []


def _identifying_values(ds: Dataset) -> re.Pattern[str] | None:
    """One pattern for the text the profile removes from this data set, to cut out of the descriptions it
    keeps: each value, its parts (name components, the letters and digits of an ID), and a date also as
    people write it (2024-03-15, 15/03/2024, 03/15/2024, 15.03.2024). Short parts match as whole words
    only, so that "Li" does not cut "Clinical"; longest first, so that a full name goes before its parts."""
    profile = load_profile()
    found: set[str] = set()
    for element in ds.iterall():
        if element.VR not in _TEXT_VRS | {"DA", "DT"} or element.value in (None, ""):
            continue
        rule = profile.rule(int(element.tag))
        private = element.tag.group % 2 == 1
        if not private and (rule is None or rule.basic in ("K", "C") or rule.clean_descriptor):
            continue
        for value in _values(element.value) or [element.value]:
            text = str(value).strip()
            found.add(text)
            for part in re.split(r"[\^=\s,]+", text):
                found.add(part)
                # The letters and the digits of an ID apart ("MRN 12345678"), not of a short code ("CT01").
                found.update(t for t in re.findall(r"[A-Za-z]+|[0-9]+", part) if len(t) >= _MIN_SPLIT)
            if element.VR in ("DA", "DT") and re.fullmatch(r"[0-9]{8}.*", text):
                y, m, d = text[0:4], text[4:6], text[6:8]
                found.update({f"{y}-{m}-{d}", f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}", f"{y}/{m}/{d}"})
    values = sorted((v for v in found if len(v) >= _MIN_CLEANED), key=len, reverse=True)
    if not values:
        return None
    words = [
        re.escape(v) if len(v) > _WHOLE_WORD else rf"(?<![0-9A-Za-z]){re.escape(v)}(?![0-9A-Za-z])"
        for v in values
    ]
    return re.compile("|".join(words), re.IGNORECASE)


def _values(value: Any) -> list[Any] | None:
    """The values of a multi-valued element, or None for a single value."""
    from pydicom.multival import MultiValue

    return list(value) if isinstance(value, list | tuple | MultiValue) else None


@dataclass
class _Work:
    profile: ConfidentialityProfile
    pseudonyms: Pseudonyms
    options: DeidentifyOptions
    patient_key: str
    shift_days: int
    identifying: re.Pattern[str] | None
    actions: Counter[str] = field(default_factory=Counter)

    def dataset(self, ds: Dataset, clean_text: bool = False) -> None:
        """``clean_text``: inside a sequence kept under Clean Descriptors, whose items' text (code meanings,
        free text) the table does not name one by one."""
        for element in list(ds):
            tag = int(element.tag)
            if element.tag.group % 2 == 1:
                del ds[tag]
                self.actions["X"] += 1
                continue
            rule = self.profile.rule(tag)
            if element.VR == "SQ":
                self.sequence(ds, element, rule, clean_text)
            elif rule is not None:
                self.element(ds, element, rule)
            elif element.VR == "UI" and _refers_to_an_instance(element):
                # A UID the table does not list (multi-frame sources, other frames of reference): it names
                # something of the source archive, so it gets the same new UID as everywhere else.
                self.actions["U"] += 1
                element.value = self.uids(element.value)
            elif clean_text and element.VR in _TEXT_VRS:
                self.actions["C"] += 1
                element.value = self.cleaned(element.value)

    def sequence(self, ds: Dataset, element: Any, rule: ProfileRule | None, clean_text: bool) -> None:
        """X removes a sequence; Z and D empty it (what its items hold is the identifying part: a dummy
        item would still be a made-up record, so none is kept); U and K keep it and act on its items."""
        if rule is None:
            self.items(element, clean_text)
            return
        action = rule.action
        if self.options.clean_descriptors and rule.clean_descriptor:
            action = "C"  # a coded description: kept, every text in its items cleaned
        self.actions[action] += 1
        if action == "X":
            del ds[element.tag]
        elif action in ("Z", "D"):
            element.value = []
        else:
            self.items(element, clean_text or action == "C")

    def items(self, element: Any, clean_text: bool) -> None:
        for item in element.value:
            self.dataset(item, clean_text)

    def element(self, ds: Dataset, element: Any, rule: ProfileRule) -> None:
        vr = element.VR
        if self.options.modified_dates and rule.modified_dates and vr in ("DA", "DT", "TM"):
            self.actions["C"] += 1
            if vr != "TM":
                element.value = _shifted(element.value, vr, self.shift_days)
            return
        if self.options.clean_descriptors and rule.clean_descriptor and vr in _TEXT_VRS:
            self.actions["C"] += 1
            element.value = self.cleaned(element.value)
            return
        action = rule.action
        self.actions[action] += 1
        if action == "K":
            return
        if action == "X":
            del ds[element.tag]
        elif action == "U" or vr == "UI":
            element.value = self.uids(element.value)
        elif element.keyword == "PatientID":
            element.value = self.pseudonyms.patient_id(self.patient_key)
        elif element.keyword == "PatientName":
            element.value = self.pseudonyms.patient_name(self.patient_key)
        elif action == "Z":
            element.value = None if vr not in ("OB", "OW", "UN") else b""
        elif action == "D":
            element.value = _dummy(vr)
        else:  # C in the Basic Profile itself: clean
            element.value = self.cleaned(element.value) if vr in _TEXT_VRS else None

    def uids(self, value: Any) -> Any:
        if value in (None, ""):
            return value
        values = _values(value)
        if values is not None:
            return [self.pseudonyms.uid(str(v)) for v in values]
        return self.pseudonyms.uid(str(value))

    def cleaned(self, value: Any) -> Any:
        if value in (None, ""):
            return value
        values = _values(value)
        if values is not None:
            return [self._clean(str(v)) for v in values]
        return self._clean(str(value))

    def _clean(self, text: str) -> str:
        if self.identifying is not None:
            text = self.identifying.sub("", text)
        return " ".join(text.split())


def _refers_to_an_instance(element: Any) -> bool:
    """A UID naming something of this archive (an instance, a frame of reference, a concatenation), not
    a class, a transfer syntax or another UID the standard registers."""
    from pydicom.uid import UID

    if element.keyword.endswith(("ClassUID", "SyntaxUID")) or element.keyword in _KEPT_UIDS:
        return False
    values = _values(element.value)
    for value in values if values is not None else [element.value]:
        if value and UID(str(value)).name == str(value):  # not in the standard's UID registry
            return True
    return False


def _dummy(vr: str) -> Any:
    if vr in _DUMMIES:
        return _DUMMIES[vr]
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
        return 0
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b""
    return "ANONYMIZED"


def _shifted(value: Any, vr: str, days: int) -> Any:
    if value in (None, ""):
        return value
    values = _values(value)
    if values is not None:
        return [_shift_one(str(v), days) for v in values]
    return _shift_one(str(value), days)


def _shift_one(text: str, days: int) -> str | None:
    """A DA (YYYYMMDD) or DT (YYYYMMDD...) shifted by ``days``; what cannot be read is removed."""
    text = text.strip()
    try:
        day = date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
        shifted = day + timedelta(days=days)
    except (ValueError, OverflowError):  # not a date, or one that cannot move that far back (year 1)
        return None
    return shifted.strftime("%Y%m%d") + text[8:]


def _mark(ds: Dataset, options: DeidentifyOptions) -> None:
    """PatientIdentityRemoved and the De-identification Method (and its code sequence), as PS3.15 E.1 asks."""
    from pydicom.dataset import Dataset as Item
    from pydicom.sequence import Sequence

    codes: Iterable[tuple[str, str]] = [_BASIC_PROFILE]
    if options.modified_dates:
        codes = [*codes, _MODIFIED_DATES]
    if options.clean_descriptors:
        codes = [*codes, _CLEAN_DESCRIPTORS]
    items = []
    for value, meaning in codes:
        item = Item()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [meaning for _, meaning in codes]
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if options.modified_dates else "REMOVED"
