"""tools/: the tool functions called directly over a ToolContext, against an in-memory DICOMweb server
(an httpx MockTransport), so the tool layer's own decisions are checked without Orthanc."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from dicomweb_mcp import InvalidInputError
from dicomweb_mcp.config import Config
from dicomweb_mcp.dicomweb.client import DicomWebClient
from dicomweb_mcp.errors import PolicyError
from dicomweb_mcp.tools.context import ToolContext
from dicomweb_mcp.tools.retrieve import retrieve_metadata
from dicomweb_mcp.tools.search import search_instances, search_studies
from tests.support.mcp import tool_context

pytestmark = pytest.mark.anyio

Handler = Callable[[httpx.Request], httpx.Response]


def dataset(**values: tuple[str, Any]) -> dict[str, Any]:
    """A DICOM JSON dataset from tag=(vr, value) pairs."""
    return {tag: {"vr": vr, "Value": [value]} for tag, (vr, value) in values.items()}


def study(uid: str, name: str) -> dict[str, Any]:
    return dataset(
        **{"0020000D": ("UI", uid), "00100010": ("PN", {"Alphabetic": name}), "00080061": ("CS", "CT")}
    )


@asynccontextmanager
async def context(tmp_path: Path, handler: Handler, **settings: Any) -> AsyncIterator[ToolContext]:
    """A ToolContext for one generic server (no kind detection) whose answers come from ``handler``."""
    config = Config.single(
        url="http://pacs.test/dicom-web", server_kind="generic", download_dir=tmp_path / "dl", **settings
    )
    async with DicomWebClient(config.server, transport=httpx.MockTransport(handler)) as client:
        yield tool_context(config, client)


def never(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request was expected, got {request.url}")


async def test_policy_is_checked_in_one_place(tmp_path: Path) -> None:
    async with context(tmp_path, never, read_only=True, allow_delete=True) as app:
        assert app.archive(None) is app.archive("default")
        with pytest.raises(InvalidInputError, match="no server named 'pacs': the servers are default"):
            app.archive("pacs")
        with pytest.raises(PolicyError, match="'default' is read-only"):
            app.archive(None, "store")
        with pytest.raises(PolicyError, match="Deletion is switched off for server 'default'"):
            app.archive(None, "delete")  # read-only wins over allow_delete
    async with context(tmp_path, never) as app:
        assert app.archive(None, "store").name == "default"
        with pytest.raises(PolicyError, match="Deletion is switched off"):
            app.archive(None, "delete")


async def test_search_studies_sends_one_validated_query_and_summarizes(tmp_path: Path) -> None:
    sent: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url)
        return httpx.Response(200, json=[study("1.2.3", "Doe^Jane"), study("1.2.4", "Roe^Rick")])

    async with context(tmp_path, answer) as app:
        result = await search_studies(
            app, patient_name="Doe*", study_date="2020-01-01-2020-12-31", limit=2, include_fields=["00100010"]
        )
    assert len(sent) == 1
    query = sent[0].query.decode()
    # One more than the page, to know whether there are more; StudyDescription always asked for.
    assert query == (
        "PatientName=Doe*&StudyDate=20200101-20201231&includefield=StudyDescription"
        "&includefield=PatientName&limit=3"
    )
    assert [r.study_uid for r in result.results] == ["1.2.3", "1.2.4"]
    assert result.results[0].patient_name == "Doe^Jane" and result.results[0].modalities == ["CT"]
    assert result.results[0].extra_fields is None  # PatientName is a summary field already
    assert (result.returned, result.has_more, result.next_offset) == (2, False, None)


async def test_a_full_page_says_there_is_more(tmp_path: Path) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[study(f"1.2.{n}", "X") for n in range(3)])

    async with context(tmp_path, answer) as app:
        result = await search_studies(app, limit=2, offset=4)
    assert (result.returned, result.has_more, result.next_offset) == (2, True, 6)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"series_uid": "1.2.3"}, "only together with study_uid"),
        ({"study_uid": "1.2.x"}, "not a valid DICOM UID"),
        ({"study_uid": "1.2.3", "sop_class_uid": "CT"}, "not a valid DICOM UID"),
        ({"study_uid": "1.2.3", "filters": []}, None),
    ],
)
async def test_bad_input_is_refused_before_any_request(
    tmp_path: Path, arguments: dict[str, Any], message: str | None
) -> None:
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=[])

    async with context(tmp_path, answer) as app:
        if message is None:
            await search_instances(app, **arguments)
            assert [r.url.path for r in requests] == ["/dicom-web/studies/1.2.3/instances"]
        else:
            with pytest.raises(InvalidInputError, match=message):
                await search_instances(app, **arguments)
            assert requests == []


async def test_retrieve_metadata_saves_everything_and_returns_sorted_summaries(tmp_path: Path) -> None:
    instances = [
        dataset(
            **{
                "00080018": ("UI", f"1.2.3.4.{n}"),
                "0020000E": ("UI", "1.2.3.4"),
                "00200013": ("IS", number),
                "00280010": ("US", 512),
            }
        )
        for n, number in enumerate([3, 1, 2])
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/dicom-web/studies/1.2.3/series/1.2.3.4/metadata"
        return httpx.Response(200, json=instances)

    async with context(tmp_path, answer) as app:
        result = await retrieve_metadata(app, study_uid="1.2.3", series_uid="1.2.3.4")
    assert [i.instance_number for i in result.instances] == [1, 2, 3]
    assert result.instances[0].rows == 512 and result.instance_count == 3
    saved = Path(result.metadata_file)
    assert saved == tmp_path / "dl" / "1.2.3" / "1.2.3.4" / "metadata.json"
    assert json.loads(saved.read_text()) == instances
