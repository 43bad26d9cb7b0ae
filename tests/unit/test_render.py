"""imaging/render.py: the local grey-scale pipeline on tiny files, each pixel checked against the formula."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset

from dicomweb_mcp.dicom.windows import PRESETS, Window, grey_level, parse_window
from dicomweb_mcp.errors import InvalidInputError
from dicomweb_mcp.imaging.render import NotAnImageError, RenderError, apply_window, fitted_size, render_file
from tests.support.imaging import base_dataset, ct_dataset, save, uid

HU = np.array([[-1000, -700, -100, 0, 40, 240, 1000, 3000]], np.int16).repeat(2, 0)


def expected_row(window: Window, hu: np.ndarray = HU[0]) -> list[int]:
    """The 8-bit grey levels the formula gives for each HU value of a row."""
    return [round(grey_level(float(v), window) * 255) for v in hu]


def ct_file(tmp_path: Path, hu: np.ndarray = HU, **kw: Any) -> Path:
    return save(ct_dataset(hu, study_uid=uid(), series_uid=uid(), **kw), tmp_path).path


def row(path: Path, window: Window | str | None, size: int = 512, frame: int | None = None) -> list[int]:
    parsed = parse_window(window) if isinstance(window, str) else window
    return [int(v) for v in np.asarray(render_file(path, frame=frame, size=size, window=parsed).image)[0]]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_follow_the_formula(tmp_path: Path, preset: str) -> None:
    window = parse_window(preset)
    assert isinstance(window, Window)
    assert row(ct_file(tmp_path), preset) == expected_row(window)


@pytest.mark.parametrize(("slope", "intercept"), [(1.0, -1024.0), (2.0, -1024.0), (0.5, 0.0), (1.0, -2048.0)])
def test_the_rescale_is_applied_before_the_window(tmp_path: Path, slope: float, intercept: float) -> None:
    # HU values divisible by the slope survive the round trip through stored values exactly.
    hu = np.array([[-1000, -600, 0, 40, 400, 1000]], np.int16)
    path = ct_file(tmp_path, hu, slope=slope, intercept=intercept)
    window = Window(40, 400)
    assert row(path, window) == expected_row(window, hu[0])


def test_the_instances_own_window_is_the_default(tmp_path: Path) -> None:
    path = ct_file(tmp_path, window=(-600, 1500))
    picture = render_file(path, frame=None, size=512, window=None)
    assert picture.window == Window(-600, 1500, "linear", "instance")
    assert row(path, None) == expected_row(Window(-600, 1500))


def test_the_instances_sigmoid_function_is_used(tmp_path: Path) -> None:
    path = ct_file(tmp_path, window=(40, 400), VOILUTFunction="SIGMOID")
    window = render_file(path, frame=None, size=512, window=None).window
    assert window == Window(40, 400, "sigmoid", "instance")
    assert row(path, None) == expected_row(window)


@pytest.mark.parametrize("window", [None, (40, 0)])
def test_without_a_usable_window_min_max_is_used(tmp_path: Path, window: tuple[int, int] | None) -> None:
    path = ct_file(tmp_path, window=window)
    picture = render_file(path, frame=None, size=512, window=None)
    assert picture.window is not None and picture.window.source == "auto"
    levels = row(path, None)
    assert levels[0] == 0 and levels[-1] == 255 and levels == sorted(levels)


def test_auto_ignores_the_instances_window(tmp_path: Path) -> None:
    path = ct_file(tmp_path, window=(40, 400))
    low, high = float(HU.min()), float(HU.max())
    expected = Window((low + high) / 2, high - low, "linear_exact", "auto")
    assert render_file(path, frame=None, size=512, window="auto").window == expected
    assert row(path, "auto") == expected_row(expected)


def test_a_flat_image_under_auto_does_not_divide_by_zero(tmp_path: Path) -> None:
    path = ct_file(tmp_path, np.full((2, 2), 7, np.int16))
    picture = render_file(path, frame=None, size=512, window="auto")
    assert picture.window is not None and picture.window.width == 1.0
    assert len(set(np.asarray(picture.image).ravel().tolist())) == 1


@pytest.mark.parametrize("inverted", [{"photometric": "MONOCHROME1"}, {"PresentationLUTShape": "INVERSE"}])
def test_monochrome1_and_inverse_are_inverted(tmp_path: Path, inverted: dict[str, str]) -> None:
    window = Window(40, 400)
    assert row(ct_file(tmp_path, **inverted), window) == [255 - v for v in expected_row(window)]


def test_a_voi_lut_with_zero_entries_means_65536(tmp_path: Path) -> None:
    ds = ct_dataset(
        np.array([[-1000, 0, 1000, 64511]], np.int32).clip(-1024, 30000).astype(np.int16),
        study_uid=uid(),
        series_uid=uid(),
        window=None,
    )
    item = Dataset()
    # A 16-bit identity LUT over the full 2**16 inputs from 0: HU maps through unchanged, clamped below 0.
    item.LUTDescriptor = [0, 0, 16]
    item.add_new(0x00283006, "OW", np.arange(65536, dtype="<u2").tobytes())
    ds.VOILUTSequence = [item]
    picture = render_file(save(ds, tmp_path).path, frame=None, size=512, window=None)
    assert picture.window is None
    hu = [-1000, 0, 1000, 30000]
    assert [int(v) for v in np.asarray(picture.image)[0]] == [round(max(h, 0) / 65535 * 255) for h in hu]


@pytest.mark.parametrize(
    ("columns", "rows", "size", "expected"),
    [
        (512, 512, 512, (512, 512)),
        (512, 512, 1024, (512, 512)),  # never enlarged
        (512, 256, 256, (256, 128)),
        (100, 300, 50, (17, 50)),
        (3000, 1, 100, (100, 1)),  # never below one pixel
        (1, 3000, 100, (1, 100)),
    ],
)
def test_fitted_size(columns: int, rows: int, size: int, expected: tuple[int, int]) -> None:
    assert fitted_size(columns, rows, size) == expected
    assert max(expected) <= max(size, columns, rows)


def test_a_rendered_picture_has_the_fitted_size(tmp_path: Path) -> None:
    path = ct_file(tmp_path, np.zeros((40, 100), np.int16))
    picture = render_file(path, frame=None, size=30, window="auto")
    assert picture.image.size == fitted_size(100, 40, 30)


def test_frames_are_chosen_and_counted(tmp_path: Path) -> None:
    hu = np.stack([np.full((2, 3), v, np.int16) for v in (-1000, 0, 1000)])
    path = ct_file(tmp_path, hu)
    window = Window(0, 2000)
    for number, value in enumerate((-1000, 0, 1000), start=1):
        picture = render_file(path, frame=number, size=512, window=window)
        assert picture.frames == 3
        assert np.asarray(picture.image)[0, 0] == round(grey_level(value, window) * 255)
    with pytest.raises(InvalidInputError, match="frame 4 does not exist: this instance has 3 frame"):
        render_file(path, frame=4, size=512, window=None)


def test_a_colour_image_ignores_the_window_and_says_so(tmp_path: Path) -> None:
    ds = base_dataset("1.2.840.10008.5.1.4.1.1.7", study_uid=uid(), series_uid=uid(), modality="OT")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = 1, 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    pixels = np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)
    ds.PixelData = pixels.tobytes()
    path = save(ds, tmp_path).path
    picture = render_file(path, frame=None, size=512, window=Window(40, 400))
    assert picture.window is None and picture.image.mode == "RGB"
    assert np.array_equal(np.asarray(picture.image), pixels)
    assert any("colour" in note for note in picture.notes)
    assert render_file(path, frame=None, size=512, window=None).notes == ()


def test_a_file_that_is_not_dicom_is_a_render_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"not dicom at all")
    with pytest.raises(RenderError, match="could not be read as DICOM"):
        render_file(path, frame=None, size=64, window=None)


def test_an_instance_without_rows_is_not_an_image(tmp_path: Path) -> None:
    ds = base_dataset("1.2.840.10008.5.1.4.1.1.88.11", study_uid=uid(), series_uid=uid(), modality="SR")
    with pytest.raises(NotAnImageError, match="Basic Text SR"):
        render_file(save(ds, tmp_path).path, frame=None, size=64, window=None)


@pytest.mark.parametrize("function", ["linear", "linear_exact", "sigmoid"])
def test_the_vectorised_window_agrees_with_grey_level(function: str) -> None:
    window = Window(-50, 301, function)  # type: ignore[arg-type]
    values = np.linspace(-500, 500, 41)
    assert np.allclose(apply_window(values, window), [grey_level(v, window) for v in values])
