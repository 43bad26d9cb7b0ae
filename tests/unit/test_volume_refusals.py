"""imaging/volumes.py: what is not one regular stack of grey slices is refused, with a message that says why."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from dicomweb_mcp.errors import InvalidInputError
from dicomweb_mcp.imaging.volumes import NotAVolumeError, series_to_nifti
from tests.support.imaging import ct_dataset, save, uid
from tests.support.malformed import raw_value, set_raw
from tests.support.reports import basic_text_sr, encapsulated_pdf
from tests.support.volumes import Grid, series


def refused(files: list[Path], out: Path) -> str:
    with pytest.raises(NotAVolumeError) as caught:
        series_to_nifti(files, out, name="vol")
    assert isinstance(caught.value, InvalidInputError)
    assert not out.exists() or not list(out.iterdir())  # nothing written, not even a partial file
    return str(caught.value)


def test_a_structured_report_is_refused(tmp_path: Path) -> None:
    image = pydicom.dcmread(series(tmp_path / "ct", Grid(slices=1))[0])
    report = basic_text_sr(tmp_path / "sr", image).path
    message = refused([report], tmp_path / "out")
    assert message.startswith(f"{report.name} is Basic Text SR Storage (1.2.840.10008.5.1.4.1.1.88.11)")
    assert "has no pixel data" in message and "only image series" in message


def test_a_pdf_is_refused(tmp_path: Path) -> None:
    pdf = encapsulated_pdf(tmp_path / "pdf", study_uid=uid()).path
    message = refused([pdf], tmp_path / "out")
    assert "Encapsulated PDF Storage" in message and "has no pixel data" in message


def test_a_file_that_is_not_dicom_is_refused(tmp_path: Path) -> None:
    files = series(tmp_path / "in", Grid(slices=2))
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    assert "notes.txt is not a DICOM file" in refused([*files, junk], tmp_path / "out")


def test_two_orientations_are_refused(tmp_path: Path) -> None:
    axial = series(tmp_path / "axial", Grid(slices=3))
    localizer = series(tmp_path / "coronal", Grid(column=(0, 0, -1), step=(0, 3, 0), slices=1))
    for path in localizer:  # the same series, as a localizer left in it would be
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = pydicom.dcmread(axial[0]).SeriesInstanceUID
        ds.save_as(path)
    message = refused(axial + localizer, tmp_path / "out")
    assert "different ImageOrientationPatient" in message and "[1.0, 0.0, 0.0, 0.0, 0.0, -1.0]" in message


def test_two_sizes_are_refused(tmp_path: Path) -> None:
    files = series(tmp_path / "a", Grid(slices=2))
    series_uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    other = series(tmp_path / "b", Grid(rows=4, slices=1, origin=(0, 0, 5.0)))
    ds = pydicom.dcmread(other[0])
    ds.SeriesInstanceUID = series_uid
    ds.save_as(other[0])
    assert "different Rows x Columns: " in refused(files + other, tmp_path / "out")


def test_files_of_two_series_are_refused(tmp_path: Path) -> None:
    files = series(tmp_path / "a", Grid(slices=2)) + series(tmp_path / "b", Grid(slices=2, origin=(0, 0, 50)))
    assert "belong to 2 series" in refused(files, tmp_path / "out")


@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_missing_geometry_is_refused(tmp_path: Path, keyword: str) -> None:
    files = series(tmp_path / "in", Grid(slices=3), order="sorted")
    ds = pydicom.dcmread(files[1])
    delattr(ds, keyword)
    ds.save_as(files[1])
    assert f"{files[1].name} has no {keyword}" in refused(files, tmp_path / "out")


def test_an_orientation_that_is_not_two_unit_vectors_is_refused(tmp_path: Path) -> None:
    files = series(tmp_path / "in", Grid(row=(1, 0, 0), column=(1, 0, 0), slices=2))
    assert "must be two orthogonal unit vectors" in refused(files, tmp_path / "out")


def test_slices_at_one_position_are_refused(tmp_path: Path) -> None:
    # Two echoes at each position, as a multi-echo series has them.
    files = series(tmp_path / "e1", Grid(slices=3), modality="MR")
    series_uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    for path in series(tmp_path / "e2", Grid(slices=3), modality="MR"):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.EchoTime = series_uid, 60
        ds.save_as(path)
        files.append(path)
    assert "more than one volume (echoes, phases, time points)" in refused(files, tmp_path / "out")


def test_a_missing_slice_is_refused(tmp_path: Path) -> None:
    files = series(tmp_path / "in", Grid(slices=5, step=(0, 0, 2.0)), order="sorted")
    files.pop(2)
    assert "slice spacing varies from 2.000 to 4.000 mm" in refused(files, tmp_path / "out")


def test_slices_off_one_line_are_refused(tmp_path: Path) -> None:
    files = series(tmp_path / "in", Grid(slices=4), order="sorted")
    ds = pydicom.dcmread(files[2])
    ds.ImagePositionPatient = [5.0, 0.0, float(ds.ImagePositionPatient[2])]  # shifted 5 mm sideways
    ds.save_as(files[2])
    assert "do not lie on one line: slice 3 is" in refused(files, tmp_path / "out")


def test_a_colour_image_is_refused(tmp_path: Path) -> None:
    files = series(tmp_path / "in", Grid(slices=1))
    ds = pydicom.dcmread(files[0])
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.save_as(files[0])
    assert f"{files[0].name} holds RGB pixels" in refused(files, tmp_path / "out")


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")
def test_a_malformed_number_of_frames_is_refused_by_name(tmp_path: Path) -> None:
    files = series(tmp_path / "in", Grid(slices=2))
    ds = pydicom.dcmread(files[0])
    set_raw(ds, "NumberOfFrames", raw_value("NumberOfFrames", "1A"))
    ds.save_as(files[0])
    assert f"{files[0].name}'s NumberOfFrames is '1A'" in refused(files, tmp_path / "out")


def test_a_classic_multiframe_without_positions_per_frame_is_refused(tmp_path: Path) -> None:
    import numpy as np

    ds = ct_dataset(
        np.zeros((3, 4, 4), np.int16),
        study_uid=uid(),
        series_uid=uid(),
        ImagePositionPatient=[0, 0, 0],
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
        PixelSpacing=[1, 1],
    )
    path = save(ds, tmp_path / "in").path
    assert "has 3 frames but no functional groups" in refused([path], tmp_path / "out")


def test_no_files_are_refused(tmp_path: Path) -> None:
    assert "No files were given" in refused([], tmp_path / "out")


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "x" * 201])
def test_a_name_that_is_not_a_file_name_is_refused(tmp_path: Path, name: str) -> None:
    files = series(tmp_path / "in", Grid(slices=2))
    with pytest.raises(InvalidInputError, match="must be a file name"):
        series_to_nifti(files, tmp_path / "out", name=name)
    assert not (tmp_path / "out").exists()
