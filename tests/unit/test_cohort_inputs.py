"""start_cohort's inputs at their limits, against an in-memory DICOMweb server: a search's matches are read
page by page to the last, more than the job's limit are refused, and so is a list of more than 10,000
study UIDs, before anything is asked of a server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from mcp import Client

from dicomweb_mcp import InvalidInputError
from dicomweb_mcp.config import Config
from dicomweb_mcp.dicomweb.client import DicomWebClient
from dicomweb_mcp.tools.cohort import MAX_COHORT_STUDIES, _matching
from dicomweb_mcp.tools.server import build_server
from tests.support.mcp import text, tool_context

pytestmark = pytest.mark.anyio


class Studies:
    """QIDO /studies over ``count`` studies (None: without end), answering limit and offset."""

    def __init__(self, count: int | None) -> None:
        self.count = count
        self.offsets: list[int] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/studies"), request.url
        limit, offset = int(request.url.params["limit"]), int(request.url.params.get("offset", "0"))
        self.offsets.append(offset)
        end = offset + limit if self.count is None else min(offset + limit, self.count)
        found = [{"0020000D": {"vr": "UI", "Value": [f"1.2.3.{i}"]}} for i in range(offset, end)]
        return httpx.Response(200, json=found, headers={"Content-Type": "application/dicom+json"})


async def matching(tmp_path: Path, studies: Studies) -> list[str]:
    config = Config.single(url="http://pacs.test/dicom-web", server_kind="generic", download_dir=tmp_path)
    async with DicomWebClient(config.server, transport=httpx.MockTransport(studies.handle)) as client:
        archive = tool_context(config, client).archive(None)
        return await _matching(archive, ["ModalitiesInStudy=CT"])


async def test_every_page_of_the_search_is_read(tmp_path: Path) -> None:
    studies = Studies(450)
    assert await matching(tmp_path, studies) == [f"1.2.3.{i}" for i in range(450)]
    assert studies.offsets == [0, 200, 400]


async def test_more_matches_than_a_job_takes_are_refused(tmp_path: Path) -> None:
    studies = Studies(None)
    with pytest.raises(InvalidInputError, match="More than 10,000 studies match: narrow the filters"):
        await matching(tmp_path, studies)
    assert studies.offsets[-1] == MAX_COHORT_STUDIES  # it stopped at the page that went past the limit


async def test_a_list_of_more_than_ten_thousand_studies_is_refused(tmp_path: Path) -> None:
    config = Config.single(url="http://127.0.0.1:9/dicom-web", server_kind="generic", download_dir=tmp_path)
    uids = [f"1.2.3.{i}" for i in range(MAX_COHORT_STUDIES + 1)]
    async with Client(build_server(config)) as client:
        result = await client.call_tool("start_cohort", {"study_uids": uids})
        accepted = await client.call_tool("start_cohort", {"study_uids": uids[:MAX_COHORT_STUDIES]})
    assert result.is_error and "study_uids" in text(result) and "10000" in text(result)
    assert not accepted.is_error, text(accepted)  # the limit itself is taken (the job then runs on its own)
    assert accepted.structured_content is not None
    assert accepted.structured_content["studies"]["total"] == MAX_COHORT_STUDIES
