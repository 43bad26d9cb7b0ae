"""Configuration: the process's settings (``Config``) and each DICOMweb server's (``ServerConfig``).

Both are immutable and never show a secret in their repr, so they can be logged and echoed safely. They
are read from the environment by ``environment.read_config``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .errors import ConfigError
from .files.job_store import masked_url
from .oauth_settings import oauth_url, scope_prefix

__all__ = ["DEFAULT_AZURE_SCOPE", "DEFAULT_SERVER", "AuthMode", "Config", "ServerConfig", "ServerKind"]

DEFAULT_AZURE_SCOPE = "https://dicom.healthcareapis.azure.com/.default"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 3
# Requests in flight at once for one store (batches) or one retrieve (series): over a WAN each connection
# runs at its own rate; few enough not to look like a flood to a remote archive.
DEFAULT_CONCURRENCY = 8
# Studies a cohort job works on at once (each with its own DICOMWEB_CONCURRENCY requests).
DEFAULT_JOB_CONCURRENCY = 4
# The audit file is rotated past this size, and this many old files are kept (audit.jsonl.1 the newest).
DEFAULT_AUDIT_MAX_BYTES = 50_000_000
DEFAULT_AUDIT_KEEP = 10
AZURE_HOST_SUFFIX = ".azurehealthcareapis.com"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Tenants that name no directory: an on-behalf-of exchange must be made in the user's own tenant.
_SHARED_TENANTS = frozenset({"common", "organizations", "consumers"})
_TENANT = re.compile(r"^[A-Za-z0-9.-]{1,100}$")
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
_POSTGRES = ("postgresql", "postgres")

_SECRET_FIELDS = frozenset({"password", "token", "mcp_token", "client_secret", "mcp_state_keys"})


def _repr(settings: Any) -> str:
    shown = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name in _SECRET_FIELDS:
            shown.append(f"{f.name}={'***' if value else None}")
        elif f.name == "url":
            shown.append(f"url={settings.base_url!r}")
        elif f.name == "jobs_database" and value is not None:
            shown.append(f"jobs_database={masked_url(value)!r}")
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
    # Azure as the signed-in user (OAuth 2.0 on-behalf-of): this server's own app registration in Entra ID
    # exchanges each caller's access token for one for the DICOM service.
    on_behalf_of: bool = False
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    client_certificate: Path | None = None
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
        self._check_on_behalf_of()
        if self.partition is not None and (not self.partition or "/" in self.partition):
            setting = self._setting("DICOMWEB_PARTITION", "partition")
            raise ConfigError(f"{setting} {self.partition!r} is not a partition name.")
        if not 1 <= self.concurrency <= 64:
            raise ConfigError(f"DICOMWEB_CONCURRENCY must be between 1 and 64, not {self.concurrency}.")
        if self.max_retries < 0:
            raise ConfigError(f"DICOMWEB_MAX_RETRIES must be 0 or more, not {self.max_retries}.")
        if not self.timeout > 0:
            raise ConfigError(f"DICOMWEB_TIMEOUT must be a positive number of seconds, not {self.timeout}.")

    def _check_on_behalf_of(self) -> None:
        flag = self._setting("DICOMWEB_AZURE_ON_BEHALF_OF", "on_behalf_of")
        app = {
            self._setting("DICOMWEB_AZURE_TENANT_ID", "tenant_id"): self.tenant_id,
            self._setting("DICOMWEB_AZURE_CLIENT_ID", "client_id"): self.client_id,
            self._setting("DICOMWEB_AZURE_CLIENT_SECRET", "client_secret_env"): self.client_secret,
            self._setting("DICOMWEB_AZURE_CLIENT_CERTIFICATE", "client_certificate"): self.client_certificate,
        }
        if not self.on_behalf_of:
            given = [name for name, value in app.items() if value]
            if given:
                raise ConfigError(
                    f"{given[0]} is used only with {flag} = true (Azure as the signed-in user)."
                )
            return
        if self.auth is not AuthMode.AZURE:
            raise ConfigError(
                f"{flag} needs {self._setting('DICOMWEB_AUTH', 'auth')}=azure: the on-behalf-of exchange "
                "gives Microsoft Entra ID tokens, which only an Azure DICOM service takes (this server's "
                f"auth is {self.auth.value})."
            )
        names = list(app)
        if not self.tenant_id or not self.client_id:
            raise ConfigError(
                f"{flag} needs {names[0]} and {names[1]}: the directory (tenant) ID and the application "
                "(client) ID of this MCP server's app registration in Microsoft Entra ID."
            )
        if self.tenant_id.lower() in _SHARED_TENANTS or not _TENANT.match(self.tenant_id):
            raise ConfigError(
                f"{names[0]} {self.tenant_id!r} is not a tenant: give the directory (tenant) ID, a GUID; the "
                "on-behalf-of exchange is made in the users' own tenant, not common or organizations."
            )
        if (self.client_secret is None) == (self.client_certificate is None):
            raise ConfigError(
                f"{flag} needs one of {names[2]} (the name of the variable holding the app's client secret) "
                f"or {names[3]} (a PEM or PKCS12 file with the certificate and its private key), not "
                f"{'both' if self.client_secret else 'neither'}."
            )

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
    # HTTP transport as an OAuth resource server: the issuer whose tokens are accepted, this server's MCP
    # endpoint as clients reach it (the resource identifier), and the audiences a token may carry instead.
    oauth_issuer: str | None = None
    public_url: str | None = None
    oauth_audiences: tuple[str, ...] = ()
    # What published scope names begin with: Entra ID knows api://<app>/dicom.read, not bare dicom.read.
    oauth_scope_prefix: str = ""
    # HTTP transport without sessions kept in the process, so that replicas behind a load balancer without
    # sticky sessions serve one client (tools/stateless.py says what the 2025 protocol era gives up).
    mcp_stateless: bool = False
    # The secrets that seal what a call asking its user (a delete's confirmation) hands the client to send
    # back: the same on every replica, so that any of them reads the answer. The first seals, all unseal.
    mcp_state_keys: tuple[str, ...] = field(default=(), repr=False)
    log_level: str = "WARNING"
    # De-identification (PS3.15 Basic Profile) options: shift dates per patient instead of removing them;
    # keep descriptions cleaned of identifying values instead of removing them.
    deidentify_modified_dates: bool = True
    deidentify_clean_descriptors: bool = True
    # The study viewer (MCP Apps) for hosts that render apps; off: no viewer resource, _meta or app tools.
    apps: bool = True
    # The audit trail: a JSON line per tool call in this file (none: no audit trail).
    audit_log: Path | None = None
    audit_max_bytes: int = DEFAULT_AUDIT_MAX_BYTES
    audit_keep: int = DEFAULT_AUDIT_KEEP
    job_concurrency: int = DEFAULT_JOB_CONCURRENCY
    # The cohort jobs' tables in this PostgreSQL database, shared by replicas (None: SQLite, per directory).
    jobs_database: str | None = None

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
        if self.audit_log is not None:
            object.__setattr__(self, "audit_log", Path(self.audit_log))
        if self.audit_max_bytes < 1:
            raise ConfigError(f"DICOMWEB_AUDIT_MAX_BYTES must be 1 or more, not {self.audit_max_bytes}.")
        if not 1 <= self.audit_keep <= 1000:
            raise ConfigError(f"DICOMWEB_AUDIT_KEEP must be between 1 and 1000, not {self.audit_keep}.")
        if not 1 <= self.job_concurrency <= 32:
            raise ConfigError(
                f"DICOMWEB_JOB_CONCURRENCY must be between 1 and 32, not {self.job_concurrency}."
            )
        if self.jobs_database is not None and urlsplit(self.jobs_database).scheme not in _POSTGRES:
            raise ConfigError(
                f"DICOMWEB_JOBS_DATABASE {masked_url(self.jobs_database)!r} is not a PostgreSQL URL like "
                "postgresql://user@host:5432/database (the password in it or in PGPASSWORD)."
            )
        self._check_oauth()
        self._check_stateless()

    def _check_stateless(self) -> None:
        short = [n for n, key in enumerate(self.mcp_state_keys, 1) if len(key.encode()) < 32]
        if short:
            raise ConfigError(
                f"DICOMWEB_MCP_STATE_KEY: key {short[0]} is shorter than 32 characters. Make one with "
                "python3 -c 'import secrets; print(secrets.token_hex(32))'."
            )
        if self.mcp_stateless and not self.mcp_state_keys:
            raise ConfigError(
                "DICOMWEB_MCP_STATELESS needs DICOMWEB_MCP_STATE_KEY, the same on every replica: a call that "
                "asks its user (a delete's confirmation) continues on whichever replica the answer reaches. "
                "Make one with python3 -c 'import secrets; print(secrets.token_hex(32))'."
            )

    def _check_oauth(self) -> None:
        acting = [server.name for server in self.servers if server.on_behalf_of]
        if acting and self.oauth_issuer is None:
            raise ConfigError(
                f"Server {acting[0]!r} acts on behalf of the signed-in user (on_behalf_of), which needs "
                "OAuth: set DICOMWEB_MCP_OAUTH_ISSUER and serve --transport http. Over stdio, or with the "
                "static DICOMWEB_MCP_TOKEN, no user's token arrives to exchange, and the server will not use "
                "its own identity in the user's place."
            )
        if self.oauth_issuer is None:
            alone = {"AUDIENCE": self.oauth_audiences, "SCOPE_PREFIX": self.oauth_scope_prefix}
            given = [setting for setting, value in alone.items() if value]
            if given:
                raise ConfigError(f"DICOMWEB_MCP_OAUTH_{given[0]} needs DICOMWEB_MCP_OAUTH_ISSUER.")
            return
        if self.mcp_token:
            raise ConfigError(
                "DICOMWEB_MCP_TOKEN and DICOMWEB_MCP_OAUTH_ISSUER are both set: choose one. The static token "
                "is for one person; OAuth gives each user their own token and scopes. Unset the other."
            )
        if not self.public_url:
            raise ConfigError(
                "DICOMWEB_MCP_OAUTH_ISSUER needs DICOMWEB_MCP_PUBLIC_URL: this server's MCP endpoint as "
                "clients reach it, for example https://mcp.example.org/mcp (tokens must be issued for it)."
            )
        oauth_url("DICOMWEB_MCP_OAUTH_ISSUER", self.oauth_issuer)
        oauth_url("DICOMWEB_MCP_PUBLIC_URL", self.public_url)
        scope_prefix(self.oauth_scope_prefix)

    @property
    def accepted_audiences(self) -> tuple[str, ...]:
        """The ``aud`` values a token for this server may carry: the operator's, else the public URL."""
        return self.oauth_audiences or ((self.public_url,) if self.public_url else ())

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
        from .environment import read_config

        return read_config(os.environ if environ is None else environ)


def _enum(enum: type[_E], name: str, value: str) -> _E:
    try:
        return enum(value.lower())
    except ValueError:
        allowed = "|".join(member.value for member in enum)
        raise ConfigError(f"{name} {value!r} is not one of {allowed}.") from None
