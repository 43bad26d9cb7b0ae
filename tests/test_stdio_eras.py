"""Both protocol eras on one stdio connection (dicomweb_mcp/tools/stdio.py), in process: raw JSON-RPC in,
answers out, no server process. The first test pins the SDK behaviour that made the module necessary."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.lowlevel import Server
from mcp.shared.message import SessionMessage
from mcp_types import jsonrpc_message_adapter

from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server
from dicomweb_mcp.tools.stdio import serve_both_eras
from tests.support.served import DISCOVER, ENVELOPE, MODERN, initialize

pytestmark = pytest.mark.anyio

Serve = Callable[
    [
        Server[Any],
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ],
    Awaitable[None],
]
INITIALIZE = initialize(2)
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
SERVER_INFO = {"name": "server_info", "arguments": {"probe": False}}


def call(request_id: int, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = dict(SERVER_INFO)
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


async def sdk_loop(
    server: Server[Any],
    read: MemoryObjectReceiveStream[SessionMessage | Exception],
    write: MemoryObjectSendStream[SessionMessage],
) -> None:
    await server.run(read, write, server.create_initialization_options())


async def our_loop(
    server: Server[Any],
    read: MemoryObjectReceiveStream[SessionMessage | Exception],
    write: MemoryObjectSendStream[SessionMessage],
) -> None:
    async with server.lifespan(server) as state:
        await serve_both_eras(
            server, read, write, lifespan_state=state, init_options=server.create_initialization_options()
        )


async def exchange(serve: Serve, tmp_path: Path, *messages: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Send ``messages`` in order, each request once the previous one is answered (a pipe's order, with no
    race on which handler runs first), and return the answers by request id."""
    config = Config.single(url="http://127.0.0.1:9/dicom-web", download_dir=tmp_path)
    server = build_server(config)._lowlevel_server
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](16)
    answers: dict[int, dict[str, Any]] = {}
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(serve, server, server_reads, server_writes)
            async with to_server:
                for message in messages:
                    await to_server.send(SessionMessage(jsonrpc_message_adapter.validate_python(message)))
                    if "id" in message:
                        answer = (await from_server.receive()).message.model_dump(
                            by_alias=True, exclude_none=True
                        )
                        answers[answer["id"]] = answer
            from_server.close()
    return answers


async def test_the_sdks_own_loop_still_refuses_initialize_after_discover(tmp_path: Path) -> None:
    """When this fails, the SDK serves an initialize that follows a discover: serve_stdio can go back to
    the SDK's loop (MCPServer.run_stdio_async) and dicomweb_mcp/tools/stdio.py can go."""
    answers = await exchange(sdk_loop, tmp_path, DISCOVER, INITIALIZE)
    assert MODERN in answers[1]["result"]["supportedVersions"]
    assert answers[2]["error"]["code"] == -32022, answers[2]


async def test_initialize_after_discover_is_served(tmp_path: Path) -> None:
    answers = await exchange(our_loop, tmp_path, DISCOVER, INITIALIZE, INITIALIZED, call(3))
    assert MODERN in answers[1]["result"]["supportedVersions"]
    assert answers[2]["result"]["protocolVersion"] == "2025-11-25"
    assert answers[2]["result"]["serverInfo"]["name"] == "dicomweb-mcp"
    assert "prompts" not in answers[2]["result"]["capabilities"]
    assert answers[3]["result"]["structuredContent"]["name"] == "default"


async def test_modern_requests_need_no_handshake(tmp_path: Path) -> None:
    answers = await exchange(our_loop, tmp_path, DISCOVER, call(3, ENVELOPE))
    result = answers[3]["result"]
    assert result["structuredContent"]["name"] == "default" and result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "dicomweb-mcp"


async def test_each_era_keeps_its_own_rules(tmp_path: Path) -> None:
    half_envelope = {"io.modelcontextprotocol/protocolVersion": MODERN}
    future = {**ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    answers = await exchange(
        our_loop,
        tmp_path,
        call(1),
        call(2, half_envelope),
        call(3, future),
        {**DISCOVER, "id": 4, "params": {}},
    )
    assert answers[1]["error"]["code"] == -32602  # a handshake-era call before initialize
    assert "clientCapabilities" in answers[2]["error"]["message"]
    assert answers[3]["error"]["code"] == -32022 and MODERN in answers[3]["error"]["data"]["supported"]
    assert answers[4]["error"]["code"] == -32601  # discover without the envelope is no 2026 request
