"""Configuration from environment variables.

A ``Config`` is immutable and never shows a secret in its repr, so it can be logged and echoed safely.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["DEFAULT_AZURE_SCOPE", "AuthMode", "Config", "ServerKind"]

DEFAULT_AZURE_SCOPE = "https://dicom.healthcareapis.azure.com/.default"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 3
# Requests in flight at once for one store (batches) or one retrieve (series): over a WAN each connection
# runs at its own rate, so a study's 8 series in parallel arrive up to 8 times sooner; few enough not to
# look like a flood to a remote archive, and within the pool's 10 connections.
DEFAULT_CONCURRENCY = 8
AZURE_HOST_SUFFIX = ".azurehealthcareapis.com"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def default_download_dir() -> Path:
    """Per user and absolute, so it does not depend on the directory a host happens to start us in."""
    return Path.home() / "dicomweb-downloads"


class AuthMode(StrEnum):
    NONE = "none"
    BASIC = "basic"
    BEARER = "bearer"
    AZURE = "azure"


class ServerKind(StrEnum):
    AUTO = "auto"
    AZURE = "azure"
    ORTHANC = "orthanc"
    DCM4CHEE = "dcm4chee"
    GOOGLE = "google"
    GENERIC = "generic"


_E = TypeVar("_E", bound=StrEnum)

_SECRET_FIELDS = frozenset({"password", "token", "mcp_token"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Config:
    url: str
    auth: AuthMode = AuthMode.NONE
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    azure_scope: str = DEFAULT_AZURE_SCOPE
    server_kind: ServerKind = ServerKind.AUTO
    partition: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    download_dir: Path = field(default_factory=default_download_dir)
    read_only: bool = False
    allow_delete: bool = False
    max_retries: int = DEFAULT_MAX_RETRIES
    concurrency: int = DEFAULT_CONCURRENCY
    upload_roots: tuple[Path, ...] = ()
    mcp_token: str | None = field(default=None, repr=False)
    # HTTP transport: extra Host names (a public bind) and browser Origins (a web-based host) to accept.
    mcp_allowed_hosts: tuple[str, ...] = ()
    mcp_allowed_origins: tuple[str, ...] = ()
    log_level: str = "WARNING"

    def __post_init__(self) -> None:
        # Accept plain strings and str paths from code callers too; the fields are enums and a Path.
        object.__setattr__(self, "auth", _enum(AuthMode, "auth", str(self.auth)))
        object.__setattr__(self, "server_kind", _enum(ServerKind, "server_kind", str(self.server_kind)))
        object.__setattr__(self, "download_dir", Path(self.download_dir))
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"DICOMWEB_URL {self.url!r} is not an http(s) URL: set it to the DICOMweb root, for example "
                "http://localhost:8042/dicom-web or https://<workspace>-<service>.dicom.azurehealthcareapis.com/v2"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"DICOMWEB_URL must not contain a query or fragment: {self.base_url}")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        if self.auth is AuthMode.BASIC and (not self.username or self.password is None):
            raise ConfigError("DICOMWEB_AUTH=basic needs DICOMWEB_USERNAME and DICOMWEB_PASSWORD.")
        if self.auth is AuthMode.BEARER and not self.token:
            raise ConfigError("DICOMWEB_AUTH=bearer needs DICOMWEB_TOKEN.")
        if not 1 <= self.concurrency <= 64:
            raise ConfigError(f"DICOMWEB_CONCURRENCY must be between 1 and 64, not {self.concurrency}.")
        if self.max_retries < 0:
            raise ConfigError(f"DICOMWEB_MAX_RETRIES must be 0 or more, not {self.max_retries}.")
        if not self.timeout > 0:
            raise ConfigError(f"DICOMWEB_TIMEOUT must be a positive number of seconds, not {self.timeout}.")
        if self.partition is not None and (not self.partition or "/" in self.partition):
            raise ConfigError(f"DICOMWEB_PARTITION {self.partition!r} is not a partition name.")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"DICOMWEB_LOG_LEVEL {self.log_level!r} is not one of {'|'.join(LOG_LEVELS)}.")
        object.__setattr__(self, "log_level", self.log_level.upper())

    @property
    def base_url(self) -> str:
        """The URL without user info, for messages: credentials in a URL must never be echoed."""
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}{parts.path}"

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS:
                shown.append(f"{f.name}={'***' if value else None}")
            elif f.name == "url":
                shown.append(f"url={self.base_url!r}")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"Config({', '.join(shown)})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the ``DICOMWEB_*`` variables; raise ``ConfigError`` naming the variable that is wrong."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value is not None and value.strip() else None

        url = get("DICOMWEB_URL")
        if not url:
            raise ConfigError(
                "DICOMWEB_URL is not set: set it to the DICOMweb root URL of your server, for example "
                "http://localhost:8042/dicom-web (Orthanc) or https://<workspace>-<service>.dicom."
                "azurehealthcareapis.com/v2 (Azure)."
            )
        is_azure = (urlsplit(url).hostname or "").endswith(AZURE_HOST_SUFFIX)
        auth = _enum(AuthMode, "DICOMWEB_AUTH", get("DICOMWEB_AUTH") or ("azure" if is_azure else "none"))
        kind = _enum(ServerKind, "DICOMWEB_SERVER_KIND", get("DICOMWEB_SERVER_KIND") or "auto")
        timeout_text = get("DICOMWEB_TIMEOUT")
        try:
            timeout = float(timeout_text) if timeout_text else DEFAULT_TIMEOUT
        except ValueError:
            raise ConfigError(f"DICOMWEB_TIMEOUT {timeout_text!r} is not a number of seconds.") from None
        retries_text = get("DICOMWEB_MAX_RETRIES")
        if retries_text is not None and not retries_text.isdigit():
            raise ConfigError(
                f"DICOMWEB_MAX_RETRIES {retries_text!r} is not a whole number (0 turns retries off)."
            )
        concurrency_text = get("DICOMWEB_CONCURRENCY")
        if concurrency_text is not None and not concurrency_text.isdigit():
            raise ConfigError(f"DICOMWEB_CONCURRENCY {concurrency_text!r} is not a whole number (1 to 64).")
        download = get("DICOMWEB_DOWNLOAD_DIR")
        return cls(
            url=url,
            auth=auth,
            username=get("DICOMWEB_USERNAME"),
            password=env.get("DICOMWEB_PASSWORD") or None,
            token=get("DICOMWEB_TOKEN"),
            azure_scope=get("DICOMWEB_AZURE_SCOPE") or DEFAULT_AZURE_SCOPE,
            server_kind=kind,
            partition=get("DICOMWEB_PARTITION"),
            timeout=timeout,
            download_dir=(Path(download).expanduser() if download else default_download_dir()).absolute(),
            read_only=_flag(env, "DICOMWEB_READ_ONLY"),
            allow_delete=_flag(env, "DICOMWEB_ALLOW_DELETE"),
            max_retries=int(retries_text) if retries_text is not None else DEFAULT_MAX_RETRIES,
            concurrency=int(concurrency_text) if concurrency_text is not None else DEFAULT_CONCURRENCY,
            mcp_token=get("DICOMWEB_MCP_TOKEN"),
            upload_roots=tuple(
                Path(p).expanduser().absolute()
                for p in (get("DICOMWEB_UPLOAD_ROOTS") or "").split(os.pathsep)
                if p
            ),
            mcp_allowed_hosts=_names(get("DICOMWEB_MCP_ALLOWED_HOSTS")),
            mcp_allowed_origins=_names(get("DICOMWEB_MCP_ALLOWED_ORIGINS")),
            log_level=get("DICOMWEB_LOG_LEVEL") or "WARNING",
        )


def _enum(enum: type[_E], name: str, value: str) -> _E:
    try:
        return enum(value.lower())
    except ValueError:
        allowed = "|".join(member.value for member in enum)
        raise ConfigError(f"{name} {value!r} is not one of {allowed}.") from None


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in (value or "").split(",") if name.strip())


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = (env.get(name) or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} {value!r} is not a boolean: use true or false.")
