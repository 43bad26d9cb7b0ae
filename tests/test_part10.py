"""The fast Part 10 header reader agrees with pydicom, and hands every other case to pydicom."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from dicomweb_mcp import DicomFile, SkippedFile, read_dicom_file
from dicomweb_mcp.dicom.part10 import read_header
from tests.support.samples import Samples
from tests.support.synthetic import make_study


def encoded(ds: Dataset, transfer_syntax: str | None = None) -> bytes:
    if transfer_syntax is not None:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def with_sequences(ds: Dataset) -> Dataset:
    """Sequences of undefined length (nested, and one of VR UN) before the UIDs of group 0020."""
    inner = Dataset()
    inner.ReferencedSOPClassUID = "1.2.3"
    inner.ReferencedSOPInstanceUID = "1.2.3.4"
    nested = Dataset()
    nested.CodeValue = "X"
    inner.PurposeOfReferenceCodeSequence = Sequence([nested])
    ds.ReferencedImageSequence = Sequence([inner, Dataset()])
    ds.add_new(0x00091010, "UN", b"\x01\x02\x03\x04")
    ds.add_new(0x00091011, "LO", "private value")
    return undefined_lengths(ds)


def undefined_lengths(ds: Dataset) -> Dataset:
    """Mark every sequence and item as of undefined length (pydicom writes defined lengths by default)."""
    for element in ds.iterall():
        if element.VR == "SQ":
            element.is_undefined_length = True
            for item in element.value:
                item.is_undefined_length_sequence_item = True
    return ds


def uids_of(ds: Dataset) -> tuple[str, str, str, str]:
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SOPClassUID


@pytest.mark.parametrize("syntax", [None, ImplicitVRLittleEndian])
def test_agrees_with_pydicom(samples: Samples, tmp_path: Path, syntax: str | None) -> None:
    sources = [*(f.path for f in samples.all), *make_study(tmp_path, instances=3, series=2, seed=9)]
    for source in sources:
        ds = with_sequences(pydicom.dcmread(source))
        data = encoded(ds, syntax)
        assert b"\xfe\xff\xdd\xe0" in data  # the sequences really are of undefined length
        header = read_header(data[:65536])
        assert header is not None, source
        reference = pydicom.dcmread(io.BytesIO(data))
        assert (header.study_uid, header.series_uid, header.instance_uid, header.sop_class_uid) == uids_of(
            reference
        )
        assert header.transfer_syntax_uid == reference.file_meta.TransferSyntaxUID


def test_hands_other_cases_to_pydicom(samples: Samples, tmp_path: Path) -> None:
    ds = pydicom.dcmread(samples.red.path)
    buffer = io.BytesIO()
    other = pydicom.dcmread(samples.red.path)
    other.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    pydicom.dcmwrite(buffer, other, implicit_vr=False, little_endian=False, enforce_file_format=True)
    big_endian = buffer.getvalue()
    assert read_header(big_endian) is None
    assert read_header(encoded(ds)[:300]) is None  # the UIDs are not in the bytes given
    assert read_header(b"not dicom at all" * 20) is None
    # Those files are still read correctly, by pydicom.
    path = tmp_path / "be.dcm"
    path.write_bytes(big_endian)
    result = read_dicom_file(path)
    assert isinstance(result, DicomFile) and result.instance_uid == ds.SOPInstanceUID


def test_bad_uids_are_judged_by_pydicom(samples: Samples, tmp_path: Path) -> None:
    ds = pydicom.dcmread(samples.blue.path)
    ds.StudyInstanceUID = "1.2.3"
    del ds.SeriesInstanceUID
    path = tmp_path / "no-series.dcm"
    path.write_bytes(encoded(ds))
    result = read_dicom_file(path)
    assert isinstance(result, SkippedFile) and "SeriesInstanceUID" in result.reason
    text = tmp_path / "notes.dcm"
    text.write_bytes(b"hello")
    assert isinstance(read_dicom_file(text), SkippedFile)


def test_hostile_nesting_and_wrong_vr_go_to_pydicom(samples: Samples, tmp_path: Path) -> None:
    ds = pydicom.dcmread(samples.blue.path)
    deepest = Dataset()
    deepest.CodeValue = "X"
    for _ in range(40):  # deeper than any real header before group 0020: past the reader's cap
        outer = Dataset()
        outer.PurposeOfReferenceCodeSequence = Sequence([deepest])
        deepest = outer
    ds.ReferencedImageSequence = Sequence([deepest])
    data = encoded(undefined_lengths(ds))
    assert b"\xfe\xff\xdd\xe0" in data  # sequence delimiters: really of undefined length
    assert read_header(data[:65536]) is None
    path = tmp_path / "deep.dcm"
    path.write_bytes(data)
    assert isinstance(read_dicom_file(path), DicomFile | SkippedFile)  # an answer, not a crash

    odd = pydicom.dcmread(samples.blue.path)
    odd.add_new(0x00080018, "LO", odd.SOPInstanceUID)  # a UID tag with the wrong VR: not trusted
    assert read_header(encoded(odd)) is None
