"""Configuration: the process's settings (``Config``) and each DICOMweb server's (``ServerConfig``).

Both are immutable and never show a secret in their repr, so they can be logged and echoed safely. The
server of the ``DICOMWEB_URL`` variables and those of the ``DICOMWEB_SERVERS`` file are read by one parser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["DEFAULT_AZURE_SCOPE", "DEFAULT_SERVER", "AuthMode", "Config", "ServerConfig", "ServerKind"]

DEFAULT_AZURE_SCOPE = "https://dicom.healthcareapis.azure.com/.default"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 3
# Requests in flight at once for one store (batches) or one retrieve (series): over a WAN each connection
# runs at its own rate; few enough not to look like a flood to a remote archive.
DEFAULT_CONCURRENCY = 8
AZURE_HOST_SUFFIX = ".azurehealthcareapis.com"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The name of the server the DICOMWEB_URL variables describe.
DEFAULT_SERVER = "default"
_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


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


def _repr(settings: Any) -> str:
    shown = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name in _SECRET_FIELDS:
            shown.append(f"{f.name}={'***' if value else None}")
        elif f.name == "url":
            shown.append(f"url={settings.base_url!r}")
        else:
            shown.append(f"{f.name}={value!r}")
    return f"{type(settings).__name__}({', '.join(shown)})"


@dataclass(frozen=True)
class ServerConfig:
    """One DICOMweb server: where it is, how to sign in, what it is, what the operator allows there, and
    how patiently to talk to it (the process-wide timeout, retries and concurrency)."""

    url: str
    name: str = DEFAULT_SERVER
    auth: AuthMode = AuthMode.NONE
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    azure_scope: str = DEFAULT_AZURE_SCOPE
    server_kind: ServerKind = ServerKind.AUTO
    partition: str | None = None
    read_only: bool = False
    allow_delete: bool = False
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    concurrency: int = DEFAULT_CONCURRENCY

    def __post_init__(self) -> None:
        if not _SERVER_NAME.match(self.name):
            raise ConfigError(
                f"Server name {self.name!r} is not usable: 1 to 32 letters, digits, '_', '-' or '.'."
            )
        # Accept plain strings from code callers too; the fields are enums.
        object.__setattr__(
            self, "auth", _enum(AuthMode, self._setting("DICOMWEB_AUTH", "auth"), str(self.auth))
        )
        kind_setting = self._setting("DICOMWEB_SERVER_KIND", "kind")
        object.__setattr__(self, "server_kind", _enum(ServerKind, kind_setting, str(self.server_kind)))
        url_setting, auth_setting = (
            self._setting("DICOMWEB_URL", "url"),
            self._setting("DICOMWEB_AUTH", "auth"),
        )
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{url_setting} {self.base_url!r} is not an http(s) URL: set it to the DICOMweb root, "
                "for example "
                "http://localhost:8042/dicom-web or https://<workspace>-<service>.dicom.azurehealthcareapis.com/v2"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"{url_setting} must not contain a query or fragment: {self.base_url}")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        if self.auth is AuthMode.BASIC and (not self.username or self.password is None):
            raise ConfigError(
                f"{auth_setting}=basic needs "
                f"{self._setting('DICOMWEB_USERNAME', 'username')} and "
                f"{self._setting('DICOMWEB_PASSWORD', 'password_env')}."
            )
        if self.auth is AuthMode.BEARER and not self.token:
            raise ConfigError(f"{auth_setting}=bearer needs {self._setting('DICOMWEB_TOKEN', 'token_env')}.")
        if self.partition is not None and (not self.partition or "/" in self.partition):
            setting = self._setting("DICOMWEB_PARTITION", "partition")
            raise ConfigError(f"{setting} {self.partition!r} is not a partition name.")
        if not 1 <= self.concurrency <= 64:
            raise ConfigError(f"DICOMWEB_CONCURRENCY must be between 1 and 64, not {self.concurrency}.")
        if self.max_retries < 0:
            raise ConfigError(f"DICOMWEB_MAX_RETRIES must be 0 or more, not {self.max_retries}.")
        if not self.timeout > 0:
            raise ConfigError(f"DICOMWEB_TIMEOUT must be a positive number of seconds, not {self.timeout}.")

    def _setting(self, variable: str, key: str) -> str:
        """What to call a setting in a message: its variable, or its key in the DICOMWEB_SERVERS file."""
        return variable if self.name == DEFAULT_SERVER else key

    @property
    def delete_enabled(self) -> bool:
        return self.allow_delete and not self.read_only

    @property
    def base_url(self) -> str:
        """The URL without user info, for messages: credentials in a URL must never be echoed."""
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}{parts.path}"

    def __repr__(self) -> str:
        return _repr(self)

    __str__ = __repr__


_SERVER_FIELDS = frozenset(f.name for f in fields(ServerConfig))


@dataclass(frozen=True)
class Config:
    """The process: the operator's servers (the first is the one a tool uses when none is named) and what
    every tool shares."""

    servers: tuple[ServerConfig, ...]
    download_dir: Path = field(default_factory=default_download_dir)
    upload_roots: tuple[Path, ...] = ()
    mcp_token: str | None = field(default=None, repr=False)
    # HTTP transport: extra Host names (a public bind) and browser Origins (a web-based host) to accept.
    mcp_allowed_hosts: tuple[str, ...] = ()
    mcp_allowed_origins: tuple[str, ...] = ()
    log_level: str = "WARNING"
    # De-identification (PS3.15 Basic Profile) options: shift dates per patient instead of removing them;
    # keep descriptions cleaned of identifying values instead of removing them.
    deidentify_modified_dates: bool = True
    deidentify_clean_descriptors: bool = True

    def __post_init__(self) -> None:
        if not self.servers:
            raise ConfigError("No server is configured: set DICOMWEB_URL or DICOMWEB_SERVERS.")
        names = [server.name for server in self.servers]
        if len(set(names)) != len(names):
            raise ConfigError(f"Server names must be unique: {', '.join(names)}.")
        object.__setattr__(self, "download_dir", Path(self.download_dir))
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"DICOMWEB_LOG_LEVEL {self.log_level!r} is not one of {'|'.join(LOG_LEVELS)}.")
        object.__setattr__(self, "log_level", self.log_level.upper())

    @classmethod
    def single(cls, **settings: Any) -> Config:
        """One server's settings and the process's in one call, for code that talks to one server: the
        ``ServerConfig`` fields (``url``, ``auth``, ``timeout``...) make the server, the rest the process."""
        server = {k: v for k, v in settings.items() if k in _SERVER_FIELDS}
        return cls((ServerConfig(**server),), **{k: v for k, v in settings.items() if k not in server})

    def changed(self, **settings: Any) -> Config:
        """This configuration with settings of the process or of its first server changed."""
        server = {k: v for k, v in settings.items() if k in _SERVER_FIELDS}
        first = replace(self.server, **server) if server else self.server
        return replace(
            self, servers=(first, *self.servers[1:]), **{k: v for k, v in settings.items() if k not in server}
        )

    @property
    def server(self) -> ServerConfig:
        """The server a tool uses when none is named."""
        return self.servers[0]

    @property
    def named(self) -> dict[str, ServerConfig]:
        """Every configured server by name, the first one first."""
        return {server.name: server for server in self.servers}

    def __repr__(self) -> str:
        return _repr(self)

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the ``DICOMWEB_*`` variables, and the named servers of the ``DICOMWEB_SERVERS`` file; raise
        ``ConfigError`` naming the variable (or the file's server and key) that is wrong."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value is not None and value.strip() else None

        url = get("DICOMWEB_URL")
        servers_file = get("DICOMWEB_SERVERS")
        if not url and not servers_file:
            raise ConfigError(
                "DICOMWEB_URL is not set: set it to the DICOMweb root URL of your server, for example "
                "http://localhost:8042/dicom-web (Orthanc) or https://<workspace>-<service>.dicom."
                "azurehealthcareapis.com/v2 (Azure); or set DICOMWEB_SERVERS to a TOML file of named servers."
            )
        # How every server is talked to: the same for all of them.
        connection = {
            "timeout": _number(get("DICOMWEB_TIMEOUT"), "DICOMWEB_TIMEOUT", float, DEFAULT_TIMEOUT),
            "max_retries": _number(
                get("DICOMWEB_MAX_RETRIES"), "DICOMWEB_MAX_RETRIES", int, DEFAULT_MAX_RETRIES
            ),
            "concurrency": _number(
                get("DICOMWEB_CONCURRENCY"), "DICOMWEB_CONCURRENCY", int, DEFAULT_CONCURRENCY
            ),
        }
        servers: list[ServerConfig] = []
        if url:
            variables = {
                "url": "DICOMWEB_URL",
                "auth": "DICOMWEB_AUTH",
                "username": "DICOMWEB_USERNAME",
                "azure_scope": "DICOMWEB_AZURE_SCOPE",
                "kind": "DICOMWEB_SERVER_KIND",
                "partition": "DICOMWEB_PARTITION",
            }
            table: dict[str, Any] = {key: get(variable) for key, variable in variables.items()}
            # A password may have spaces at either end; the token none.
            table.update(password=env.get("DICOMWEB_PASSWORD") or None, token=get("DICOMWEB_TOKEN"))
            table.update(
                read_only=_flag(env, "DICOMWEB_READ_ONLY"), allow_delete=_flag(env, "DICOMWEB_ALLOW_DELETE")
            )
            servers.append(_server(DEFAULT_SERVER, table, connection))
        if servers_file:
            servers.extend(_servers_from_file(Path(servers_file).expanduser(), env, connection))
        if _flag(env, "DICOMWEB_READ_ONLY"):
            # The operator's switch for the whole process: no server takes a store, transfer or delete.
            servers = [replace(server, read_only=True) for server in servers]
        # The server named "default" comes first (the one a tool uses when no server is named).
        servers.sort(key=lambda server: server.name != DEFAULT_SERVER)
        download = get("DICOMWEB_DOWNLOAD_DIR")
        dates, descriptors = _deidentify_options(get("DICOMWEB_DEIDENTIFY_OPTIONS"))
        return cls(
            tuple(servers),
            download_dir=(Path(download).expanduser() if download else default_download_dir()).absolute(),
            upload_roots=tuple(
                Path(p).expanduser().absolute()
                for p in (get("DICOMWEB_UPLOAD_ROOTS") or "").split(os.pathsep)
                if p
            ),
            mcp_token=get("DICOMWEB_MCP_TOKEN"),
            mcp_allowed_hosts=_names(get("DICOMWEB_MCP_ALLOWED_HOSTS")),
            mcp_allowed_origins=_names(get("DICOMWEB_MCP_ALLOWED_ORIGINS")),
            log_level=get("DICOMWEB_LOG_LEVEL") or "WARNING",
            deidentify_modified_dates=dates,
            deidentify_clean_descriptors=descriptors,
        )


def _server(name: str, table: Mapping[str, Any], connection: Mapping[str, Any]) -> ServerConfig:
    """One server from its settings by key (the keys of a ``[servers.NAME]`` table, secrets resolved),
    wherever they were read: the one parser for the environment and the servers file."""
    url = table.get("url")
    if not url:
        raise ConfigError("has no url.")
    is_azure = (urlsplit(url).hostname or "").endswith(AZURE_HOST_SUFFIX)
    return ServerConfig(
        name=name,
        url=url,
        auth=table.get("auth") or ("azure" if is_azure else "none"),  # type: ignore[arg-type]
        username=table.get("username"),
        password=table.get("password"),
        token=table.get("token"),
        azure_scope=table.get("azure_scope") or DEFAULT_AZURE_SCOPE,
        server_kind=table.get("kind") or "auto",  # type: ignore[arg-type]
        partition=table.get("partition"),
        read_only=bool(table.get("read_only")),
        allow_delete=bool(table.get("allow_delete")),
        **connection,
    )


# The keys a server's table in the DICOMWEB_SERVERS file may have.
_SERVER_KEYS = frozenset(
    {
        "url",
        "auth",
        "username",
        "username_env",
        "password_env",
        "token_env",
        "azure_scope",
        "kind",
        "partition",
        "read_only",
        "allow_delete",
    }
)


def _servers_from_file(
    path: Path, env: Mapping[str, str], connection: Mapping[str, Any]
) -> list[ServerConfig]:
    """The named servers of a TOML file: ``[servers.NAME]`` tables. Secrets are never in the file, only
    the names of the environment variables that hold them (``password_env``, ``token_env``)."""
    import tomllib  # only with a servers file: start-up does not pay for it

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"DICOMWEB_SERVERS {str(path)!r} cannot be read: {exc.strerror or exc}.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"DICOMWEB_SERVERS {str(path)!r} is not valid TOML: {exc}.") from None
    tables = data.get("servers")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(
            f"DICOMWEB_SERVERS {str(path)!r} names no server: add [servers.NAME] tables with a url each."
        )
    servers = []
    for name, table in tables.items():
        try:
            servers.append(_server(name, _file_table(table, env), connection))
        except ConfigError as exc:
            raise ConfigError(f"DICOMWEB_SERVERS {str(path)!r}, server {name!r}: {exc}") from None
    return servers


def _file_table(table: object, env: Mapping[str, str]) -> dict[str, Any]:
    """A ``[servers.NAME]`` table checked, its secrets read from the variables it names."""
    if not isinstance(table, dict):
        raise ConfigError("must be a table of settings ([servers.NAME]).")
    if "password" in table or "token" in table:
        raise ConfigError(
            "secrets do not belong in this file: name the environment variable that holds them instead "
            '(password_env = "PACS_PASSWORD", token_env = "PACS_TOKEN").'
        )
    unknown = sorted(set(table) - _SERVER_KEYS)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; the keys are {', '.join(sorted(_SERVER_KEYS))}.")

    def text(key: str) -> str | None:
        value = table.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key} must be a string.")
        return value.strip() or None if value is not None else None

    def flag(key: str) -> bool:
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false.")
        return value

    def secret(key: str) -> str | None:
        variable = text(key)
        if variable is None:
            return None
        value = env.get(variable)
        if not value:
            raise ConfigError(f"{key} names the environment variable {variable}, which is not set.")
        return value

    keys = ("url", "auth", "azure_scope", "kind", "partition")
    return {
        **{key: text(key) for key in keys},
        "username": text("username") or secret("username_env"),
        "password": secret("password_env"),
        "token": secret("token_env"),
        "read_only": flag("read_only"),
        "allow_delete": flag("allow_delete"),
    }


_DEIDENTIFY_OPTIONS = ("modified-dates", "clean-descriptors")


def _deidentify_options(value: str | None) -> tuple[bool, bool]:
    """``modified-dates,clean-descriptors`` (the default), a subset, or ``none`` (the Basic Profile only):
    whether dates are shifted, whether descriptors are cleaned."""
    if value is None:
        return True, True
    chosen = set(_names(value.lower())) - {"none"}
    unknown = chosen - set(_DEIDENTIFY_OPTIONS)
    if unknown:
        raise ConfigError(
            f"DICOMWEB_DEIDENTIFY_OPTIONS {value!r}: {', '.join(sorted(unknown))} is not an option; "
            f"the options are {', '.join(_DEIDENTIFY_OPTIONS)} (or none)."
        )
    return "modified-dates" in chosen, "clean-descriptors" in chosen


_N = TypeVar("_N", int, float)


def _number(text: str | None, name: str, kind: Callable[[str], _N], default: _N) -> _N:
    """A number variable; a whole number for ``int`` (digits only: ``3.0`` and ``²`` are refused)."""
    if text is None:
        return default
    try:
        if kind is int and not (text.isascii() and text.isdigit()):
            raise ValueError(text)
        return kind(text)
    except ValueError:
        what = "a number of seconds" if kind is float else "a whole number"
        raise ConfigError(f"{name} {text!r} is not {what}.") from None


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
