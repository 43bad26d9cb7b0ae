"""The ``dicomweb-mcp`` command as an MCP host and a person would run it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from dicomweb_mcp import Config
from dicomweb_mcp.cli import write_schemas
from tests.support.orthanc import free_port
from tests.support.samples import REPO, Samples

pytestmark = pytest.mark.anyio

COMMAND = str(Path(sys.executable).parent / "dicomweb-mcp")


def environment(config: Config) -> dict[str, str]:
    return {
        "DICOMWEB_URL": config.server.url,
        "DICOMWEB_DOWNLOAD_DIR": str(config.download_dir),
        "PATH": "/usr/bin:/bin",
    }


async def test_stdio_server_search_and_retrieve(orthanc_config: Config, samples: Samples) -> None:
    params = StdioServerParameters(command=COMMAND, args=[], env=environment(orthanc_config))
    async with Client(params) as client:
        stored = await client.call_tool("store_instances", {"paths": [str(samples.blue.path)]})
        found = await client.call_tool("search_studies", {"patient_id": "ID1"})
        retrieved = await client.call_tool("retrieve_instances", {"study_uid": samples.study_uid})
    assert not stored.is_error and stored.structured_content["counts"]["stored"] == 1
    assert [s["study_uid"] for s in found.structured_content["results"]] == [samples.study_uid]
    saved = retrieved.structured_content
    assert len(saved["files"]) == 1
    assert (Path(saved["directory"]) / saved["files"][0]).read_bytes() == samples.blue.path.read_bytes()


async def test_call_and_check_print_json(orthanc_config: Config, samples: Samples) -> None:
    env = environment(orthanc_config)
    await anyio.run_process(
        [COMMAND, "call", "store_instances", json.dumps({"paths": [str(samples.red.path)]})], env=env
    )
    called = await anyio.run_process(
        [COMMAND, "call", "search_instances", '{"patient_id": "x", "limit": 5}'], env=env, check=False
    )
    assert called.returncode == 1 and b"patient_id" in called.stderr  # unknown argument, said clearly
    called = await anyio.run_process([COMMAND, "call", "search_instances", '{"limit": 5}'], env=env)
    result = json.loads(called.stdout)
    assert [i["instance_uid"] for i in result["results"]] == [samples.red.instance_uid]
    checked = await anyio.run_process([COMMAND, "check"], env=env)
    assert json.loads(checked.stdout)["reachable"] is True


async def test_check_names_each_named_server_that_is_down(orthanc_config: Config, tmp_path: Path) -> None:
    servers = tmp_path / "servers.toml"
    servers.write_text(
        f'[servers.offline]\nurl = "http://127.0.0.1:{free_port()}/dicom-web"\nkind = "orthanc"\n'
    )
    env = {**environment(orthanc_config), "DICOMWEB_SERVERS": str(servers), "DICOMWEB_MAX_RETRIES": "0"}
    checked = await anyio.run_process([COMMAND, "check"], env=env, check=False)
    report = json.loads(checked.stdout)
    assert checked.returncode == 1
    assert report["name"] == "default" and report["reachable"] is True
    assert [(s["name"], s["reachable"]) for s in report["servers"]] == [("offline", False)]
    assert b"server 'offline':" in checked.stderr and b"server 'default'" not in checked.stderr


async def test_missing_configuration_is_explained() -> None:
    result = await anyio.run_process([COMMAND, "check"], env={"PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 2
    assert b"DICOMWEB_URL is not set" in result.stderr and b"Traceback" not in result.stderr


def test_schemas_check_detects_stale_files(tmp_path: Path) -> None:
    assert write_schemas(tmp_path, check=False) == 0
    assert write_schemas(tmp_path, check=True) == 0
    (tmp_path / "search_studies.input.json").write_text("{}\n")
    (tmp_path / "old_tool.input.json").write_text("{}\n")
    assert write_schemas(tmp_path, check=True) == 1
    assert write_schemas(tmp_path, check=False) == 0
    assert not (tmp_path / "old_tool.input.json").exists()
    assert json.loads((tmp_path / "search_studies.input.json").read_text()) == json.loads(
        (REPO / "schemas" / "search_studies.input.json").read_text()
    )
