"""What every tool works with: the operator's named servers, the file store, and the policy on each.

A tool is a plain async function whose first parameter is the ``ToolContext``: the MCP SDK fills it from
the server's lifespan state (``Resolve``), and tests pass one they built. The read-only and delete
policy is checked here, in ``ToolContext.archive``, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import Context, Resolve

from ..config import Config, ServerConfig
from ..dicomweb.client import DicomWebClient
from ..errors import InvalidInputError, PolicyError
from ..files.store import FileStore

if TYPE_CHECKING:
    from .cohort_runner import CohortJobs

__all__ = ["App", "Archive", "Progress", "Reporter", "ToolContext", "no_progress"]

# done, total (None when unknown), message
Progress = Callable[[float, float | None, str], Awaitable[None]]
# What a tool is about to do to a server: the policy differs for each.
Use = Literal["read", "store", "delete"]


async def no_progress(done: float, total: float | None, message: str) -> None:
    return None


@dataclass(frozen=True)
class Archive:
    """One of the operator's named servers: its settings and the client that talks to it."""

    config: ServerConfig
    client: DicomWebClient

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class ToolContext:
    archives: Mapping[str, Archive]  # by name, the default first
    store: FileStore
    config: Config  # the process's settings (download directory, upload roots, de-identification)
    jobs: CohortJobs | None = None  # the server's cohort job runner (None: a tool called directly)

    def archive(self, name: str | None, use: Use = "read") -> Archive:
        """The named server (the first one when none is named), refused when the operator's policy does
        not allow ``use`` on it."""
        archive = next(iter(self.archives.values())) if name is None else self.archives.get(name)
        if archive is None:
            raise InvalidInputError(
                f"There is no server named {name!r}: the servers are {', '.join(self.archives)}."
            )
        config = archive.config
        if use == "store" and config.read_only:
            raise PolicyError(
                f"Server {config.name!r} is read-only: nothing can be stored there (the operator's "
                "read_only setting). Choose a writable server."
            )
        if use == "delete" and not config.delete_enabled:
            raise PolicyError(
                f"Deletion is switched off for server {config.name!r}: the operator allows it with "
                "allow_delete = true (and read_only = false) for that server."
            )
        return archive


# Async, so that the SDK calls them in place: a plain function would cost a worker-thread hop each.
async def _tool_context(ctx: Context[ToolContext, Any]) -> ToolContext:
    return ctx.request_context.lifespan_context


async def _reporter(ctx: Context[ToolContext, Any]) -> Progress:
    return ctx.report_progress


# Parameters the SDK fills (hidden from the input schema); a test passes the values itself.
App = Annotated[ToolContext, Resolve(_tool_context)]
Reporter = Annotated[Progress, Resolve(_reporter)]
