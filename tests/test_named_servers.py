"""Named servers: the DICOMWEB_SERVERS file, the server argument on every tool, and the per-server
policies (read-only, deletion) enforced by the server, whatever a host shows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from mcp import Client

from dicomweb_mcp import Config
from dicomweb_mcp.errors import ConfigError
from dicomweb_mcp.tools.server import build_server
from tests.support.mcp import ALL_TOOLS, text
from tests.support.orthanc import Orthanc

SERVERS = """
[servers.research]
url = "http://127.0.0.1:8043/dicom-web"
kind = "orthanc"
auth = "basic"
username = "bob"
password_env = "RESEARCH_PASSWORD"

[servers.archive]
url = "https://archive.example/dicom-web"
auth = "bearer"
token_env = "ARCHIVE_TOKEN"
read_only = true
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "servers.toml"
    path.write_text(text)
    return str(path)


def test_servers_file_with_the_environment_server_as_default(tmp_path: Path) -> None:
    env = {
        "DICOMWEB_URL": "http://pacs.example/dicom-web",
        "DICOMWEB_SERVERS": write(tmp_path, SERVERS),
        "DICOMWEB_DOWNLOAD_DIR": str(tmp_path / "dl"),
        "RESEARCH_PASSWORD": "s3cret-pw-1",
        "ARCHIVE_TOKEN": "tok-abc-2",
    }
    config = Config.from_env(env)
    assert list(config.named) == ["default", "research", "archive"]
    research, archive = config.named["research"], config.named["archive"]
    assert (research.username, research.password, research.server_kind.value) == (
        "bob",
        "s3cret-pw-1",
        "orthanc",
    )
    assert archive.read_only and archive.token == "tok-abc-2" and not archive.delete_enabled
    # The process's settings are one, and the connection settings every server's.
    assert config.download_dir == (tmp_path / "dl").absolute()
    assert research.timeout == archive.timeout == config.server.timeout
    shown = repr(config)
    assert "s3cret-pw-1" not in shown and "tok-abc-2" not in shown


def test_servers_file_alone_names_the_first_server_default(tmp_path: Path) -> None:
    env = {"DICOMWEB_SERVERS": write(tmp_path, SERVERS), "RESEARCH_PASSWORD": "x", "ARCHIVE_TOKEN": "y"}
    assert list(Config.from_env(env).named) == ["research", "archive"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[servers.a]\nurl = "http://h/dicom-web"\npassword = "pw"\n', "secrets do not belong in this file"),
        ('[servers.a]\nurl = "http://h/dicom-web"\ncolour = "red"\n', "unknown key 'colour'"),
        ('[servers.a]\nkind = "orthanc"\n', "server 'a': has no url"),
        ('[servers.a]\nurl = "ftp://h"\n', "server 'a': url 'ftp://h' is not an http(s) URL"),
        ('[servers.a]\nurl = "http://h/x"\ntoken_env = "NOPE"\nauth = "bearer"\n', "NOPE, which is not set"),
        ('[servers.a]\nurl = "http://h/x"\nread_only = "yes"\n', "read_only must be true or false"),
        ('[servers."a b"]\nurl = "http://h/x"\n', "Server name 'a b' is not usable"),
        ("servers = [", "is not valid TOML"),
        ("[other]\n", "names no server"),
    ],
)
def test_servers_file_errors_say_where(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ConfigError, match="DICOMWEB_SERVERS") as caught:
        Config.from_env({"DICOMWEB_SERVERS": write(tmp_path, content)})
    assert message in str(caught.value)


def test_a_server_named_twice_is_refused(tmp_path: Path) -> None:
    env = {
        "DICOMWEB_URL": "http://h/dicom-web",
        "DICOMWEB_SERVERS": write(tmp_path, '[servers.default]\nurl = "http://g/x"\n'),
    }
    with pytest.raises(ConfigError, match="must be unique"):
        Config.from_env(env)


@pytest.mark.anyio
async def test_every_tool_takes_a_server_and_policies_are_per_server(
    orthanc_config: Config, second_orthanc: Orthanc
) -> None:
    second_orthanc.clear()
    pacs = replace(orthanc_config.server, name="pacs", allow_delete=True)
    archive = replace(orthanc_config.server, name="archive", url=second_orthanc.dicomweb_url, read_only=True)
    config = replace(orthanc_config, servers=(pacs, archive))
    async with Client(build_server(config)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        info = await client.call_tool("server_info", {"server": "archive"})
        stored = await client.call_tool("store_instances", {"paths": ["/nonexistent"], "server": "archive"})
        deleted = await client.call_tool("delete_instances", {"study_uid": "1.2.3", "server": "archive"})
        searched = await client.call_tool("search_studies", {"server": "archive"})
    assert set(tools) == ALL_TOOLS | {"transfer_instances"}
    for name, tool in tools.items():
        # A transfer names two servers; a cohort job belongs to the download directory, whatever its servers.
        if name not in ("transfer_instances", "cohort_status"):
            assert tool.input_schema["properties"]["server"]["enum"] == ["pacs", "archive"], name
    assert info.structured_content is not None
    assert info.structured_content["name"] == "archive" and info.structured_content["read_only"] is True
    assert info.structured_content["reachable"] is True
    others = info.structured_content["servers"]
    assert [(s["name"], s["reachable"], s["delete_enabled"]) for s in others] == [("pacs", True, True)]
    assert stored.is_error and "'archive' is read-only" in text(stored)
    assert deleted.is_error and "Deletion is switched off for server 'archive'" in text(deleted)
    assert not searched.is_error and searched.structured_content is not None


@pytest.mark.anyio
async def test_one_server_publishes_no_server_argument(orthanc_config: Config) -> None:
    async with Client(build_server(orthanc_config)) as client:
        tools = (await client.list_tools()).tools
        named = await client.call_tool("search_studies", {"server": "default"})
        wrong = await client.call_tool("search_studies", {"server": "other"})
    assert all("server" not in t.input_schema.get("properties", {}) for t in tools)
    assert "transfer_instances" not in {t.name for t in tools}
    assert not named.is_error
    assert wrong.is_error and "There is no server named 'other': the servers are default." in text(wrong)


def test_instructions_name_the_servers_only_when_there_are_several(orthanc_config: Config) -> None:
    two = replace(
        orthanc_config, servers=tuple(replace(orthanc_config.server, name=n) for n in ("pacs", "research"))
    )
    assert "Servers: pacs, research; a tool uses pacs" in (build_server(two).instructions or "")
    assert "Servers:" not in (build_server(orthanc_config).instructions or "")


def test_read_only_in_the_environment_holds_for_every_server(tmp_path: Path) -> None:
    env = {
        "DICOMWEB_SERVERS": write(tmp_path, SERVERS),
        "DICOMWEB_READ_ONLY": "true",
        "RESEARCH_PASSWORD": "x",
        "ARCHIVE_TOKEN": "y",
    }
    assert all(server.read_only for server in Config.from_env(env).named.values())


def test_a_url_with_credentials_is_not_echoed(tmp_path: Path) -> None:
    content = '[servers.a]\nurl = "ftp://bob:hunter2-pw@h/x"\n'
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"DICOMWEB_SERVERS": write(tmp_path, content)})
    assert "hunter2-pw" not in str(caught.value) and "ftp://h/x" in str(caught.value)
