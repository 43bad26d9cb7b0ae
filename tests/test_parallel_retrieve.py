"""A study with several series comes one GET per series, in parallel; what the guarantees were for one
stream (whole files only, an exact manifest, the error that stopped it) hold for several."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest

from dicomweb_mcp import Config, DicomWebClient, NotFoundError, collect_dicom_files
from dicomweb_mcp.config import ServerConfig
from dicomweb_mcp.tools import download
from dicomweb_mcp.tools.context import no_progress
from dicomweb_mcp.tools.retrieve import retrieve_instances
from tests.support.mcp import tool_context
from tests.support.synthetic import make_study

pytestmark = pytest.mark.anyio


class Recording(httpx.AsyncBaseTransport):
    """Real HTTP, with every request's method and path noted; optionally one path answered 404."""

    def __init__(self, refuse: str | None = None, distance: float = 0.0) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[tuple[str, str]] = []
        self.refuse = refuse
        self.distance = distance  # seconds added to each answer: a server across a WAN

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if self.refuse and request.url.path.endswith(self.refuse):
            return httpx.Response(404, text="refused by the test")
        if self.distance:
            await anyio.sleep(self.distance)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def stored_study(config: Config, directory: Path) -> tuple[str, list[str]]:
    files = make_study(directory, instances=12, series=3, rows=32, columns=32)
    found, _ = collect_dicom_files(files)
    async with DicomWebClient(config.server) as client:
        outcomes = await client.store_instances(found)
    assert all(o.status.value == "stored" for o in outcomes)
    return found[0].study_uid, sorted({f.series_uid for f in found})


async def test_one_get_per_series(orthanc_config: Config, tmp_path: Path) -> None:
    study_uid, series = await stored_study(orthanc_config, tmp_path / "study")
    recording = Recording()
    async with DicomWebClient(orthanc_config.server, transport=recording) as client:
        result = await retrieve_instances(
            tool_context(orthanc_config, client), no_progress, study_uid=study_uid
        )
    gets = [path for method, path in recording.requests if method == "GET" and "/dicom-web/" in path]
    assert gets.count(f"/dicom-web/studies/{study_uid}/series") == 1  # the series list: one QIDO
    assert sorted(p for p in gets if "/series/" in p) == sorted(
        f"/dicom-web/studies/{study_uid}/series/{uid}" for uid in series
    )
    assert result.file_count == 12
    manifest = json.loads(Path(result.manifest).read_text())
    assert manifest["complete"] is True and manifest["file_count"] == 12


async def test_a_failing_series_stops_the_rest_and_keeps_the_manifest_true(
    orthanc_config: Config, tmp_path: Path
) -> None:
    study_uid, series = await stored_study(orthanc_config, tmp_path / "study")
    recording = Recording(refuse=series[1])
    async with DicomWebClient(orthanc_config.server, transport=recording) as client:
        with pytest.raises(NotFoundError) as raised:
            await retrieve_instances(tool_context(orthanc_config, client), no_progress, study_uid=study_uid)
    on_disk = set(orthanc_config.download_dir.rglob("*.dcm"))
    assert not list(orthanc_config.download_dir.rglob("*.partial"))
    manifest_path = orthanc_config.download_dir / study_uid / "manifest.json"
    if on_disk:  # whatever completed before the failure is listed, exactly, and the error says so
        manifest = json.loads(manifest_path.read_text())
        assert manifest["complete"] is False and "refused by the test" in manifest["error"]
        assert {Path(f["path"]) for f in manifest["files"]} == on_disk
        assert f"{len(on_disk)} complete files were kept" in str(raised.value)
    else:
        assert not manifest_path.exists()


@pytest.mark.parametrize(("size", "distance"), [(512, 0.02), (32, 0.02), (512, 0.0)])
async def test_one_series_of_large_images_comes_an_instance_at_a_time(
    orthanc_config: Config, tmp_path: Path, size: int, distance: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a server 20 ms away, 512 KiB images come one GET each, several at once; small ones, or any
    from a server that answered within NEAR_SERVER_SECONDS (on this machine, where one stream runs at
    disk speed), in one GET."""
    if not distance:
        # Orthanc on loopback answers within the threshold on a quiet machine, not always beside a
        # CPU-bound process: the near branch is taken as decided, the decision is tested on its own.
        monkeypatch.setattr(download, "is_near", lambda client: True)
    files = make_study(tmp_path / "study", instances=6, rows=size, columns=size)
    found, _ = collect_dicom_files(files)
    async with DicomWebClient(orthanc_config.server) as client:
        await client.store_instances(found)
    recording = Recording(distance=distance)
    async with DicomWebClient(orthanc_config.server, transport=recording) as client:
        result = await retrieve_instances(
            tool_context(orthanc_config, client), no_progress, study_uid=found[0].study_uid
        )
    retrieves = [p for m, p in recording.requests if m == "GET" and "/instances/" in p and p.count("/") > 6]
    assert result.file_count == 6
    if size == 512 and distance:
        assert sorted(retrieves) == sorted(
            f"/dicom-web/studies/{f.study_uid}/series/{f.series_uid}/instances/{f.instance_uid}"
            for f in found
        )
    else:
        assert (
            retrieves == []
            and (
                "GET",
                f"/dicom-web/studies/{found[0].study_uid}",
            )
            in recording.requests
        )


@pytest.mark.parametrize(("fastest", "near"), [(None, False), (0.001, True), (0.0049, True), (0.005, False)])
def test_a_server_is_near_when_its_quickest_answer_came_within_the_threshold(
    fastest: float | None, near: bool
) -> None:
    client = DicomWebClient(ServerConfig(url="http://127.0.0.1:9/dicom-web"))
    client.http.fastest_reply = fastest
    assert download.is_near(client) is near
