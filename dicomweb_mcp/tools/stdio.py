"""MCP over stdin/stdout in both protocol eras on one connection, whichever the client opens with.

The SDK's own stdio loop (``Server.run``, ``serve_dual_era_loop`` in mcp 2.3) lets the first request
choose the era once: a ``server/discover`` locks the connection to 2026-07-28 and a later ``initialize``
is refused (-32022). The Vercel AI SDK sends discover, gives up on it after one second and sends
``initialize`` on the same pipe: when start-up takes longer than that, both arrive together and the
client cannot connect. Here each request is served in the era it claims: a request carrying the
2026-07-28 ``_meta`` envelope (discover included) is served on its own, as the SDK's modern loop serves
it, and everything else goes through the initialize handshake, as the SDK's legacy loop serves it.
tests/test_stdio_eras.py pins the SDK behaviour that makes this module necessary.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mcp.server.connection import Connection
from mcp.server.lowlevel import Server
from mcp.server.models import InitializationOptions
from mcp.server.runner import ServerRunner, aclose_shielded, modern_on_request
from mcp.server.stdio import stdio_server
from mcp.shared.dispatcher import DispatchContext
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import SessionMessage
from mcp.shared.transport_context import TransportContext
from mcp_types import INTERNAL_ERROR, PROTOCOL_VERSION_META_KEY
from mcp_types.version import LATEST_MODERN_VERSION
from pydantic import ValidationError

if TYPE_CHECKING:
    # The stream types Server.run itself takes; the SDK exports them from no public module.
    from mcp.shared._stream_protocols import ReadStream, WriteStream

__all__ = ["serve_both_eras", "serve_stdio"]

logger = logging.getLogger(__name__)


async def serve_stdio(server: Server[Any]) -> None:
    """Serve ``server`` on the process's stdin and stdout until the client closes stdin."""
    async with stdio_server() as (read, write), server.lifespan(server) as state:
        await serve_both_eras(
            server, read, write, lifespan_state=state, init_options=server.create_initialization_options()
        )


def _claims_modern_era(params: Mapping[str, Any] | None) -> bool:
    """Whether a request carries the 2026-07-28 envelope: only that era's clients write this key."""
    meta = (params or {}).get("_meta")
    return isinstance(meta, Mapping) and PROTOCOL_VERSION_META_KEY in meta


async def serve_both_eras(
    server: Server[Any],
    read_stream: ReadStream[SessionMessage | Exception],
    write_stream: WriteStream[SessionMessage],
    *,
    lifespan_state: Any,
    init_options: InitializationOptions,
) -> None:
    """Serve one duplex connection until its read side closes, each request in the era it claims."""
    dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
        read_stream,
        write_stream,
        # As the SDK's loops do: a request pipelined right behind initialize must see its outcome.
        inline_methods=frozenset({"initialize"}),
    )
    connection = Connection.for_loop(dispatcher)
    handshake = ServerRunner(server, connection, lifespan_state, init_options=init_options)
    modern = modern_on_request(server, lifespan_state)

    async def on_request(
        dctx: DispatchContext[TransportContext], method: str, params: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        if method == "initialize" or not _claims_modern_era(params):
            return await handshake.on_request(dctx, method, params)
        route = classify_inbound_request({"method": method, "params": params})
        if isinstance(route, InboundLadderRejection):
            raise MCPError(code=route.code, message=route.message, data=route.data)
        try:
            return await modern(dctx, method, params)
        except (MCPError, ValidationError):
            raise
        except Exception as exc:
            # The dispatcher would put the exception's own text on the wire; the SDK's modern loop does not.
            logger.exception("%s failed", method)
            raise MCPError(code=INTERNAL_ERROR, message="Internal server error") from exc

    async def on_notify(
        dctx: DispatchContext[TransportContext], method: str, params: Mapping[str, Any] | None
    ) -> None:
        if connection.initialize_accepted or method == "notifications/initialized":
            await handshake.on_notify(dctx, method, params)
            return
        # Before any handshake the client speaks 2026-07-28, whose notifications carry no envelope.
        stateless = Connection.from_envelope(LATEST_MODERN_VERSION, None, None)
        try:
            await ServerRunner(server, stateless, lifespan_state).on_notify(dctx, method, params)
        finally:
            await aclose_shielded(stateless)

    try:
        await dispatcher.run(on_request, on_notify)
    finally:
        await aclose_shielded(connection)
        await write_stream.aclose()
