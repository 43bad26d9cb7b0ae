"""Secrets never leak; files are never written outside the download directory nor read outside the
upload roots."""

from __future__ import annotations

import base64
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import respx
from mcp import Client

from dicomweb_mcp import Config, DicomWebClient
from dicomweb_mcp.config import ServerConfig
from dicomweb_mcp.dicomweb.auth import build_auth
from dicomweb_mcp.tools.server import build_server
from tests.support.azure import BASE, FakeCredential
from tests.support.orthanc import Orthanc
from tests.support.samples import Samples

pytestmark = pytest.mark.anyio

PASSWORD = "pw-SECRET-4242"
TOKEN = "tok-SECRET-9999"
MCP_TOKEN = "mcp-SECRET-5555"


def leaked(secrets: list[str], *texts: str) -> list[str]:
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    return [s for s in [*secrets, basic] for text in texts if s in text]


async def run_tools(
    config: Config, calls: list[tuple[str, dict[str, Any]]], **server_options: Any
) -> list[str]:
    texts = []
    async with Client(build_server(config, **server_options)) as client:
        for tool, arguments in calls:
            result = await client.call_tool(tool, arguments)
            texts.append(
                repr(result.structured_content) + " ".join(getattr(b, "text", "") for b in result.content)
            )
    return texts


@pytest.mark.orthanc  # starts its own password-protected Orthanc, not the shared fixture
async def test_secrets_never_appear(
    tmp_path: Path, samples: Samples, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secured = Orthanc(tmp_path / "orthanc", users={"alice": PASSWORD}).start()
    try:
        good = Config.single(
            url=secured.dicomweb_url,
            auth="basic",
            username="alice",
            password=PASSWORD,  # type: ignore[arg-type]
            download_dir=tmp_path / "dl",
            mcp_token=MCP_TOKEN,
        )
        bad = good.changed(password=PASSWORD + "x")
        calls = [
            ("store_instances", {"paths": [str(samples.blue.path)]}),
            ("search_studies", {"patient_name": "Anony*"}),
            ("retrieve_instances", {"study_uid": samples.study_uid}),
            ("server_info", {}),
        ]
        texts = await run_tools(good, calls)
        texts += await run_tools(bad, calls)
    finally:
        secured.stop()
    bearer = Config.single(url=BASE, auth="bearer", token=TOKEN, download_dir=tmp_path / "dl")  # type: ignore[arg-type]
    with respx.mock(base_url=BASE) as mock:
        mock.get("/studies").respond(401, text="expired")
        texts += await run_tools(bearer, [("search_studies", {}), ("server_info", {})])
    azure = Config.single(url=BASE, auth="azure", download_dir=tmp_path / "dl")  # type: ignore[arg-type]
    with respx.mock(base_url=BASE) as mock:
        mock.get("/studies").respond(403, text="forbidden")
        texts += await run_tools(azure, [("search_studies", {})], credentials={"default": FakeCredential()})

    assert any("HTTP 401" in t for t in texts) and any(
        "HTTP 403" in t for t in texts
    )  # the failures did happen
    async with DicomWebClient(bearer.server) as client:
        reprs = [
            repr(good),
            str(bad),
            repr(bearer),
            repr(bearer.server),
            repr(client),
            repr(build_auth(bearer.server)),
            repr(build_auth(good.server)),
        ]
    logs = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert caplog.records  # debug logging really was on
    assert leaked([PASSWORD, TOKEN, MCP_TOKEN, "token-1"], *texts, *reprs, logs) == []


async def test_symlink_in_download_dir_cannot_lead_out(
    orthanc_config: Config, samples: Samples, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    orthanc_config.download_dir.mkdir(parents=True)
    (orthanc_config.download_dir / samples.study_uid).symlink_to(outside)
    (orthanc_config.download_dir / "escape").symlink_to(outside)
    texts = await run_tools(
        orthanc_config,
        [
            ("store_instances", {"paths": [str(samples.blue.path)]}),
            ("retrieve_instances", {"study_uid": samples.study_uid}),
            ("retrieve_instances", {"study_uid": samples.study_uid, "output_dir": "escape"}),
            ("retrieve_metadata", {"study_uid": samples.study_uid}),
        ],
    )
    assert "resolves outside the download directory" in texts[1]
    assert "outside the download directory" in texts[2]
    assert "resolves outside" in texts[3]
    assert list(outside.iterdir()) == []


async def test_upload_roots(orthanc_config: Config, samples: Samples, tmp_path: Path) -> None:
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    allowed.mkdir()
    elsewhere.mkdir()
    shutil.copy(samples.blue.path, allowed / "blue.dcm")
    shutil.copy(samples.red.path, elsewhere / "red.dcm")
    (allowed / "link.dcm").symlink_to(elsewhere / "red.dcm")
    config = orthanc_config.changed(upload_roots=(allowed,))
    async with Client(build_server(config)) as client:
        result = await client.call_tool(
            "store_instances", {"paths": [str(allowed), str(elsewhere / "red.dcm"), str(elsewhere)]}
        )
    outcome = result.structured_content
    assert [Path(path).name for path in outcome["stored"]] == ["blue.dcm"]
    skipped = {s["path"]: s["reason"] for s in outcome["skipped"]}
    assert set(skipped) == {str(allowed / "link.dcm"), str(elsewhere / "red.dcm"), str(elsewhere)}
    assert all("DICOMWEB_UPLOAD_ROOTS" in reason for reason in skipped.values())


async def test_file_in_the_way_leaves_no_partial_file(orthanc_config: Config, samples: Samples) -> None:
    orthanc_config.download_dir.mkdir(parents=True)
    (orthanc_config.download_dir / samples.study_uid).write_text("a file where the study directory goes")
    texts = await run_tools(
        orthanc_config,
        [
            ("store_instances", {"paths": [str(samples.blue.path)]}),
            ("retrieve_instances", {"study_uid": samples.study_uid}),
        ],
    )
    assert "Could not read or write a local file" in texts[1]
    assert not list(orthanc_config.download_dir.rglob("*.partial"))


async def test_https_servers_are_verified(tmp_path: Path) -> None:
    """Certificates are checked for https:// servers; only a plain http:// server skips loading them."""
    import ssl

    for url, mode in (
        ("https://pacs.example/dicom-web", ssl.CERT_REQUIRED),
        ("http://pacs.example/dicom-web", None),
    ):
        async with DicomWebClient(ServerConfig(url=url)) as client:
            context = client.http.pool_transport._pool._ssl_context  # type: ignore[attr-defined]
            if mode is None:
                assert context.verify_mode == ssl.CERT_NONE  # never used: no TLS to an http:// server
            else:
                assert context.verify_mode == mode and context.check_hostname
