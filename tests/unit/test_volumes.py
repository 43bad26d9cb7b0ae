"""imaging/volumes.py: generated series of known geometry to NIfTI, every voxel traced back to its DICOM pixel.

Each generated voxel has a value of its own, so a voxel read from the NIfTI file names the DICOM pixel it
came from; the RAS coordinate of that pixel is computed from the DICOM file's own attributes and compared
with ``affine @ (i, j, k, 1)``. That checks the affine, LPS to RAS, the slice order, the transposition of
rows and columns and the rescale at once, for every voxel.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from dicomweb_mcp.imaging.volumes import NiftiVolume, series_to_nifti
from tests.support.volumes import Grid, enhanced, ras_of_pixels, series


def load(volume: NiftiVolume) -> tuple[np.ndarray, np.ndarray, Any]:
    image: Any = nib.load(volume.nifti)
    return np.asarray(image.dataobj), image.affine, image.header


def assert_voxels_land_on_their_pixels(volume: NiftiVolume, sources: list[Path]) -> None:
    data, affine, _ = load(volume)
    where = ras_of_pixels(sources)
    assert data.size == len(where)  # every DICOM pixel is a voxel, once
    for index in np.ndindex(data.shape):
        expected = where[int(data[index])]
        assert np.allclose(affine @ [*index, 1], [*expected, 1], atol=1e-4), (index, data[index])


def corner_ras(grid: Grid, i: int, j: int, k: int) -> np.ndarray:
    """The RAS coordinate of voxel (i, j, k) of ``grid`` sorted along its normal: column i, row j."""
    row_spacing, column_spacing = grid.pixel_spacing
    normal = np.cross(grid.row, grid.column)
    ks = sorted(range(grid.slices), key=lambda n: float(np.dot(normal, grid.position(n))))
    lps = (
        np.array(grid.position(ks[k]))
        + i * column_spacing * np.array(grid.row)
        + j * row_spacing * np.array(grid.column)
    )
    return lps * [-1, -1, 1]


def rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    a = np.array(axis) / np.linalg.norm(axis)
    t = math.radians(degrees)
    skew = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * skew + (1 - math.cos(t)) * skew @ skew


def oblique_grid() -> Grid:
    turn = rotation((1.0, 2.0, 0.5), 27.0)
    row, column, normal = (tuple(float(v) for v in turn @ axis) for axis in np.eye(3))
    return Grid(
        origin=(-112.25, 87.5, -40.75),
        row=row,  # type: ignore[arg-type]
        column=column,  # type: ignore[arg-type]
        step=tuple(3.3 * v for v in normal),  # type: ignore[arg-type]
        pixel_spacing=(1.25, 0.8),
        rows=5,
        columns=7,
        slices=4,
    )


GRIDS = {
    "axial": Grid(origin=(-30.0, -20.5, 10.0), step=(0.0, 0.0, 2.5)),
    "axial, feet first (step down)": Grid(origin=(5.0, 7.0, 300.0), step=(0.0, 0.0, -1.25)),
    "coronal": Grid(origin=(-50.0, 12.0, 80.0), row=(1, 0, 0), column=(0, 0, -1), step=(0, 4.0, 0)),
    "sagittal": Grid(origin=(20.0, -60.0, 70.0), row=(0, 1, 0), column=(0, 0, -1), step=(-1.5, 0, 0)),
    "oblique": oblique_grid(),
}


@pytest.mark.parametrize("modality", ["CT", "MR"])
@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled"])
@pytest.mark.parametrize("grid_name", sorted(GRIDS))
def test_every_voxel_lands_on_its_dicom_pixel(
    tmp_path: Path, grid_name: str, order: str, modality: str
) -> None:
    grid = GRIDS[grid_name]
    files = series(tmp_path / "in", grid, modality=modality, order=order)
    volume = series_to_nifti(files, tmp_path / "out", name="vol")
    assert volume.shape == (grid.columns, grid.rows, grid.slices)
    assert_voxels_land_on_their_pixels(volume, files)
    _, affine, _ = load(volume)
    last = (grid.columns - 1, grid.rows - 1, grid.slices - 1)
    for corner in [(0, 0, 0), last, (last[0], 0, 0), (0, last[1], 0), (0, 0, last[2])]:
        assert np.allclose(affine @ [*corner, 1], [*corner_ras(grid, *corner), 1], atol=1e-4), corner
    assert volume.warnings == ()


def test_the_slice_order_does_not_depend_on_the_file_order(tmp_path: Path) -> None:
    grid = GRIDS["oblique"]
    files = series(tmp_path / "in", grid, order="sorted")
    results = [
        load(series_to_nifti(ordering, tmp_path / name, name="vol"))
        for name, ordering in [
            ("sorted", files),
            ("reversed", files[::-1]),
            ("shuffled", files[2:] + files[:2]),
        ]
    ]
    for data, affine, _ in results[1:]:
        assert np.array_equal(data, results[0][0])
        assert np.array_equal(affine, results[0][1])


def test_spacing_comes_from_positions_not_slice_thickness(tmp_path: Path) -> None:
    grid = Grid(origin=(10.0, -5.0, -100.0), step=(0.0, 0.0, 1.5), pixel_spacing=(0.6, 0.75))
    files = series(tmp_path / "in", grid, SliceThickness=5.0)
    volume = series_to_nifti(files, tmp_path / "out", name="thick")
    assert volume.spacing == pytest.approx((0.75, 0.6, 1.5))
    _, _, header = load(volume)
    assert header.get_zooms() == pytest.approx((0.75, 0.6, 1.5))
    sidecar = json.loads(volume.sidecar.read_text())
    assert sidecar["SliceThickness"] == 5.0
    assert sidecar["SpacingBetweenSlices"] == pytest.approx(1.5)
    assert sidecar["PixelSpacing"] == [0.6, 0.75]
    assert sidecar["VoxelSpacing"] == pytest.approx([0.75, 0.6, 1.5])


def test_a_marked_voxel_is_found_where_it_was_put(tmp_path: Path) -> None:
    grid = Grid(origin=(-7.0, 3.0, 11.0), step=(0.0, 0.0, 2.0), rows=6, columns=8, slices=5)
    hu = np.full((grid.slices, grid.rows, grid.columns), 40, dtype=np.int16)
    slice_k, row_r, column_c = 3, 4, 1  # slice 3 from the bottom, row 4, column 1
    hu[slice_k, row_r, column_c] = 1234
    files = series(tmp_path / "in", grid, order="reversed", values=hu)
    data, affine, _ = load(series_to_nifti(files, tmp_path / "out", name="marked"))
    (i, j, k), *others = np.argwhere(data == 1234)
    assert not others
    assert (i, j, k) == (column_c, row_r, slice_k)
    # Axial: a column steps along x by the column spacing, a row along y by the row spacing.
    offset = np.array([column_c * grid.pixel_spacing[1], row_r * grid.pixel_spacing[0], 0.0])
    lps = np.array(grid.position(slice_k)) + offset
    assert np.allclose(affine @ [i, j, k, 1], [-lps[0], -lps[1], lps[2], 1])


@pytest.mark.parametrize(("slope", "intercept"), [(1.0, -1024.0), (2.0, -1024.0), (1.0, -8192.0)])
def test_hounsfield_units_are_preserved_as_int16(tmp_path: Path, slope: float, intercept: float) -> None:
    hu = np.array([[[-1000, -700, 0, 40], [400, 1000, 2000, 3000]]] * 2, dtype=np.int16)
    grid = Grid(step=(0.0, 0.0, 3.0), pixel_spacing=(1.0, 1.0), rows=2, columns=4, slices=2)
    files = series(tmp_path / "in", grid, order="sorted", values=hu, slope=slope, intercept=intercept)
    volume = series_to_nifti(files, tmp_path / "out", name="hu")
    data, _, header = load(volume)
    assert volume.data_type == "int16"
    assert data.dtype == np.int16
    with gzip.open(volume.nifti) as stored:  # the header as stored, not as nibabel resets it on load
        raw = nib.Nifti1Header.from_fileobj(stored)
    assert (float(raw["scl_slope"]), float(raw["scl_inter"])) == (1.0, 0.0)
    assert header.get_xyzt_units()[0] == "mm"
    assert np.array_equal(data[:, :, 0], hu[0].T)


def test_values_that_are_not_whole_numbers_are_stored_as_float32(tmp_path: Path) -> None:
    grid = Grid(slices=3)
    files = series(tmp_path / "in", grid)
    for path in files:  # the same stored values read through a rescale that gives quarters
        ds = pydicom.dcmread(path)
        ds.RescaleSlope, ds.RescaleIntercept = 0.25, -3.5
        ds.save_as(path)
    volume = series_to_nifti(files, tmp_path / "out", name="float")
    data, _, _ = load(volume)
    assert volume.data_type == "float32"
    assert data.dtype == np.float32
    stored = pydicom.dcmread(files[0])
    expected = stored.pixel_array.astype(np.float64) * 0.25 - 3.5
    k = sorted(float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in files).index(
        float(stored.ImagePositionPatient[2])
    )
    assert np.allclose(data[:, :, k], expected.T)


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_an_enhanced_multiframe_object_gives_the_same_volume(tmp_path: Path, modality: str) -> None:
    grid = GRIDS["oblique"] if modality == "MR" else Grid(origin=(-3.0, 8.0, -20.0), step=(0, 0, 1.25))
    files = series(tmp_path / "in", grid, modality=modality, SliceThickness=1.25)
    multiframe = enhanced(files, tmp_path / "enhanced")
    single = series_to_nifti(files, tmp_path / "single", name="vol")
    multi = series_to_nifti([multiframe], tmp_path / "multi", name="vol")
    single_data, single_affine, _ = load(single)
    multi_data, multi_affine, _ = load(multi)
    assert np.array_equal(multi_data, single_data)
    assert np.allclose(multi_affine, single_affine, atol=1e-6)
    assert multi.shape == single.shape and multi.spacing == pytest.approx(single.spacing)
    assert_voxels_land_on_their_pixels(multi, files)
    sidecar = json.loads(multi.sidecar.read_text())
    if modality == "MR":  # timing only in the functional groups, in seconds as BIDS has it
        assert sidecar["EchoTime"] == pytest.approx(0.03)
        assert sidecar["RepetitionTime"] == pytest.approx(2.0)
        assert sidecar["FlipAngle"] == 15
    assert sidecar["NumberOfSlices"] == grid.slices


def test_a_gantry_tilt_is_kept_exact_with_a_warning(tmp_path: Path) -> None:
    tilt = 12.0  # degrees: each slice moves along y as well as z
    grid = Grid(origin=(-10.0, -20.0, 30.0), step=(0.0, 2.5 * math.tan(math.radians(tilt)), 2.5))
    files = series(tmp_path / "in", grid)
    volume = series_to_nifti(files, tmp_path / "out", name="tilt")
    assert_voxels_land_on_their_pixels(volume, files)
    (warning,) = volume.warnings
    assert "12.00 degrees" in warning and "gantry tilt" in warning
    _, _, header = load(volume)
    assert int(header["qform_code"]) == 0 and int(header["sform_code"]) == 1
    sidecar = json.loads(volume.sidecar.read_text())
    assert sidecar["SpacingBetweenSlices"] == pytest.approx(2.5)
    assert sidecar["ConversionWarnings"] == [warning]


def test_a_single_slice_takes_its_thickness_with_a_warning(tmp_path: Path) -> None:
    files = series(tmp_path / "in", Grid(slices=1), SliceThickness=3.0)
    volume = series_to_nifti(files, tmp_path / "out", name="one")
    assert volume.shape == (8, 6, 1)
    assert volume.spacing[2] == pytest.approx(3.0)
    assert any("One slice" in w for w in volume.warnings)
    assert_voxels_land_on_their_pixels(volume, files)


def test_the_sidecar_says_what_researchers_need_and_nothing_that_identifies(tmp_path: Path) -> None:
    grid = GRIDS["coronal"]
    files = series(tmp_path / "in", grid, modality="MR", SliceThickness=4.0)
    extra = {"SeriesInstanceUID": "2.25.1234", "StudyInstanceUID": "2.25.5678"}
    volume = series_to_nifti(files, tmp_path / "out", name="mr", sidecar_fields=extra)
    sidecar = json.loads(volume.sidecar.read_text())
    header = pydicom.dcmread(files[0])
    assert sidecar["Modality"] == "MR"
    assert sidecar["Manufacturer"] == header.Manufacturer
    assert sidecar["ManufacturersModelName"] == header.ManufacturerModelName
    assert sidecar["SeriesDescription"] == header.SeriesDescription
    assert sidecar["EchoTime"] == pytest.approx(float(header.EchoTime) / 1000)
    assert sidecar["RepetitionTime"] == pytest.approx(float(header.RepetitionTime) / 1000)
    assert sidecar["MagneticFieldStrength"] == float(header.MagneticFieldStrength)
    assert sidecar["ImageOrientationPatientDICOM"] == [float(v) for v in header.ImageOrientationPatient]
    assert sidecar["NumberOfSlices"] == grid.slices
    assert sidecar["ConversionSoftware"] == "dicomweb-mcp" and sidecar["ConversionSoftwareVersion"]
    assert {k: sidecar[k] for k in extra} == extra
    text = volume.sidecar.read_text()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyDate"):
        assert keyword not in sidecar
        assert str(header.get(keyword)) not in text, keyword
    for own_uid in (header.SOPInstanceUID, header.SeriesInstanceUID, header.StudyInstanceUID):
        assert own_uid not in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mr.json", "mr.nii.gz"]


def test_ct_sidecar_has_kvp(tmp_path: Path) -> None:
    files = series(tmp_path / "in", Grid(slices=2), KVP=100)
    sidecar = json.loads(series_to_nifti(files, tmp_path / "out", name="ct").sidecar.read_text())
    assert sidecar["Modality"] == "CT" and sidecar["KVP"] == 100.0
    assert "EchoTime" not in sidecar


def test_compressed_pixel_data_gives_the_same_volume(tmp_path: Path) -> None:
    grid = Grid(origin=(1.0, 2.0, 3.0), step=(0, 0, 2.0), slices=4)
    files = series(tmp_path / "in", grid)
    multiframe = enhanced(files, tmp_path / "enhanced")
    plain = load(series_to_nifti(files, tmp_path / "plain", name="vol"))
    for path in [*files, multiframe]:  # RLE Lossless, which pydicom encodes itself
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path)
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == RLELossless
    for name, sources in [("single", files), ("multi", [multiframe])]:
        data, affine, _ = load(series_to_nifti(sources, tmp_path / name, name="vol"))
        assert np.array_equal(data, plain[0]) and np.allclose(affine, plain[1]), name
