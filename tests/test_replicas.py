"""Replicas without sticky sessions (DICOMWEB_MCP_STATELESS=true): two ``dicomweb-mcp serve --transport
http`` processes behind nginx's round robin, sharing one Orthanc, serve concurrent clients of both protocol
eras; with one replica stopped, the other serves every new call. Each replica's audit trail counts the
calls it served; nginx's access log says which replica answered each request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, Implementation

from dicomweb_mcp import Config
from dicomweb_mcp.dicomweb.client import DicomWebClient
from dicomweb_mcp.tools.stateless import read_session_id, session_id_for
from tests.support.mcp import RENDERS_APPS
from tests.support.nginx import Balancer
from tests.support.orthanc import free_port
from tests.support.samples import Samples
from tests.support.served import initialize, serving_http

pytestmark = pytest.mark.anyio

TOKEN = "replica-token-5d2e81"
STATE_KEY = "replica-state-key-0c8e5b7a41d2f9368e0b"  # the same on both replicas
CLIENTS = 16
ERAS = ("legacy", "2026-07-28")
PATIENT_ID = "ID1"  # the tutorial files' patient
HOST = Implementation(name="replica-test-host", version="1.0")


@dataclass
class Replicas:
    balancer: Balancer
    processes: list[subprocess.Popen[bytes]]
    audits: list[Path]
    logs: list[list[str]] = field(default_factory=list)

    def audit_lines(self, replica: int) -> list[dict[str, Any]]:
        path = self.audits[replica]
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in map(json.loads, lines) if line["event"] == "call"]

    def calls(self) -> list[int]:
        """Tool calls each replica has answered so far (its audit trail has a line for each, written before
        the answer left)."""
        return [len(self.audit_lines(replica)) for replica in range(len(self.audits))]

    def stop(self, replica: int) -> None:
        process = self.processes[replica]
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@contextmanager
def replicas(config: Config, workdir: Path, *, stateless: bool) -> Iterator[Replicas]:
    """Two replicas on loopback ports, one configuration but their own audit file each, behind nginx."""
    processes: list[subprocess.Popen[bytes]] = []
    audits = [workdir / f"audit-{replica}.jsonl" for replica in range(2)]
    logs: list[list[str]] = [[], []]
    ports = [free_port(), free_port()]
    (workdir / "nginx").mkdir()
    with ExitStack() as stack:
        for port, audit, log in zip(ports, audits, logs, strict=True):
            env = {
                "PATH": os.environ["PATH"],
                "DICOMWEB_URL": config.server.url,
                "DICOMWEB_DOWNLOAD_DIR": str(config.download_dir),  # shared, as the README says
                "DICOMWEB_MCP_TOKEN": TOKEN,
                "DICOMWEB_AUDIT_LOG": str(audit),
                "DICOMWEB_ALLOW_DELETE": "true",
                "DICOMWEB_MCP_STATELESS": "true" if stateless else "false",
                "DICOMWEB_MCP_STATE_KEY": STATE_KEY,
            }
            stack.enter_context(serving_http(env, log, port=port, processes=processes))
        balancer = Balancer(workdir / "nginx", ports).start()
        stack.callback(balancer.stop)
        yield Replicas(balancer, processes, audits, logs)
        assert not any(secret in line for log in logs for line in log for secret in (TOKEN, STATE_KEY))


def connect(url: str, mode: str, **options: Any) -> tuple[httpx2.AsyncClient, Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    client = Client(streamable_http_client(url, http_client=http), mode=mode, client_info=HOST, **options)
    return http, client


async def five_calls(url: str, mode: str, samples: Samples) -> list[CallToolResult]:
    """One client in its own session, as a host would make: five calls."""
    study = {"study_uid": samples.study_uid}
    http, client = connect(url, mode)
    async with http, client:
        return [
            await client.call_tool("search_studies", {}),
            await client.call_tool("server_info", {}),
            await client.call_tool("search_series", study),
            await client.call_tool("search_instances", study),
            await client.call_tool("search_studies", {"patient_id": PATIENT_ID}),
        ]


def succeeded(result: CallToolResult) -> bool:
    content = result.structured_content or {}
    return not result.is_error and (content.get("returned", 0) > 0 or content.get("reachable") is True)


@dataclass
class Phase:
    calls: int
    ok: int
    per_replica: list[int]
    seconds: float
    failures: list[str]

    def line(self, name: str) -> str:
        return (
            f"{name}: {self.ok}/{self.calls} calls succeeded from {CLIENTS} concurrent clients, "
            f"replicas served {self.per_replica}, {self.seconds:.2f} s"
        )


async def concurrent_clients(replicas: Replicas, mode: str, samples: Samples) -> Phase:
    before = replicas.calls()
    results: list[CallToolResult] = []
    failures: list[str] = []

    async def one() -> None:
        try:
            results.extend(await five_calls(replicas.balancer.url, mode, samples))
        except Exception as exc:  # a session that broke: counted, and its reason kept for the message
            failures.append(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    async with anyio.create_task_group() as clients:
        for _ in range(CLIENTS):
            clients.start_soon(one)
    seconds = time.perf_counter() - started
    failures += [str(r.content) for r in results if not succeeded(r)]
    per_replica = [after - earlier for after, earlier in zip(replicas.calls(), before, strict=True)]
    return Phase(CLIENTS * 5, sum(map(succeeded, results)), per_replica, seconds, failures)


async def store(config: Config, samples: Samples) -> None:
    async with DicomWebClient(config.server) as archive:
        await archive.store_instances(samples.all)


async def test_replicas_serve_both_eras_and_one_replica_can_stop(
    orthanc_config: Config, samples: Samples, tmp_path: Path
) -> None:
    await store(orthanc_config, samples)
    report: list[str] = []  # the numbers, printed at the end (pytest -s shows them)
    with replicas(orthanc_config, tmp_path, stateless=True) as pair:
        for mode in ERAS:
            phase = await concurrent_clients(pair, mode, samples)
            report.append(phase.line(f"both replicas, {mode}"))
            assert phase.ok == phase.calls, phase.failures[:3]
            assert sum(phase.per_replica) == phase.calls and min(phase.per_replica) > 0, phase.per_replica
        # The 2025 handshake reached one replica; the client's name it declared is known to both.
        for replica in range(2):
            names = {line["client"].get("name") for line in pair.audit_lines(replica)}
            assert names == {HOST.name}, names

        await progress_through_the_balancer(pair, samples)
        await viewer_through_the_balancer(pair, samples)
        await delete_through_the_balancer(pair, samples)

        pair.stop(0)
        for mode in ERAS:
            phase = await concurrent_clients(pair, mode, samples)
            report.append(phase.line(f"replica 0 stopped, {mode}"))
            assert phase.ok == phase.calls, phase.failures[:3]
            assert phase.per_replica == [0, phase.calls]
    requests = pair.balancer.requests()  # complete now: nginx has stopped
    retried = [r for r in requests if "," in r["upstream_addr"]]
    versions = Counter(r["mcp_protocol_version"] for r in requests if r["request_method"] == "POST")
    report.append(
        f"nginx: {len(requests)} requests, {len(retried)} passed on from the stopped replica, "
        f"protocol versions {dict(versions)}"
    )
    # The stopped replica refused the connection, so nginx passed the POST on (nothing was sent yet).
    assert retried and all(r["status"] in ("200", "202") for r in retried), retried
    assert not [r for r in requests if r["status"].startswith("5")]
    assert versions["2025-11-25"] and versions["2026-07-28"], versions
    # The 2025 era's requests carried the session ID this server made (the handshake's capabilities).
    assert any(r["mcp_session_id"].startswith("dwm1.") for r in requests)
    print("\n" + "\n".join(report))


async def progress_through_the_balancer(pair: Replicas, samples: Samples) -> None:
    """Progress notifications ride the call's own response stream, through nginx unbuffered."""
    updates: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        updates.append((done, total))

    for mode in ERAS:
        updates.clear()

        http, client = connect(pair.balancer.url, mode)
        async with http, client:
            arguments = {"study_uid": samples.study_uid}
            result = await client.call_tool("retrieve_instances", arguments, progress_callback=on_progress)
        assert not result.is_error, result.content
        assert updates == [(1, 3), (2, 3), (3, 3)], (mode, updates)


async def viewer_through_the_balancer(pair: Replicas, samples: Samples) -> None:
    """A host that renders apps gets the viewer's tools in both eras, whichever replica answers: in the
    2025 era its handshake's capabilities travel in the session ID."""
    arguments = {"study_uid": samples.study_uid, "series_uid": samples.blue.series_uid}
    for mode in ERAS:
        before = pair.calls()
        http, client = connect(pair.balancer.url, mode, extensions=[RENDERS_APPS])
        async with http, client:
            listed = {tool.name for tool in (await client.list_tools()).tools}
            series = [await client.call_tool("viewer_series", arguments) for _ in range(2)]
        assert {"viewer_series", "viewer_frame"} <= listed, mode
        assert not any(result.is_error for result in series), [r.content for r in series]
        assert sum(pair.calls()) - sum(before) == 2


async def delete_through_the_balancer(pair: Replicas, samples: Samples) -> None:
    """The 2026 era asks the user to confirm a delete and answers on the next call, which the other replica
    serves; a 2025-era client cannot be asked over stateless HTTP, so the operator's allow_delete decides."""
    asked: list[str] = []

    async def confirm(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    for mode, instance in zip(ERAS, (samples.red, samples.green), strict=True):
        before = [len(pair.audit_lines(replica)) for replica in range(2)]
        http, client = connect(pair.balancer.url, mode, elicitation_callback=confirm)
        arguments = {
            "study_uid": instance.study_uid,
            "series_uid": instance.series_uid,
            "instance_uid": instance.instance_uid,
        }
        async with http, client:
            deleted = await client.call_tool("delete_instances", arguments)
        assert not deleted.is_error, deleted.content
        outcomes = [
            [line["outcome"] for line in pair.audit_lines(replica)[before[replica] :]] for replica in range(2)
        ]
        if mode == "legacy":
            assert sorted(outcomes, key=len) == [[], ["ok"]], outcomes
        else:
            # Asked by one replica, answered to the other.
            assert sorted(outcomes) == [["input_required"], ["ok"]], outcomes
    assert len(asked) == 1 and samples.green.instance_uid in asked[0], asked  # the 2026-era call only


async def test_without_stateless_a_2025_session_breaks_across_replicas(
    orthanc_config: Config, samples: Samples, tmp_path: Path
) -> None:
    """The control: with sessions kept in each process, a 2025-era client's next request reaches the
    replica that never saw its handshake. The 2026 era keeps no session, so it works either way."""
    await store(orthanc_config, samples)
    with replicas(orthanc_config, tmp_path, stateless=False) as pair:
        with pytest.raises(Exception) as broken:  # the SDK's error type is not the point
            await five_calls(pair.balancer.url, "legacy", samples)
        modern = await five_calls(pair.balancer.url, "2026-07-28", samples)
    statuses = Counter(r["status"] for r in pair.balancer.requests())  # complete now: nginx has stopped
    cause: BaseException = broken.value
    while isinstance(cause, BaseExceptionGroup):  # the SDK's task groups wrap the error
        cause = cause.exceptions[0]
    assert all(map(succeeded, modern))
    # Sessions kept per process: the other replica does not know this one.
    assert statuses["404"] and "Session not found" in str(cause), (statuses, cause)
    print(f"\nwithout DICOMWEB_MCP_STATELESS: a 2025-era client failed ({type(cause).__name__}: {cause})")


def test_a_stateless_server_opens_no_stream_and_keeps_no_session(tmp_path: Path) -> None:
    """GET (a stream for server pushes) and DELETE (ending a session) have nothing to act on: 405, saying
    why; a session ID this server did not make gets 404, so the client starts again with initialize."""
    env = {
        "PATH": os.environ["PATH"],
        "DICOMWEB_URL": "http://127.0.0.1:9/dicom-web",  # never asked: no tool is called
        "DICOMWEB_DOWNLOAD_DIR": str(tmp_path),
        "DICOMWEB_MCP_STATELESS": "true",
        "DICOMWEB_MCP_STATE_KEY": STATE_KEY,
    }
    legacy = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-11-25",
    }
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    with serving_http(env) as url:
        stream = httpx.get(url, headers={"Accept": "text/event-stream"})
        end = httpx.delete(url, headers={"Mcp-Session-Id": "dwm1.e30"})
        foreign = httpx.post(url, json=ping, headers={**legacy, "Mcp-Session-Id": "4f2a9c0e"})
        made = httpx.post(url, json=initialize(), headers=legacy)
        again = httpx.post(
            url, json=ping, headers={**legacy, "Mcp-Session-Id": made.headers["mcp-session-id"]}
        )
    for response in (stream, end):
        assert response.status_code == 405 and "DICOMWEB_MCP_STATELESS" in response.text
    assert foreign.status_code == 404 and "initialize again" in foreign.text
    assert made.status_code == 200 and again.status_code == 200, again.text


def test_the_session_id_carries_what_the_handshake_declared() -> None:
    renders_apps = {EXTENSION_ID: {"mimeTypes": [APP_MIME_TYPE]}}
    handshake = {
        "capabilities": {"elicitation": {}, "extensions": {**renders_apps, "other/ext": {"x": 1}}},
        "clientInfo": {"name": "host", "version": "2.1", "title": "ignored"},
    }
    capabilities, client = read_session_id(session_id_for(handshake)) or ({}, {})
    # Only what this server reads later; elicitation is left out: a 2025-era client cannot be asked here.
    assert capabilities == {"extensions": renders_apps}
    assert client == {"name": "host", "version": "2.1"}
    huge = {"capabilities": {"extensions": {EXTENSION_ID: {"mimeTypes": ["x" * 5000]}}}}
    assert read_session_id(session_id_for(huge)) == ({}, {})
    for foreign in ("4f2a9c0e", "dwm1.!!!", "dwm1.WzFd", "dwm1." + "A" * 3000):
        assert read_session_id(foreign) is None
