"""Streamable HTTP: loopback by default, a bearer token on every request, Host checks kept."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.apps import APP_MIME_TYPE

from dicomweb_mcp import Config
from tests.support.mcp import RENDERS_APPS
from tests.support.orthanc import free_port
from tests.support.served import COMMAND, initialize, serving_http

TOKEN = "mcp-token-7f3a9c"
INSPECTOR = "http://localhost:6274"  # MCP Inspector's page, a browser-based host
INITIALIZE = initialize(version="2025-06-18")
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def http_server(orthanc_config: Config) -> Iterator[str]:
    env = {
        "PATH": os.environ["PATH"],
        "DICOMWEB_URL": orthanc_config.server.url,
        "DICOMWEB_DOWNLOAD_DIR": str(orthanc_config.download_dir),
        "DICOMWEB_MCP_TOKEN": TOKEN,
        "DICOMWEB_MCP_ALLOWED_ORIGINS": INSPECTOR,
    }
    lines: list[str] = []
    with serving_http(env, lines) as url:
        assert url.removesuffix("/mcp") in "".join(lines)  # loopback unless told otherwise
        yield url
    assert TOKEN not in "".join(lines)


def test_requests_without_the_token_are_refused(http_server: str) -> None:
    missing = httpx.post(http_server, json=INITIALIZE, headers=MCP_HEADERS)
    wrong = httpx.post(http_server, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": "Bearer nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
    foreign_host = httpx.post(
        http_server,
        json=INITIALIZE,
        headers={**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}", "Host": "evil.example"},
    )
    assert foreign_host.status_code == 421  # DNS-rebinding protection stays on behind the token


def test_browser_origins_only_when_allowed(http_server: str) -> None:
    authorized = {**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}"}
    inspector = httpx.post(http_server, json=INITIALIZE, headers={**authorized, "Origin": INSPECTOR})
    other = httpx.post(
        http_server, json=INITIALIZE, headers={**authorized, "Origin": "http://localhost:9999"}
    )
    assert inspector.status_code == 200, inspector.text
    assert other.status_code == 403


def test_no_oauth_discovery_to_follow(http_server: str) -> None:
    root = http_server.removesuffix("/mcp")
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-authorization-server"):
        response = httpx.get(root + path)
        # Not 401: that would send a host into an OAuth login this server cannot complete.
        assert response.status_code == 404
        assert "Authorization: Bearer" in response.json()["message"]


@pytest.mark.anyio
async def test_mcp_over_http_with_the_token(http_server: str) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"bearer {TOKEN}"}, timeout=30)  # scheme: any case
    async with http, Client(streamable_http_client(http_server, http_client=http)) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("server_info", {})
    assert "search_studies" in tools and "delete_instances" not in tools
    assert result.structured_content["reachable"] is True


def test_public_bind_without_token_is_refused(orthanc_config: Config) -> None:
    env = {"PATH": os.environ["PATH"], "DICOMWEB_URL": orthanc_config.server.url}
    result = subprocess.run(
        [COMMAND, "serve", "--transport", "http", "--host", "0.0.0.0", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "without DICOMWEB_MCP_TOKEN" in result.stderr


def test_host_checks_cover_every_bind_address() -> None:
    from dicomweb_mcp.tools.http import transport_security

    settings = transport_security("127.0.0.2", 8000, ["pacs-gateway.example"])
    assert settings.enable_dns_rebinding_protection
    assert (
        "127.0.0.2:8000" in settings.allowed_hosts and "pacs-gateway.example:8000" in settings.allowed_hosts
    )
    assert "pacs-gateway.example" in settings.allowed_hosts  # behind a TLS proxy: no port in Host
    assert not any(h.startswith("evil") for h in settings.allowed_hosts)
    assert "[::1]:8000" in transport_security("::1", 8000).allowed_hosts


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_viewer_over_http_in_both_eras(http_server: str, mode: str) -> None:
    listed: dict[bool, set[str]] = {}
    for apps in (False, True):
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        transport = streamable_http_client(http_server, http_client=http)
        async with http, Client(transport, mode=mode, extensions=[RENDERS_APPS] if apps else []) as client:
            listed[apps] = {t.name for t in (await client.list_tools()).tools}
            page = await client.read_resource("ui://dicomweb-mcp/viewer.html")
            series = await client.call_tool("viewer_series", {"study_uid": "1.2.3", "series_uid": "1.2.3.4"})
        assert page.contents[0].mime_type == APP_MIME_TYPE
        # A client that renders apps reaches the tool (there is no such series); one that does not is refused.
        assert series.is_error
        message = " ".join(getattr(block, "text", "") for block in series.content)
        assert ("There is no series 1.2.3.4" in message) is apps, message
    assert listed[True] - listed[False] == {"viewer_series", "viewer_frame"}
