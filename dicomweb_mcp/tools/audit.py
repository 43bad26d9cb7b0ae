"""The audit trail: who called which tool on which server, what it touched, and how it ended.

One JSON line per tool call (``DICOMWEB_AUDIT_LOG``), written before the result is returned: a call whose
line cannot be written is refused, and a server whose file cannot be written does not start. What goes in
a line is named here, as data: a few argument fields, and the UIDs, patient IDs, counts and bytes found in
the result by their field names. Arguments are never written whole, so no secret an agent passes (or a
path, or a query) reaches the file.

The user is the OAuth token's subject and name when the SDK's authentication is on (over HTTP), else the
operating-system user running the server (stdio, or HTTP with the static token, which names nobody).
Calls that change an archive (store, transfer, delete) get a line before they start too, so that one
cut short, or whose outcome line cannot be written, is still on record.
"""

from __future__ import annotations

import functools
import getpass
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult
from pydantic import ValidationError

from .. import __version__
from ..config import Config
from ..errors import ConfigError, DicomWebError, InvalidInputError, PolicyError
from ..files.audit import AuditLog
from .refusals import ToolCrash

__all__ = ["Audit", "open_audit"]

log = logging.getLogger("dicomweb_mcp")

# The arguments recorded, under the line's field: UIDs the call names, and the servers it uses.
ARGUMENT_FIELDS = {
    "study_uid": "study_uids",
    "study_uids": "study_uids",  # a cohort job's studies
    "series_uid": "series_uids",
    "instance_uid": "instance_uids",
}
SERVER_ARGUMENTS = ("server", "source", "destination")
# Result fields at any depth ("parent.key": a key of an object under parent) that hold UIDs or patient IDs.
RESULT_FIELDS = {
    "study_uid": "study_uids",
    "study_uids": "study_uids",
    "StudyInstanceUID": "study_uids",
    "series_uid": "series_uids",
    "SeriesInstanceUID": "series_uids",
    "instance_uid": "instance_uids",
    "SOPInstanceUID": "instance_uids",
    "instances.uid": "instance_uids",
    "patient_id": "patient_ids",
    "PatientID": "patient_ids",
    "patient.id": "patient_ids",
}
LISTS = ("study_uids", "series_uids", "instance_uids", "patient_ids")
# Numbers at the top of a result, under the name the line gives them ("counts" is copied whole).
RESULT_COUNTS = {
    "returned": "results",
    "file_count": "files",
    "frame_count": "frames",
    "instance_count": "instances",
}
RESULT_BYTES = ("total_bytes", "size_bytes")
# Tools that change an archive: recorded when they start as well as when they end.
CHANGES_ARCHIVE = frozenset({"store_instances", "transfer_instances", "delete_instances", "start_cohort"})
# Bounds on what a line holds: an argument is the caller's text, and a result may list thousands of UIDs.
MAX_TEXT = 128
MAX_REASON = 2000
MAX_LISTED = 1000
_CLAIMS_FOR_NAME = ("name", "preferred_username", "upn", "email")

ToolCall = Callable[[str, dict[str, Any], "Context[Any, Any] | None"], Awaitable[Any]]


def open_audit(config: Config) -> Audit | None:
    """The audit trail ``config`` asks for, its file checked and a start line written; ``ConfigError``
    naming the file and the reason when it cannot be written (the server must not start then)."""
    if config.audit_log is None:
        return None
    writer = AuditLog(config.audit_log, max_bytes=config.audit_max_bytes, keep=config.audit_keep)
    audit = Audit(writer, config.server.name)
    try:
        writer.check()
        writer.write(
            line(
                {
                    "time": now(),
                    "event": "server_start",
                    "user": os_user(),
                    "version": __version__,
                    "pid": os.getpid(),
                    "servers": list(config.named),
                }
            )
        )
    except OSError as exc:
        raise ConfigError(
            f"DICOMWEB_AUDIT_LOG {str(config.audit_log)!r} cannot be written: {_reason(exc)}. Create its "
            "directory and let this user write there, or unset DICOMWEB_AUDIT_LOG; the server does not start "
            "without the audit trail it was told to keep."
        ) from None
    return audit


class Audit:
    """Records every tool call through ``record``; ``default_server`` is the one a call names by omission."""

    def __init__(self, writer: AuditLog, default_server: str) -> None:
        self.writer = writer
        self.default_server = default_server

    async def record(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None, call: ToolCall
    ) -> Any:
        """``call`` made and its line written before its result (or error) is returned."""
        started = time.monotonic()
        entry = {
            "time": now(),
            "event": "call",
            "id": os.urandom(8).hex(),  # pairs a change's call_start line with its call line
            "user": user(),
            "client": client(context),
            "tool": name,
            **servers(arguments, self.default_server),
            **argument_uids(arguments),
        }
        if name in CHANGES_ARCHIVE:
            self._write({**entry, "event": "call_start"}, name, done=False)
        try:
            result = await call(name, arguments, context)
        except ToolError as exc:
            self._write(finished(entry, started, outcome(exc), reason=str(exc)), name, done=False, cause=exc)
            raise
        except Exception as exc:  # the SDK's protocol errors: recorded, then on their way
            self._write(finished(entry, started, "error", reason=str(exc)), name, done=False, cause=exc)
            raise
        except BaseException:
            # A cancelled call (the client gave up, or shutdown): on record if the file allows, then on.
            try:
                self.writer.write(line(finished(entry, started, "error", reason="cancelled")))
            except OSError as exc:
                log.error("audit log %s could not be written: %s", self.writer.path, _reason(exc))
            raise
        ended, reason = result_outcome(result)
        self._write(finished(entry, started, ended, reason=reason, result=result), name, done=True)
        return result

    def _write(
        self, entry: Mapping[str, Any], tool: str, *, done: bool, cause: BaseException | None = None
    ) -> None:
        try:
            self.writer.write(line(entry))
        except OSError as exc:
            log.error("audit log %s could not be written: %s", self.writer.path, _reason(exc))
            if entry.get("event") == "call_start":
                what = "it was not run"
            elif done:
                what = "it ran, but its result is withheld"
            else:
                what = "it ended in an error, not returned either"
            raise ToolError(
                f"{tool} was refused: the audit log could not be written ({_reason(exc)}), and every call "
                f"must be recorded; {what}. The operator must make DICOMWEB_AUDIT_LOG "
                f"({self.writer.path}) writable again."
            ) from cause or exc


def line(entry: Mapping[str, Any]) -> bytes:
    """One JSON line: compact, ASCII only (a terminal or grep shows it as it is), newline-terminated."""
    return (json.dumps(entry, separators=(",", ":"), ensure_ascii=True, default=str) + "\n").encode()


def now() -> str:
    """UTC, ISO 8601, milliseconds: 2025-01-31T09:15:02.345Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def finished(
    entry: Mapping[str, Any],
    started: float,
    ended: str,
    *,
    reason: str | None = None,
    result: Any = None,
) -> dict[str, Any]:
    """The call's line once it ended: its outcome, what its result names and counts, its duration."""
    done = {**entry, "outcome": ended}
    if reason is not None:
        done["reason"] = reason[:MAX_REASON]
    structured = result.structured_content if isinstance(result, CallToolResult) else None
    if isinstance(structured, Mapping):
        found = result_fields(structured)
        for field in LISTS:
            values = list(dict.fromkeys([*done.get(field, []), *found[field]]))
            done[field] = values[:MAX_LISTED]
            if len(values) > MAX_LISTED:
                done[f"{field}_omitted"] = len(values) - MAX_LISTED
        done.update(result_counts(structured))
    done["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    return done


def result_outcome(result: Any) -> tuple[str, str | None]:
    """``ok``, or ``error`` for a result marked as one, or ``input_required`` while the client is asked
    (a delete's confirmation, in the stateless protocol era: the call comes again with the answer)."""
    if isinstance(result, CallToolResult):
        if result.is_error:
            return "error", " ".join(getattr(b, "text", "") for b in result.content)
        return "ok", None
    return "input_required", None


def outcome(exc: ToolError) -> str:
    """``refused`` for what the caller can change (a policy, an invalid argument, an unknown tool, a
    declined confirmation); ``error`` for what failed (the archive, the disk, a fault here)."""
    if isinstance(exc, ToolCrash):
        return "error"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, PolicyError | InvalidInputError | ValidationError):
            return "refused"
        if isinstance(cause, DicomWebError | OSError) or not isinstance(cause, ToolError):
            return "error"
        cause = cause.__cause__
    return "refused"  # only the tools' own refusals, all the way down


def servers(arguments: Mapping[str, Any], default: str) -> dict[str, str]:
    """The named servers a call uses: ``server`` (the default when none is named), or a transfer's two."""
    named = {key: _text(arguments[key]) for key in SERVER_ARGUMENTS if isinstance(arguments.get(key), str)}
    if "source" in named or "destination" in named:
        return named
    return {"server": named.get("server", default)}


def argument_uids(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The UID lists of a line, filled from the arguments that name UIDs (and only those), each at most
    ``MAX_LISTED`` long (a cohort names up to 10,000 studies)."""
    uids: dict[str, Any] = {field: [] for field in LISTS}
    for argument, field in ARGUMENT_FIELDS.items():
        value = arguments.get(argument)
        if isinstance(value, str) and value:
            uids[field].append(_text(value))
        elif isinstance(value, list):
            uids[field].extend(_text(item) for item in value if isinstance(item, str) and item)
    for field in LISTS:
        if len(uids[field]) > MAX_LISTED:
            uids[f"{field}_omitted"] = len(uids[field]) - MAX_LISTED
            uids[field] = uids[field][:MAX_LISTED]
    return uids


def result_fields(result: Mapping[str, Any]) -> dict[str, list[str]]:
    """The UIDs and patient IDs a result holds, by the field names in ``RESULT_FIELDS``, in order, once."""
    found: dict[str, dict[str, None]] = {field: {} for field in LISTS}

    def walk(value: Any, parent: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                field = RESULT_FIELDS.get(f"{parent}.{key}") or RESULT_FIELDS.get(str(key))
                if field is not None:
                    for text in item if isinstance(item, list) else [item]:
                        if isinstance(text, str) and text:
                            found[field][_text(text)] = None
                else:
                    walk(item, str(key))
        elif isinstance(value, list):
            for item in value:
                walk(item, parent)

    walk(result, "")
    return {field: list(values) for field, values in found.items()}


def result_counts(result: Mapping[str, Any]) -> dict[str, Any]:
    """The counts and bytes at the top of a result, under the line's names."""
    counts = {name: result[key] for key, name in RESULT_COUNTS.items() if isinstance(result.get(key), int)}
    nested = result.get("counts")
    if isinstance(nested, Mapping):
        counts.update({str(k): v for k, v in nested.items() if isinstance(v, int)})
    found: dict[str, Any] = {"counts": counts} if counts else {}
    size = next((result[key] for key in RESULT_BYTES if isinstance(result.get(key), int)), None)
    if size is not None:
        found["bytes"] = size
    return found


def user() -> dict[str, str]:
    """The person: the OAuth token's subject and name when the request carried one, else the OS user. The
    SDK hands each message's handler the context of the request that brought it, token included."""
    token = get_access_token()
    if token is None:
        return os_user()
    claims = token.claims or {}
    name = next((claims[c] for c in _CLAIMS_FOR_NAME if isinstance(claims.get(c), str)), None)
    found = {
        "source": "oauth",
        "subject": token.subject,
        "name": name,
        "client_id": token.client_id,
        "issuer": claims.get("iss") if isinstance(claims.get("iss"), str) else None,
    }
    return {key: _text(value) for key, value in found.items() if value}


@functools.cache  # the process's user does not change
def os_user() -> dict[str, str]:
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        name = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return {"source": "os", "name": name}


def client(context: Context[Any, Any] | None) -> dict[str, str]:
    """The MCP client's name and version from its handshake (or request envelope), and over HTTP the
    address the request came from."""
    found: dict[str, str] = {}
    request_context = getattr(context, "_request_context", None)
    if request_context is None:
        return found
    params = getattr(request_context.session, "client_params", None)
    info = getattr(params, "client_info", None)
    if info is not None:
        found["name"] = _text(info.name)
        if info.version:
            found["version"] = _text(info.version)
    peer = getattr(request_context.request, "client", None)  # a Starlette request's (host, port)
    if peer is not None and getattr(peer, "host", None):
        found["address"] = _text(peer.host)
    return found


def _text(value: Any) -> str:
    return str(value)[:MAX_TEXT]


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
