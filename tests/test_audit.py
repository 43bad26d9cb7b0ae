"""The audit trail through the real MCP server and a real Orthanc: the file read line by line after a
search, a retrieve, a store, a delete, refusals and an error; many calls at once; rotation; failing closed
at start-up and mid-run; no secret in it; and over streamable HTTP, the remote address and client name."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitRequestParams, ElicitResult, Implementation

from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server
from tests.support.mcp import call, text
from tests.support.orthanc import free_port
from tests.support.samples import Samples
from tests.support.served import COMMAND, MODERN, serving_http

pytestmark = pytest.mark.anyio

CLIENT = Implementation(name="audit-test-host", version="4.2")
PASSWORD = "pacs-password-5d1e"
TOKEN = "mcp-token-audit-83c1"


def calls(path: Path) -> list[dict[str, Any]]:
    """The tool-call lines of the audit file and its rotated files, oldest first; each must parse."""
    files = sorted(
        path.parent.glob(path.name + "*"), key=lambda p: -int(p.suffix[1:] or 0) if p != path else 0
    )
    found = [json.loads(line) for file in files for line in file.read_text().splitlines()]
    return [line for line in found if line["event"] != "server_start"]


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.jsonl"


@pytest.fixture
def config(orthanc_config: Config, audit_log: Path) -> Config:
    audit_log.parent.mkdir()
    # Orthanc here takes any credentials: the password is set only to prove it is never written down.
    return orthanc_config.changed(
        audit_log=audit_log, auth="basic", username="reader", password=PASSWORD, allow_delete=True
    )


async def test_each_call_is_a_line_with_who_what_and_how_it_ended(
    config: Config, samples: Samples, audit_log: Path
) -> None:
    study, red = samples.study_uid, samples.red
    unreachable = config.changed(url=f"http://127.0.0.1:{free_port()}/dicom-web", max_retries=0, timeout=5)
    async with Client(build_server(config), client_info=CLIENT) as client:
        stored = await client.call_tool("store_instances", {"paths": [str(f.path) for f in samples.all]})
        found = await client.call_tool("search_studies", {"patient_name": "Anony Mous"})
        retrieved = await client.call_tool("retrieve_instances", {"study_uid": study})
        invalid = await client.call_tool("retrieve_metadata", {"study_uid": "1.2.x"})
        deleted = await client.call_tool(
            "delete_instances",
            {"study_uid": study, "series_uid": red.series_uid, "instance_uid": red.instance_uid},
        )
    async with Client(build_server(config.changed(allow_delete=False)), client_info=CLIENT) as client:
        switched_off = await client.call_tool("delete_instances", {"study_uid": study})
    async with Client(build_server(unreachable), client_info=CLIENT) as client:
        down = await client.call_tool("search_series", {"study_uid": study})
    for result in (stored, found, retrieved, deleted):
        assert not result.is_error, text(result)
    assert invalid.is_error and switched_off.is_error and down.is_error

    lines = calls(audit_log)
    assert [(line["event"], line["tool"], line.get("outcome")) for line in lines] == [
        ("call_start", "store_instances", None),
        ("call", "store_instances", "ok"),
        ("call", "search_studies", "ok"),
        ("call", "retrieve_instances", "ok"),
        ("call", "retrieve_metadata", "refused"),
        ("call_start", "delete_instances", None),
        ("call", "delete_instances", "ok"),
        ("call_start", "delete_instances", None),
        ("call", "delete_instances", "refused"),
        ("call", "search_series", "error"),
    ]
    store_start, store, search, retrieve, refused, delete_start, delete, _, off, error = lines
    for line in lines:
        assert line["user"]["source"] == "os" and line["user"]["name"]
        assert line["client"] == {"name": "audit-test-host", "version": "4.2"}  # in memory: no address
        assert line["server"] == "default"
        assert line["time"].endswith("Z") and len(line["time"]) == 24
        assert line["event"] == "call_start" or line["duration_ms"] >= 0
    # The line before a change and the line after it belong together.
    assert store_start["id"] == store["id"] and delete_start["id"] == delete["id"] != store["id"]

    assert store["study_uids"] == [study] and store["counts"]["stored"] == 3
    assert search["patient_ids"] == ["ID1"] and search["study_uids"] == [study]
    assert search["counts"] == {"results": 1}
    saved = retrieved.structured_content
    assert saved is not None
    assert retrieve["study_uids"] == [study] and retrieve["patient_ids"] == []
    assert retrieve["counts"] == {"files": 3} and retrieve["bytes"] == saved["total_bytes"] > 0
    assert refused["study_uids"] == ["1.2.x"] and "not a valid DICOM UID" in refused["reason"]
    assert "reason" not in delete and delete["series_uids"] == [red.series_uid]
    assert delete["instance_uids"] == [red.instance_uid]
    assert "delete_instances is switched off" in off["reason"]
    assert error["study_uids"] == [study] and "cannot connect" in error["reason"]
    assert error["reason"] == text(down)  # the message the caller read, word for word

    # What the caller typed beyond the named fields, and the server's password, are not in the file.
    written = "".join(p.read_text() for p in audit_log.parent.iterdir())
    assert PASSWORD not in written and "Anony Mous" not in written and str(samples.blue.path) not in written
    assert stat.S_IMODE(audit_log.stat().st_mode) == 0o600


async def test_fifty_calls_at_once_are_fifty_whole_lines_across_rotated_files(
    config: Config, samples: Samples, audit_log: Path
) -> None:
    # Small files: the 50 lines rotate several times while the calls run.
    rotating = config.changed(audit_max_bytes=3000, audit_keep=50)
    async with Client(build_server(rotating), client_info=CLIENT) as client:
        stored = await client.call_tool("store_instances", {"paths": [str(f.path) for f in samples.all]})
        assert not stored.is_error, text(stored)
        results = []

        async def search(n: int) -> None:
            series = {"series_uid": samples.red.series_uid} if n % 2 else {}
            tool = "search_instances" if n % 2 else "search_series"
            results.append(await client.call_tool(tool, {"study_uid": samples.study_uid, **series}))

        async with anyio.create_task_group() as group:
            for n in range(50):
                group.start_soon(search, n)
    assert len(results) == 50
    assert len(list(audit_log.parent.iterdir())) > 3
    lines = calls(audit_log)[2:]  # after the store's two
    assert len(lines) == 50 and len({line["id"] for line in lines}) == 50
    assert all(line["outcome"] == "ok" and line["study_uids"] == [samples.study_uid] for line in lines)
    red_series = {samples.red.instance_uid, samples.green.instance_uid}  # the red series' two instances
    assert sum(set(line["instance_uids"]) == red_series for line in lines) == 25
    for file in audit_log.parent.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600


async def test_a_call_that_cannot_be_recorded_is_refused_and_its_result_withheld(
    config: Config, samples: Samples, audit_log: Path
) -> None:
    async with Client(build_server(config), client_info=CLIENT) as client:
        first = await client.call_tool("server_info", {"probe": False})
        audit_log.unlink()
        audit_log.mkdir()  # a path no user, root included, can append a line to
        refused = await client.call_tool("search_studies", {})
        # A change is refused before it is made: its first line cannot be written.
        not_stored = await client.call_tool("store_instances", {"paths": [str(samples.red.path)]})
        audit_log.rmdir()
        again = await client.call_tool("search_studies", {})
    assert not first.is_error and not again.is_error
    for result in (refused, not_stored):
        assert result.is_error and result.structured_content is None
        assert "audit log could not be written" in text(result) and str(audit_log) in text(result)
    assert "it ran, but its result is withheld" in text(refused)
    assert "it was not run" in text(not_stored)
    assert again.structured_content is not None and again.structured_content["returned"] == 0  # not stored
    assert [line["tool"] for line in calls(audit_log)] == ["search_studies"]  # the file made again


def test_a_server_that_cannot_write_its_audit_log_does_not_start(tmp_path: Path) -> None:
    path = tmp_path / "no-such-directory" / "audit.jsonl"
    env = {
        "PATH": os.environ["PATH"],
        "DICOMWEB_URL": "http://127.0.0.1:9/dicom-web",
        "DICOMWEB_AUDIT_LOG": str(path),
    }
    for transport in ("stdio", "http"):
        done = subprocess.run(
            [COMMAND, "serve", "--transport", transport, "--port", str(free_port())],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert str(path) in done.stderr and "No such file or directory" in done.stderr
        assert "Uvicorn running" not in done.stderr


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_over_http_the_line_has_the_remote_address_and_client_name(
    orthanc_config: Config, audit_log: Path, mode: str
) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "DICOMWEB_URL": orthanc_config.server.url,
        "DICOMWEB_DOWNLOAD_DIR": str(orthanc_config.download_dir),
        "DICOMWEB_MCP_TOKEN": TOKEN,
        "DICOMWEB_AUDIT_LOG": str(audit_log),
    }
    audit_log.parent.mkdir()
    log: list[str] = []
    with serving_http(env, log) as url:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        transport = streamable_http_client(url, http_client=http)
        async with http, Client(transport, mode=mode, client_info=CLIENT) as client:
            result = await client.call_tool("search_studies", {"study_uid": "1.2.3"})
        assert not result.is_error, text(result)
        # The line is written before the answer leaves: it is there as soon as the call returns.
        (line,) = calls(audit_log)
    assert line["tool"] == "search_studies" and line["outcome"] == "ok"
    assert line["client"] == {"name": "audit-test-host", "version": "4.2", "address": "127.0.0.1"}
    # The static token names nobody: the person is the one running the server.
    assert line["user"]["source"] == "os"
    assert TOKEN not in audit_log.read_text() and TOKEN not in "".join(log)


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_a_delete_the_user_declines_is_refused_on_record(
    config: Config, samples: Samples, audit_log: Path, mode: str
) -> None:
    async def decline(context: Any, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="decline")

    stored = await call(config, "store_instances", {"paths": [str(samples.red.path)]})
    assert not stored.is_error, text(stored)
    async with Client(
        build_server(config), client_info=CLIENT, mode=mode, elicitation_callback=decline
    ) as client:
        declined = await client.call_tool("delete_instances", {"study_uid": samples.study_uid})
    assert declined.is_error and "nothing was deleted" in text(declined)
    lines = [line for line in calls(audit_log) if line["tool"] == "delete_instances"]
    # In the stateless era the call returns to ask, and comes again with the answer: a line for each.
    asked = [("call_start", None), ("call", "input_required")] if mode == MODERN else []
    assert [(line["event"], line.get("outcome")) for line in lines] == [
        *asked,
        ("call_start", None),
        ("call", "refused"),
    ]
    assert "did not confirm" in lines[-1]["reason"] and lines[-1]["study_uids"] == [samples.study_uid]
