"""The study viewer, measured in a real browser: how soon the first picture appears, a warm next slice,
the scroll rate with prefetch, and the bytes of a slice; on loopback and over the WAN emulator.

    python -m benchmarks.viewer [--runs 3] [--slices 80] [--rtt-ms 40 --conn-mbit 100]

Starts its own Orthanc on 127.0.0.1 (tests.support.orthanc), stores a generated chest-like CT series of
512 x 512 slices (pydicom, fixed seeds, nothing committed), and opens the viewer as the tests do
(tests/support/viewer_host.py: Debian's chromium, the ext-apps app bridge as host, tool calls relayed to
an in-memory MCP session of the real server). Over the WAN the server reaches Orthanc through
benchmarks/wanproxy.py; the host and the page are local, as they are beside a user's chat.

- first picture: from the host sending the overview's result to the page drawing its first picture
  (viewer_series, then viewer_frame of the middle slice), on the page's clock; and of which the two tool
  calls, timed where the host relays them (the rest is the page and the test host's relay through
  Playwright, a few tens of milliseconds a round trip on this machine).
- warm next slice: once prefetch has fetched the next slice, from the key press to the picture drawn.
- scroll: from the last slice, 30 slices up (into slices no prefetch fetched but what the arrival at the
  end did), one key press each as soon as the previous slice is drawn; slices drawn a second.
- slice bytes: the JPEG of a 512 x 512 slice, and of the size the viewer asked for at its width.

Each figure is the median of ``--runs`` fresh pages, each with a fresh server session. Targets are
checked at the end, and the exit status is 1 if any was missed; the results also go to
benchmarks/results/viewer.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.types import ImageContent

from benchmarks.wanproxy import WanProxy
from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server
from dicomweb_mcp.tools.viewer import viewer_html
from tests.support.imaging import axial_ct, phantom_hu, save, uid
from tests.support.mcp import RENDERS_APPS
from tests.support.orthanc import Orthanc  # run as python -m benchmarks.viewer from the repository
from tests.support.viewer_host import ViewerPage, opened_viewer

SCROLL_STEPS = 30
TARGETS = {
    "loopback first picture ms": ("<=", 500),
    "loopback warm next slice ms": ("<=", 100),
    "wan first picture ms": ("<=", 1000),
    "wan scroll slices/s": (">=", 10),
    "512x512 slice KB": ("<=", 40),
}


def make_series(directory: Path, slices: int) -> str:
    study_uid, series_uid = uid(), uid()
    for k in range(slices):
        ds = axial_ct(
            phantom_hu(512, seed=k, level=k % 7),
            study_uid=study_uid,
            series_uid=series_uid,
            number=k + 1,
            z=2.5 * k,
            origin=(-250, -250),
            spacing=0.98,
            SliceThickness=2.5,
            SeriesDescription="Chest 2.5 mm",
            SeriesNumber=3,
        )
        save(ds, directory)
    return study_uid


async def press(viewer: ViewerPage, key: str) -> float:
    """A key press inside the page; the page's clock (ms since the epoch) when it was pressed."""
    pressed: float = await viewer.frame.evaluate(
        """(key) => {
            const at = performance.timeOrigin + performance.now();
            document.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true}));
            return at;
        }""",
        key,
    )
    return pressed


async def one_page(session: Client, study_uid: str, order: list[str]) -> dict[str, float]:
    async with opened_viewer(session, study_uid) as viewer:
        middle = len(order) // 2
        await viewer.shown(index=middle + 1)
        times = await viewer.timestamps()
        first = times["drawn"] - times["result_sent"]
        await viewer.screenshot("benchmark-chest")
        # Of which the server's part: viewer_series, which brings the first picture, as the relay saw it.
        opening = next(c for c in viewer.calls if c.name == "viewer_series" and c.arguments["size"] > 96)
        # Warm: the next slice has come back from prefetch.
        await viewer.relayed(
            lambda c: c.name == "viewer_frame" and c.arguments["instance_uid"] == order[middle + 1]
        )
        pressed = await press(viewer, "ArrowDown")
        drawn = float((await viewer.shown(index=middle + 2))["shownAt"])
        warm = drawn - pressed
        # Scroll from the last slice towards the middle, over slices no prefetch has touched but the few
        # the arrival at the end fetches: one key press as soon as the previous slice is drawn.
        count = len(order)
        await press(viewer, "End")
        await viewer.shown(index=count)
        began = await press(viewer, "ArrowUp")
        for step in range(1, SCROLL_STEPS):
            await viewer.shown(index=count - step)
            await press(viewer, "ArrowUp")
        ended = float((await viewer.shown(index=count - SCROLL_STEPS))["shownAt"])
        rate = SCROLL_STEPS / ((ended - began) / 1000)
    return {
        "first": first,
        "served": opening.milliseconds,
        "warm": warm,
        "rate": rate,
        "viewport size": opening.arguments["size"],
    }


async def slice_bytes(session: Client, study_uid: str, series_uid: str, instance_uid: str, size: int) -> int:
    result = await session.call_tool(
        "viewer_frame",
        {"study_uid": study_uid, "series_uid": series_uid, "instance_uid": instance_uid, "size": size},
    )
    [picture] = [b for b in result.content if isinstance(b, ImageContent)]
    return len(base64.b64decode(picture.data))


async def measure(config: Config, study_uid: str, runs: int) -> dict[str, float]:
    async with Client(build_server(config), extensions=[RENDERS_APPS]) as session:
        overview = await session.call_tool("get_study_overview", {"study_uid": study_uid})
        series_uid = overview.structured_content["series"][0]["series_uid"]
        listed = await session.call_tool("viewer_series", {"study_uid": study_uid, "series_uid": series_uid})
        order = [i["uid"] for i in listed.structured_content["instances"]]
        pages = []
        for _ in range(runs):
            # A fresh server each page: nothing it kept (connections, metadata) from the page before.
            async with Client(build_server(config), extensions=[RENDERS_APPS]) as fresh:
                pages.append(await one_page(fresh, study_uid, order))
        middle = order[len(order) // 2]
        viewport = int(pages[0]["viewport size"])
        return {
            "first picture ms": statistics.median(p["first"] for p in pages),
            "of which tool calls ms": statistics.median(p["served"] for p in pages),
            "warm next slice ms": statistics.median(p["warm"] for p in pages),
            "scroll slices/s": statistics.median(p["rate"] for p in pages),
            "viewport size px": viewport,
            "512x512 slice KB": await slice_bytes(session, study_uid, series_uid, middle, 512) / 1000,
            "viewport slice KB": await slice_bytes(session, study_uid, series_uid, middle, viewport) / 1000,
            "page KB": len(viewer_html().encode()) / 1000,
        }


async def main(arguments: argparse.Namespace) -> list[str]:
    """Measure, print the table and the targets, save the results; the names of the targets missed."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dicomweb-mcp-viewer-") as temporary:
        root = Path(temporary)
        study_uid = make_series(root / "series", arguments.slices)
        orthanc = Orthanc(root / "orthanc").start()
        try:
            downloads = root / "downloads"
            loopback = Config.single(url=orthanc.dicomweb_url, download_dir=downloads, timeout=120)
            async with Client(build_server(loopback)) as client:
                stored = await client.call_tool("store_instances", {"paths": [str(root / "series")]})
                assert not stored.is_error
            results["loopback"] = await measure(loopback, study_uid, arguments.runs)
            with WanProxy(
                orthanc.port, rtt_ms=arguments.rtt_ms, conn_mbit=arguments.conn_mbit, total_mbit=None
            ) as wan:
                over_wan = Config.single(url=wan.url("/dicom-web"), download_dir=downloads, timeout=120)
                results["wan"] = await measure(over_wan, study_uid, arguments.runs)
        finally:
            orthanc.stop()
    print(f"\nViewer, {arguments.slices} slices of 512 x 512, median of {arguments.runs} fresh pages")
    print(f"(WAN: {arguments.rtt_ms:g} ms RTT, {arguments.conn_mbit:g} Mbit/s a connection)\n")
    names = list(results["loopback"])
    print("| | loopback | WAN |\n|---|---|---|")
    for name in names:
        print(f"| {name} | {results['loopback'][name]:.1f} | {results['wan'][name]:.1f} |")
    figures = {
        f"{where} {name}": value for where in ("loopback", "wan") for name, value in results[where].items()
    }
    figures["512x512 slice KB"] = results["loopback"]["512x512 slice KB"]
    missed = []
    for name, (sense, target) in TARGETS.items():
        value = figures[name]
        met = value <= target if sense == "<=" else value >= target
        print(f"{'met ' if met else 'MISSED'} {name}: {value:.1f} (target {sense} {target})")
        if not met:
            missed.append(name)
    out = Path("benchmarks/results/viewer.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"arguments": vars(arguments), "results": results, "missed": missed}, indent=2))
    return missed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=80)
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--conn-mbit", type=float, default=100.0)
    # A missed target fails the run, so a script or CI that runs the benchmark notices it.
    sys.exit(1 if anyio.run(main, parser.parse_args()) else 0)
