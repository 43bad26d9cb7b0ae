"""What a new user meets first: the CLI's exit codes, errors that name the fix, defaults that do not
depend on where a host starts the server, and a protocol surface that claims only what exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server
from tests.support.mcp import text
from tests.support.orthanc import Orthanc, free_port
from tests.support.samples import Samples

pytestmark = pytest.mark.anyio

COMMAND = str(Path(sys.executable).parent / "dicomweb-mcp")


def run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_check_fails_when_nothing_answers(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    result = run(["check"], {"DICOMWEB_URL": url, "DICOMWEB_MAX_RETRIES": "0"}, cwd=tmp_path)
    assert result.returncode == 1
    info = json.loads(result.stdout)
    assert info["reachable"] is False and "capabilities" not in info
    assert "cannot connect" in result.stderr


def test_check_names_the_dicomweb_root_when_given_orthancs_own(orthanc: Orthanc, tmp_path: Path) -> None:
    rest_root = orthanc.dicomweb_url.removesuffix("/dicom-web")
    result = run(["check"], {"DICOMWEB_URL": rest_root}, cwd=tmp_path)
    assert result.returncode == 1
    assert f"use {rest_root}/dicom-web" in result.stderr
    assert json.loads(result.stdout)["reachable"] is False


def test_call_fails_when_every_file_failed(orthanc_config: Config, samples: Samples) -> None:
    env = {
        "DICOMWEB_URL": orthanc_config.server.url,
        "DICOMWEB_DOWNLOAD_DIR": str(orthanc_config.download_dir),
    }
    # Into a study the file does not belong to: the server refuses it.
    arguments = json.dumps({"paths": [str(samples.blue.path)], "study_uid": "1.2.3.4"})
    result = run(["call", "store_instances", arguments], env)
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["counts"]["failed"] == 1
    assert "1 file(s) failed" in result.stderr
    usage = run(["call", "store_instances", "{not json"], env)
    assert usage.returncode == 2 and "not valid JSON" in usage.stderr


def test_help_lists_every_setting() -> None:
    result = run(["--help"], {})
    assert result.returncode == 0
    for name in ("DICOMWEB_URL", "DICOMWEB_AUTH", "DICOMWEB_DOWNLOAD_DIR", "DICOMWEB_ALLOW_DELETE"):
        assert name in result.stdout
    config_fields = Config.from_env({"DICOMWEB_URL": "http://localhost/dicom-web"})
    assert config_fields.download_dir.is_absolute()


def test_schemas_check_works_from_any_directory(tmp_path: Path) -> None:
    result = run(["schemas", "--check"], {}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "schemas up to date" in result.stdout


def test_default_download_dir_does_not_depend_on_the_working_directory(tmp_path: Path) -> None:
    here = Path.cwd()
    try:
        os.chdir("/")
        config = Config.from_env({"DICOMWEB_URL": "http://localhost/dicom-web"})
    finally:
        os.chdir(here)
    assert config.download_dir == Path.home() / "dicomweb-downloads"


async def test_initialize_claims_only_tools(tmp_path: Path) -> None:
    config = Config.single(url="http://dicomweb.invalid/dicom-web", download_dir=tmp_path, apps=False)
    async with Client(build_server(config)) as client:
        capabilities = client.server_capabilities
        instructions = client.instructions or ""
    assert capabilities.tools is not None
    assert capabilities.prompts is None and capabilities.resources is None
    assert not capabilities.extensions
    assert "show=true" in instructions


async def test_initialize_claims_the_viewer_resource(tmp_path: Path) -> None:
    config = Config.single(url="http://dicomweb.invalid/dicom-web", download_dir=tmp_path)
    async with Client(build_server(config)) as client:
        capabilities = client.server_capabilities
    assert capabilities.prompts is None
    assert capabilities.resources is not None
    assert capabilities.extensions == {"io.modelcontextprotocol/ui": {}}


async def test_unwritable_download_dir_names_the_setting(orthanc_config: Config, samples: Samples) -> None:
    blocker = orthanc_config.download_dir.parent / "a-file"
    blocker.write_text("not a directory")
    config = Config.single(url=orthanc_config.server.url, download_dir=blocker / "downloads")
    async with Client(build_server(config)) as client:
        stored = await client.call_tool("store_instances", {"paths": [str(samples.blue.path)]})
        result = await client.call_tool("retrieve_instances", {"study_uid": samples.study_uid})
    assert not stored.is_error
    assert result.is_error and "DICOMWEB_DOWNLOAD_DIR" in text(result), text(result)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 5 MiB file system: room for one tutorial file (2.9 MB), not two."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


async def test_full_disk_mid_download_keeps_and_lists_whole_files(
    orthanc_config: Config, samples: Samples, small_disk: Path
) -> None:
    # One series at a time, so that which file fills the disk does not depend on timing.
    config = Config.single(url=orthanc_config.server.url, download_dir=small_disk, concurrency=1)
    async with Client(build_server(config)) as client:
        await client.call_tool("store_instances", {"paths": [str(f.path) for f in samples.all]})
        result = await client.call_tool("retrieve_instances", {"study_uid": samples.study_uid})
    message = text(result)
    assert result.is_error
    assert "No space left on device" in message and "DICOMWEB_DOWNLOAD_DIR" in message
    assert "1 complete files were kept" in message
    manifest = small_disk / samples.study_uid / "manifest.json"
    assert str(manifest) in message
    listed = json.loads(manifest.read_text())
    assert listed["complete"] is False and listed["file_count"] == 1
    kept = Path(listed["files"][0]["path"])
    assert kept.stat().st_size == listed["files"][0]["size_bytes"]
    assert not list(small_disk.rglob("*.partial"))


async def test_url_without_dicomweb_root_is_explained_in_tool_errors(
    orthanc: Orthanc, tmp_path: Path
) -> None:
    config = Config.single(url=orthanc.dicomweb_url.removesuffix("/dicom-web"), download_dir=tmp_path)
    async with Client(build_server(config)) as client:
        result = await client.call_tool("search_studies", {"patient_id": "ID1"})
    assert result.is_error and "/dicom-web" in text(result)
