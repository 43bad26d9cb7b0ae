"""A host that renders MCP Apps, in a real browser, for the viewer's tests and benchmark.

Debian's chromium, driven by Playwright (never a browser Playwright downloads), loads a host page whose
host side of the protocol is the official ``@modelcontextprotocol/ext-apps`` app bridge (bundled once with
esbuild from tests/clients). The page embeds the viewer as hosts do, in a sandboxed iframe without
same-origin, and relays the viewer's tool calls to a real MCP client session. Every request the browser
makes is routed here: the host page's own two files are served, anything else is counted and refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.types import CallToolResult, TextResourceContents
from playwright.async_api import Frame, Page, Route, async_playwright

from dicomweb_mcp.tools.viewer import VIEWER_URI
from tests.support.mcp import text

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
ARTIFACTS = Path(
    os.environ.get("DICOMWEB_MCP_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)
HOST = "http://host.test"
# As the machine's notes say Chromium must start here: no background traffic to hosts it cannot reach.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>test host</title>
<style>body { margin: 0; background: #888; }</style></head>
<body><script src="/host.js"></script></body></html>"""


def chromium() -> str:
    """Debian's chromium; its absence is a failure the message explains."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("Debian's chromium is not installed: run scripts/setup.sh (it installs it).")
    return found


@cache
def host_script() -> str:
    """The host side, bundled for the browser from tests/clients/viewer-host.mjs."""
    with tempfile.TemporaryDirectory() as directory:
        bundle = Path(directory) / "host.js"
        subprocess.run(
            [
                str(CLIENTS / "node_modules" / ".bin" / "esbuild"),
                "viewer-host.mjs",
                "--bundle",
                "--format=iife",
                "--platform=browser",
                "--log-level=error",
                f"--outfile={bundle}",
            ],
            cwd=CLIENTS,
            check=True,
        )
        return bundle.read_text(encoding="utf-8")


def result_json(result: CallToolResult) -> dict[str, Any]:
    """A tool result as it travels to the app: the protocol's JSON."""
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    milliseconds: float
    error: bool


@dataclass
class ViewerPage:
    """The host page with the viewer in it, and what crossed between them."""

    page: Page
    frame: Frame
    overview: dict[str, Any]  # get_study_overview's structured result, which opened the viewer
    calls: list[ToolCall] = field(default_factory=list)  # in the order they came back
    asked: list[str] = field(default_factory=list)  # the tools' names, in the order the page called them
    # Requests the browser made other than the host page's own files: none is expected.
    escaped: list[str] = field(default_factory=list)
    # Requests made from inside the viewer's frame, whatever their address (data: URLs are not requests).
    from_viewer: list[str] = field(default_factory=list)
    # What the frame's Content Security Policy (no network, as hosts set it) refused, as the console says.
    refused: list[str] = field(default_factory=list)

    _called: anyio.Event = field(default_factory=anyio.Event)

    def record(self, call: ToolCall) -> None:
        self.calls.append(call)
        self._called.set()
        self._called = anyio.Event()

    async def relayed(self, match: Callable[[ToolCall], bool]) -> ToolCall:
        """The first relayed tool call that matches, once it has come back."""
        with anyio.fail_after(30):
            while True:
                for call in self.calls:
                    if match(call):
                        return call
                await self._called.wait()

    async def shown(self, index: int | None = None, window: str | None = None) -> dict[str, str]:
        """Wait until what the person last asked for is on the canvas, and it is image ``index`` (from 1)
        with a window label starting so; its facts."""
        condition = (
            "([index, window]) => { const d = document.getElementById('canvas').dataset;"
            " return d.settled === 'true' && (index === null || d.index === String(index))"
            " && (window === null || d.window.startsWith(window)); }"
        )
        await self.frame.wait_for_function(condition, arg=[index, window], timeout=30_000)
        facts: dict[str, str] = await self.frame.evaluate(
            "() => ({...document.getElementById('canvas').dataset})"
        )
        return facts

    async def grey(self, x: float, y: float) -> int:
        """The canvas's grey level at a point of the picture given as fractions of its width and height
        (the picture is fitted and centred: zoom 1, no pan)."""
        value: int = await self.frame.evaluate(
            """([fx, fy]) => {
                const canvas = document.getElementById('canvas');
                const side = Math.min(canvas.width, canvas.height);
                const x = Math.floor((canvas.width - side) / 2 + fx * side);
                const y = Math.floor((canvas.height - side) / 2 + fy * side);
                const [r, g, b] = canvas.getContext('2d').getImageData(x, y, 1, 1).data;
                return Math.round((r + g + b) / 3);
            }""",
            [x, y],
        )
        return value

    async def text(self, selector: str) -> str:
        return (await self.frame.locator(selector).inner_text()).strip()

    async def screenshot(self, name: str) -> Path:
        """The whole host page as the person sees it, saved among the test artifacts."""
        path = ARTIFACTS / "viewer" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def sizes(self) -> list[int]:
        """The heights the page asked its frame to be, in order."""
        sizes: list[int] = await self.page.evaluate("() => window.host.sizes")
        return sizes

    async def model_context(self) -> list[dict[str, Any]]:
        told: list[dict[str, Any]] = await self.page.evaluate("() => window.host.modelContext")
        return told

    async def timestamps(self) -> dict[str, float]:
        """The host's clock (ms since the epoch) when it sent the overview, and when the viewer last showed
        a new picture."""
        sent: float = await self.page.evaluate("() => window.host.resultSentAt")
        drawn = await self.frame.evaluate(
            "() => Number(document.getElementById('canvas').dataset.shownAt || 0)"
        )
        return {"result_sent": sent, "drawn": float(drawn)}


@asynccontextmanager
async def viewer_host(
    client: Client,
    overview_arguments: dict[str, Any],
    overview: CallToolResult,
    html: str,
    *,
    theme: str = "light",
    width: int = 900,
    height: int = 900,
) -> AsyncIterator[ViewerPage]:
    """The viewer, opened by ``overview`` (get_study_overview's result), in a real browser host whose tool
    calls go to ``client`` (a session that negotiated the apps extension)."""
    script = host_script()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": width, "height": height})
            page = await context.new_page()
            # Filled in once the viewer's frame exists; requests before then come from the host page.
            viewer = ViewerPage(page=page, frame=page.main_frame, overview=overview.structured_content or {})

            async def route(route: Route) -> None:
                url = route.request.url
                if url == f"{HOST}/":
                    await route.fulfill(body=_HOST_PAGE, content_type="text/html")
                elif url == f"{HOST}/host.js":
                    await route.fulfill(body=script, content_type="text/javascript")
                else:
                    viewer.escaped.append(url)
                    await route.abort()

            def on_request(request: Any) -> None:
                if request.frame.name == "viewer" or request.frame.parent_frame is not None:
                    viewer.from_viewer.append(request.url)

            async def call_tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
                viewer.asked.append(name)
                clock = time.perf_counter()
                result = await client.call_tool(name, arguments)
                elapsed = (time.perf_counter() - clock) * 1000
                viewer.record(ToolCall(name, arguments, elapsed, result.is_error))
                return result_json(result)

            def on_console(message: Any) -> None:
                if "Content Security Policy" in message.text:
                    viewer.refused.append(message.text)

            await page.route("**/*", route)
            page.on("console", on_console)
            page.on("request", on_request)
            await page.expose_function("hostCallTool", call_tool)
            await page.goto(f"{HOST}/")
            await page.evaluate(
                "(options) => window.startViewer(options)",
                {
                    "html": html,
                    "toolInput": overview_arguments,
                    "toolResult": result_json(overview),
                    "theme": theme,
                    "frameWidth": width - 20,
                },
            )
            frame = page.frame_locator("#viewer")
            await frame.locator("body").wait_for()
            [viewer.frame] = [f for f in page.frames if f.parent_frame is not None]
            yield viewer
        finally:
            await browser.close()


@asynccontextmanager
async def opened_viewer(session: Client, study_uid: str, **options: Any) -> AsyncIterator[ViewerPage]:
    """The viewer as a host opens it on a study: the page read from the server, get_study_overview's input
    and result (kept as ``overview``); ``options`` as ``viewer_host`` takes them."""
    [page] = (await session.read_resource(VIEWER_URI)).contents
    assert isinstance(page, TextResourceContents)
    arguments = {"study_uid": study_uid}
    overview = await session.call_tool("get_study_overview", arguments)
    assert not overview.is_error and overview.structured_content is not None, text(overview)
    async with viewer_host(session, arguments, overview, page.text, **options) as viewer:
        yield viewer
