"""dicom/deidentify.py through its public entry points: the Basic Profile's action per attribute and VR,
consistent UIDs, the Modified Dates and Clean Descriptors options, private tags and the marks left behind.

The expected action of each attribute is read from the module's own table (load_profile), so these check
that the table is carried out, whatever its contents; a fake Pseudonyms makes every replacement known.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, timedelta
from typing import Any

import pytest
from pydicom import datadict
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicomweb_mcp.dicom.confidentiality_profile import load_profile, profile_summary
from dicomweb_mcp.dicom.deidentify import DeidentifyOptions, deidentify_dataset
from dicomweb_mcp.dicom.validation import is_valid_uid

BASIC_ONLY = DeidentifyOptions(modified_dates=False, clean_descriptors=False)
SHIFT = -45


class FakePseudonyms:
    """Deterministic replacements, recorded, so that a test can say exactly what a value must become."""

    def __init__(self) -> None:
        self.patient_keys: list[str] = []

    def uid(self, original: str) -> str:
        return "2.25." + str(int(hashlib.sha256(original.encode()).hexdigest()[:24], 16))

    def date_shift_days(self, patient_key: str) -> int:
        self.patient_keys.append(patient_key)
        return SHIFT

    def patient_id(self, patient_key: str) -> str:
        return f"PID-{patient_key[::-1]}"

    def patient_name(self, patient_key: str) -> str:
        return f"PSEUDO^{patient_key[::-1]}"


def dataset(**extra: Any) -> Dataset:
    """A small CT header with identifying values; ``extra`` keywords are added or override."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "SENDING_AE"
    ds.preamble = b"VENDOR TEXT".ljust(128, b"\x00")
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.Modality = "CT"
    ds.PatientName = "Doe^John"
    ds.PatientID = "MRN12345"
    ds.BurnedInAnnotation = "NO"
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def rule_of(keyword: str) -> str:
    tag = datadict.tag_for_keyword(keyword)
    assert tag is not None, keyword
    rule = load_profile().rule(tag)
    assert rule is not None, keyword
    return rule.basic


SAMPLE_VALUES: dict[str, Any] = {
    "AE": "SOME_AE",
    "AS": "042Y",
    "CS": "SOMECODE",
    "DA": "20240315",
    "DS": "72.5",
    "DT": "20240315101500",
    "LO": "Long value",
    "LT": "Long text",
    "PN": "Someone^Else",
    "SH": "SHORT",
    "ST": "Short text",
    "TM": "101500",
    "UC": "unlimited",
    "UI": "1.2.999.1",
    "US": 3,
    "UT": "unlimited text",
}


@pytest.mark.parametrize(
    "keyword",
    [
        "PatientAge",
        "PatientSize",
        "PhysiciansOfRecord",
        "OtherPatientNames",
        "InstitutionAddress",
        "PatientBirthTime",
        "PregnancyStatus",
        "StudyDescription",
        "StationAETitle",
        "AffectedSOPInstanceUID",
        "CameraOwnerName",
    ],
)
def test_x_attributes_are_removed(keyword: str) -> None:
    assert rule_of(keyword) == "X"
    ds = dataset(**{keyword: SAMPLE_VALUES[datadict.dictionary_VR(datadict.tag_for_keyword(keyword))]})
    deidentify_dataset(ds, FakePseudonyms(), BASIC_ONLY)
    assert keyword not in ds


@pytest.mark.parametrize(
    "keyword",
    [
        "ReferringPhysicianName",
        "AccessionNumber",
        "StudyID",
        "StudyDate",
        "StudyTime",
        "PatientSex",
        "PatientBirthDate",
    ],
)
def test_z_attributes_are_kept_empty(keyword: str) -> None:
    assert rule_of(keyword) == "Z"
    ds = dataset(**{keyword: SAMPLE_VALUES[datadict.dictionary_VR(datadict.tag_for_keyword(keyword))]})
    deidentify_dataset(ds, FakePseudonyms(), BASIC_ONLY)
    assert keyword in ds and ds[keyword].value in (None, "")


def valid_for_vr(vr: str, value: Any) -> bool:
    """Whether a dummy is a well-formed value of its VR."""
    if vr == "DA":
        return date(int(value[:4]), int(value[4:6]), int(value[6:8])) is not None and len(value) == 8
    if vr == "TM":
        return re.fullmatch(r"\d{6}", value) is not None
    if vr == "DT":
        return re.fullmatch(r"\d{14}", value) is not None
    if vr == "AS":
        return re.fullmatch(r"\d{3}[DWMY]", value) is not None
    if vr == "UI":
        return is_valid_uid(str(value))
    return isinstance(value, str) and bool(value.strip())


@pytest.mark.parametrize(
    "keyword",
    [
        "VerifyingObserverName",  # PN
        "Date",  # DA
        "Time",  # TM
        "FrameAcquisitionDateTime",  # DT
        "ClinicalTrialSponsorName",  # LO
        "SelectorASValue",  # AS
        "DestinationAE",  # AE
        "XRaySourceID",  # UC
        "AnnotationGroupUID",  # UI
    ],
)
def test_d_attributes_get_a_dummy_of_their_vr(keyword: str) -> None:
    assert rule_of(keyword) == "D"
    vr = datadict.dictionary_VR(datadict.tag_for_keyword(keyword))
    original = SAMPLE_VALUES[vr]
    ds = dataset(**{keyword: original})
    pseudonyms = FakePseudonyms()
    deidentify_dataset(ds, pseudonyms, BASIC_ONLY)
    value = ds[keyword].value
    assert value not in (None, "", original)
    assert valid_for_vr(vr, str(value)), (vr, value)
    if vr == "UI":  # a UID dummy is the pseudonym, so references to it still resolve
        assert value == pseudonyms.uid(original)


@pytest.mark.parametrize(
    "keyword", ["ContentSequence", "VerifyingObserverSequence", "IssuerOfTheContainerIdentifierSequence"]
)
def test_z_and_d_sequences_are_emptied(keyword: str) -> None:
    assert rule_of(keyword) in ("Z", "D")
    item = Dataset()
    item.TextValue = "Findings for John Doe"
    ds = dataset(**{keyword: Sequence([item])})
    deidentify_dataset(ds, FakePseudonyms(), BASIC_ONLY)
    assert keyword in ds and len(ds[keyword].value) == 0


def test_an_x_sequence_is_removed() -> None:
    assert rule_of("ReferringPhysicianIdentificationSequence") == "X"
    ds = dataset(ReferringPhysicianIdentificationSequence=Sequence([Dataset()]))
    deidentify_dataset(ds, FakePseudonyms(), BASIC_ONLY)
    assert "ReferringPhysicianIdentificationSequence" not in ds


def test_patient_name_and_id_get_the_patients_pseudonyms() -> None:
    ds = dataset()
    pseudonyms = FakePseudonyms()
    deidentify_dataset(ds, pseudonyms, BASIC_ONLY)
    # The patient is keyed by the original ID, so all of one patient's studies stay linked.
    assert ds.PatientID == pseudonyms.patient_id("MRN12345")
    assert str(ds.PatientName) == pseudonyms.patient_name("MRN12345")


def test_without_an_id_the_patient_is_keyed_by_name() -> None:
    ds = dataset()
    del ds.PatientID
    pseudonyms = FakePseudonyms()
    deidentify_dataset(ds, pseudonyms, DeidentifyOptions())
    assert pseudonyms.patient_keys == ["Doe^John"]


def test_uids_are_replaced_consistently_across_instances_and_references() -> None:
    pseudonyms = FakePseudonyms()
    first = dataset(FrameOfReferenceUID="1.2.3.9")
    reference = Dataset()
    reference.ReferencedSOPClassUID = CTImageStorage
    reference.ReferencedSOPInstanceUID = first.SOPInstanceUID
    second = dataset(
        SOPInstanceUID="1.2.3.4.5.7", FrameOfReferenceUID="1.2.3.9", SourceImageSequence=Sequence([reference])
    )
    reports = [deidentify_dataset(ds, pseudonyms, BASIC_ONLY) for ds in (first, second)]
    assert first.StudyInstanceUID == second.StudyInstanceUID == pseudonyms.uid("1.2.3")
    assert first.FrameOfReferenceUID == second.FrameOfReferenceUID == pseudonyms.uid("1.2.3.9")
    assert second.SourceImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert first.SOPInstanceUID == pseudonyms.uid("1.2.3.4.5.6") != second.SOPInstanceUID
    # Class UIDs name a definition, not the archive: kept.
    assert (
        first.SOPClassUID == CTImageStorage
        and second.SourceImageSequence[0].ReferencedSOPClassUID == CTImageStorage
    )
    assert [r.instance_uid for r in reports] == [first.SOPInstanceUID, second.SOPInstanceUID]
    assert reports[0].study_uid == first.StudyInstanceUID and reports[0].series_uid == first.SeriesInstanceUID


def test_a_uid_the_table_does_not_list_is_replaced_too() -> None:
    ds = dataset()
    ds.add_new(
        0x00089123, "UI", "1.2.3.77"
    )  # CreatorVersionUID: not in the table, names this archive's object
    if load_profile().rule(0x00089123) is not None:
        pytest.skip("the table now lists CreatorVersionUID")
    pseudonyms = FakePseudonyms()
    deidentify_dataset(ds, pseudonyms, BASIC_ONLY)
    assert ds[0x00089123].value == pseudonyms.uid("1.2.3.77")


def test_private_elements_are_removed_at_every_level() -> None:
    item = Dataset()
    item.add_new(0x00291010, "LO", "private in an item")
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.6"
    ds = dataset(SourceImageSequence=Sequence([item]))
    block = ds.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "secret")
    deidentify_dataset(ds, FakePseudonyms(), BASIC_ONLY)
    assert not [e for e in ds.iterall() if e.tag.is_private]
    assert "ReferencedSOPInstanceUID" in ds.SourceImageSequence[0]


# The unreadable ContentDate is set on purpose; pydicom warns about it when the test builds it.
@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_modified_dates_shift_dates_and_date_times_by_the_patients_days() -> None:
    ds = dataset(
        StudyDate="20240315",
        AcquisitionDateTime="20240301235959.5+0100",
        StudyTime="101500",
        ContentDate="garbage!",
    )
    ds.SeriesDate = ["20240101", "20231231"]
    deidentify_dataset(ds, FakePseudonyms(), DeidentifyOptions(modified_dates=True, clean_descriptors=False))

    def shifted(text: str) -> str:
        return (date(int(text[:4]), int(text[4:6]), int(text[6:8])) + timedelta(days=SHIFT)).strftime(
            "%Y%m%d"
        )

    assert ds.StudyDate == shifted("20240315")
    assert ds.AcquisitionDateTime == shifted("20240301") + "235959.5+0100"  # the time part kept
    assert list(ds.SeriesDate) == [shifted("20240101"), shifted("20231231")]
    assert ds.StudyTime == "101500"  # whole days do not move a time
    assert ds.ContentDate in (None, "")  # what cannot be read as a date is not kept
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_without_modified_dates_dates_follow_the_basic_profile() -> None:
    ds = dataset(StudyDate="20240315", PatientBirthDate="19600203")
    deidentify_dataset(ds, FakePseudonyms(), BASIC_ONLY)
    assert ds.StudyDate in (None, "") and ds.PatientBirthDate in (None, "")
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


def test_birth_date_is_emptied_even_with_modified_dates() -> None:
    ds = dataset(PatientBirthDate="19600203")
    deidentify_dataset(ds, FakePseudonyms(), DeidentifyOptions())
    assert ds.PatientBirthDate in (None, "")


@pytest.mark.parametrize(
    ("description", "kept"),
    [
        ("CT chest for Doe John", "CT chest for"),
        ("MRN12345 follow-up", "follow-up"),
        ("Scan of 15/03/2024 ACC-77", "Scan of"),
        ("Clinical trial", "Clinical trial"),  # nothing identifying: kept whole
    ],
)
def test_clean_descriptors_cut_identifying_values(description: str, kept: str) -> None:
    ds = dataset(StudyDescription=description, StudyDate="20240315", AccessionNumber="ACC-77")
    deidentify_dataset(ds, FakePseudonyms(), DeidentifyOptions(modified_dates=False, clean_descriptors=True))
    assert ds.StudyDescription == kept


def test_options_are_recorded_in_the_de_identification_method() -> None:
    for options, codes in [
        (BASIC_ONLY, ["113100"]),
        (DeidentifyOptions(), ["113100", "113107", "113105"]),
        (DeidentifyOptions(modified_dates=False), ["113100", "113105"]),
    ]:
        ds = dataset()
        deidentify_dataset(ds, FakePseudonyms(), options)
        assert ds.PatientIdentityRemoved == "YES"
        assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == codes
        assert len(codes) == ds["DeidentificationMethod"].VM


def test_file_meta_and_preamble_are_rebuilt() -> None:
    ds = dataset()
    deidentify_dataset(ds, FakePseudonyms(), BASIC_ONLY)
    assert "SourceApplicationEntityTitle" not in ds.file_meta
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.preamble == b"\x00" * 128


@pytest.mark.parametrize(
    ("extra", "warned"),
    [
        ({"BurnedInAnnotation": "YES"}, "BurnedInAnnotation is YES"),
        ({"BurnedInAnnotation": "NO", "Modality": "US"}, None),
        ({"Modality": "US"}, "a US image"),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7", "Modality": "CT"}, "a secondary capture"),
        ({"Modality": "CT"}, None),
    ],
)
def test_pixels_that_may_carry_text_are_warned_about(extra: dict[str, str], warned: str | None) -> None:
    ds = dataset()
    del ds.BurnedInAnnotation
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    report = deidentify_dataset(ds, FakePseudonyms(), BASIC_ONLY)
    if warned is None:
        assert report.warnings == []
    else:
        assert len(report.warnings) == 1 and warned in report.warnings[0]


def test_the_report_counts_actions() -> None:
    ds = dataset(PatientAge="042Y", PatientSize="1.8", AccessionNumber="A1")
    report = deidentify_dataset(ds, FakePseudonyms(), BASIC_ONLY)
    assert report.actions["X"] >= 2 and report.actions["Z"] >= 1 and report.actions["U"] >= 3


def test_profile_summary_counts_every_rule() -> None:
    summary = profile_summary()
    assert sum(summary.values()) == len(load_profile().rules)
    assert list(summary.values()) == sorted(summary.values(), reverse=True)
    assert {"X", "Z", "D", "U"} <= set(summary)
