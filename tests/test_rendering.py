"""retrieve_rendered sized and windowed, through MCP against the real Orthanc: the grey levels of known
Hounsfield units through the lung and bone windows, MONOCHROME1, multi-frame, JPEG-compressed (grey and
colour), and pictures small enough to show. Each case runs with Orthanc rendering (its profile says it
honours viewport and window) and with the local renderer (a generic profile, which trusts neither), and
both must give the same pixels."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mcp import Client
from PIL import Image

from dicomweb_mcp import Config
from dicomweb_mcp.dicom.windows import PRESETS, Window, grey_level
from dicomweb_mcp.tools.server import build_server
from tests.support.counting import CountingTransport
from tests.support.imaging import (
    HU_BANDS,
    Instance,
    band_centres,
    ct_dataset,
    ct_slice,
    jpeg_dataset,
    phantom_hu,
    save,
    uid,
)
from tests.support.mcp import text

pytestmark = pytest.mark.anyio

RENDERERS = {"orthanc": "server", "generic": "local"}


@pytest.fixture(params=sorted(RENDERERS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def configured(config: Config, kind: str) -> Config:
    return config.changed(server_kind=kind)  # type: ignore[arg-type]


async def store(config: Config, *instances: Instance) -> None:
    async with Client(build_server(config)) as client:
        result = await client.call_tool("store_instances", {"paths": [str(i.path) for i in instances]})
    assert result.structured_content["counts"]["stored"] == len(instances), text(result)


async def render(config: Config, instance: Instance, **arguments: Any) -> tuple[dict[str, Any], Image.Image]:
    async with Client(build_server(config)) as client:
        result = await client.call_tool("retrieve_rendered", {**instance.reference, **arguments})
    assert not result.is_error, text(result)
    content = result.structured_content
    picture = Image.open(io.BytesIO(Path(content["path"]).read_bytes()))
    picture.load()
    assert picture.size == (content["width"], content["height"])
    return content, picture


def row(picture: Image.Image, y: float = 0.5) -> list[int]:
    grey = np.asarray(picture.convert("L"))
    return [int(grey[int(y * picture.height), x]) for x in band_centres(picture.width)]


def expected(window: Window, invert: bool = False) -> list[int]:
    levels = [round(255 * grey_level(hu, window)) for hu in HU_BANDS]
    return [255 - v for v in levels] if invert else levels


def close(actual: list[int], wanted: list[int], tolerance: int) -> bool:
    return all(abs(a - w) <= tolerance for a, w in zip(actual, wanted, strict=True))


async def test_ct_lung_and_bone_windows_give_the_grey_levels_of_known_hu(
    orthanc_config: Config, tmp_path: Path, kind: str
) -> None:
    config = configured(orthanc_config, kind)
    # Stored values are (HU + 1024) / 2: the rescale must be applied before the window.
    slice_ = ct_slice(tmp_path, slope=2.0, intercept=-1024.0)
    await store(config, slice_)
    for name in ("lung", "bone"):
        result, picture = await render(config, slice_, window=name, media_type="image/png")
        window = Window(*PRESETS[name], source=name)
        assert result["renderer"] == RENDERERS[kind]
        assert result["window"] == window.label()
        assert picture.size == (512, 512)
        assert close(row(picture), expected(window), 1), (name, row(picture), expected(window))
    # Lung: air is near black, lung parenchyma mid-grey, soft tissue near white, bone white.
    # Bone: air, lung and soft tissue dark, bone bright.
    lung = expected(Window(*PRESETS["lung"]))
    bone = expected(Window(*PRESETS["bone"]))
    assert lung[1] > 100 > lung[0] and bone[1] == 0 and bone[3] > 200

    # The default is the image's own window (40/400), which Orthanc's own default would ignore.
    result, picture = await render(config, slice_, media_type="image/png")
    assert result["window"] == "instance 40/400"
    assert close(row(picture), expected(Window(40, 400)), 1)
    # A custom window, as center,width.
    result, picture = await render(config, slice_, window="-700,10", media_type="image/png", size=128)
    assert picture.size == (128, 128) and result["window"] == "custom -700/10"
    assert close(row(picture), expected(Window(-700, 10)), 2)


async def test_monochrome1_is_inverted_and_the_aspect_ratio_kept(
    orthanc_config: Config, tmp_path: Path, kind: str
) -> None:
    config = configured(orthanc_config, kind)
    wide = ct_slice(tmp_path, rows=100, columns=300, photometric="MONOCHROME1")
    await store(config, wide)
    result, picture = await render(config, wide, window="lung", size=150, media_type="image/png")
    assert result["renderer"] == RENDERERS[kind]
    assert picture.size == (150, 50)
    # Air (-1000 HU) is white and bone black: MONOCHROME1 shows low values bright.
    assert close(row(picture), expected(Window(*PRESETS["lung"]), invert=True), 2), row(picture)


async def test_multi_frame_renders_the_frame_asked(orthanc_config: Config, tmp_path: Path, kind: str) -> None:
    config = configured(orthanc_config, kind)
    frames = np.stack([np.full((64, 64), hu, np.int16) for hu in (-1000, 0, 1000)])
    instance = save(ct_dataset(frames, study_uid=uid(), series_uid=uid(), window=None), tmp_path)
    await store(config, instance)
    for frame, grey in ((1, 0), (2, 128), (3, 255)):
        result, picture = await render(config, instance, frame=frame, window="0,2000", media_type="image/png")
        assert result["renderer"] == RENDERERS[kind]
        assert abs(row(picture)[1] - grey) <= 1, (frame, row(picture))
    async with Client(build_server(config)) as client:
        missing = await client.call_tool("retrieve_rendered", {**instance.reference, "frame": 4})
    assert missing.is_error and "3 frame(s)" in text(missing)


async def test_jpeg_compressed_grey_and_colour_rendered_locally(
    orthanc_config: Config, tmp_path: Path
) -> None:
    config = configured(orthanc_config, "generic")
    study = uid()
    bands = np.repeat(np.repeat(np.array([[30, 90, 160, 220]], np.uint8), 64, axis=1), 64, axis=0)
    grey = save(
        jpeg_dataset(bands, study_uid=study, series_uid=uid(), WindowCenter=128, WindowWidth=256), tmp_path
    )
    colour_pixels = np.zeros((64, 128, 3), np.uint8)
    colour_pixels[:, :64] = (220, 30, 30)
    colour_pixels[:, 64:] = (30, 30, 220)
    colour = save(jpeg_dataset(colour_pixels, study_uid=study, series_uid=uid()), tmp_path)
    await store(config, grey, colour)

    result, picture = await render(config, grey, media_type="image/png")
    assert result["renderer"] == "local" and result["window"] == "instance 128/256"
    assert close(row(picture), [30, 90, 160, 220], 3), row(picture)

    result, picture = await render(config, colour, media_type="image/png", window="lung")
    assert result["renderer"] == "local" and "window" not in result
    assert "colour" in result["notes"][0]
    red, blue = picture.convert("RGB").getpixel((32, 32)), picture.convert("RGB").getpixel((96, 32))
    assert red[0] > 190 and red[2] < 60 and blue[2] > 190 and blue[0] < 60, (red, blue)


async def test_a_shown_ct_slice_is_small(orthanc_config: Config, tmp_path: Path, kind: str) -> None:
    config = configured(orthanc_config, kind)
    slice_ = save(ct_dataset(phantom_hu(512), study_uid=uid(), series_uid=uid()), tmp_path)
    await store(config, slice_)
    async with Client(build_server(config)) as client:
        shown = await client.call_tool("retrieve_rendered", {**slice_.reference, "show": True})
    assert not shown.is_error, text(shown)
    assert [block.type for block in shown.content] == ["text", "image"]
    picture = base64.b64decode(shown.content[1].data)
    assert shown.content[1].mime_type == "image/jpeg" and len(picture) < 20_000
    image = Image.open(io.BytesIO(picture))
    assert image.size == (512, 512) and image.mode == "L"
    # Still the phantom: lungs dark, the body's soft tissue mid-grey through the default 40/400 window.
    grey = np.asarray(image)
    assert grey[240, 164] < 30 and 100 < grey[130, 256] < 160
    assert shown.structured_content["renderer"] == RENDERERS[kind]
    # The text is a few facts beside the path.
    assert len(shown.content[0].text) - len(shown.structured_content["path"]) < 200


async def test_a_stored_compression_without_a_decoder_is_decompressed_by_the_server(
    orthanc_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydicom.pixels.decoders import base
    from pydicom.uid import JPEGLSLossless

    ds = ct_dataset(
        np.asarray([[-1000, -700, 40, 1000]], np.int16).repeat(64, 0).repeat(16, 1),
        study_uid=uid(),
        series_uid=uid(),
    )
    ds.compress(JPEGLSLossless, generate_instance_uid=False)
    instance = save(ds, tmp_path)
    config = configured(orthanc_config, "generic")
    await store(config, instance)

    real = base.get_decoder

    class Unavailable:
        is_available = False

    # As on an installation without a JPEG-LS decoder (pyjpegls is only in the test extra).
    monkeypatch.setattr(
        base, "get_decoder", lambda uid: Unavailable() if uid == JPEGLSLossless else real(uid)
    )
    result, picture = await render(config, instance, window="lung", media_type="image/png")
    assert result["renderer"] == "local"
    assert any("decompressed by the server" in note for note in result["notes"])
    assert close(row(picture), expected(Window(*PRESETS["lung"])), 1)


@pytest.mark.parametrize(
    ("window", "message"),
    [("lungs", "must be lung, mediastinum, bone, brain, abdomen"), ("40,0", "width of at least 1")],
)
async def test_a_wrong_window_is_explained(orthanc_config: Config, window: str, message: str) -> None:
    arguments = {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "instance_uid": "1.2.3.4.5", "window": window}
    async with Client(build_server(orthanc_config)) as client:
        result = await client.call_tool("retrieve_rendered", arguments)
    assert result.is_error and message in text(result)


async def test_a_slice_rendered_again_asks_for_its_metadata_once(
    orthanc_config: Config, tmp_path: Path
) -> None:
    config = configured(orthanc_config, "orthanc")
    slice_ = save(ct_dataset(phantom_hu(64), study_uid=uid(), series_uid=uid()), tmp_path)
    await store(config, slice_)
    counted = CountingTransport()
    async with Client(build_server(config, transports={"default": counted})) as client:
        for window in ("lung", "bone", "lung"):
            shown = await client.call_tool("retrieve_rendered", {**slice_.reference, "window": window})
            assert not shown.is_error, text(shown)
            assert shown.structured_content["window"].startswith(window)
    asked = [r for r in counted.requests if slice_.instance_uid in r]
    assert [r.rsplit("/", 1)[-1] for r in asked] == ["metadata", "rendered", "rendered", "rendered"]
