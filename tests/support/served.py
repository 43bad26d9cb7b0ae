"""The ``dicomweb-mcp`` command as an operator or a host runs it: served over streamable HTTP, and the raw
JSON-RPC messages a client sends first, for tests that talk to a real server process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.orthanc import free_port

COMMAND = str(Path(sys.executable).parent / "dicomweb-mcp")
MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
}
DISCOVER = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": ENVELOPE}}


def initialize(request_id: int = 1, version: str = "2025-11-25") -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }


@contextmanager
def serving_http(
    env: dict[str, str],
    log: list[str] | None = None,
    port: int | None = None,
    processes: list[subprocess.Popen[bytes]] | None = None,
) -> Iterator[str]:
    """``dicomweb-mcp serve --transport http`` on ``port`` (a free loopback port by default) with ``env``;
    yields its MCP URL once it listens (its log line says so, no sleep), and stops it by its PID unless the
    test stopped it first. ``log`` collects its stderr; ``processes`` gets the process (to stop it)."""
    port = port or free_port()
    process = subprocess.Popen(
        [COMMAND, "serve", "--transport", "http", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if processes is not None:
        processes.append(process)
    lines = log if log is not None else []
    listening = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            lines.append(raw.decode(errors="replace"))
            if "Uvicorn running on" in lines[-1]:
                listening.set()
        listening.set()  # the process ended: stop waiting, the assert below says why

    threading.Thread(target=read, daemon=True).start()
    try:
        assert listening.wait(30) and process.poll() is None, "".join(lines)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
