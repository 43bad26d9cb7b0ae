"""The study viewer in a real browser: Debian's chromium, a host page built on the official ext-apps app
bridge, the real server and a real Orthanc. What the person sees is checked on the canvas's pixels."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mcp import Client
from playwright.async_api import Locator
from pydicom import dcmread

from dicomweb_mcp import Config
from dicomweb_mcp.dicom.windows import PRESETS, Window, grey_level
from dicomweb_mcp.tools.server import build_server
from tests.support.imaging import axial_ct, ct_dataset, save, uid
from tests.support.malformed import raw_value, set_raw
from tests.support.mcp import RENDERS_APPS, call, text
from tests.support.reports import FINDINGS, basic_text_sr
from tests.support.viewer_host import ToolCall, ViewerPage, opened_viewer

pytestmark = pytest.mark.anyio

SLICES = 10
SIZE = 256
# Regions of the picture (fractions of its width and height: a square's centre) and their Hounsfield units.
LUNG_REGION, SOFT_REGION, BONE_REGION, MARKER = (0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)
LUNG_HU, SOFT_HU, BONE_HU = -700, 40, 700
# Grey levels a JPEG of a flat region keeps to within this, and the marker's steps are 20 apart.
TOLERANCE = 6


def marker_hu(slice_index: int) -> int:
    """The value that tells the slices apart: slice k (from 0, foot to head) holds -1000 + 120 k."""
    return -1000 + 120 * slice_index


def phantom(slice_index: int) -> np.ndarray:
    hu = np.full((SIZE, SIZE), -1000, dtype=np.int16)
    for (fx, fy), value in (
        (LUNG_REGION, LUNG_HU),
        (SOFT_REGION, SOFT_HU),
        (BONE_REGION, BONE_HU),
        (MARKER, marker_hu(slice_index)),
    ):
        x, y = int(fx * SIZE), int(fy * SIZE)
        hu[y - 40 : y + 40, x - 40 : x + 40] = value
    return hu


def expected_grey(hu: float, preset: str) -> float:
    center, width = PRESETS[preset]
    return 255 * grey_level(hu, Window(center, width))


def luminance(css: str) -> float:
    """The relative luminance (WCAG 2, 0 black to 1 white) of a computed ``rgb(r, g, b)`` colour."""
    channels = [int(c) / 255 for c in re.findall(r"\d+", css)[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def asks_for(instance_uid: str, size: int, window: str | None = None) -> Callable[[ToolCall], bool]:
    """Whether a relayed call is viewer_frame for this instance at this size and window (None: its own)."""
    return lambda c: (
        c.name == "viewer_frame"
        and c.arguments["instance_uid"] == instance_uid
        and c.arguments["size"] == size
        and c.arguments.get("window") == window
    )


def contrast(background: str, foreground: str) -> float:
    """The WCAG contrast ratio of two computed colours (1 to 21)."""
    light, dark = sorted((luminance(background), luminance(foreground)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def js_round(value: float) -> int:
    """Math.round, as the page rounds (halves up, where Python's round goes to even)."""
    return math.floor(value + 0.5)


async def tab_to(viewer: ViewerPage, target: Locator, *, backwards: bool = False) -> None:
    """Move the focus with Tab (or Shift+Tab) alone, no pointer, until it is on ``target``."""
    for _ in range(30):
        await viewer.page.keyboard.press("Shift+Tab" if backwards else "Tab")
        if await target.evaluate("(element) => element === document.activeElement"):
            return
    raise AssertionError(f"Tab never reached {target}")


@dataclass
class Study:
    study_uid: str
    series_uid: str
    instance_uids: list[str]  # foot to head: slice k is instance_uids[k]


async def stored_study(config: Config, directory: Path) -> Study:
    """A CT series of SLICES slices, numbered and placed foot to head, stored in a shuffled order, and a
    Basic Text SR report on it."""
    study_uid, series_uid = uid(), uid()
    rng = np.random.default_rng(7)
    uids = []
    for k in range(SLICES):
        ds = axial_ct(
            phantom(k),
            study_uid=study_uid,
            series_uid=series_uid,
            number=k + 1,
            z=5.0 * k,
            origin=(-128, -128),
            window=None,
            SliceThickness=5,
            SeriesDescription="Chest",
            SeriesNumber=2,
        )
        uids.append(save(ds, directory).instance_uid)
    basic_text_sr(directory, dcmread(sorted(directory.glob("*.dcm"))[0]))
    paths = [str(p) for p in directory.glob("*.dcm")]
    rng.shuffle(paths)
    stored = await call(config, "store_instances", {"paths": paths})
    assert not stored.is_error, text(stored)
    return Study(study_uid, series_uid, uids)


@pytest.fixture
async def study(orthanc_config: Config, tmp_path: Path) -> Study:
    return await stored_study(orthanc_config, tmp_path / "study")


@pytest.fixture
async def session(orthanc_config: Config) -> AsyncIterator[Client]:
    async with Client(build_server(orthanc_config), extensions=[RENDERS_APPS]) as client:
        yield client


async def test_the_viewer_shows_the_study_as_the_person_scrolls_and_windows(
    session: Client, study: Study
) -> None:
    async with opened_viewer(session, study.study_uid) as viewer:
        overview = viewer.overview
        # The first picture: the middle slice of the only image series, in the image's own window.
        middle = SLICES // 2  # from 0
        first = await viewer.shown(index=middle + 1)
        assert first["instance"] == study.instance_uids[middle]
        assert await viewer.text("#count") == f"{middle + 1} / {SLICES}"
        assert "Chest" in await viewer.text("#strip")
        await viewer.screenshot("first-picture")

        # Before any key is pressed, the slices on either side are fetched ahead at the viewport's size.
        [opening] = [c for c in viewer.calls if c.name == "viewer_series"]
        size = opening.arguments["size"]
        for neighbour in (middle + 1, middle - 1):
            await viewer.relayed(asks_for(study.instance_uids[neighbour], size))

        # The header is the overview's patient and study.
        patient, described_study = overview["patient"], overview["study"]
        header = await viewer.text("#patient")
        assert patient["name"] in header and f"ID {patient['id']}" in header
        day = described_study["date"]
        described = await viewer.text("#study")
        for part in (
            described_study["description"],
            f"Acc. {described_study['accession_number']}",
            f"{day[:4]}-{day[4:6]}-{day[6:]}",
        ):
            assert part in described, (part, described)

        # Each image series has a thumbnail that is a decoded picture; the report's series has none.
        thumbnails = viewer.frame.locator("#strip button:enabled img")
        await viewer.frame.wait_for_function(
            "() => [...document.querySelectorAll('#strip button:enabled img')].every((i) => i.naturalWidth > 0)"
        )
        assert await thumbnails.count() == sum(1 for s in overview["series"] if s["frames"] > 0) > 0
        for source in await thumbnails.evaluate_all("(images) => images.map((i) => i.src)"):
            assert source.startswith("data:image/")

        # The light theme: a light background, and text that reads on it.
        background, foreground = await viewer.frame.evaluate(
            "() => { const s = getComputedStyle(document.body); return [s.backgroundColor, s.color]; }"
        )
        assert luminance(background) > 0.5 and contrast(background, foreground) >= 4.5, (
            background,
            foreground,
        )

        # Two presets: the grey levels of known regions follow the window formula.
        for preset in ("lung", "bone"):
            await viewer.frame.get_by_role("button", name=preset, exact=True).click()
            await viewer.shown(window=preset)
            for region, hu in ((LUNG_REGION, LUNG_HU), (SOFT_REGION, SOFT_HU), (BONE_REGION, BONE_HU)):
                assert abs(await viewer.grey(*region) - expected_grey(hu, preset)) <= TOLERANCE, (preset, hu)
            await viewer.screenshot(f"window-{preset}")

        # Scrolling: Home goes to the first slice (foot), then the arrow key steps up to slice N.
        await viewer.frame.locator("#view").focus()
        await viewer.page.keyboard.press("Home")
        await viewer.shown(index=1)
        target = 7
        for _ in range(target - 1):
            await viewer.page.keyboard.press("ArrowDown")
        facts = await viewer.shown(index=target, window="bone")
        assert facts["instance"] == study.instance_uids[target - 1]
        assert await viewer.text("#count") == f"{target} / {SLICES}"
        assert abs(await viewer.grey(*MARKER) - expected_grey(marker_hu(target - 1), "bone")) <= TOLERANCE
        await viewer.frame.get_by_role("button", name="lung", exact=True).click()
        await viewer.shown(index=target, window="lung")
        assert abs(await viewer.grey(*MARKER) - expected_grey(marker_hu(target - 1), "lung")) <= TOLERANCE
        # The report beside the images, read through the server once the first picture was on screen:
        # after the neighbours' prefetch, which starts as it is drawn.
        await viewer.frame.locator("#report-text").get_by_text(FINDINGS[:30]).wait_for()
        assert viewer.asked.index("read_report") > viewer.asked.index("viewer_frame")
        assert viewer.asked.count("read_report") == 1
        await viewer.screenshot("slice-7")

        # On one slice and back: the slice shown before is shown again from what the page kept, no new call.
        kept = asks_for(study.instance_uids[target - 1], size, "lung")
        asked = sum(1 for c in viewer.calls if kept(c))
        assert asked == 1
        await viewer.page.keyboard.press("ArrowDown")
        await viewer.shown(index=target + 1, window="lung")
        await viewer.page.keyboard.press("ArrowUp")
        facts = await viewer.shown(index=target, window="lung")
        assert facts["instance"] == study.instance_uids[target - 1]
        assert abs(await viewer.grey(*MARKER) - expected_grey(marker_hu(target - 1), "lung")) <= TOLERANCE
        assert sum(1 for c in viewer.calls if kept(c)) == asked

        # The wheel over the picture: 100 px of wheel is a slice, down is on.
        slider = viewer.frame.locator("#slider")
        box = await viewer.frame.locator("#view").bounding_box()
        assert box is not None
        await viewer.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        for delta, position in ((100, target + 1), (-300, target - 2)):
            await viewer.page.mouse.wheel(0, delta)
            facts = await viewer.shown(index=position, window="lung")
            assert facts["instance"] == study.instance_uids[position - 1]
            assert await viewer.text("#count") == f"{position} / {SLICES}"
            assert await slider.input_value() == str(position)
            assert (
                abs(await viewer.grey(*MARKER) - expected_grey(marker_hu(position - 1), "lung")) <= TOLERANCE
            )

        # The slider: set to a slice, then stepped with its own arrow key.
        for position, step in ((2, None), (3, "ArrowRight"), (target - 1, None), (target, "ArrowRight")):
            if step is None:
                await slider.fill(str(position))
            else:
                await slider.press(step)
            facts = await viewer.shown(index=position, window="lung")
            assert facts["instance"] == study.instance_uids[position - 1]
            assert await viewer.text("#count") == f"{position} / {SLICES}"
            assert (
                abs(await viewer.grey(*MARKER) - expected_grey(marker_hu(position - 1), "lung")) <= TOLERANCE
            )

        # The host was told what is on screen, last of all the slice the person stopped on.
        await viewer.page.wait_for_function(
            "(uid) => { const c = window.host.modelContext.at(-1);"
            " return c && c.structuredContent.instance_uid === uid && c.structuredContent.window.startsWith('lung'); }",
            arg=study.instance_uids[target - 1],
        )
        told = (await viewer.model_context())[-1]
        assert told["structuredContent"]["image"] == target
        assert study.instance_uids[target - 1] in told["content"][0]["text"]

    assert viewer.escaped == [] and viewer.from_viewer == [] and viewer.refused == []
    assert {c.name for c in viewer.calls} <= {"viewer_series", "viewer_frame", "read_report"}
    assert not any(c.error for c in viewer.calls)


async def test_the_person_zooms_pans_and_drags_the_window_at_400_px_in_the_dark(
    session: Client, study: Study
) -> None:
    async with opened_viewer(session, study.study_uid, theme="dark", width=400, height=800) as viewer:
        middle = SLICES // 2 + 1
        await viewer.shown(index=middle)
        background, foreground = await viewer.frame.evaluate(
            "() => { const s = getComputedStyle(document.body); return [s.backgroundColor, s.color]; }"
        )
        assert background == "rgb(23, 25, 28)"
        assert luminance(background) < 0.05 and contrast(background, foreground) >= 4.5, (
            background,
            foreground,
        )
        # Readable at 400 px: nothing wider than the frame.
        assert await viewer.frame.evaluate(
            "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
        await viewer.screenshot("dark-400px")

        # A corner of the picture is air; zoomed twice about the centre, the same point of the canvas
        # shows the lung-valued square (the picture's (0.275, 0.275)).
        await viewer.frame.get_by_role("button", name="lung", exact=True).click()
        await viewer.shown(window="lung")
        corner = (0.05, 0.05)
        assert abs(await viewer.grey(*corner) - expected_grey(-1000, "lung")) <= TOLERANCE
        await viewer.frame.locator("#view").focus()
        for _ in range(3):  # 1.25 ** 3: about 2
            await viewer.page.keyboard.press("+")
        assert await viewer.text("#overlay") == "lung -600/1500 · server · 195%"
        assert abs(await viewer.grey(*corner) - expected_grey(LUNG_HU, "lung")) <= TOLERANCE
        await viewer.screenshot("zoomed")

        # Shift+drag pans: the picture moves with the pointer.
        box = await viewer.frame.locator("#view").bounding_box()
        assert box is not None
        await viewer.page.keyboard.press("0")
        assert await viewer.text("#overlay") == "lung -600/1500 · server"
        centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await viewer.page.keyboard.down("Shift")
        await viewer.page.mouse.move(*centre)
        await viewer.page.mouse.down()
        await viewer.page.mouse.move(centre[0] - box["width"] / 2, centre[1], steps=4)
        await viewer.page.mouse.up()
        await viewer.page.keyboard.up("Shift")
        # Half the view to the left: the view's (0.25, 0.25) now shows the picture's (0.75, 0.25).
        assert abs(await viewer.grey(*LUNG_REGION) - expected_grey(SOFT_HU, "lung")) <= TOLERANCE
        await viewer.page.keyboard.press("0")

        # Dragging right widens the window, down raises its centre; the picture is windowed as its label says.
        await viewer.page.mouse.move(*centre)
        await viewer.page.mouse.down()
        await viewer.page.mouse.move(centre[0] + 40, centre[1] + 20, steps=5)
        await viewer.page.mouse.up()
        facts = await viewer.shown(window="custom")
        # From lung: each pixel of the drag moves the window by a 256th of its width.
        step = PRESETS["lung"][1] / 256
        center, width = round(PRESETS["lung"][0] + 20 * step), round(PRESETS["lung"][1] + 40 * step)
        assert facts["window"] == f"custom {center}/{width}"
        for region, hu in ((LUNG_REGION, LUNG_HU), (SOFT_REGION, SOFT_HU)):
            expected = 255 * grey_level(hu, Window(center, width))
            assert abs(await viewer.grey(*region) - expected) <= TOLERANCE, (hu, center, width)
        assert not any(
            b == "true"
            for b in await viewer.frame.locator("#presets button").evaluate_all(
                "(buttons) => buttons.map((b) => b.getAttribute('aria-pressed'))"
            )
        )
        await viewer.screenshot("dragged-window")

        # By keyboard from there, through the drag's rendering: [ ] narrow and widen the window, { } lower
        # and raise its centre, each by a tenth of the width it has then.
        for key in ("[", "[", "[", "]", "}", "}", "}", "{"):
            await viewer.page.keyboard.press(key)
            step = max(1, js_round(width / 10))
            width += {"[": -step, "]": step}.get(key, 0)
            center += {"{": -step, "}": step}.get(key, 0)
        label = f"custom {center}/{width}"
        facts = await viewer.shown(window=label)
        assert facts["window"] == label and label in await viewer.text("#overlay")
        for region, hu in ((LUNG_REGION, LUNG_HU), (SOFT_REGION, SOFT_HU), (BONE_REGION, BONE_HU)):
            expected = 255 * grey_level(hu, Window(center, width))
            assert abs(await viewer.grey(*region) - expected) <= TOLERANCE, (hu, center, width)
        await viewer.page.wait_for_function(
            "(label) => { const c = window.host.modelContext.at(-1); return c && c.structuredContent.window === label; }",
            arg=label,
        )
        assert viewer.escaped == [] and viewer.from_viewer == [] and viewer.refused == []

        # The count is real: a request the page made would be refused by the frame's policy, and counted.
        probe = "http://archive.invalid/studies"
        async with viewer.page.expect_console_message(lambda m: "Content Security Policy" in m.text):
            await viewer.frame.evaluate("(url) => fetch(url).catch(() => null)", probe)
        assert viewer.refused and all(probe in message for message in viewer.refused) and viewer.escaped == []


async def stored_mixed_study(config: Config, directory: Path) -> tuple[str, list[str]]:
    """Three series: one slice; 3 frames in one instance (frame f holds marker_hu(f - 1)); three slices of
    which the middle one cannot be rendered (Rows 0). The study UID and the broken slice's UID."""
    study_uid = uid()
    frames = np.stack([phantom(f) for f in range(3)])
    series = [
        ct_dataset(phantom(0), study_uid=study_uid, series_uid=uid(), window=None, SeriesNumber=1),
        ct_dataset(frames, study_uid=study_uid, series_uid=uid(), window=None, SeriesNumber=2),
    ]
    broken_series = uid()
    for k in range(3):
        ds = ct_dataset(
            phantom(k),
            study_uid=study_uid,
            series_uid=broken_series,
            window=None,
            SeriesNumber=3,
            InstanceNumber=k + 1,
            ImagePositionPatient=[-128, -128, 5.0 * k],
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
        )
        if k == 1:
            set_raw(ds, "Rows", raw_value("Rows", 0))
        series.append(ds)
    saved = [save(ds, directory) for ds in series]
    stored = await call(config, "store_instances", {"paths": [str(p) for p in directory.glob("*.dcm")]})
    assert not stored.is_error, text(stored)
    return study_uid, [saved[3].instance_uid]


async def test_frames_a_broken_slice_a_series_switch_and_the_host_changing_theme(
    session: Client, orthanc_config: Config, tmp_path: Path
) -> None:
    study_uid, [broken] = await stored_mixed_study(orthanc_config, tmp_path / "mixed")
    async with opened_viewer(session, study_uid) as viewer:
        await viewer.shown(index=1)
        strip = viewer.frame.locator("#strip button")
        lung = viewer.frame.get_by_role("button", name="lung", exact=True)

        # By keyboard alone, from the host's page: Tab to the lung preset and Space, then back to the second
        # series and Enter.
        await tab_to(viewer, lung)
        await viewer.page.keyboard.press("Space")
        await viewer.shown(index=1, window="lung")
        assert await lung.get_attribute("aria-pressed") == "true"
        await tab_to(viewer, strip.nth(1), backwards=True)
        await viewer.page.keyboard.press("Enter")

        # The multi-frame instance: each frame is a slice, the middle one first.
        facts = await viewer.shown(index=2, window="lung")
        assert await strip.nth(1).get_attribute("aria-pressed") == "true"
        assert facts["frame"] == "2" and await viewer.text("#count") == "2 / 3"
        assert abs(await viewer.grey(*MARKER) - expected_grey(marker_hu(1), "lung")) <= TOLERANCE
        await viewer.frame.locator("#view").focus()
        await viewer.page.keyboard.press("End")
        facts = await viewer.shown(index=3, window="lung")
        assert facts["frame"] == "3"
        assert abs(await viewer.grey(*MARKER) - expected_grey(marker_hu(2), "lung")) <= TOLERANCE

        # The broken slice: an empty viewport and the reason, never the previous picture under its number.
        await strip.nth(2).click()
        await viewer.frame.wait_for_function(
            "() => { const d = document.getElementById('canvas').dataset; return d.settled === 'true' && !d.index; }"
        )
        assert await viewer.text("#count") == "2 / 3"
        assert "Image 2 could not be shown" in await viewer.text("#status")
        assert await viewer.grey(*LUNG_REGION) == 0
        await viewer.screenshot("broken-slice")
        await viewer.frame.locator("#view").focus()
        await viewer.page.keyboard.press("ArrowDown")
        await viewer.shown(index=3, window="lung")
        assert await viewer.text("#status") == ""
        assert abs(await viewer.grey(*LUNG_REGION) - expected_grey(LUNG_HU, "lung")) <= TOLERANCE
        # Only the broken slice failed (asked for by the thumbnail, the viewport and the prefetch).
        assert {c.arguments["instance_uid"] for c in viewer.calls if c.error} == {broken}

        # The host turns dark: the page follows.
        await viewer.page.evaluate("() => window.setTheme('dark')")
        await viewer.frame.wait_for_function("() => document.documentElement.dataset.theme === 'dark'")
        assert (
            await viewer.frame.evaluate("() => getComputedStyle(document.body).backgroundColor")
            == "rgb(23, 25, 28)"
        )
        # And its own look, where it gives one: the page takes the host's colours and font.
        host_look = {"--color-background-primary": "rgb(1, 2, 3)", "--font-sans": "serif"}
        await viewer.page.evaluate("(variables) => window.setStyles(variables)", host_look)
        await viewer.frame.wait_for_function(
            "() => getComputedStyle(document.body).backgroundColor === 'rgb(1, 2, 3)'"
        )
        for element in ("document.body", "document.getElementById('report-text')"):
            assert await viewer.frame.evaluate(f"() => getComputedStyle({element}).fontFamily") == "serif"

        # The frame is as tall as the content, and the content does not grow with the frame (no loop).
        height = "() => Math.ceil(document.body.getBoundingClientRect().height)"
        body = await viewer.frame.evaluate(height)
        assert (await viewer.sizes())[-1] == body
        await viewer.page.evaluate("() => { document.getElementById('viewer').style.height = '2400px'; }")
        await viewer.frame.wait_for_function("() => window.innerHeight === 2400")
        assert await viewer.frame.evaluate(height) == body
