"""get_study_overview through MCP against the real Orthanc: every series and report of a generated study
in three searches, and a contact sheet whose tiles show each series' middle image."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from mcp import Client
from PIL import Image

from dicomweb_mcp import Config
from dicomweb_mcp.dicom.windows import Window, grey_level
from dicomweb_mcp.imaging.sheet import Layout, layout
from dicomweb_mcp.tools.server import build_server
from tests.support.imaging import Instance, ct_dataset, save, uid
from tests.support.mcp import text
from tests.support.reports import basic_text_sr, encapsulated_pdf
from tests.support.samples import Samples

pytestmark = pytest.mark.anyio

LEVELS = (-600, -200, 200, 600)  # HU of each CT series' middle image
WINDOW = Window(0, 2000)


class Recording(httpx.AsyncBaseTransport):
    """httpx's transport, remembering every request it sends."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def make_study(directory: Path) -> tuple[str, list[Instance]]:
    """Four CT series of three 96 x 96 slices (the middle one at its series' level, the others air), a
    five-frame series (the middle frame bone), a Basic Text SR and an encapsulated PDF."""
    study = uid()
    made: list[Instance] = []
    for index, level in enumerate(LEVELS, 1):
        series = uid()
        for number in (1, 2, 3):
            hu = np.full((96, 96), level if number == 2 else -1000, np.int16)
            ds = ct_dataset(
                hu,
                study_uid=study,
                series_uid=series,
                window=(WINDOW.center, WINDOW.width),
                SeriesNumber=index,
                InstanceNumber=number,
                SeriesDescription=f"AX {index}",
                BodyPartExamined="CHEST",
            )
            made.append(save(ds, directory))
    frames = np.stack([np.full((96, 96), 1000 if f == 2 else -1000, np.int16) for f in range(5)])
    ds = ct_dataset(
        frames, study_uid=study, series_uid=uid(), window=(0, 2000), SeriesNumber=5, SeriesDescription="CINE"
    )
    made.append(save(ds, directory))
    made.append(basic_text_sr(directory, pydicom.dcmread(made[0].path)))
    made.append(encapsulated_pdf(directory, study_uid=study))
    return study, made


async def test_one_call_says_what_is_in_the_study(orthanc_config: Config, tmp_path: Path) -> None:
    study, made = make_study(tmp_path / "study")
    recording = Recording()
    async with Client(build_server(orthanc_config, transports={"default": recording})) as client:
        stored = await client.call_tool("store_instances", {"paths": [str(tmp_path / "study")]})
        assert stored.structured_content["counts"]["stored"] == len(made)
        recording.requests.clear()
        result = await client.call_tool("get_study_overview", {"study_uid": study})
    assert not result.is_error, text(result)
    assert [block.type for block in result.content] == ["text"]
    overview = result.structured_content
    assert overview["patient"] == {"name": "Look^Test", "id": "LOOK1", "birth_date": "19600203", "sex": "M"}
    assert overview["study"] == {
        "study_uid": study,
        "date": "20240315",
        "time": "101500",
        "description": "CT CHEST",
        "accession_number": "ACC42",
        "modalities": ["CT", "DOC", "SR"],
        "number_of_series": 7,
        "number_of_instances": 15,
    }
    series = overview["series"]
    assert [(s["number"], s["modality"], s["instances"], s["frames"]) for s in series] == [
        (1, "CT", 3, 3),
        (2, "CT", 3, 3),
        (3, "CT", 3, 3),
        (4, "CT", 3, 3),
        (5, "CT", 1, 5),
        (90, "SR", 1, 0),
        (95, "DOC", 1, 0),
    ]
    assert series[0]["description"] == "AX 1" and series[0]["body_part"] == "CHEST"
    reports = {r["kind"]: r for r in overview["reports"]}
    assert reports["sr"]["title"] == "Diagnostic imaging report"
    assert reports["pdf"]["title"] == "Chest CT report"
    assert reports["sr"]["instance_uid"] == made[-2].instance_uid
    assert reports["pdf"]["series_uid"] == made[-1].series_uid
    assert "contact_sheet" not in overview

    # One search each for the study, its series and its instances, not one per series; the SR's title
    # (which Orthanc's search does not return) from its metadata.
    searches = [
        r.url.path.rpartition("/")[2]
        for r in recording.requests
        if r.url.path.endswith(("studies", "series", "instances"))
    ]
    assert sorted(searches) == ["instances", "series", "studies"], searches
    assert len(recording.requests) == 4, [r.url.path for r in recording.requests]


async def test_the_contact_sheet_has_a_labelled_tile_per_series(
    orthanc_config: Config, tmp_path: Path
) -> None:
    study, _ = make_study(tmp_path / "study")
    for kind in ("orthanc", "generic"):  # thumbnails from the server's renderer, then from the local one
        config = orthanc_config.changed(server_kind=kind)  # type: ignore[arg-type]
        async with Client(build_server(config)) as client:
            await client.call_tool("store_instances", {"paths": [str(tmp_path / "study")]})
            result = await client.call_tool("get_study_overview", {"study_uid": study, "show": True})
        assert not result.is_error, text(result)
        overview = result.structured_content
        assert [block.type for block in result.content] == ["text", "image"]
        sheet_bytes = base64.b64decode(result.content[1].data)
        assert sheet_bytes == Path(overview["contact_sheet"]).read_bytes()
        assert len(sheet_bytes) <= 30_000 and result.content[1].mime_type == "image/jpeg"
        sheet = np.asarray(Image.open(io.BytesIO(sheet_bytes)).convert("L"), dtype=np.int32)

        count = len(overview["series"])
        planned = layout(count)
        grid = Layout(count, planned.columns, planned.rows, sheet.shape[1] // planned.columns)
        assert (grid.columns, grid.rows) == (3, 3) and grid.height == sheet.shape[0]
        wanted = [round(255 * grey_level(level, WINDOW)) for level in LEVELS] + [255]
        tiles = 0
        for index in range(grid.columns * grid.rows):
            left, top, right, bottom = grid.picture_box(index)
            label = sheet[bottom + 2 : bottom + 26, left + 2 : right - 4]
            middle = left + grid.tile // 2
            centre = sheet[top + grid.tile // 4 - 8 : top + grid.tile // 4 + 8, middle - 8 : middle + 8]
            if index >= count:  # the grid's spare slots stay empty
                assert label.max() < 60 and sheet[top:bottom, left : right - 2].max() < 60
                continue
            tiles += 1
            assert label.max() > 200, f"tile {index} has no label"
            if index < len(wanted):
                # The middle image of the series (the others are air) through its own 0/2000 window.
                assert abs(float(np.median(centre)) - wanted[index]) <= 8, (kind, index, np.median(centre))
            else:  # the reports: a word, no picture
                assert float(np.median(centre)) < 40, (kind, index)
        assert tiles == count == 7


async def test_an_unknown_study_says_search_first(orthanc_config: Config) -> None:
    async with Client(build_server(orthanc_config)) as client:
        result = await client.call_tool("get_study_overview", {"study_uid": "1.2.3.4.5"})
    assert result.is_error and "search_studies" in text(result)


async def test_a_colour_series_keeps_its_colour_on_the_sheet(
    orthanc_config: Config, samples: Samples
) -> None:
    async with Client(build_server(orthanc_config)) as client:
        await client.call_tool("store_instances", {"paths": [str(f.path) for f in samples.all]})
        result = await client.call_tool("get_study_overview", {"study_uid": samples.study_uid, "show": True})
    assert not result.is_error, text(result)
    sheet = Image.open(io.BytesIO(base64.b64decode(result.content[1].data)))
    assert sheet.mode == "RGB"
    # Series 1's middle instance is the green square, series 2 the blue circle.
    grid = layout(2)
    centres = [
        sheet.getpixel(((b[0] + b[2]) // 2, (b[1] + b[3]) // 2)) for b in map(grid.picture_box, (0, 1))
    ]
    green, blue = centres
    assert green[1] > 150 > green[0] and blue[2] > 150 > blue[0], centres
