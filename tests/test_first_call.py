"""The first call of a session does not wait for the server-kind detection: both requests go together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from dicomweb_mcp import Config, DicomWebClient

pytestmark = pytest.mark.anyio


class Gate(httpx.AsyncBaseTransport):
    """Answers GET /system (as a non-Orthanc server would) only once the search has arrived too: a
    client that sent them one after the other would wait here until the deadline."""

    def __init__(self) -> None:
        self.search_arrived = anyio.Event()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path == "/system":
            with anyio.fail_after(5):
                await self.search_arrived.wait()
            return httpx.Response(404)
        self.search_arrived.set()
        return httpx.Response(200, json=[])


async def test_detection_and_the_first_search_go_together(tmp_path: Path) -> None:
    gate = Gate()
    config = Config.single(url="http://pacs.invalid/dicom-web", download_dir=tmp_path, max_retries=0)
    async with DicomWebClient(config.server, transport=gate) as client:
        result = await client.search_studies({"PatientID": "ID1"}, limit=5)
        assert (await client.profile()).kind.value == "generic"
        await client.search_studies({"PatientID": "ID2"}, limit=5)
    assert result.datasets == []
    assert sorted(gate.paths[:2]) == ["/dicom-web/studies", "/system"]
    assert gate.paths[2:] == ["/dicom-web/studies"]  # later calls: one request each


async def test_a_query_read_differently_waits_for_the_kind(tmp_path: Path) -> None:
    """A space is sent raw as '?' to Orthanc and as %20 to others: that query waits for detection."""
    paths: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(404) if request.url.path == "/system" else httpx.Response(200, json=[])

    config = Config.single(url="http://pacs.invalid/dicom-web", download_dir=tmp_path)
    async with DicomWebClient(config.server, transport=httpx.MockTransport(answer)) as client:
        await client.search_studies({"PatientName": "Anony Mous"})
    assert paths == ["/system", "/dicom-web/studies"]


async def test_a_broken_detection_does_not_break_the_search(tmp_path: Path) -> None:
    """The detection's connection breaking mid-answer is not the search's failure, and nothing escapes
    as an exception group (the agent would see no message)."""

    class BrokenBody(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'{"ApiVersion": '
            raise httpx.ReadError("connection broken mid-body")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/system":
            return httpx.Response(200, stream=BrokenBody())
        return httpx.Response(200, json=[])

    config = Config.single(url="http://pacs.invalid/dicom-web", download_dir=tmp_path, max_retries=0)
    async with DicomWebClient(config.server, transport=httpx.MockTransport(answer)) as client:
        result = await client.search_studies({"PatientID": "ID1"})
        await client.warm_up()  # in the background at start-up: it must never raise
    assert result.datasets == []
