"""De-identification (PS3.15 Basic Profile and its two options) on files made here, without a server."""

from __future__ import annotations

import os
import stat
import time
from datetime import date, timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomweb_mcp.config import Config
from dicomweb_mcp.dicom.confidentiality_profile import load_profile, profile_summary
from dicomweb_mcp.dicom.deidentify import DeidentifyOptions
from dicomweb_mcp.errors import NotDicomError
from dicomweb_mcp.files.dicomfiles import DicomFile
from dicomweb_mcp.files.pseudonyms import PseudonymStore, deidentify_file
from dicomweb_mcp.tools.deidentification import Deidentification, sweep_spools
from tests.support.identified import IdentifiedStudy, make_identified_study
from tests.support.synthetic import make_study


@pytest.fixture
def study(tmp_path: Path) -> IdentifiedStudy:
    return make_identified_study(tmp_path / "source", series=1, per_series=2)


def test_the_profile_is_the_standards_table() -> None:
    summary = profile_summary()
    assert sum(summary.values()) == len(load_profile().rules) == 621
    assert summary["X"] == 384 and summary["U"] == 54
    profile = load_profile()
    assert profile.rule(0x00100010).basic == "Z"  # Patient's Name
    assert profile.rule(0x0020000D).basic == "U"  # Study Instance UID
    assert profile.rule(0x60023000).name == "Overlay Data"  # a (60xx,3000) wildcard
    assert profile.rule(0x00280010) is None  # Rows: not in the table, kept


def test_the_same_uid_gets_the_same_new_uid_in_another_process(
    study: IdentifiedStudy, tmp_path: Path
) -> None:
    first = deidentify_file(
        study.paths[0], tmp_path / "a", PseudonymStore(tmp_path / "keys"), DeidentifyOptions()
    )
    # A new store on the same directory stands for another process: it reads the same key.
    again = deidentify_file(
        study.paths[0], tmp_path / "b", PseudonymStore(tmp_path / "keys"), DeidentifyOptions()
    )
    other = deidentify_file(
        study.paths[0], tmp_path / "c", PseudonymStore(tmp_path / "other"), DeidentifyOptions()
    )
    assert (first.file.study_uid, first.file.series_uid, first.file.instance_uid) == (
        again.file.study_uid,
        again.file.series_uid,
        again.file.instance_uid,
    )
    assert first.file.instance_uid != other.file.instance_uid  # another key, other UIDs
    assert first.file.study_uid.startswith("2.25.") and len(first.file.study_uid) <= 64
    assert first.file.path.read_bytes() == again.file.path.read_bytes()


def test_key_and_mapping_are_private_and_the_mapping_can_reidentify(
    study: IdentifiedStudy, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    made = deidentify_file(study.paths[0], tmp_path / "out", PseudonymStore(keys), DeidentifyOptions())
    for name in ("key", "mapping.jsonl"):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600
    mapping = (keys / "mapping.jsonl").read_text()
    assert f'"original": "{study.study_uid}", "replacement": "{made.file.study_uid}"' in mapping


def test_without_the_options_dates_and_descriptions_go(study: IdentifiedStudy, tmp_path: Path) -> None:
    options = DeidentifyOptions(modified_dates=False, clean_descriptors=False)
    made = deidentify_file(study.paths[0], tmp_path / "out", PseudonymStore(tmp_path / "keys"), options)
    ds = pydicom.dcmread(made.file.path)
    assert ds.StudyDate == "" and "ContentDate" in ds and ds.ContentDate == "19000101"  # Z, and Z/D as D
    assert "StudyDescription" not in ds and "SeriesDescription" not in ds  # X
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113100"]


def test_with_the_options_dates_shift_and_descriptions_are_cleaned(
    study: IdentifiedStudy, tmp_path: Path
) -> None:
    store = PseudonymStore(tmp_path / "keys")
    made = deidentify_file(study.paths[0], tmp_path / "out", store, DeidentifyOptions())
    ds = pydicom.dcmread(made.file.path)
    shift = store.date_shift_days("MRN000077")
    assert -3650 <= shift <= -1
    assert ds.StudyDate == (date(2024, 3, 15) + timedelta(days=shift)).strftime("%Y%m%d")
    assert ds.AcquisitionDateTime == ds.StudyDate + "101530"  # the time part kept
    assert ds.StudyTime == "101500"
    assert ds.StudyDescription == "CT chest for"  # the patient's name cut out
    assert ds.PatientID == store.patient_id("MRN000077") and str(ds.PatientName).startswith("ANONYMOUS^")
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == [
        "113100",
        "113107",
        "113105",
    ]


def test_burned_in_text_is_warned_about(tmp_path: Path) -> None:
    [secondary] = make_study(tmp_path / "sc", instances=1)  # secondary capture, no BurnedInAnnotation
    flagged = tmp_path / "flagged.dcm"
    ds = pydicom.dcmread(secondary)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(flagged)
    cleared = tmp_path / "cleared.dcm"
    ds.BurnedInAnnotation = "NO"
    ds.save_as(cleared)
    store, options = PseudonymStore(tmp_path / "keys"), DeidentifyOptions()
    assert "secondary capture" in deidentify_file(secondary, tmp_path / "o1", store, options).warnings[0]
    assert (
        "BurnedInAnnotation is YES" in deidentify_file(flagged, tmp_path / "o2", store, options).warnings[0]
    )
    assert deidentify_file(cleared, tmp_path / "o3", store, options).warnings == []


def test_a_file_that_is_not_dicom_is_refused_and_nothing_written(tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("not an image")
    with pytest.raises(NotDicomError, match="cannot be read as DICOM"):
        deidentify_file(source, tmp_path / "out", PseudonymStore(tmp_path / "keys"), DeidentifyOptions())
    assert not (tmp_path / "out").exists()


def test_report_text_nested_and_multi_valued_elements_do_not_survive(
    study: IdentifiedStudy, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(study.paths[0])
    ds.OtherPatientIDs = ["ALT1X77", "ALT2Y88"]
    ds.AcquisitionDateTime = "20240315101530.123+0100"
    ds.StationName = "CTROOM7"
    ds.file_meta.SourceApplicationEntityTitle = "HOSPITALAE"
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "Lovelace has a nodule"  # report text, in the SR content tree
    item.PersonName = "Watson^John"
    ds.ContentSequence = Sequence([item])
    source = tmp_path / "nested.dcm"
    ds.save_as(source)
    store = PseudonymStore(tmp_path / "keys")
    made = deidentify_file(source, tmp_path / "out", store, DeidentifyOptions())
    raw = made.file.path.read_bytes()
    for value in ("ALT1X77", "ALT2Y88", "Lovelace", "nodule", "Watson", "CTROOM7", "HOSPITALAE", "20240315"):
        assert value.encode() not in raw, value
    copy = pydicom.dcmread(made.file.path)
    assert len(copy.ContentSequence) == 0  # D on a sequence: no item kept
    shifted = (date(2024, 3, 15) + timedelta(days=store.date_shift_days("MRN000077"))).strftime("%Y%m%d")
    assert copy.AcquisitionDateTime == shifted + "101530.123+0100"


def test_file_meta_preamble_and_uids_the_table_does_not_list_are_replaced(
    study: IdentifiedStudy, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(study.paths[0])
    ds.preamble = b"PATIENT Lovelace MRN000077".ljust(128, b" ")
    ds.file_meta.SourceApplicationEntityTitle = "HOSPAE"
    ds.file_meta.PrivateInformationCreatorUID = "1.2.3.4"
    ds.file_meta.PrivateInformation = b"MRN000077 Lovelace"
    ds.MultiFrameSourceSOPInstanceUID = study.instance_uids[1]  # not in Table E.1-1
    ds.AcquisitionDate = "00010103"  # cannot move back: removed, not a failure
    source = tmp_path / "meta.dcm"
    ds.save_as(source)
    store = PseudonymStore(tmp_path / "keys")
    made = deidentify_file(source, tmp_path / "out", store, DeidentifyOptions())
    raw = made.file.path.read_bytes()
    assert raw[:128] == b"\x00" * 128
    for value in ("Lovelace", "MRN000077", "HOSPAE", study.instance_uids[1]):
        assert value.encode() not in raw, value
    copy = pydicom.dcmread(made.file.path)
    assert copy.MultiFrameSourceSOPInstanceUID == store.uid(study.instance_uids[1])
    assert copy.SOPClassUID == ds.SOPClassUID  # a class, not an instance: kept
    assert not copy.get("AcquisitionDate")


def test_descriptions_lose_short_names_ids_and_dates_in_other_spellings(
    study: IdentifiedStudy, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(study.paths[0])
    ds.PatientName, ds.PatientID, ds.StudyDate = "Wu^Li", "MRN12345678", "20240315"
    ds.StudyDescription = "CT head for Li Wu, MRN 12345678, seen 15/03/2024 (Clinical)"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "R51", "I10", "Headache, Wu Li"
    ds.ReasonForVisitCodeSequence = Sequence([code])  # kept under Clean Descriptors: its text cleaned
    source = tmp_path / "short.dcm"
    ds.save_as(source)
    made = deidentify_file(source, tmp_path / "out", PseudonymStore(tmp_path / "keys"), DeidentifyOptions())
    copy = pydicom.dcmread(made.file.path)
    assert copy.StudyDescription == "CT head for , , seen (Clinical)"
    assert copy.ReasonForVisitCodeSequence[0].CodeMeaning == "Headache,"
    assert copy.ReasonForVisitCodeSequence[0].CodeValue == "R51"


@pytest.mark.anyio
async def test_an_instance_that_cannot_be_deidentified_is_left_out_unnamed(tmp_path: Path) -> None:
    broken = tmp_path / "1.2.826.0.1.3680043.8.498.77.dcm"  # a spool file is named by its source UID
    broken.write_bytes(b"DICM but not really")
    record = DicomFile(
        path=broken,
        size=19,
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        instance_uid="1.2.826.0.1.3680043.8.498.77",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
    )
    deidentification = Deidentification(
        Config.single(url="http://localhost/dicom-web", download_dir=tmp_path / "dl")
    )
    assert await deidentification.apply(record, tmp_path / "out") is None
    assert not broken.exists()  # the source copy is gone all the same
    [summary] = deidentification.summary()
    assert summary.startswith("1 instances could not be de-identified and were left out")
    assert "1.2.826.0.1.3680043.8.498.77" not in summary


@pytest.mark.anyio
async def test_spools_left_by_a_crash_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    stale = tmp_path / ".transfer" / "dead" / "1.2.3" / "1.2.3.4"
    live = tmp_path / ".spool" / "busy" / "1.2.3"
    for directory in (stale, live):
        directory.mkdir(parents=True)
        (directory / "1.2.3.4.5.dcm").write_bytes(b"source data")
    two_hours_ago = time.time() - 7200
    for path in [tmp_path / ".transfer" / "dead", *(tmp_path / ".transfer" / "dead").rglob("*")]:
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert await sweep_spools(tmp_path) == 1
    assert not (tmp_path / ".transfer" / "dead").exists()
    assert (live / "1.2.3.4.5.dcm").exists()
