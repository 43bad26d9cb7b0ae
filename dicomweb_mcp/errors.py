"""One exception hierarchy for everything the DICOMweb client can report.

Each error carries a message written for the person (or agent) who must act on it: what failed, where,
what the server said, and what to do next. The MCP layer turns these into ``ToolError`` unchanged.
"""

from __future__ import annotations

import time
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "CredentialError",
    "DicomWebError",
    "HTTPStatusError",
    "InvalidInputError",
    "LocalFileError",
    "NotAcceptableError",
    "NotDicomError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PolicyError",
    "ProtocolError",
    "ServerError",
    "ServerUnreachableError",
    "ThrottledError",
    "UnsupportedMediaTypeError",
    "UnsupportedOperationError",
    "error_for_status",
    "local_file_error",
    "parse_retry_after",
]

# Server messages can be long HTML pages or stack traces; an agent needs the first line or two.
_MAX_SERVER_MESSAGE = 500


class DicomWebError(Exception):
    """Base of every error this package raises on purpose."""

    def add_detail(self, text: str) -> None:
        """Append what the caller knows (files kept, where the manifest is) while keeping the type, so
        callers can still catch the error by what it is."""
        self.args = (f"{self} {text}", *self.args[1:])

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(DicomWebError):
    """The configuration (environment variables) is missing or invalid."""


class InvalidInputError(DicomWebError, ValueError):
    """An argument was rejected before any request was sent (bad UID, date, keyword, path...)."""


class PolicyError(DicomWebError):
    """The operator's configuration does not allow this (a read-only server, deletion switched off)."""


class CredentialError(DicomWebError):
    """No token could be obtained from the configured credential (Azure sign-in missing or expired)."""


class UnsupportedOperationError(DicomWebError):
    """The server kind does not offer this operation (for example a change feed on Orthanc)."""


class ServerUnreachableError(DicomWebError):
    """No HTTP response: connection refused, DNS failure, TLS failure or timeout."""


class ProtocolError(DicomWebError):
    """The server answered, but with a body this client cannot understand (bad multipart, bad JSON)."""


class LocalFileError(DicomWebError):
    """A local file or directory could not be read or written (permissions, full disk, missing path)."""


class NotDicomError(DicomWebError):
    """Bytes that should be a DICOM Part 10 file are not one (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"not a usable DICOM file: {reason}")


class HTTPStatusError(DicomWebError):
    """The server answered with an error status."""

    hint = "Check the request and the server's log."
    # Seconds the server's Retry-After asked for, when it gave one: what a later attempt should wait.
    retry_after: float | None = None

    def __init__(
        self, operation: str, status_code: int, path: str, server_message: str = "", attempts: int = 1
    ) -> None:
        self.operation = operation
        self.status_code = status_code
        self.path = path
        self.server_message = server_message
        self.attempts = attempts
        said = f" Server said: {server_message}." if server_message else ""
        tried = f" (tried {attempts} times)" if attempts > 1 else ""
        super().__init__(f"{operation} failed: HTTP {status_code} at {path}{tried}.{said} {self.hint}")


class BadRequestError(HTTPStatusError):
    hint = (
        "The server rejected the request: check UIDs, dates and attribute names, and that the server "
        "supports this query attribute (Azure matches only a fixed set of attributes)."
    )


class AuthenticationError(HTTPStatusError):
    hint = (
        "The server needs valid credentials: set DICOMWEB_AUTH and the matching DICOMWEB_USERNAME/"
        "DICOMWEB_PASSWORD or DICOMWEB_TOKEN, or sign in for Azure (az login)."
    )


class PermissionDeniedError(HTTPStatusError):
    hint = (
        "The credentials are valid but not allowed to do this: ask the archive's administrator for the "
        "needed role (Azure: DICOM Data Owner for writes and deletes, DICOM Data Reader for reads)."
    )


class NotFoundError(HTTPStatusError):
    hint = "Nothing exists at this path: search first (search_studies/search_series/search_instances)."


class NotAcceptableError(HTTPStatusError):
    hint = (
        "The server cannot answer in the requested media type or transfer syntax: retry with "
        "transfer_syntax='*' (as stored) or another format."
    )


class ConflictError(HTTPStatusError):
    hint = "The request conflicts with what is stored (for example an instance that already exists)."


class PayloadTooLargeError(HTTPStatusError):
    hint = "The request or the result is too large for the server: send fewer files or narrow the query."


class UnsupportedMediaTypeError(HTTPStatusError):
    hint = "The server does not accept this content type (single-part STOW is Azure-only): use multipart."


class ThrottledError(HTTPStatusError):
    hint = (
        "The server is throttled or temporarily unavailable: wait a little and try again, or raise "
        "DICOMWEB_MAX_RETRIES."
    )


class ServerError(HTTPStatusError):
    hint = "The server failed internally: try again later, or check the server's log."


_BY_STATUS: dict[int, type[HTTPStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    406: NotAcceptableError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    429: ThrottledError,
    503: ThrottledError,  # Azure throttles with 503
}


def error_for_status(
    operation: str, status_code: int, path: str, body: bytes, attempts: int = 1
) -> HTTPStatusError:
    """Build the error for an HTTP error status, with the server's own message made readable."""
    cls = _BY_STATUS.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else HTTPStatusError
    return cls(operation, status_code, path, server_message(body), attempts)


def server_message(body: bytes) -> str:
    """The human part of an error body: Orthanc JSON (sent without Content-Type), Azure plain text, HTML."""
    import json

    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return ""
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(data, dict):
                # Orthanc: {"HttpError", "Message", "Details", "OrthancError", ...}
                parts = [str(data[k]) for k in ("Message", "Details", "OrthancError") if data.get(k)]
                if not parts:
                    parts = [str(v) for k, v in data.items() if k.lower() in ("message", "error", "detail")]
                if parts:
                    text = " - ".join(dict.fromkeys(parts))
    text = " ".join(text.split())
    if len(text) > _MAX_SERVER_MESSAGE:
        text = text[: _MAX_SERVER_MESSAGE - 3] + "..."
    return text


def local_file_error(exc: OSError, kept: str = "") -> LocalFileError:
    """A local read or write failure, said so that the operator knows which setting or path to fix."""
    import errno

    where = f" ({exc.filename})" if exc.filename else ""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        advice = "Free space on that disk, or set DICOMWEB_DOWNLOAD_DIR to a directory on a larger one."
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "Set DICOMWEB_DOWNLOAD_DIR to a directory this server may write to."
    elif exc.errno == errno.ENOENT:
        advice = "Check that the path exists (downloads go under DICOMWEB_DOWNLOAD_DIR)."
    else:
        advice = (
            "Check the path, its permissions and the free space (downloads go under DICOMWEB_DOWNLOAD_DIR)."
        )
    return LocalFileError(f"Could not read or write a local file{where}: {reason}. {kept}{advice}")


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT even when it does not say so
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())
