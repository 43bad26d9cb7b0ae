"""The MCP server through the SDK's in-memory client, against the real Orthanc: every tool, the tutorial
steps, and the errors an agent must be able to act on."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult

from dicomweb_mcp import Config
from dicomweb_mcp.cli import write_schemas
from dicomweb_mcp.tools.server import build_server
from tests.support.mcp import ALL_TOOLS, call, text
from tests.support.samples import REPO, Samples

pytestmark = pytest.mark.anyio


async def store_samples(config: Config, samples: Samples) -> dict[str, Any]:
    result = await call(config, "store_instances", {"paths": [str(f.path) for f in samples.all]})
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


@pytest.fixture
def config(orthanc_config: Config) -> Config:
    return orthanc_config.changed(allow_delete=True)


async def test_tools_and_policy_switches(config: Config) -> None:
    async with Client(build_server(config)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == ALL_TOOLS
    assert tools["search_studies"].annotations.read_only_hint is True
    assert tools["delete_instances"].annotations.destructive_hint is True
    assert tools["store_instances"].annotations.destructive_hint is False
    assert tools["store_instances"].annotations.idempotent_hint is True
    assert "confirmation" not in tools["delete_instances"].input_schema["properties"]

    async with Client(build_server(config.changed(allow_delete=False))) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == ALL_TOOLS - {"delete_instances"}
    async with Client(build_server(config.changed(read_only=True))) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        refused = await client.call_tool("store_instances", {"paths": ["/tmp"]})
    assert names == ALL_TOOLS - {"delete_instances", "store_instances"}
    assert refused.is_error


async def test_tutorial_through_tools(config: Config, samples: Samples) -> None:
    stored = await store_samples(config, samples)
    assert stored["counts"] == {"stored": 3, "already_present": 0, "failed": 0, "skipped": 0}
    study = samples.study_uid
    async with Client(build_server(config)) as client:
        studies = await client.call_tool(
            "search_studies", {"patient_name": "Anony Mous", "study_date": "2020-01-01-2020-12-31"}
        )
        series = await client.call_tool("search_series", {"study_uid": study})
        instances = await client.call_tool(
            "search_instances", {"study_uid": study, "series_uid": samples.red.series_uid}
        )
        retrieved = await client.call_tool("retrieve_instances", {"study_uid": study})
        metadata = await client.call_tool("retrieve_metadata", {"study_uid": study})
        frames = await client.call_tool(
            "retrieve_frames",
            {
                "study_uid": study,
                "series_uid": samples.red.series_uid,
                "instance_uid": samples.red.instance_uid,
                "frames": [1],
            },
        )
        rendered = await client.call_tool(
            "retrieve_rendered",
            {
                "study_uid": study,
                "series_uid": samples.red.series_uid,
                "instance_uid": samples.red.instance_uid,
            },
        )
        info = await client.call_tool("server_info", {})
    for result in (studies, series, instances, retrieved, metadata, frames, rendered, info):
        assert not result.is_error, text(result)

    found = studies.structured_content
    assert found["returned"] == 1 and found["has_more"] is False
    summary = found["results"][0]
    assert summary["study_uid"] == study and summary["patient_name"] == "Anony Mous"
    assert summary["modalities"] == ["OT"] and summary["number_of_instances"] == 3
    assert "vr" not in json.dumps(found)  # summaries, never raw DICOM JSON
    assert "patient_birth_date" not in summary  # empty in the files: left out, not null

    assert {s["series_uid"] for s in series.structured_content["results"]} == {
        samples.red.series_uid,
        samples.blue.series_uid,
    }
    assert {i["instance_uid"] for i in instances.structured_content["results"]} == {
        samples.red.instance_uid,
        samples.green.instance_uid,
    }

    saved = retrieved.structured_content
    assert saved["directory"] == str(config.download_dir / samples.study_uid)
    expected = {f"{f.series_uid}/{f.instance_uid}.dcm": f for f in samples.all}
    assert saved["file_count"] == 3 and sorted(saved["files"]) == sorted(expected)
    total = 0
    for name, original in expected.items():
        path = Path(saved["directory"]) / name
        total += path.stat().st_size
        assert pydicom.dcmread(path).PixelData == pydicom.dcmread(original.path).PixelData
    assert saved["total_bytes"] == total
    manifest = json.loads(Path(saved["manifest"]).read_text())
    assert manifest["complete"] is True and len(manifest["files"]) == 3

    meta = metadata.structured_content
    assert meta["instance_count"] == 3 and {i["instance_uid"] for i in meta["instances"]} == {
        f.instance_uid for f in samples.all
    }
    assert len(json.loads(Path(meta["metadata_file"]).read_text())) == 3

    frame = frames.structured_content
    assert frame["frame_count"] == 1 and frame["total_bytes"] == 2_892_945
    assert frame["files"] == [f"{samples.red.instance_uid}.frame-1.raw"]
    assert (Path(frame["directory"]) / frame["files"][0]).stat().st_size == 2_892_945

    image = rendered.structured_content
    assert image["content_type"] == "image/jpeg" and Path(image["path"]).read_bytes()[:3] == b"\xff\xd8\xff"

    server = info.structured_content
    assert (
        server["server_kind"] == "orthanc"
        and server["reachable"] is True
        and server["delete_enabled"] is True
    )
    assert server["capabilities"]["change_feed"] is True  # Orthanc's change log, read as a feed


async def test_store_reports_duplicates_and_skips_non_dicom(
    config: Config, samples: Samples, tmp_path: Path
) -> None:
    await store_samples(config, samples)
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    (folder / "blue.dcm").write_bytes(samples.blue.path.read_bytes())
    result = await call(config, "store_instances", {"paths": [str(folder), str(tmp_path / "missing.dcm")]})
    outcome = result.structured_content
    assert outcome["counts"] == {"stored": 0, "already_present": 1, "failed": 0, "skipped": 2}
    reasons = {Path(s["path"]).name: s["reason"] for s in outcome["skipped"]}
    assert "not a DICOM" in reasons["notes.txt"] and "no such file" in reasons["missing.dcm"]


async def test_delete_through_tools(config: Config, samples: Samples) -> None:
    await store_samples(config, samples)
    red = samples.red
    async with Client(build_server(config)) as client:
        deleted = await client.call_tool(
            "delete_instances",
            {"study_uid": red.study_uid, "series_uid": red.series_uid, "instance_uid": red.instance_uid},
        )
        left = await client.call_tool("search_instances", {"study_uid": red.study_uid})
    assert deleted.structured_content == {
        "deleted": True,
        "level": "instance",
        "study_uid": red.study_uid,
        "series_uid": red.series_uid,
        "instance_uid": red.instance_uid,
        "method": "orthanc-rest",
    }
    assert {i["instance_uid"] for i in left.structured_content["results"]} == {
        samples.green.instance_uid,
        samples.blue.instance_uid,
    }


async def test_delete_asks_the_user_when_the_client_can(config: Config, samples: Samples) -> None:
    await store_samples(config, samples)
    asked: list[str] = []

    def answer(accept: bool):  # type: ignore[no-untyped-def]
        async def elicit(context: Any, params: ElicitRequestParams) -> ElicitResult:
            asked.append(params.message)
            return (
                ElicitResult(action="accept", content={"confirm": True})
                if accept
                else ElicitResult(action="decline")
            )

        return elicit

    arguments = {"study_uid": samples.study_uid}
    declined = await call(config, "delete_instances", arguments, elicitation_callback=answer(False))
    assert declined.is_error and "nothing was deleted" in text(declined)
    still = await call(config, "search_studies", {"study_uid": samples.study_uid})
    assert still.structured_content["returned"] == 1

    accepted = await call(config, "delete_instances", arguments, elicitation_callback=answer(True))
    assert not accepted.is_error, text(accepted)
    gone = await call(config, "search_studies", {"study_uid": samples.study_uid})
    assert gone.structured_content["returned"] == 0
    assert len(asked) == 2 and samples.study_uid in asked[0]


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("search_studies", {"study_uid": "1.2.x"}, "not a valid DICOM UID"),
        ("search_studies", {"study_date": "2020-02-30"}, "not a date"),
        ("search_studies", {"filters": {"PatientNmae": "x"}}, "not a DICOM keyword"),
        ("search_studies", {"limit": 500}, "limit must be between 1 and 200, not 500"),
        ("search_studies", {"patient_name": "A*", "filters": {"PatientName": "B*"}}, "given both"),
        ("retrieve_instances", {"study_uid": "../../etc"}, "not a valid DICOM UID"),
        (
            "retrieve_instances",
            {"study_uid": "1.2.3", "output_dir": "/etc"},
            "outside the download directory",
        ),
        (
            "retrieve_instances",
            {"study_uid": "1.2.3", "output_dir": "../.."},
            "outside the download directory",
        ),
        ("retrieve_instances", {"study_uid": "1.2.3", "instance_uid": "1.2.3.4"}, "needs series_uid"),
        (
            "retrieve_frames",
            {"study_uid": "1.2", "series_uid": "1.2", "instance_uid": "1.2", "frames": [0]},
            "frames.0 must be at least 1",
        ),
        (
            "retrieve_frames",
            {"study_uid": "1.2", "series_uid": "1.2", "instance_uid": "1.2", "frames": []},
            "at least 1 item",
        ),
        ("store_instances", {"paths": ["/x.dcm"], "encoding": "zip"}, "'multipart' or 'single-part'"),
        ("store_instances", {"paths": []}, "at least 1 item"),
        ("search_instances", {"patient_id": "ID1"}, "'patient_id' is not an argument of search_instances"),
        ("get_change_feed", {"start_time": "2024-01-01T00:00:00Z"}, "no time window"),
    ],
)
async def test_bad_input_is_a_clear_tool_error(
    config: Config, tool: str, arguments: dict[str, Any], message: str
) -> None:
    result = await call(config, tool, arguments)
    assert result.is_error
    assert message in text(result)


async def test_unknown_study_says_search_first(config: Config) -> None:
    result = await call(config, "retrieve_instances", {"study_uid": "1.2.3.4.5"})
    assert result.is_error
    assert "HTTP 404" in text(result) and "search_studies" in text(result)
    assert not list(config.download_dir.rglob("*.dcm"))


async def test_delete_disabled_is_not_callable(config: Config, samples: Samples) -> None:
    await store_samples(config, samples)
    result = await call(
        config.changed(allow_delete=False), "delete_instances", {"study_uid": samples.study_uid}
    )
    assert result.is_error and "delete_instances" in text(result)
    after = await call(config, "search_studies", {"study_uid": samples.study_uid})
    assert after.structured_content["returned"] == 1


@pytest.mark.orthanc  # starts its own password-protected Orthanc, not the shared fixture
async def test_401_is_explained(tmp_path: Path) -> None:
    from tests.support.orthanc import Orthanc

    secured = Orthanc(tmp_path / "orthanc", users={"bob": "pw-123456"}).start()
    try:
        result = await call(
            Config.single(url=secured.dicomweb_url, download_dir=tmp_path), "search_studies", {}
        )
    finally:
        secured.stop()
    assert result.is_error and "HTTP 401" in text(result) and "DICOMWEB_USERNAME" in text(result)


def test_schemas_are_current() -> None:
    assert write_schemas(REPO / "schemas", check=True) == 0


async def test_rendered_picture_can_be_shown_to_the_model(config: Config, samples: Samples) -> None:
    await store_samples(config, samples)
    red = samples.red
    reference = {"study_uid": red.study_uid, "series_uid": red.series_uid, "instance_uid": red.instance_uid}
    async with Client(build_server(config)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        plain = await client.call_tool("retrieve_rendered", reference)
        shown = await client.call_tool(
            "retrieve_rendered", {**reference, "show": True, "media_type": "image/png"}
        )
    assert tools["retrieve_rendered"].output_schema is not None  # still a typed result
    assert [block.type for block in plain.content] == ["text"]
    assert [block.type for block in shown.content] == ["text", "image"]
    image = shown.content[1]
    picture = base64.b64decode(image.data)
    assert image.mime_type == "image/png" and picture[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture == Path(shown.structured_content["path"]).read_bytes()
    assert shown.structured_content["size_bytes"] == len(picture)


async def test_include_all_fields_works_and_says_what_the_server_did(
    config: Config, samples: Samples
) -> None:
    await store_samples(config, samples)
    result = await call(
        config, "search_instances", {"study_uid": samples.study_uid, "include_fields": ["all"]}
    )
    assert not result.is_error, text(result)
    found = result.structured_content["results"]
    assert found and all(r["extra_fields"] for r in found)
    # Orthanc ignores includefield=all: the caller is told rather than left to wonder.
    assert any("includefield=all" in w for w in result.structured_content["warnings"])


async def test_change_feed_tool_on_orthanc(config: Config, samples: Samples) -> None:
    """The tutorials' change-feed step works on Orthanc too, paged the v1 way (offset = last sequence)."""
    await store_samples(config, samples)
    first = await call(config, "get_change_feed", {})
    assert not first.is_error, text(first)
    feed = first.structured_content
    assert {e["instance_uid"] for e in feed["entries"]} == {f.instance_uid for f in samples.all}
    assert feed["next_offset"] == max(e["sequence"] for e in feed["entries"])
    after = await call(config, "get_change_feed", {"offset": feed["next_offset"]})
    assert after.structured_content["entries"] == []
