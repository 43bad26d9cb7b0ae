"""The local renderer on its own, for what the MCP tests do not reach: a VOI LUT instead of a window,
an enhanced multi-frame object's per-frame rescale and window, palette colour, and what is not an image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import EnhancedCTImageStorage

from dicomweb_mcp.dicom.windows import parse_window
from dicomweb_mcp.imaging.render import NotAnImageError, render_file
from tests.support.imaging import base_dataset, ct_dataset, save, uid
from tests.support.reports import encapsulated_pdf


def test_a_voi_lut_is_applied_when_there_is_no_window(tmp_path: Path) -> None:
    ds = ct_dataset(
        np.array([[-1000, 0, 100, 1000]], np.int16).repeat(4, 0),
        study_uid=uid(),
        series_uid=uid(),
        window=None,
    )
    item = Dataset()
    # 256 entries from HU -128: a ramp of 8-bit output, so HU 0 -> 128 and HU 100 -> 228; outside, clamped.
    item.LUTDescriptor = [256, -128, 8]
    item.add_new(0x00283006, "OW", np.arange(256, dtype="<u2").tobytes())
    ds.VOILUTSequence = [item]
    picture = render_file(save(ds, tmp_path).path, frame=None, size=512, window=None)
    assert picture.window is None
    assert list(np.asarray(picture.image)[0]) == [0, 128, 228, 255]


def test_enhanced_multi_frame_uses_each_frames_functional_groups(tmp_path: Path) -> None:
    stored = np.full((2, 8, 8), 1000, np.int16)  # the same stored value in both frames
    ds = base_dataset(EnhancedCTImageStorage, study_uid=uid(), series_uid=uid(), modality="CT")
    ds.Rows = ds.Columns = 8
    ds.NumberOfFrames = 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = stored.tobytes()
    shared = Dataset()
    window = Dataset()
    window.WindowCenter, window.WindowWidth = 0, 2000
    shared.FrameVOILUTSequence = [window]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for intercept in (-2000, 0):  # frame 1: HU -1000; frame 2: HU 1000
        group = Dataset()
        rescale = Dataset()
        rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = 1, intercept, "HU"
        group.PixelValueTransformationSequence = [rescale]
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = frames
    path = save(ds, tmp_path).path
    first = render_file(path, frame=1, size=512, window=None)
    second = render_file(path, frame=2, size=512, window=None)
    assert first.frames == 2 and first.window is not None and first.window.label() == "instance 0/2000"
    assert np.asarray(first.image).max() == 0 and np.asarray(second.image).min() == 255


def test_palette_colour_becomes_rgb(tmp_path: Path) -> None:
    ds = base_dataset("1.2.840.10008.5.1.4.1.1.7", study_uid=uid(), series_uid=uid(), modality="OT")
    ds.Rows, ds.Columns = 2, 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes([0, 1, 1, 0])
    for colour, values in (("Red", (255, 0)), ("Green", (0, 0)), ("Blue", (0, 255))):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [2, 0, 16])
        lut = np.array([v * 257 for v in values], dtype="<u2").tobytes()
        ds.add_new({"Red": 0x00281201, "Green": 0x00281202, "Blue": 0x00281203}[colour], "OW", lut)
    picture = render_file(save(ds, tmp_path).path, frame=None, size=512, window=parse_window("lung"))
    assert picture.image.mode == "RGB" and picture.window is None and picture.notes
    assert picture.image.getpixel((0, 0)) == (255, 0, 0) and picture.image.getpixel((1, 0)) == (0, 0, 255)


def test_a_report_is_not_an_image(tmp_path: Path) -> None:
    pdf = encapsulated_pdf(tmp_path, study_uid=uid())
    with pytest.raises(NotAnImageError, match="Encapsulated PDF Storage"):
        render_file(pdf.path, frame=None, size=512, window=None)
