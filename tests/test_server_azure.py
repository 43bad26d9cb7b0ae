"""Azure-only tool paths through the MCP layer (the HTTP side mocked as the conformance statement says)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import respx
from mcp import Client

from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server
from tests.support.azure import BASE, CHANGE_FEED, FakeCredential, sop_item, stow_response
from tests.support.samples import Samples

pytestmark = pytest.mark.anyio


def azure_server(tmp_path: Path) -> Any:
    config = Config.single(url=BASE, auth="azure", download_dir=tmp_path)  # type: ignore[arg-type]
    return build_server(config, credentials={"default": FakeCredential()})


def renumbered(first: int, second: int) -> list[dict[str, Any]]:
    return [{**CHANGE_FEED[0], "sequence": first}, {**CHANGE_FEED[1], "Sequence": second}]


async def test_change_feed_tool_v2_pages_by_count(tmp_path: Path) -> None:
    with respx.mock(base_url=BASE) as mock:
        feed = mock.get("/changefeed").respond(200, json=renumbered(500, 900))
        async with Client(azure_server(tmp_path)) as client:
            page = await client.call_tool(
                "get_change_feed", {"offset": 0, "limit": 2, "include_metadata": True}
            )
    result = page.structured_content
    assert not page.is_error
    assert [(e["sequence"], e["action"], e["state"]) for e in result["entries"]] == [
        (500, "Create", "Deleted"),
        (900, "Delete", "Current"),
    ]
    assert result["next_offset"] == 2  # v2: offset counts entries, whatever their sequence numbers
    assert json.loads(Path(result["metadata_file"]).read_text()) == {"900": {"00100010": {"vr": "PN"}}}
    assert "metadata" not in json.dumps(result["entries"])
    assert feed.calls.last.request.url.params["includemetadata"] == "true"


async def test_change_feed_tool_v1_pages_by_sequence(tmp_path: Path) -> None:
    v1 = BASE.removesuffix("/v2") + "/v1"
    config = Config.single(url=v1, auth="azure", download_dir=tmp_path)  # type: ignore[arg-type]
    with respx.mock(base_url=v1) as mock:
        feed = mock.get("/changefeed").respond(200, json=renumbered(500, 900))
        async with Client(build_server(config, credentials={"default": FakeCredential()})) as client:
            page = await client.call_tool("get_change_feed", {"offset": 499, "limit": 2})
            too_many = await client.call_tool("get_change_feed", {"limit": 150})
            window = await client.call_tool("get_change_feed", {"start_time": "2023-05-10T00:00:00Z"})
    assert page.structured_content["next_offset"] == 900  # v1: the last sequence seen
    assert feed.calls.last.request.url.params["offset"] == "499"
    assert too_many.is_error and "between 1 and 100" in too_many.content[0].text
    assert window.is_error and "/v2" in window.content[0].text


async def test_change_feed_window_and_latest(tmp_path: Path) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.get("/changefeed").respond(200, json=CHANGE_FEED)
        mock.get("/changefeed/latest").respond(204)
        async with Client(azure_server(tmp_path)) as client:
            window = await client.call_tool(
                "get_change_feed",
                {"offset": 10, "start_time": "2023-05-10T00:00:00Z", "end_time": "2023-05-11T00:00:00Z"},
            )
            latest = await client.call_tool("get_change_feed", {"latest": True})
    assert window.structured_content["next_offset"] == 12  # v2: offset counts entries in the window
    assert latest.structured_content == {"entries": []}


async def test_single_part_store_and_conflict_through_tool(tmp_path: Path, samples: Samples) -> None:
    failed = stow_response(failed=[sop_item(samples.blue.instance_uid, **{"00081197": 45070})])
    with respx.mock(base_url=BASE) as mock:
        route = mock.post("/studies").respond(409, json=failed)
        async with Client(azure_server(tmp_path)) as client:
            result = await client.call_tool(
                "store_instances", {"paths": [str(samples.blue.path)], "encoding": "single-part"}
            )
    assert result.structured_content["counts"] == {
        "stored": 0,
        "already_present": 1,
        "failed": 0,
        "skipped": 0,
    }
    assert route.calls.last.request.headers["content-type"] == "application/dicom"


async def test_progress_is_reported(orthanc_config: Config, samples: Samples) -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    async with Client(build_server(orthanc_config)) as client:
        await client.call_tool(
            "store_instances", {"paths": [str(f.path) for f in samples.all]}, progress_callback=on_progress
        )
        stored = list(updates)
        updates.clear()
        await client.call_tool(
            "retrieve_instances", {"study_uid": samples.study_uid}, progress_callback=on_progress
        )
    # Each file counts once as it is sent and once as it is answered; the batches run in parallel, so
    # the steps interleave, but progress only grows and ends complete.
    steps = [u[0] for u in stored]
    assert steps == sorted(set(steps)) and steps[-1] == 6 and {u[1] for u in stored} == {6}
    assert stored[-1][2] == "sent 3/3 instances (8.7/8.7 MB); 3 answered"
    # The retrieve knows its total from the series list: 3 instances.
    assert [u[:2] for u in updates] == [(1, 3), (2, 3), (3, 3)]
    assert "8.7 MB saved" in (updates[-1][2] or "")


async def test_wildcards_on_a_server_without_them(tmp_path: Path) -> None:
    """Azure matches exactly: 'Anony*' sent as is would find nothing. A name prefix becomes fuzzy
    (word-prefix) matching, said in a warning; any other wildcard is refused before a request."""
    with respx.mock(base_url=BASE) as mock:
        studies = mock.get("/studies").respond(204)
        async with Client(azure_server(tmp_path)) as client:
            prefix = await client.call_tool("search_studies", {"patient_name": "Anony*"})
            inner = await client.call_tool("search_studies", {"patient_name": "An*ny"})
            listed = await client.call_tool(
                "search_studies", {"filters": [{"attribute": "StudyInstanceUID", "value": "1.2.3,1.2.4"}]}
            )
    assert not prefix.is_error
    sent = studies.calls[0].request.url.params
    assert sent["PatientName"] == "Anony" and sent["fuzzymatching"] == "true"
    assert "word starting 'Anony'" in prefix.structured_content["warnings"][0]
    assert inner.is_error and "no * or ? wildcards" in inner.content[0].text
    assert listed.is_error and "one UID at a time" in listed.content[0].text
    assert studies.call_count == 1  # the refused ones sent nothing
