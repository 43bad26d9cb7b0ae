"""Faults injected with real components on 127.0.0.1: nginx in front of Orthanc (token gate, rate limit,
dead upstream, maintenance), and Orthanc killed in the middle of a download."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from dicomweb_mcp import Config, DicomWebClient, DicomWebError, StoreStatus, collect_dicom_files
from dicomweb_mcp.tools.context import no_progress
from dicomweb_mcp.tools.retrieve import retrieve_instances
from dicomweb_mcp.tools.server import build_server
from tests.support.mcp import tool_context
from tests.support.nginx import TOKEN, Nginx
from tests.support.orthanc import Orthanc
from tests.support.samples import Samples
from tests.support.synthetic import make_study

# Every test here runs Orthanc, behind nginx or on its own (one starts and kills its own).
pytestmark = [pytest.mark.anyio, pytest.mark.orthanc]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, Nginx]]:
    orthanc = Orthanc(tmp_path_factory.mktemp("orthanc-behind-nginx")).start()
    nginx = Nginx(tmp_path_factory.mktemp("nginx"), orthanc.port, rate=10).start()
    try:
        yield orthanc, nginx
    finally:
        nginx.stop()
        orthanc.stop()


def text(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def calls(config: Config, *requests: tuple[str, dict[str, Any]]) -> list[Any]:
    async with Client(build_server(config)) as client:
        return [await client.call_tool(tool, arguments) for tool, arguments in requests]


async def test_token_gate(gateway: tuple[Orthanc, Nginx], samples: Samples, tmp_path: Path) -> None:
    orthanc, nginx = gateway
    orthanc.clear()
    url = nginx.url("secured")
    missing = Config.single(url=url, download_dir=tmp_path)
    wrong = Config.single(url=url, auth="bearer", token="not-it", download_dir=tmp_path)  # type: ignore[arg-type]
    right = Config.single(url=url, auth="bearer", token=TOKEN, download_dir=tmp_path)  # type: ignore[arg-type]
    search = ("search_studies", {"patient_id": "ID1"})
    for config in (missing, wrong):
        (result,) = await calls(config, search)
        assert result.is_error
        assert "HTTP 401" in text(result) and "missing or wrong token" in text(result)
        assert "DICOMWEB_TOKEN" in text(result)  # what to do next
    stored, found, retrieved = await calls(
        right,
        ("store_instances", {"paths": [str(samples.blue.path)]}),
        search,
        ("retrieve_instances", {"study_uid": samples.study_uid}),
    )
    assert stored.structured_content["counts"]["stored"] == 1
    assert found.structured_content["returned"] == 1
    assert retrieved.structured_content["file_count"] == 1


async def test_rate_limited_burst_succeeds_after_retries(
    gateway: tuple[Orthanc, Nginx], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dicomweb_mcp")
    config = Config.single(url=gateway[1].url("limited"), download_dir=tmp_path, max_retries=8, timeout=30)
    results: list[Any] = []
    async with Client(build_server(config)) as client:
        await client.call_tool("server_info", {})  # detect the server kind once, outside the burst

        async def search(n: int) -> None:
            results.append(await client.call_tool("search_studies", {"limit": 1 + n}))

        async with anyio.create_task_group() as group:
            for n in range(12):
                group.start_soon(search, n)
    assert len(results) == 12 and not any(r.is_error for r in results), [
        text(r) for r in results if r.is_error
    ]
    throttled = [r for r in caplog.records if "HTTP 429, retrying" in r.getMessage()]
    assert len(throttled) >= 5  # the limit really was hit, and every call got through anyway


async def test_rate_limited_without_retries_says_throttled(
    gateway: tuple[Orthanc, Nginx], tmp_path: Path
) -> None:
    config = Config.single(
        url=gateway[1].url("limited"), download_dir=tmp_path, max_retries=0, server_kind="orthanc"
    )  # type: ignore[arg-type]
    results: list[Any] = []
    async with Client(build_server(config)) as client:

        async def search() -> None:
            results.append(await client.call_tool("search_studies", {}))

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(search)
    refused = [text(r) for r in results if r.is_error]
    assert refused and all("HTTP 429" in t and "throttled" in t for t in refused)


async def test_dead_upstream_and_maintenance(gateway: tuple[Orthanc, Nginx], tmp_path: Path) -> None:
    down = Config.single(
        url=gateway[1].url("down"), download_dir=tmp_path / "dl", max_retries=1, server_kind="orthanc"
    )  # type: ignore[arg-type]
    (retrieve,) = await calls(down, ("retrieve_instances", {"study_uid": "1.2.3.4"}))
    assert retrieve.is_error
    assert (
        "HTTP 502" in text(retrieve)
        and "tried 2 times" in text(retrieve)
        and "try again later" in text(retrieve)
    )
    assert not any((tmp_path / "dl").rglob("*.*"))  # nothing written, not even a manifest
    maintenance = down.changed(url=gateway[1].url("maintenance"))
    (search,) = await calls(maintenance, ("search_studies", {}))
    assert search.is_error and "HTTP 503" in text(search) and "down for maintenance" in text(search)
    assert "temporarily unavailable" in text(search)


async def test_orthanc_killed_mid_download(tmp_path: Path) -> None:
    orthanc = Orthanc(tmp_path / "orthanc").start()
    try:
        files, _ = collect_dicom_files(
            make_study(tmp_path / "source", instances=40, series=2, rows=900, columns=900, seed=7)
        )
        config = Config.single(
            url=orthanc.dicomweb_url, download_dir=tmp_path / "dl", max_retries=0, timeout=30
        )
        async with DicomWebClient(config.server) as client:
            assert all(o.status is StoreStatus.STORED for o in await client.store_instances(files))
        study = files[0].study_uid
        originals = {f.instance_uid: f.path.read_bytes() for f in files}

        async def kill_after_second(progress: float, total: float | None, message: str) -> None:
            if progress == 2:
                orthanc.kill()  # as a crash would: mid-body, no goodbye

        async with DicomWebClient(config.server) as client:
            with pytest.raises(DicomWebError) as failure:
                await retrieve_instances(tool_context(config, client), kill_after_second, study_uid=study)
        message = str(failure.value)
        assert "complete files were kept" in message and "Call again" in message

        manifest_path = config.download_dir / study / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        on_disk = {p for p in config.download_dir.rglob("*.dcm")}
        assert manifest["complete"] is False and manifest["error"]
        assert {Path(f["path"]) for f in manifest["files"]} == on_disk  # exactly what is complete
        assert 2 <= len(on_disk) < 40
        assert not list(config.download_dir.rglob("*.partial"))
        for path in on_disk:
            assert path.read_bytes() == originals[path.stem]

        orthanc.start()  # same port, same storage
        async with DicomWebClient(config.server) as client:
            result = await retrieve_instances(tool_context(config, client), no_progress, study_uid=study)
        assert result.file_count == 40
        assert json.loads(manifest_path.read_text())["complete"] is True
        assert {p.stem for p in config.download_dir.rglob("*.dcm")} == set(originals)
    finally:
        orthanc.stop()
