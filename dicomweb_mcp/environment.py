"""The configuration as the operator writes it: ``DICOMWEB_*`` environment variables and the
``DICOMWEB_SERVERS`` file of named servers, read into ``Config`` with errors that name the variable (or
the file's server and key) that is wrong. One parser (``_server``) serves both sources.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .config import (
    AZURE_HOST_SUFFIX,
    DEFAULT_AUDIT_KEEP,
    DEFAULT_AUDIT_MAX_BYTES,
    DEFAULT_AZURE_SCOPE,
    DEFAULT_CONCURRENCY,
    DEFAULT_JOB_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_SERVER,
    DEFAULT_TIMEOUT,
    Config,
    ServerConfig,
    default_download_dir,
)
from .errors import ConfigError

__all__ = ["read_config"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def read_config(env: Mapping[str, str]) -> Config:
    """The configuration the variables of ``env`` (and the servers file they name) describe."""

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
        "max_retries": _number(get("DICOMWEB_MAX_RETRIES"), "DICOMWEB_MAX_RETRIES", int, DEFAULT_MAX_RETRIES),
        "concurrency": _number(get("DICOMWEB_CONCURRENCY"), "DICOMWEB_CONCURRENCY", int, DEFAULT_CONCURRENCY),
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
            "tenant_id": "DICOMWEB_AZURE_TENANT_ID",
            "client_id": "DICOMWEB_AZURE_CLIENT_ID",
            "client_secret": "DICOMWEB_AZURE_CLIENT_SECRET",
            "client_certificate": "DICOMWEB_AZURE_CLIENT_CERTIFICATE",
        }
        table: dict[str, Any] = {key: get(variable) for key, variable in variables.items()}
        # A password may have spaces at either end; the token none.
        table.update(password=env.get("DICOMWEB_PASSWORD") or None, token=get("DICOMWEB_TOKEN"))
        table.update(
            read_only=_flag(env, "DICOMWEB_READ_ONLY"),
            allow_delete=_flag(env, "DICOMWEB_ALLOW_DELETE"),
            on_behalf_of=_flag(env, "DICOMWEB_AZURE_ON_BEHALF_OF"),
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
    audit = get("DICOMWEB_AUDIT_LOG")
    return Config(
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
        oauth_issuer=get("DICOMWEB_MCP_OAUTH_ISSUER"),
        public_url=get("DICOMWEB_MCP_PUBLIC_URL"),
        oauth_audiences=_names(get("DICOMWEB_MCP_OAUTH_AUDIENCE")),
        oauth_scope_prefix=get("DICOMWEB_MCP_OAUTH_SCOPE_PREFIX") or "",
        mcp_stateless=_flag(env, "DICOMWEB_MCP_STATELESS"),
        mcp_state_keys=_names(env.get("DICOMWEB_MCP_STATE_KEY")),
        log_level=get("DICOMWEB_LOG_LEVEL") or "WARNING",
        deidentify_modified_dates=dates,
        deidentify_clean_descriptors=descriptors,
        apps=_flag(env, "DICOMWEB_MCP_APPS", default=True),
        audit_log=Path(audit).expanduser().absolute() if audit else None,
        audit_max_bytes=_number(
            get("DICOMWEB_AUDIT_MAX_BYTES"), "DICOMWEB_AUDIT_MAX_BYTES", int, DEFAULT_AUDIT_MAX_BYTES
        ),
        audit_keep=_number(get("DICOMWEB_AUDIT_KEEP"), "DICOMWEB_AUDIT_KEEP", int, DEFAULT_AUDIT_KEEP),
        job_concurrency=_number(
            get("DICOMWEB_JOB_CONCURRENCY"), "DICOMWEB_JOB_CONCURRENCY", int, DEFAULT_JOB_CONCURRENCY
        ),
        jobs_database=get("DICOMWEB_JOBS_DATABASE"),
    )


def _server(name: str, table: Mapping[str, Any], connection: Mapping[str, Any]) -> ServerConfig:
    """One server from its settings by key (the keys of a ``[servers.NAME]`` table, secrets resolved),
    wherever they were read: the one parser for the environment and the servers file."""
    url = table.get("url")
    if not url:
        raise ConfigError("has no url.")
    is_azure = (urlsplit(url).hostname or "").endswith(AZURE_HOST_SUFFIX)
    certificate = table.get("client_certificate")
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
        on_behalf_of=bool(table.get("on_behalf_of")),
        tenant_id=table.get("tenant_id"),
        client_id=table.get("client_id"),
        client_secret=table.get("client_secret"),
        client_certificate=Path(certificate).expanduser() if certificate else None,
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
        "on_behalf_of",
        "tenant_id",
        "client_id",
        "client_secret_env",
        "client_certificate",
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
    if {"password", "token", "client_secret"} & set(table):
        raise ConfigError(
            "secrets do not belong in this file: name the environment variable that holds them instead "
            '(password_env = "PACS_PASSWORD", token_env = "PACS_TOKEN", client_secret_env = "APP_SECRET").'
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

    keys = ("url", "auth", "azure_scope", "kind", "partition", "tenant_id", "client_id", "client_certificate")
    return {
        **{key: text(key) for key in keys},
        "username": text("username") or secret("username_env"),
        "password": secret("password_env"),
        "token": secret("token_env"),
        "read_only": flag("read_only"),
        "allow_delete": flag("allow_delete"),
        "on_behalf_of": flag("on_behalf_of"),
        "client_secret": secret("client_secret_env"),
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


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in (value or "").split(",") if name.strip())


def _flag(env: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    value = (env.get(name) or "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} {value!r} is not a boolean: use true or false.")
