"""Rendering and the overview where servers differ, HTTP mocked with respx as the reference says the
servers answer: Azure's rendered endpoint takes jpeg/png and quality but no viewport or window, so a sized
or windowed picture is rendered locally from the instance; a server that ignores the viewport or fails is
replaced by the local renderer; Azure's 200-result cap pages the overview's instance search."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import respx
from mcp import Client
from PIL import Image

from dicomweb_mcp import Config
from dicomweb_mcp.dicom.windows import PRESETS, Window, grey_level
from dicomweb_mcp.tools.server import build_server
from tests.support.azure import BASE, FakeCredential
from tests.support.hostile import part
from tests.support.imaging import HU_BANDS, Instance, band_centres, ct_slice
from tests.support.mcp import text

pytestmark = pytest.mark.anyio

ORTHANC = "http://orthanc.test:8042/dicom-web"
BOUNDARY = "azure-boundary"
LUNG = Window(*PRESETS["lung"])


def multipart(instance: Instance) -> httpx.Response:
    body = part(instance.path.read_bytes(), BOUNDARY) + f"--{BOUNDARY}--\r\n".encode()
    content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
    return httpx.Response(200, content=body, headers={"content-type": content_type})


def instance_path(instance: Instance) -> str:
    return f"/studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.instance_uid}"


def lung_levels(picture: Image.Image) -> list[int]:
    grey = np.asarray(picture.convert("L"))
    return [int(grey[picture.height // 2, x]) for x in band_centres(picture.width)]


def expected_lung() -> list[int]:
    return [round(255 * grey_level(hu, LUNG)) for hu in HU_BANDS]


async def call(config: Config, tool: str, arguments: dict[str, Any], **server: Any) -> Any:
    async with Client(build_server(config, **server)) as client:
        return await client.call_tool(tool, arguments)


async def test_azure_sized_and_windowed_pictures_are_rendered_locally(tmp_path: Path) -> None:
    slice_ = ct_slice(tmp_path / "data")
    config = Config.single(url=BASE, auth="azure", download_dir=tmp_path / "downloads")  # type: ignore[arg-type]
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        rendered = mock.get(url__regex=r".*/rendered.*").respond(406)
        retrieve = mock.get(instance_path(slice_)).mock(return_value=multipart(slice_))
        result = await call(
            config,
            "retrieve_rendered",
            {**slice_.reference, "window": "lung", "size": 256, "media_type": "image/png"},
            credentials={"default": FakeCredential()},
        )
    assert not result.is_error, text(result)
    # Azure would ignore viewport and window: it is not asked at all.
    assert not rendered.called and retrieve.call_count == 1
    accept = retrieve.calls.last.request.headers["accept"]
    assert accept == 'multipart/related; type="application/dicom"; transfer-syntax=*'
    content = result.structured_content
    assert content["renderer"] == "local" and (content["width"], content["height"]) == (256, 256)
    picture = Image.open(io.BytesIO(Path(content["path"]).read_bytes()))
    assert lung_levels(picture) == expected_lung()
    assert not list((tmp_path / "downloads").glob(".incoming-*"))  # the fetched instance was removed


def orthanc_routes(mock: respx.MockRouter, instance: Instance) -> None:
    metadata = [
        {
            "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
            "00280004": {"vr": "CS", "Value": ["MONOCHROME2"]},
            "00280010": {"vr": "US", "Value": [512]},
            "00280011": {"vr": "US", "Value": [512]},
        }
    ]
    mock.get(instance_path(instance) + "/metadata").respond(200, json=metadata)
    mock.get(instance_path(instance)).mock(return_value=multipart(instance))


async def test_a_server_that_ignores_the_viewport_is_replaced(tmp_path: Path) -> None:
    slice_ = ct_slice(tmp_path / "data")
    full_size = io.BytesIO()
    Image.new("L", (512, 512)).save(full_size, "JPEG")
    config = Config.single(url=ORTHANC, server_kind="orthanc", download_dir=tmp_path)  # type: ignore[arg-type]
    with respx.mock(base_url=ORTHANC) as mock:
        orthanc_routes(mock, slice_)
        rendered = mock.get(instance_path(slice_) + "/rendered").respond(
            200, content=full_size.getvalue(), headers={"content-type": "image/jpeg"}
        )
        result = await call(config, "retrieve_rendered", {**slice_.reference, "window": "lung", "size": 128})
    assert not result.is_error, text(result)
    asked = rendered.calls.last.request.url.params
    assert asked["viewport"] == "128,128" and asked["window"] == "-600,1500,linear"
    content = result.structured_content
    assert content["renderer"] == "local" and content["width"] == 128
    assert "did not size" in content["notes"][0]


async def test_a_failing_rendered_endpoint_is_replaced(tmp_path: Path) -> None:
    slice_ = ct_slice(tmp_path / "data")
    config = Config.single(url=ORTHANC, server_kind="orthanc", download_dir=tmp_path)  # type: ignore[arg-type]
    with respx.mock(base_url=ORTHANC) as mock:
        orthanc_routes(mock, slice_)
        mock.get(instance_path(slice_) + "/rendered").respond(500, json={"Message": "cannot render"})
        result = await call(
            config, "retrieve_rendered", {**slice_.reference, "window": "lung", "media_type": "image/png"}
        )
    assert not result.is_error, text(result)
    content = result.structured_content
    assert content["renderer"] == "local" and "HTTP 500" in content["notes"][0]
    assert lung_levels(Image.open(io.BytesIO(Path(content["path"]).read_bytes()))) == expected_lung()


def dataset(**values: tuple[str, Any]) -> dict[str, Any]:
    return {tag: {"vr": vr, "Value": [value]} for tag, (vr, value) in values.items()}


async def test_azure_overview_pages_the_instance_search(tmp_path: Path) -> None:
    study, series = "1.2.3", "1.2.3.4"
    instances = [
        dataset(
            **{
                "0020000E": ("UI", series),
                "00080018": ("UI", f"1.2.3.4.{n}"),
                "00080016": ("UI", "1.2.840.10008.5.1.4.1.1.2"),
                "00280010": ("US", 16),
            }
        )
        for n in range(203)
    ]
    asked: list[dict[str, str]] = []

    def page(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        asked.append(params)
        offset = int(params.get("offset", 0))
        return httpx.Response(200, json=instances[offset : offset + int(params["limit"])])

    config = Config.single(url=BASE, auth="azure", download_dir=tmp_path)  # type: ignore[arg-type]
    with respx.mock(base_url=BASE) as mock:
        mock.get("/studies").respond(200, json=[dataset(**{"0020000D": ("UI", study)})])
        mock.get(f"/studies/{study}/series").respond(
            200, json=[dataset(**{"0020000E": ("UI", series), "00080060": ("CS", "CT")})]
        )
        mock.get(url__regex=re.escape(f"{BASE}/studies/{study}/instances") + r".*").mock(side_effect=page)
        result = await call(
            config, "get_study_overview", {"study_uid": study}, credentials={"default": FakeCredential()}
        )
    assert not result.is_error, text(result)
    assert [(p["limit"], p.get("offset")) for p in asked] == [("200", None), ("200", "200")]
    assert result.structured_content["series"][0]["instances"] == 203
    assert result.structured_content["study"]["number_of_instances"] == 203


async def test_a_server_that_refuses_the_extra_attributes_still_gives_an_overview(tmp_path: Path) -> None:
    study, series = "1.2.3", "1.2.3.4"

    def strict(rows: list[dict[str, Any]]) -> Any:
        def answer(request: httpx.Request) -> httpx.Response:
            if "includefield" in request.url.params:
                return httpx.Response(400, text="unknown includefield")
            return httpx.Response(200, json=rows)

        return answer

    instance = dataset(**{"0020000E": ("UI", series), "00080018": ("UI", "1.2.3.4.5"), "00280010": ("US", 8)})
    config = Config.single(url=BASE, auth="azure", download_dir=tmp_path)  # type: ignore[arg-type]
    with respx.mock(base_url=BASE) as mock:
        mock.get("/studies").mock(side_effect=strict([dataset(**{"0020000D": ("UI", study)})]))
        mock.get(f"/studies/{study}/series").mock(
            side_effect=strict([dataset(**{"0020000E": ("UI", series)})])
        )
        mock.get(f"/studies/{study}/instances").mock(side_effect=strict([instance]))
        result = await call(
            config, "get_study_overview", {"study_uid": study}, credentials={"default": FakeCredential()}
        )
    assert not result.is_error, text(result)
    overview = result.structured_content
    assert overview["series"] == [{"series_uid": series, "instances": 1, "frames": 1}]
    assert len(overview["warnings"]) == 3 and "includefield" in overview["warnings"][0]
