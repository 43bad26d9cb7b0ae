"""The MCP server: the tool functions registered by policy, and errors that teach.

Store and delete exist only when the operator allows them. An unknown tool or a bad argument gets an
answer that names what exists: the tools, the valid arguments, the setting that enables a tool.
"""

from __future__ import annotations

import functools
import gc
import importlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.apps import Apps, client_supports_apps
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import (
    CallToolResult,
    NotificationParams,
    TextContent,
    ToolAnnotations,
)
from mcp.types import Tool as MCPTool
from pydantic import ConfigDict, ValidationError

from .. import __version__
from ..config import Config
from ..dicomweb.auth import TokenCredential
from ..dicomweb.client import DicomWebClient
from ..dicomweb.transport import BaseTransport
from ..errors import DicomWebError, local_file_error
from ..files.store import FileStore
from .audit import Audit, open_audit
from .cohort import cohort_status, start_cohort
from .cohort_runner import CohortJobs
from .context import Archive, ToolContext
from .deidentification import sweep_spools
from .listing import ListedPerClient, app_only, scope_refusal, shown
from .look import get_study_overview, read_report, retrieve_rendered
from .obo import caller_auths
from .refusals import ToolCrash, argument_error_message, crash_message, unknown_tool_message
from .retrieve import retrieve_frames, retrieve_instances, retrieve_metadata
from .schema import lean_input_schema
from .scopes import TOOL_SCOPES
from .search import search_instances, search_series, search_studies
from .viewer import VIEWER_URI, viewer_frame, viewer_html, viewer_series
from .write import delete_instances, get_change_feed, server_info, store_instances, transfer_instances

__all__ = ["INSTRUCTIONS", "TOOL_SCOPES", "build_server"]

log = logging.getLogger("dicomweb_mcp")

INSTRUCTIONS = """\
Tools for a DICOMweb medical imaging archive (PACS / vendor neutral archive).
Workflow: search_studies finds a study; get_study_overview lists its series and reports in one call
(show=true adds a contact sheet to look at); retrieve_rendered shows one image, sized and windowed
(window=lung, bone, ...); read_report reads an SR or PDF report as text. Retrieved instances, frames and
full metadata are saved as files under the download directory and the tools return their paths.
Search results are summaries (patient, dates, modalities, counts); page with offset/next_offset.
Dates are YYYYMMDD or YYYY-MM-DD, ranges as 20200101-20201231. Names may use * and ? wildcards.
store_instances uploads local DICOM files; delete_instances (only when the operator enabled it) deletes
permanently. server_info says which server this is and what it supports. start_cohort copies many
studies as a background job (cohort_status follows it).
"""

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)
# Reads from the archive that write files under the download directory: not read-only for a host.
SAVES_FILES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)
STORE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)
# A job copies studies (to a server, or to files); each call starts another one.
JOB = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
# Reads a job's state, or cancels it.
JOB_STATUS = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
DELETE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True
)

# Methods the SDK serves by default although this server has no prompts or resources: unserved, they are
# not advertised in the capabilities either.
_UNUSED_METHODS = (
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    # The one resource (the viewer's page) never changes: nothing to subscribe to.
    "resources/subscribe",
    "resources/unsubscribe",
)


class DicomWebMCPServer(ListedPerClient):
    """MCPServer whose refusals say what would have worked, and whose tools' errors reach the agent in
    words; served on stdio in both protocol eras."""

    audit: Audit | None = None  # the operator's audit trail (DICOMWEB_AUDIT_LOG), set by build_server

    async def serve_stdio(self) -> None:
        """Serve stdin/stdout in both protocol eras: see tools/stdio.py for why not the SDK's own loop."""
        from .stdio import serve_stdio

        await serve_stdio(self._lowlevel_server)

    async def list_tools(self) -> list[MCPTool]:
        warm_first_call()
        return await super().list_tools()

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[ToolContext, Any] | None = None
    ) -> Any:
        if self.audit is not None:
            # Every call, refusals included, is recorded before its result or error is returned.
            return await self.audit.record(name, arguments, context, self._call_tool)
        return await self._call_tool(name, arguments, context)

    async def _call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[ToolContext, Any] | None
    ) -> Any:
        tool = self._tool_manager.get_tool(name)
        apps = context is not None and context._request_context is not None and client_supports_apps(context)
        if tool is not None and app_only(tool.meta) and not apps:
            raise ToolError(
                f"{name} is called by the study viewer that get_study_overview opens in hosts that render "
                "MCP Apps, not by the model: this client did not negotiate the extension "
                "(io.modelcontextprotocol/ui). Look at an image with retrieve_rendered."
            )
        if tool is None:
            listed = [t.name for t in self._tool_manager.list_tools() if shown(t.name, t.meta, apps)]
            raise ToolError(unknown_tool_message(name, listed))
        refusal = scope_refusal(name)
        if refusal:
            raise ToolError(refusal)
        try:
            result = await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            # The package's errors say what went wrong and what to do: the agent reads them (the SDK would
            # hide them as a crash). Other exceptions stay hidden.
            if isinstance(cause, DicomWebError | OSError):
                error = local_file_error(cause) if isinstance(cause, OSError) else cause
                raise ToolError(f"Error executing tool {name}: {error}") from cause
            # Only the arguments' own validation: a validation error inside a tool is a crash, not bad input.
            if (
                type(exc) is ToolError
                and isinstance(cause, ValidationError)
                and cause.title == tool.fn_metadata.arg_model.__name__
            ):
                raise ToolError(argument_error_message(tool, cause)) from cause
            if isinstance(exc, UnexpectedToolError) and cause is not None:
                # The last guard: the SDK's bare "Error executing tool X" tells nobody anything.
                log.error("%s failed: unexpected %s", name, type(cause).__name__, exc_info=cause)
                raise ToolCrash(crash_message(name, cause)) from cause
            raise
        return _compact_text(result)


# What a session's first call would otherwise load while the user waits (start-up defers them so that a
# host gets its initialize answer sooner): the DICOM dictionary, the pixel pipeline, the picture codecs,
# de-identification and PDF text.
_FIRST_CALL_MODULES = (
    "pydicom.datadict",
    "pydicom.pixels",
    "pydicom.pixels.decoders.base",
    "numpy",
    "PIL.Image",
    "PIL.ImageDraw",
    "pypdf",
    "dicomweb_mcp.dicom.deidentify",
    "dicomweb_mcp.files.pseudonyms",
    "dicomweb_mcp.imaging.render",
    "dicomweb_mcp.imaging.sheet",
)


@functools.cache  # once per process
def warm_first_call() -> None:
    """Load, once per process and in a background thread, what a first tool call would load. Started
    after the handshake (the initialized notification, or the first tool list of a client that sends
    none), so the initialize answer is never delayed; a call that arrives sooner simply waits for the
    module it needs, as it would have loaded it anyway."""

    def load() -> None:
        for name in _FIRST_CALL_MODULES:
            try:
                importlib.import_module(name)
            except Exception as exc:  # a missing optional part is met, and reported, by the call needing it
                log.debug("preloading %s failed: %s", name, type(exc).__name__)
        # What was loaded lives as long as the process: the collector need not scan it at every call.
        gc.freeze()

    threading.Thread(target=load, name="dicomweb-mcp-warm", daemon=True).start()


def _compact_text(result: Any) -> Any:
    """Most hosts show the model the text block, not the structured content: make it the same facts as
    compact JSON (the SDK writes it indented, a third more bytes on every result)."""
    if isinstance(result, CallToolResult) and result.structured_content is not None:
        blocks = [b for b in result.content if isinstance(b, TextContent)]
        if len(blocks) == 1:
            compact = json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False)
            content = [
                TextContent(type="text", text=compact) if b is blocks[0] else b for b in result.content
            ]
            return result.model_copy(update={"content": content})
    return result


def build_server(
    config: Config,
    *,
    credentials: Mapping[str, TokenCredential] | None = None,
    transports: Mapping[str, BaseTransport] | None = None,
) -> DicomWebMCPServer:
    """The MCP server for ``config`` and its named servers. Store exists only when some server is
    writable, delete only when some server allows it. ``credentials`` and ``transports`` replace, by
    server name, the Azure credential and the HTTP transport a server's client would make (tests)."""
    servers = config.named
    # Before anything else: a server told to keep an audit trail it cannot write does not start.
    audit = open_audit(config)
    acting = caller_auths(config)  # servers that act as each caller: their flows, made (and checked) now

    @asynccontextmanager
    async def lifespan(server: MCPServer[ToolContext]) -> AsyncIterator[ToolContext]:
        async with AsyncExitStack() as stack, anyio.create_task_group() as background:
            archives: dict[str, Archive] = {}
            for name, settings in servers.items():
                client = await stack.enter_async_context(
                    DicomWebClient(
                        settings,
                        credential=(credentials or {}).get(name),
                        transport=(transports or {}).get(name),
                        auth=acting.get(name),
                    )
                )
                # While the host is still shaking hands, learn each server's kind and open a connection: the
                # first tool call then costs what a later one does, not two round trips more.
                background.start_soon(client.warm_up)
                archives[name] = Archive(settings, client)
            # Spools a crashed process left hold source files: removed once unused for an hour.
            background.start_soon(sweep_spools, config.download_dir)
            store = FileStore(config.download_dir)
            # Cohort jobs left unfinished by an earlier process resume in the background.
            jobs = CohortJobs(ToolContext(archives, store, config))
            await background.start(jobs.run)
            yield ToolContext(archives, store, config, jobs)
            background.cancel_scope.cancel()

    # The study viewer, for hosts that render MCP Apps: get_study_overview opens it, and it calls its own
    # two tools (hidden from the model).
    opens_viewer = {"ui": {"resourceUri": VIEWER_URI}} if config.apps else None
    for_the_app = {"ui": {"resourceUri": VIEWER_URI, "visibility": ["app"]}}
    specs: list[tuple[Callable[..., Any], str, ToolAnnotations, dict[str, Any] | None]] = [
        (search_studies, "Search studies", READ_ONLY, None),
        (get_study_overview, "Study overview", SAVES_FILES, opens_viewer),
        (search_series, "Search series", READ_ONLY, None),
        (search_instances, "Search instances", READ_ONLY, None),
        (retrieve_instances, "Retrieve instances", SAVES_FILES, None),
        (retrieve_metadata, "Retrieve metadata", SAVES_FILES, None),
        (retrieve_frames, "Retrieve frames", SAVES_FILES, None),
        (retrieve_rendered, "Retrieve rendered image", SAVES_FILES, None),
        (read_report, "Read a report", SAVES_FILES, None),
        (get_change_feed, "Read the change feed", READ_ONLY, None),
        (server_info, "Server info", READ_ONLY, None),
        (start_cohort, "Start a cohort job", JOB, None),
        (cohort_status, "Cohort job status", JOB_STATUS, None),
    ]
    if any(not settings.read_only for settings in servers.values()):
        specs.append((store_instances, "Store instances", STORE, None))
    if len(servers) > 1 and any(not settings.read_only for settings in servers.values()):
        specs.append((transfer_instances, "Transfer instances", STORE, None))
    if any(settings.delete_enabled for settings in servers.values()):
        specs.append((delete_instances, "Delete instances", DELETE, None))
    extensions: list[Apps] = []
    if config.apps:
        specs.append((viewer_series, "Viewer: series", READ_ONLY, for_the_app))
        specs.append((viewer_frame, "Viewer: frame", READ_ONLY, for_the_app))
        apps = Apps()
        apps.add_html_resource(VIEWER_URI, viewer_html(), name="viewer", title="Study viewer")
        extensions.append(apps)
    unmapped = [fn.__name__ for fn, *_ in specs if fn.__name__ not in TOOL_SCOPES]
    if unmapped:
        raise RuntimeError(f"no OAuth scope for {', '.join(unmapped)}: add them to TOOL_SCOPES")
    server = DicomWebMCPServer(
        "dicomweb-mcp",
        title="DICOMweb",
        version=__version__,
        instructions=INSTRUCTIONS + _servers_instructions(list(servers)),
        lifespan=lifespan,
        log_level=config.log_level,  # type: ignore[arg-type]
        tools=[
            _server_choices(
                _strict(Tool.from_function(fn, title=title, annotations=notes, meta=meta)), list(servers)
            )
            for fn, title, notes, meta in specs
        ],
        extensions=extensions,
    )
    server.audit = audit
    server._lowlevel_server.add_notification_handler(
        "notifications/initialized", NotificationParams, _initialized
    )
    handlers = getattr(getattr(server, "_lowlevel_server", None), "_request_handlers", None)
    if isinstance(handlers, dict):
        for method in _UNUSED_METHODS:
            # The viewer is a resource: with it, the resource methods are served.
            if not (extensions and method in ("resources/list", "resources/read")):
                handlers.pop(method, None)
    return server


async def _initialized(context: Any, params: NotificationParams) -> None:
    warm_first_call()


def _servers_instructions(names: list[str]) -> str:
    if len(names) < 2:
        return ""
    return (
        f"Servers: {', '.join(names)}; a tool uses {names[0]} unless its server argument names another. "
        "transfer_instances copies a study between them (deidentify=true: a de-identified copy, new UIDs).\n"
    )


# The arguments that name one of the operator's servers.
_SERVER_ARGUMENTS = ("server", "source", "destination")


def _server_choices(tool: Tool, names: list[str]) -> Tool:
    """List the configured servers as an enum in the published schema, so a model picks a name the operator
    gave; with one server the argument is left out of the schema (still accepted), saving its bytes on every
    turn. Validation against the names happens when the tool runs."""
    properties: dict[str, Any] = tool.parameters.get("properties", {})
    for argument in _SERVER_ARGUMENTS:
        if argument not in properties:
            continue
        if len(names) == 1 and argument not in tool.parameters.get("required", []):
            del properties[argument]
        else:
            properties[argument] = {**properties[argument], "type": "string", "enum": names}
    return tool


def _strict(tool: Tool) -> Tool:
    """Refuse unknown arguments at run time: an agent that misnames one (patient_id on search_instances)
    must be told, not given a wider search than it asked for. The published schema stays lean."""
    lenient = tool.fn_metadata.arg_model
    strict = type(
        lenient.__name__, (lenient,), {"model_config": ConfigDict(**lenient.model_config, extra="forbid")}
    )
    tool.fn_metadata.arg_model = strict
    tool.parameters = lean_input_schema(tool.parameters)
    # A docstring's line breaks and indentation are bytes every host pays on every turn.
    tool.description = " ".join((tool.description or "").split())
    return tool
