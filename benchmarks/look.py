"""Look and read, measured: the study overview's latency and bytes, the contact sheet's bytes, a shown
512 x 512 CT slice's bytes, and the time of a local render, with Orthanc's renderer and with the local one.

    python -m benchmarks.look [--runs 7] [--series 10] [--instances 10]

Starts its own Orthanc on 127.0.0.1 (tests.support.orthanc), generates a chest-like CT study with pydicom
(fixed seeds, nothing committed), and calls the tools through the MCP SDK's in-memory client, as a host
would. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from dicomweb_mcp import Config
from dicomweb_mcp.imaging.pictures import encode
from dicomweb_mcp.imaging.render import render_file
from dicomweb_mcp.tools.server import build_server
from tests.support.imaging import Instance, ct_dataset, phantom_hu, save, uid
from tests.support.orthanc import Orthanc  # run as python -m benchmarks.look from the repository


def make_study(directory: Path, series: int, instances: int) -> tuple[str, Instance]:
    study = uid()
    first: Instance | None = None
    for index in range(series):
        series_uid = uid()
        for number in range(1, instances + 1):
            ds = ct_dataset(
                phantom_hu(512, seed=index * 1000 + number, level=index * 5),
                study_uid=study,
                series_uid=series_uid,
                SeriesNumber=index + 1,
                InstanceNumber=number,
                SeriesDescription=f"CHEST {index + 1} 1.25 MM",
                BodyPartExamined="CHEST",
            )
            saved = save(ds, directory)
            first = first or saved
    assert first is not None
    return study, first


def text_bytes(result: Any) -> int:
    assert not result.is_error, result.content
    return sum(len(getattr(block, "text", "").encode()) for block in result.content)


async def timed(runs: int, call: Callable[[], Awaitable[Any]]) -> tuple[list[float], Any]:
    await call()  # warm-up: detection of the server kind, imports
    seconds = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = await call()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ({min(values) * 1000:.0f}-{max(values) * 1000:.0f})"


async def measure(config: Config, study: str, slice_: Instance, runs: int) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for kind, label in (("orthanc", "server (Orthanc)"), ("generic", "local")):
        configured = config.changed(server_kind=kind)  # type: ignore[arg-type]
        async with Client(build_server(configured)) as client:

            async def overview(show: bool) -> Any:
                return await client.call_tool("get_study_overview", {"study_uid": study, "show": show})

            async def shown() -> Any:
                return await client.call_tool("retrieve_rendered", {**slice_.reference, "show": True})

            if kind == "orthanc":
                seconds, result = await timed(runs, lambda: overview(False))
                rows.append(("overview, show=false", "-", ms(seconds), f"text {text_bytes(result):,} B"))
            seconds, result = await timed(runs, lambda: overview(True))
            sheet = Path(result.structured_content["contact_sheet"]).stat().st_size
            text = text_bytes(result) - len(result.structured_content["contact_sheet"])
            rows.append(
                ("overview, show=true", label, ms(seconds), f"sheet {sheet:,} B; text {text:,} B + path")
            )
            seconds, result = await timed(runs, shown)
            picture = result.structured_content["size_bytes"]
            rows.append(("retrieve_rendered 512x512 CT, show", label, ms(seconds), f"picture {picture:,} B"))
    return rows


def local_render_times(path: Path, runs: int) -> tuple[list[float], list[float]]:
    render_file(path, frame=None, size=512, window=None)  # warm-up: imports
    renders, encodes = [], []
    for _ in range(runs):
        started = time.perf_counter()
        picture = render_file(path, frame=None, size=512, window=None)
        renders.append(time.perf_counter() - started)
        started = time.perf_counter()
        encode(picture.image, "image/jpeg")
        encodes.append(time.perf_counter() - started)
    return renders, encodes


async def main(arguments: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="dicomweb-mcp-look-") as temporary:
        root = Path(temporary)
        study, slice_ = make_study(root / "study", arguments.series, arguments.instances)
        orthanc = Orthanc(root / "orthanc").start()
        try:
            config = Config.single(url=orthanc.dicomweb_url, download_dir=root / "downloads", timeout=120)
            async with Client(build_server(config)) as client:
                stored = await client.call_tool("store_instances", {"paths": [str(root / "study")]})
                assert stored.structured_content["counts"]["stored"] == arguments.series * arguments.instances
            rows = await measure(config, study, slice_, arguments.runs)
        finally:
            orthanc.stop()
        renders, encodes = local_render_times(slice_.path, max(arguments.runs, 20))
    rows.append(("local render of a 512x512 CT slice (decode, LUTs)", "local", ms(renders), "in-process"))
    rows.append(("JPEG encode within 20 KB", "local", ms(encodes), "in-process"))
    print(
        f"Study: {arguments.series} series x {arguments.instances} CT slices of 512 x 512 (16-bit); "
        f"median of {arguments.runs} runs (min-max), after a warm-up.\n"
    )
    print("| case | renderer | ms | bytes |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--series", type=int, default=10)
    parser.add_argument("--instances", type=int, default=10)
    anyio.run(main, parser.parse_args())
