"""config.py: Config.from_env on plain dicts and servers files in tmp_path, asserting on what a caller sees
(names, URLs, switches, directories), since the class itself may be reshaped."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dicomweb_mcp.config import Config, ServerKind
from dicomweb_mcp.errors import ConfigError

URL = "http://pacs.example:8042/dicom-web"


def env(**variables: str) -> dict[str, str]:
    return {"DICOMWEB_URL": URL, **{f"DICOMWEB_{k}": v for k, v in variables.items()}}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TIMEOUT", "-1"),
        ("TIMEOUT", "nan"),
        ("TIMEOUT", "1 minute"),
        ("MAX_RETRIES", "-1"),
        ("MAX_RETRIES", "3.0"),
        ("MAX_RETRIES", "many"),
        ("CONCURRENCY", "0"),
        ("CONCURRENCY", "65"),
        ("CONCURRENCY", "eight"),
        ("LOG_LEVEL", "verbose"),
        ("PARTITION", "a/b"),
        ("AUTH", "ntlm"),
        ("SERVER_KIND", "pacs"),
        ("READ_ONLY", "sometimes"),
        ("ALLOW_DELETE", "2"),
        ("DEIDENTIFY_OPTIONS", "modified-dates,keep-names"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"DICOMWEB_{variable}"):
        Config.from_env(env(**{variable: value}))


@pytest.mark.parametrize("variable", ["MAX_RETRIES", "CONCURRENCY"])
def test_a_superscript_digit_is_a_config_error(variable: str) -> None:
    with pytest.raises(ConfigError, match=f"DICOMWEB_{variable}"):
        Config.from_env(env(**{variable: "²"}))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("pacs.example/dicom-web", "not an http"),
        ("ftp://pacs.example/dicom-web", "not an http"),
        ("http:///dicom-web", "not an http"),
        ("http://pacs.example/dicom-web?x=1", "query or fragment"),
        ("http://pacs.example/dicom-web#top", "query or fragment"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env({"DICOMWEB_URL": url})


def test_the_settings_are_read(tmp_path: Path) -> None:
    config = Config.from_env(
        env(
            TIMEOUT=" 12.5 ",
            MAX_RETRIES="0",
            CONCURRENCY="64",
            DOWNLOAD_DIR=str(tmp_path / "dl"),
            LOG_LEVEL="debug",
            SERVER_KIND="Orthanc",
            READ_ONLY="yes",
            ALLOW_DELETE="on",
            UPLOAD_ROOTS=f"{tmp_path / 'a'}:{tmp_path / 'b'}",
            MCP_ALLOWED_HOSTS=" a.example , ,b.example",
        )
    )
    server = config.server
    assert (server.timeout, server.max_retries, server.concurrency) == (12.5, 0, 64)
    assert config.download_dir == tmp_path / "dl" and config.log_level == "DEBUG"
    assert server.server_kind is ServerKind.ORTHANC
    assert server.read_only and server.allow_delete and not server.delete_enabled  # read-only wins
    assert config.upload_roots == (tmp_path / "a", tmp_path / "b")
    assert config.mcp_allowed_hosts == ("a.example", "b.example")
    assert server.name == "default" and config.servers == (server,)


def test_blank_variables_take_the_defaults() -> None:
    blank = Config.from_env(env(TIMEOUT=" ", MAX_RETRIES="", CONCURRENCY="", READ_ONLY="")).server
    default = Config.from_env(env()).server
    assert (blank.timeout, blank.max_retries, blank.concurrency, blank.read_only) == (
        default.timeout,
        default.max_retries,
        default.concurrency,
        False,
    )


def test_a_relative_download_dir_becomes_absolute() -> None:
    assert Config.from_env(env(DOWNLOAD_DIR="downloads")).download_dir == Path("downloads").absolute()


@pytest.mark.parametrize(
    ("value", "dates", "descriptors"),
    [
        (None, True, True),
        ("none", False, False),
        ("Modified-Dates", True, False),
        ("clean-descriptors", False, True),
        ("clean-descriptors, modified-dates", True, True),
    ],
)
def test_deidentify_options(value: str | None, dates: bool, descriptors: bool) -> None:
    config = Config.from_env(env() if value is None else env(DEIDENTIFY_OPTIONS=value))
    assert (config.deidentify_modified_dates, config.deidentify_clean_descriptors) == (dates, descriptors)


def test_basic_auth_needs_both_names() -> None:
    with pytest.raises(ConfigError, match="DICOMWEB_USERNAME and DICOMWEB_PASSWORD"):
        Config.from_env(env(AUTH="basic", USERNAME="alice"))


# --- DICOMWEB_SERVERS --------------------------------------------------------------------------------------


def servers_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "servers.toml"
    path.write_text(text)
    return str(path)


def test_named_servers_with_the_default_first(tmp_path: Path) -> None:
    path = servers_file(
        tmp_path,
        '[servers.archive]\nurl = "https://archive.example/rs"\nkind = "dcm4chee"\nread_only = true\n'
        '[servers.default]\nurl = "http://local:8042/dicom-web/"\nallow_delete = true\n'
        '[servers.cloud]\nurl = "https://ws-svc.dicom.azurehealthcareapis.com/v2"\n',
    )
    config = Config.from_env({"DICOMWEB_SERVERS": path, "DICOMWEB_TIMEOUT": "9"})
    assert list(config.named) == ["default", "archive", "cloud"]
    assert config.server.url == "http://local:8042/dicom-web" and config.server.delete_enabled
    _, archive, cloud = config.servers
    assert archive.read_only and not archive.delete_enabled and archive.server_kind is ServerKind.DCM4CHEE
    assert cloud.auth.value == "azure"  # from the host, as for DICOMWEB_URL
    assert {s.timeout for s in config.named.values()} == {9.0}  # process-wide settings shared


def test_the_url_variable_and_the_file_together(tmp_path: Path) -> None:
    path = servers_file(tmp_path, '[servers.other]\nurl = "http://other/dicom-web"\n')
    config = Config.from_env({"DICOMWEB_URL": URL, "DICOMWEB_SERVERS": path})
    assert [(name, server.url) for name, server in config.named.items()] == [
        ("default", URL),
        ("other", "http://other/dicom-web"),
    ]


def test_read_only_in_the_environment_covers_every_server(tmp_path: Path) -> None:
    path = servers_file(
        tmp_path, '[servers.a]\nurl = "http://a/x"\nallow_delete = true\n[servers.b]\nurl = "http://b/x"\n'
    )
    config = Config.from_env({"DICOMWEB_URL": URL, "DICOMWEB_SERVERS": path, "DICOMWEB_READ_ONLY": "true"})
    assert all(s.read_only and not s.delete_enabled for s in config.named.values())
    assert len(config.named) == 3


def test_secrets_come_from_the_variables_the_file_names(tmp_path: Path) -> None:
    path = servers_file(
        tmp_path,
        '[servers.pacs]\nurl = "http://pacs/x"\nauth = "basic"\nusername = "bob"\npassword_env = "PACS_PW"\n'
        '[servers.api]\nurl = "http://api/x"\nauth = "bearer"\ntoken_env = "API_TOKEN"\n',
    )
    config = Config.from_env({"DICOMWEB_SERVERS": path, "PACS_PW": "pw-1", "API_TOKEN": "tok-2"})
    pacs, api = config.named["pacs"], config.named["api"]
    assert (pacs.username, pacs.password, api.token) == ("bob", "pw-1", "tok-2")
    assert "pw-1" not in repr(config) and "tok-2" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[servers.p]\nurl = "http://p/x"\npassword = "hunter2"\n', "secrets do not belong in this file"),
        ('[servers.p]\nurl = "http://p/x"\ntoken = "t"\n', "secrets do not belong in this file"),
        ('[servers.p]\nurl = "http://p/x"\nhost = "p"\n', "unknown key 'host'"),
        (
            '[servers.p]\nurl = "http://p/x"\ntoken_env = "UNSET_VARIABLE_X"\n',
            "UNSET_VARIABLE_X, which is not set",
        ),
        ('[servers.p]\nkind = "orthanc"\n', "has no url"),
        ('[servers.p]\nurl = "http://p/x"\nread_only = "yes"\n', "read_only must be true or false"),
        ("[servers.p]\nurl = 42\n", "url must be a string"),
        ('[servers.p]\nurl = "http://p/x"\nkind = "pacs"\n', "kind 'pacs' is not one of"),
        ('[servers.p]\nurl = "http://p/x"\nauth = "basic"\n', "needs username and password_env"),
        ('[servers."bad name"]\nurl = "http://p/x"\n', "not usable"),
        ("[servers]\n", "names no server"),
        ('url = "http://p/x"\n', "names no server"),
        ("[servers.p\n", "not valid TOML"),
        ('servers = "p"\n', "names no server"),
        ("[servers]\np = 1\n", "must be a table"),
    ],
)
def test_servers_file_errors_say_where(tmp_path: Path, text: str, message: str) -> None:
    path = servers_file(tmp_path, text)
    with pytest.raises(ConfigError, match="DICOMWEB_SERVERS") as caught:
        Config.from_env({"DICOMWEB_SERVERS": path})
    assert message in str(caught.value)


def test_a_missing_servers_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        Config.from_env({"DICOMWEB_SERVERS": str(tmp_path / "absent.toml")})


def test_a_file_server_named_default_clashes_with_the_url_variable(tmp_path: Path) -> None:
    path = servers_file(tmp_path, '[servers.default]\nurl = "http://p/x"\n')
    with pytest.raises(ConfigError, match="unique"):
        Config.from_env({"DICOMWEB_URL": URL, "DICOMWEB_SERVERS": path})


def test_replicas_share_a_state_key() -> None:
    key, old = "k" * 32, "o" * 40
    config = Config.from_env(env(MCP_STATELESS="true", MCP_STATE_KEY=f"{key}, {old}"))
    assert config.mcp_stateless and config.mcp_state_keys == (key, old)
    assert key not in repr(config) and old not in repr(config)
    assert not Config.from_env(env()).mcp_stateless  # sessions in the process unless asked
    with pytest.raises(ConfigError, match="DICOMWEB_MCP_STATELESS needs DICOMWEB_MCP_STATE_KEY"):
        Config.from_env(env(MCP_STATELESS="true"))
    with pytest.raises(ConfigError, match="key 2 is shorter than 32"):
        Config.from_env(env(MCP_STATELESS="true", MCP_STATE_KEY=f"{key},short"))
    with pytest.raises(ConfigError, match="DICOMWEB_MCP_STATELESS 'maybe' is not a boolean"):
        Config.from_env(env(MCP_STATELESS="maybe"))


def test_stateless_without_a_jobs_database_warns_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Replicas would each keep cohort jobs in their own SQLite file: said once at start, not refused (one
    stateless server is legitimate)."""
    from dicomweb_mcp.files.job_store import sqlite_path
    from dicomweb_mcp.tools import http
    from dicomweb_mcp.tools.server import build_server

    served: list[object] = []
    # Start-up as serve --transport http runs it, up to the point where it would listen.
    monkeypatch.setattr(http.uvicorn, "run", lambda app, **settings: served.append(app))
    stateless = {"MCP_STATELESS": "true", "MCP_STATE_KEY": "k" * 32, "DOWNLOAD_DIR": str(tmp_path)}
    shared = {**stateless, "JOBS_DATABASE": "postgresql://mcp@db.example:5432/jobs"}
    warned = {}
    for case, settings in {"stateless": stateless, "shared": shared, "sessions": {}}.items():
        config = Config.from_env(env(**settings))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            http.serve_http(build_server(config), config, host="127.0.0.1", port=8000)
        warned[case] = [r.getMessage() for r in caplog.records if "DICOMWEB_JOBS_DATABASE" in r.getMessage()]
    assert len(served) == 3  # each started
    assert warned["shared"] == [] and warned["sessions"] == []
    [warning] = warned["stateless"]
    assert warning.startswith("DICOMWEB_MCP_STATELESS is on without DICOMWEB_JOBS_DATABASE")
    assert str(sqlite_path(tmp_path)) in warning


def test_the_jobs_database_is_read_and_its_password_never_shown() -> None:
    config = Config.from_env(env(JOBS_DATABASE="postgresql://mcp:s3cr%40t@db.example:5432/jobs"))
    assert config.jobs_database == "postgresql://mcp:s3cr%40t@db.example:5432/jobs"
    assert "s3cr" not in repr(config) and "postgresql://mcp:***@db.example:5432/jobs" in repr(config)
    in_query = Config.from_env(
        env(JOBS_DATABASE="postgresql://db.example/jobs?password=s3cr&sslmode=require")
    )
    assert "s3cr" not in repr(in_query) and "sslmode=require" in repr(in_query)
    assert Config.from_env(env()).jobs_database is None
    with pytest.raises(ConfigError, match="not a PostgreSQL URL") as refused:
        Config.from_env(env(JOBS_DATABASE="mysql://mcp:s3cr@db.example/jobs"))
    assert "s3cr" not in str(refused.value)
