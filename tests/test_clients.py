"""Every client a host is built on connects and calls a tool, over stdio and over streamable HTTP: the
Python SDK pinned to each protocol era and in auto mode, the TypeScript SDK, and the Vercel AI SDK (which
probes with server/discover first). The Node clients live in tests/clients (scripts/setup.sh installs
them); the tool searches a real Orthanc holding the tutorial study."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.support.orthanc import Orthanc
from tests.support.samples import Samples
from tests.support.served import COMMAND, DISCOVER, initialize, serving_http

pytestmark = pytest.mark.orthanc

CLIENTS = Path(__file__).parent / "clients"
TOKEN = "clients-token-4d1e"
DEADLINE = 60.0  # seconds for one client to start, connect and call: a hang fails, it never blocks the suite


@pytest.fixture(scope="module")
def archive(orthanc: Orthanc, samples: Samples) -> Iterator[Orthanc]:
    """The session's Orthanc holding the tutorial study, for this module's tests only."""
    orthanc.clear()
    for sample in samples.all:
        httpx.post(
            f"{orthanc.root}/instances", content=sample.path.read_bytes(), timeout=30
        ).raise_for_status()
    yield orthanc
    orthanc.clear()


@pytest.fixture
def server_env(archive: Orthanc, tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DICOMWEB_URL": archive.dicomweb_url,
        "DICOMWEB_DOWNLOAD_DIR": str(tmp_path / "downloads"),
    }


@pytest.fixture
def http_url(server_env: dict[str, str]) -> Iterator[str]:
    """``dicomweb-mcp serve --transport http`` with a token, as an operator runs it; its URL once it listens."""
    with serving_http({**server_env, "DICOMWEB_MCP_TOKEN": TOKEN}) as url:
        yield url


SEARCH = "search_studies"


def search_arguments(samples: Samples) -> dict[str, Any]:
    return {"study_uid": samples.study_uid}


def assert_found(structured: dict[str, Any] | None, samples: Samples) -> None:
    assert structured is not None
    assert structured["returned"] == 1, structured
    assert structured["results"][0]["study_uid"] == samples.study_uid


# The era each Python client mode ends up in.
PYTHON_MODES = {"legacy": "2025-11-25", "2026-07-28": "2026-07-28", "auto": "2026-07-28"}


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("mode", list(PYTHON_MODES))
async def test_python_sdk(
    mode: str, transport: str, server_env: dict[str, str], request: pytest.FixtureRequest, samples: Samples
) -> None:
    if transport == "stdio":
        target: Any = StdioServerParameters(command=COMMAND, env=server_env)
        http = None
    else:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        target = streamable_http_client(request.getfixturevalue("http_url"), http_client=http)
    with anyio.fail_after(DEADLINE):
        async with Client(target, mode=mode) as client:  # type: ignore[arg-type]
            result = await client.call_tool(SEARCH, search_arguments(samples))
            era = client.protocol_version
        if http is not None:
            await http.aclose()
    assert era == PYTHON_MODES[mode]
    assert not result.is_error, result.content
    assert_found(result.structured_content, samples)


def node_client(script: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run tests/clients/``script`` with ``spec`` (see common.mjs) and return the line it prints."""
    node = shutil.which("node")
    installed = (CLIENTS / "node_modules" / ".installed-from-lock").is_file()
    if node is None or not installed:
        missing = "node" if node is None else f"{CLIENTS}/node_modules"
        message = f"{missing} is missing: run scripts/setup.sh"
        # CI runs setup.sh first, so there a missing client is a broken setup, not an optional extra.
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    completed = subprocess.run(
        [node, str(CLIENTS / script), json.dumps({**spec, "timeoutMs": int(DEADLINE * 1000)})],
        capture_output=True,
        text=True,
        timeout=DEADLINE + 10,
        check=False,
        cwd=CLIENTS,
    )
    lines = completed.stdout.strip().splitlines()
    assert completed.returncode == 0 and lines, completed.stdout + completed.stderr
    outcome: dict[str, Any] = json.loads(lines[-1])
    return outcome


def node_spec(
    transport: str, server_env: dict[str, str], request: pytest.FixtureRequest, samples: Samples
) -> dict[str, Any]:
    spec: dict[str, Any] = {"tool": SEARCH, "arguments": search_arguments(samples)}
    if transport == "stdio":
        spec["stdio"] = {"command": COMMAND, "args": [], "env": server_env}
    else:
        spec["http"] = {"url": request.getfixturevalue("http_url"), "token": TOKEN}
    return spec


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_typescript_sdk(
    transport: str, server_env: dict[str, str], request: pytest.FixtureRequest, samples: Samples
) -> None:
    outcome = node_client("typescript-sdk.mjs", node_spec(transport, server_env, request, samples))
    assert outcome["serverName"] == "dicomweb-mcp"
    assert_found(outcome["structuredContent"], samples)


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_ai_sdk(
    transport: str, server_env: dict[str, str], request: pytest.FixtureRequest, samples: Samples
) -> None:
    outcome = node_client("ai-sdk.mjs", node_spec(transport, server_env, request, samples))
    assert outcome["serverName"] == "dicomweb-mcp"
    if transport == "http":
        assert outcome["protocolVersion"] == "2026-07-28"  # its discover was answered
    else:
        # Over stdio the client spawns the server and gives discover one second on its own clock: on a
        # loaded machine start-up takes longer and it shakes hands instead (seen in 1 of 4 runs beside a
        # CPU-bound process). Both paths are pinned without a clock: the discover answer by
        # test_a_client_that_probes_with_discover_still_connects, the fallback by the slow-start test.
        assert outcome["protocolVersion"] in ("2026-07-28", "2025-11-25")
    assert_found(outcome["structuredContent"], samples)


def test_ai_sdk_with_a_server_slower_to_start_than_it_waits(
    server_env: dict[str, str], samples: Samples
) -> None:
    """The AI SDK gives discover one second over stdio, then sends initialize on the same pipe: a server
    that starts later reads both, and must answer the one the client still waits for."""
    # The delay is the condition under test (a start-up past the client's 1 s), not a wait for anything.
    slow_start = ["-c", f"sleep 2 && exec {COMMAND}"]
    spec = {
        "stdio": {"command": "/bin/sh", "args": slow_start, "env": server_env},
        "tool": SEARCH,
        "arguments": search_arguments(samples),
    }
    outcome = node_client("ai-sdk.mjs", spec)
    assert outcome["protocolVersion"] == "2025-11-25"  # it gave up on discover and shook hands
    assert_found(outcome["structuredContent"], samples)


def test_a_client_that_probes_with_discover_still_connects(server_env: dict[str, str]) -> None:
    """The same at the wire, without Node: discover and initialize arrive together before the server
    reads either; the server answers discover and still accepts the initialize that follows."""
    process = subprocess.Popen(
        [COMMAND],
        env=server_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    # A server that never answers must fail the test, not hang it: the reader is given a deadline.
    answers: dict[int, dict[str, Any]] = {}
    both = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            message = json.loads(line)
            answers[message["id"]] = message
            if len(answers) == 2:
                both.set()

    try:
        assert process.stdin is not None
        process.stdin.write(json.dumps(DISCOVER) + "\n" + json.dumps(initialize(2)) + "\n")
        process.stdin.flush()
        threading.Thread(target=read, daemon=True).start()
        assert both.wait(DEADLINE), answers
    finally:
        process.kill()
        process.wait(timeout=10)
    assert "2026-07-28" in answers[1]["result"]["supportedVersions"]
    assert answers[2]["result"]["serverInfo"]["name"] == "dicomweb-mcp"
    assert "prompts" not in answers[2]["result"]["capabilities"]
