"""Streamable HTTP that keeps nothing about a client between requests (DICOMWEB_MCP_STATELESS=true): any
replica behind a load balancer answers any request, without sticky sessions.

The 2026-07-28 protocol era is like that already: every request carries the client's capabilities. The
2025 era has a handshake, and a session in one process would keep what the client declared in it (MCP
Apps support, which decides whether the viewer's tools are listed; the client's name, for the audit
trail). Here the session ID carries those instead: the client sends it back with every request, and any
replica reads it. It holds only what the client declared itself, so a forged one gains nothing a forged
handshake would not; each request is authenticated on its own.

What cannot travel: a request from the server to a 2025-era client (its answer comes back in another POST,
perhaps to another replica). Such a client is treated as one that cannot be asked: a deletion is not
confirmed in a dialog, the operator's allow_delete decides (a 2026-era client is still asked, its answer
riding the repeated call, sealed with the operator's DICOMWEB_MCP_STATE_KEY rather than the SDK's key made
at start, which no other replica has). And there is no GET stream: this server pushes nothing unasked.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus
from mcp.server import MCPServer
from mcp.server.apps import EXTENSION_ID
from mcp.server.connection import Connection
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.runner import serve_connection
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext
from mcp_types import DEFAULT_NEGOTIATED_VERSION
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from ..config import Config
from ..files.job_store import sqlite_path
from .http import json_answer

__all__ = ["StatelessSessions", "read_session_id", "session_id_for", "stateless_app", "warn_if_jobs_unshared"]

log = logging.getLogger("dicomweb_mcp.http")

# A version mark: a later format can tell its own IDs from these.
_PREFIX = "dwm1."
# A header's worth: an ID longer than this was not made here.
_MAX_ID = 2048
_MAX_NAME = 100
_NO_REQUESTS = TransportContext(kind="streamable-http", can_send_request=False)


def session_id_for(initialize: Mapping[str, Any]) -> str:
    """The session ID for an ``initialize`` request's params: what this server reads of the handshake
    later (the MCP Apps extension's settings, the client's name and version), as base64url JSON."""
    capabilities = initialize.get("capabilities")
    extensions = capabilities.get("extensions") if isinstance(capabilities, Mapping) else None
    apps = extensions.get(EXTENSION_ID) if isinstance(extensions, Mapping) else None
    info = initialize.get("clientInfo")
    client = {
        key: info[key][:_MAX_NAME]
        for key in ("name", "version")
        if isinstance(info, Mapping) and isinstance(info.get(key), str)
    }
    for kept in ({EXTENSION_ID: apps} if isinstance(apps, Mapping) else {}, {}):
        raw = json.dumps({"c": {"extensions": kept} if kept else {}, "i": client}, separators=(",", ":"))
        encoded = _PREFIX + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        if len(encoded) <= _MAX_ID:
            return encoded
    raise AssertionError("a session ID without extensions always fits")  # names are cut to _MAX_NAME


def read_session_id(session_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The client's capabilities and client info from a session ID made by ``session_id_for``; ``None``
    for one made elsewhere (another server, an older format, a mangled header)."""
    if not session_id.startswith(_PREFIX) or len(session_id) > _MAX_ID:
        return None
    payload = session_id.removeprefix(_PREFIX)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(decoded, dict):
        return None
    capabilities, client = decoded.get("c"), decoded.get("i")
    if not isinstance(capabilities, dict) or not isinstance(client, dict):
        return None
    return capabilities, client


class StatelessSessions(StreamableHTTPSessionManager):
    """The SDK's stateless streamable HTTP, with the 2025 handshake's capabilities carried in the session
    ID (the SDK's own stateless mode forgets them: no viewer for a 2025-era host)."""

    async def _handle_stateless_request(
        self, protocol_version_hint: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if scope.get("method") != "POST":
            # GET would open a stream for pushes this server never makes, pinning the client to one replica;
            # DELETE would end a session no replica keeps.
            message = "This server keeps no sessions (DICOMWEB_MCP_STATELESS): send each message as a POST."
            await _error(send, 405, message, [(b"allow", b"POST")])
            return
        buffered = await _read_body(receive)
        if buffered is None:
            return  # the client went away before its request was whole
        body, receive = buffered
        opening = _initialize_params(body)
        given = _header(scope, MCP_SESSION_ID_HEADER)
        capabilities: dict[str, Any] | None = None
        client: dict[str, Any] | None = None
        if opening is not None:
            # The initialize request sets the capabilities itself; the ID tells later requests what they were.
            session_id: str | None = session_id_for(opening)
        elif given is not None:
            declared = read_session_id(given)
            if declared is None:
                # As for an expired session: the client starts a new one with initialize.
                await _error(send, 404, "Session not found: initialize again.")
                return
            session_id, (capabilities, client) = given, declared
        else:
            session_id = None
        await self._serve(session_id, protocol_version_hint, capabilities, client, scope, receive, send)

    async def _serve(
        self,
        session_id: str | None,
        protocol_version_hint: str | None,
        capabilities: dict[str, Any] | None,
        client: dict[str, Any] | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """The SDK's stateless request, its connection born with the capabilities the session ID carried.
        Follows StreamableHTTPSessionManager._handle_stateless_request of mcp 2.3.0 (which has no hook for
        the connection it makes): compare with it when the SDK is upgraded."""
        http_transport = StreamableHTTPServerTransport(
            mcp_session_id=session_id,
            is_json_response_enabled=self.json_response,
            event_store=None,
            security_settings=self.security_settings,
        )

        async def run(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            async with http_transport.connect() as (read_stream, write_stream):
                task_status.started()
                dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
                    read_stream,
                    write_stream,
                    inline_methods=frozenset({"initialize"}),
                    # A request to the client could be written, but its answer would reach any replica.
                    transport_builder=lambda _: _NO_REQUESTS,
                )
                connection = Connection.from_envelope(
                    protocol_version_hint or DEFAULT_NEGOTIATED_VERSION, client, capabilities
                )
                try:
                    await serve_connection(
                        self.app, dispatcher, connection=connection, lifespan_state=self._lifespan_state
                    )
                except Exception:
                    log.exception("a stateless request failed")

        assert self._task_group is not None
        try:
            await self._task_group.start(run)
            await http_transport.handle_request(scope, receive, send)
        finally:
            # The request's server task ends only with its transport, cancelled or not.
            with anyio.CancelScope(shield=True):
                await http_transport.terminate()


def stateless_app(
    server: MCPServer[Any], security: TransportSecuritySettings, state_keys: Sequence[str]
) -> Starlette:
    """The MCP endpoint at /mcp, served by ``StatelessSessions``; the server's lifespan (its archive
    clients) is entered once for the process, as in the SDK's own app. ``state_keys`` seal the state a
    call that asks its user hands the client, so that any replica can continue it."""
    _share_request_state(server, state_keys)
    manager = StatelessSessions(
        app=server._lowlevel_server, stateless=True, security_settings=security, session_idle_timeout=None
    )
    return Starlette(
        routes=[Route("/mcp", endpoint=StreamableHTTPASGIApp(manager))],
        lifespan=lambda _: manager.run(),
    )


def warn_if_jobs_unshared(config: Config) -> None:
    """Say once, at start, that stateless serving without DICOMWEB_JOBS_DATABASE keeps cohort jobs in this
    replica's SQLite file: one stateless server is legitimate, so it is a warning, not a refusal."""
    if config.mcp_stateless and config.jobs_database is None:
        log.warning(
            "DICOMWEB_MCP_STATELESS is on without DICOMWEB_JOBS_DATABASE: cohort jobs are kept in SQLite at "
            "%s. Replicas see one another's jobs only if they share that directory on one host (SQLite's "
            "write-ahead log does not work over a network file system); set DICOMWEB_JOBS_DATABASE to a "
            "PostgreSQL URL every replica uses. A single server can ignore this.",
            sqlite_path(config.download_dir),
        )


def _share_request_state(server: MCPServer[Any], keys: Sequence[str]) -> None:
    """Seal 2026-era ``requestState`` with the operator's keys instead of the SDK's key made at start, which
    no other replica has: a delete confirmed on one replica would be refused by another."""
    middleware = server._lowlevel_server.middleware
    for index, boundary in enumerate(middleware):
        if isinstance(boundary, RequestStateBoundary):
            shared = RequestStateSecurity(keys=list(keys))
            middleware[index] = RequestStateBoundary(shared, default_audience=server.name)
            return
    raise RuntimeError("the MCP SDK installed no request-state boundary to give the shared key to")


async def _read_body(receive: Receive) -> tuple[bytes, Receive] | None:
    """The whole request body (the SDK's size limit applies as it is read), and a ``receive`` that hands it
    on once and then waits for the client's disconnect as the original would."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return body, replay


def _initialize_params(body: bytes) -> Mapping[str, Any] | None:
    try:
        message = json.loads(body)
    except ValueError:
        return None  # the transport answers a parse error
    if isinstance(message, dict) and message.get("method") == "initialize":
        params = message.get("params")
        return params if isinstance(params, dict) else {}
    return None


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.lower().encode()
    for key, value in scope.get("headers") or []:
        if key == wanted:
            return bytes(value).decode("latin-1")
    return None


async def _error(send: Send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await json_answer(
        send, status, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}, headers
    )
