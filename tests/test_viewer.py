"""The study viewer (MCP Apps): its page as a resource, the overview that opens it, the app-only tools
shown only to clients that render apps, the operator's switch, and the tools against the real Orthanc."""

from __future__ import annotations

import base64
import io
import json
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import ImageContent, TextResourceContents, Tool
from PIL import Image

from dicomweb_mcp import Config
from dicomweb_mcp.errors import ConfigError
from dicomweb_mcp.tools.server import build_server
from dicomweb_mcp.tools.viewer import VIEWER_URI, display_order
from tests.support.imaging import axial_ct, phantom_hu, save, uid
from tests.support.mcp import ALL_TOOLS, RENDERS_APPS, call, text
from tests.support.nginx import TOKEN as GATE_TOKEN
from tests.support.nginx import Nginx
from tests.support.orthanc import Orthanc

pytestmark = pytest.mark.anyio

APP_TOOLS = {"viewer_series", "viewer_frame"}
MODES = ["legacy", "2026-07-28"]
MAX_VIEWER_BYTES = 250_000


def offline(tmp_path: Path, **settings: Any) -> Config:
    return Config.single(url="http://dicomweb.invalid/dicom-web", download_dir=tmp_path, **settings)


async def listed(config: Config, *, apps: bool, mode: str = "legacy") -> list[Tool]:
    async with Client(build_server(config), extensions=[RENDERS_APPS] if apps else [], mode=mode) as client:
        return (await client.list_tools()).tools


def model_facing(tools: list[Tool]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "inputSchema": t.input_schema} for t in tools]


async def test_the_viewer_page_is_one_small_self_contained_document(tmp_path: Path) -> None:
    async with Client(build_server(offline(tmp_path)), extensions=[RENDERS_APPS]) as client:
        resources = (await client.list_resources()).resources
        read = await client.read_resource(VIEWER_URI)
    assert [(str(r.uri), r.mime_type) for r in resources] == [(VIEWER_URI, APP_MIME_TYPE)]
    [page] = read.contents
    assert isinstance(page, TextResourceContents) and page.mime_type == APP_MIME_TYPE
    html = page.text
    assert len(html.encode("utf-8")) <= MAX_VIEWER_BYTES
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.IGNORECASE)
    assert not re.search(r"<link[^>]*\bhref\s*=", html, re.IGNORECASE)
    assert html.lstrip().lower().startswith("<!doctype html>") and "<script>" in html
    # The page speaks the app side of the protocol and calls only its own tools.
    for method in (
        "ui/initialize",
        "ui/notifications/initialized",
        "ui/notifications/tool-result",
        "tools/call",
    ):
        assert f'"{method}"' in html
    # The page calls its own tools, and read_report for the report beside the images.
    assert set(re.findall(r'callTool\("(\w+)"', html)) == APP_TOOLS | {"read_report"}


@pytest.mark.parametrize("apps", [False, True])
async def test_the_overview_opens_the_viewer(tmp_path: Path, apps: bool) -> None:
    tools = {t.name: t for t in await listed(offline(tmp_path), apps=apps)}
    assert tools["get_study_overview"].meta == {"ui": {"resourceUri": VIEWER_URI}}
    assert all(
        t.meta is None for name, t in tools.items() if name != "get_study_overview" and name not in APP_TOOLS
    )


@pytest.mark.parametrize("mode", MODES)
async def test_the_app_tools_are_listed_only_to_a_client_that_renders_apps(tmp_path: Path, mode: str) -> None:
    config = offline(tmp_path, allow_delete=True)
    with_apps = {t.name: t for t in await listed(config, apps=True, mode=mode)}
    without = {t.name for t in await listed(config, apps=False, mode=mode)}
    assert set(with_apps) == ALL_TOOLS | APP_TOOLS
    assert without == ALL_TOOLS
    for name in APP_TOOLS:
        assert with_apps[name].meta == {"ui": {"resourceUri": VIEWER_URI, "visibility": ["app"]}}
        assert with_apps[name].annotations is not None and with_apps[name].annotations.read_only_hint


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_apps_is_not_offered_the_page(tmp_path: Path, mode: str) -> None:
    """Its host would offer people a page of HTML to attach to the conversation."""
    async with Client(build_server(offline(tmp_path)), mode=mode) as client:
        assert (await client.list_resources()).resources == []


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_apps_is_refused_the_app_tools_in_words(tmp_path: Path, mode: str) -> None:
    arguments = {"study_uid": "1.2.3", "series_uid": "1.2.3.4"}
    async with Client(build_server(offline(tmp_path)), mode=mode) as client:
        refused = await client.call_tool("viewer_series", arguments)
        unknown = await client.call_tool("viewer_nonsense", {})
    assert refused.is_error
    assert "study viewer" in text(refused) and EXTENSION_ID in text(refused)
    assert unknown.is_error and "viewer_series" not in text(unknown)


async def test_without_apps_the_tool_list_is_todays_byte_for_byte(tmp_path: Path) -> None:
    for settings in ({}, {"allow_delete": True}, {"read_only": True}):
        config = offline(tmp_path, **settings)
        today = model_facing(await listed(config.changed(apps=False), apps=False))
        assert model_facing(await listed(config, apps=False)) == today
        # Whole, as the wire carries it: every field but _meta, which only get_study_overview gains.
        before = await listed(config.changed(apps=False), apps=False)
        after = await listed(config, apps=False)
        assert [t.model_dump_json(by_alias=True, exclude={"meta"}) for t in after] == [
            t.model_dump_json(by_alias=True, exclude={"meta"}) for t in before
        ]
        assert [t.name for t in after if t.meta != next(b for b in before if b.name == t.name).meta] == [
            "get_study_overview"
        ]
        # A host that renders apps sees the same model-facing tools, plus the two the host keeps to the app.
        shown = [t for t in await listed(config, apps=True) if t.name not in APP_TOOLS]
        assert model_facing(shown) == today


async def test_switched_off_there_is_no_viewer_at_all(tmp_path: Path) -> None:
    config = offline(tmp_path, apps=False)
    tools = await listed(config, apps=True)
    assert {t.name for t in tools} == ALL_TOOLS - {"delete_instances"}
    assert all(t.meta is None for t in tools)
    async with Client(build_server(config), extensions=[RENDERS_APPS]) as client:
        assert client.server_capabilities.resources is None
        refused = await client.call_tool(
            "viewer_frame", {"study_uid": "1.2", "series_uid": "1.3", "instance_uid": "1.4"}
        )
    assert refused.is_error and "viewer_frame" in text(refused)


def test_the_switch_is_read_from_the_environment() -> None:
    url = {"DICOMWEB_URL": "http://localhost/dicom-web"}
    assert Config.from_env(url).apps is True
    assert Config.from_env({**url, "DICOMWEB_MCP_APPS": "false"}).apps is False
    assert Config.from_env({**url, "DICOMWEB_MCP_APPS": "on"}).apps is True
    with pytest.raises(ConfigError, match="DICOMWEB_MCP_APPS"):
        Config.from_env({**url, "DICOMWEB_MCP_APPS": "maybe"})


def _dataset(number: int, z: float | None, orientation: list[float] | None = None) -> dict[str, Any]:
    ds: dict[str, Any] = {
        "00080018": {"vr": "UI", "Value": [f"1.2.3.{number}"]},
        "00200013": {"vr": "IS", "Value": [number]},
        "00280010": {"vr": "US", "Value": [64]},
        "00200037": {"vr": "DS", "Value": orientation or [1, 0, 0, 0, 1, 0]},
    }
    if z is not None:
        ds["00200032"] = {"vr": "DS", "Value": [-100, -100, z]}
    return ds


def test_display_order_follows_the_slice_normal() -> None:
    # Numbered 1..5 head to feet but for two numbers swapped: the position decides, the numbering the sense.
    datasets = [_dataset(1, 50), _dataset(2, 30), _dataset(3, 40), _dataset(4, 20), _dataset(5, 10)]
    order, instances = display_order(datasets)
    assert order == "position"
    assert [i.number for i in instances] == [1, 3, 2, 4, 5]
    assert all(i.frames == 1 for i in instances)
    # One slice without a position, or two orientations: Instance Number.
    order, instances = display_order([*datasets[:4], _dataset(5, None)])
    assert (order, [i.number for i in instances]) == ("number", [1, 2, 3, 4, 5])
    order, _ = display_order([*datasets[:4], _dataset(5, 10, [0, 1, 0, 0, 0, -1])])
    assert order == "number"


# ---- against Orthanc --------------------------------------------------------------------------------------


def ct_series(
    directory: Path, numbers_and_z: list[tuple[int, float]], size: int = 64
) -> tuple[str, str, list[str]]:
    """An axial CT series of ``size`` x ``size`` slices; the instance UIDs in the order given."""
    study_uid, series_uid = uid(), uid()
    uids = []
    for number, z in numbers_and_z:
        ds = axial_ct(
            phantom_hu(size, seed=number),
            study_uid=study_uid,
            series_uid=series_uid,
            number=number,
            z=z,
            origin=(-160, -160),
            spacing=5,
        )
        uids.append(save(ds, directory).instance_uid)
    return study_uid, series_uid, uids


async def store(config: Config, directory: Path) -> None:
    paths = sorted(str(p) for p in directory.glob("*.dcm"))
    stored = await call(config, "store_instances", {"paths": paths})
    assert not stored.is_error, text(stored)


async def test_viewer_series_orders_a_ct_series_by_position(orthanc_config: Config, tmp_path: Path) -> None:
    # Instance numbers 1..6 disagree with the table positions: 3 and 4 were numbered the wrong way round.
    placed = [(1, 100.0), (2, 95.0), (3, 85.0), (4, 90.0), (5, 80.0), (6, 75.0)]
    study_uid, series_uid, uids = ct_series(tmp_path / "series", placed)
    await store(orthanc_config, tmp_path / "series")
    async with Client(build_server(orthanc_config), extensions=[RENDERS_APPS]) as client:
        result = await client.call_tool("viewer_series", {"study_uid": study_uid, "series_uid": series_uid})
    assert not result.is_error, text(result)
    found = result.structured_content
    assert found is not None and found["order"] == "position"
    by_z = [u for (_, _), u in sorted(zip(placed, uids, strict=True), key=lambda p: -p[0][1])]
    assert [i["uid"] for i in found["instances"]] == by_z
    assert [i["number"] for i in found["instances"]] == [1, 2, 4, 3, 5, 6]
    assert all(i["frames"] == 1 for i in found["instances"])
    assert "first" not in found and not [b for b in result.content if isinstance(b, ImageContent)]


async def test_viewer_series_brings_the_middle_slice_it_opens_on(
    orthanc_config: Config, tmp_path: Path
) -> None:
    placed = [(1, 100.0), (2, 95.0), (3, 90.0), (4, 85.0), (5, 80.0)]
    study_uid, series_uid, uids = ct_series(tmp_path / "series", placed)
    await store(orthanc_config, tmp_path / "series")
    async with Client(build_server(orthanc_config), extensions=[RENDERS_APPS]) as client:
        arguments = {"study_uid": study_uid, "series_uid": series_uid, "size": 48}
        result = await client.call_tool("viewer_series", arguments)
    assert not result.is_error, text(result)
    found = result.structured_content
    assert found is not None
    middle = found["instances"][len(placed) // 2]["uid"]
    assert middle == uids[2]
    assert found["first"]["instance_uid"] == middle and "frame" not in found["first"]
    assert (found["first"]["width"], found["first"]["height"]) == (48, 48) and found["first"]["renderer"]
    assert (found["first"]["window_center"], found["first"]["window_width"]) == (40, 400)
    [picture] = [b for b in result.content if isinstance(b, ImageContent)]
    assert Image.open(io.BytesIO(base64.b64decode(picture.data))).size == (48, 48)


async def test_viewer_frame_is_a_picture_of_the_asked_size(orthanc_config: Config, tmp_path: Path) -> None:
    study_uid, series_uid, uids = ct_series(tmp_path / "series", [(1, 0.0)], size=512)
    await store(orthanc_config, tmp_path / "series")
    arguments = {"study_uid": study_uid, "series_uid": series_uid, "instance_uid": uids[0]}
    async with Client(build_server(orthanc_config), extensions=[RENDERS_APPS]) as client:
        result = await client.call_tool("viewer_frame", {**arguments, "size": 48, "window": "lung"})
        larger = await client.call_tool("viewer_frame", {**arguments, "size": 256})
        auto = await client.call_tool("viewer_frame", {**arguments, "size": 48, "window": "auto"})
    assert not result.is_error, text(result)
    [picture] = [b for b in result.content if isinstance(b, ImageContent)]
    assert picture.mime_type == "image/jpeg"
    assert Image.open(io.BytesIO(base64.b64decode(picture.data))).size == (48, 48)
    facts = result.structured_content
    assert facts is not None and (facts["width"], facts["height"]) == (48, 48)
    assert facts["window"].startswith("lung") and facts["renderer"]
    # The window's numbers, for the page to start a drag from; the image's own window has them too.
    assert (facts["window_center"], facts["window_width"]) == (-600, 1500)
    assert json.loads(text(result)) == facts
    [picture] = [b for b in larger.content if isinstance(b, ImageContent)]
    assert Image.open(io.BytesIO(base64.b64decode(picture.data))).size == (256, 256)
    own = larger.structured_content
    assert own is not None and own["window"] == "instance 40/400"
    assert (own["window_center"], own["window_width"]) == (40, 400)
    # Windowed min-max by the server: no numbers are known.
    assert auto.structured_content is not None and auto.structured_content["renderer"] == "server"
    assert auto.structured_content["window"] == "auto"
    assert "window_center" not in auto.structured_content and "window_width" not in auto.structured_content


@pytest.mark.parametrize("auth", ["basic", "bearer"])
async def test_the_viewer_reaches_a_secured_archive_with_the_server_s_own_credentials(
    orthanc: Orthanc, tmp_path: Path, auth: str
) -> None:
    """The page holds no credentials: the two tools fetch as the server, with HTTP Basic (an Orthanc that
    requires it) or a bearer token (nginx's gate in front of Orthanc), and without them are told so."""
    with ExitStack() as stack:
        if auth == "basic":
            secured = Orthanc(tmp_path / "orthanc", users={"ines": "pw-viewer-4411"}).start()
            stack.callback(secured.stop)
            url, credentials = secured.dicomweb_url, {"username": "ines", "password": "pw-viewer-4411"}
        else:
            orthanc.clear()
            gate = Nginx(tmp_path / "nginx", orthanc.port).start()
            stack.callback(gate.stop)
            url, credentials = gate.url("secured"), {"token": GATE_TOKEN}
        config = Config.single(url=url, download_dir=tmp_path / "dl", auth=auth, **credentials)  # type: ignore[arg-type]
        study_uid, series_uid, uids = ct_series(tmp_path / "series", [(1, 10.0), (2, 5.0)])
        await store(config, tmp_path / "series")
        anonymous = Config.single(url=url, download_dir=tmp_path / "dl")
        async with Client(build_server(anonymous), extensions=[RENDERS_APPS]) as client:
            refused = await client.call_tool(
                "viewer_series", {"study_uid": study_uid, "series_uid": series_uid}
            )
        async with Client(build_server(config), extensions=[RENDERS_APPS]) as client:
            series = await client.call_tool(
                "viewer_series", {"study_uid": study_uid, "series_uid": series_uid}
            )
            frame = await client.call_tool(
                "viewer_frame",
                {"study_uid": study_uid, "series_uid": series_uid, "instance_uid": uids[1], "size": 48},
            )
    assert refused.is_error and "HTTP 401" in text(refused)
    assert not series.is_error, text(series)
    assert series.structured_content is not None
    assert [i["uid"] for i in series.structured_content["instances"]] == uids
    assert not frame.is_error, text(frame)
    [picture] = [b for b in frame.content if isinstance(b, ImageContent)]
    assert Image.open(io.BytesIO(base64.b64decode(picture.data))).size == (48, 48)
