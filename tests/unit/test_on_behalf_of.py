"""On-behalf-of settings checked at start, and the per-user credential cache bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from dicomweb_mcp import Config
from dicomweb_mcp.cli import main
from dicomweb_mcp.errors import ConfigError, PolicyError
from dicomweb_mcp.tools.obo import CallerAuth
from dicomweb_mcp.tools.server import build_server
from tests.support.azure import BASE
from tests.support.entra import (
    CLIENT_ID,
    CLIENT_SECRET,
    ISSUER,
    TENANT,
    TOKEN_URL,
    Entra,
    acting_server,
    user,
)

OAUTH = {"DICOMWEB_MCP_OAUTH_ISSUER": ISSUER, "DICOMWEB_MCP_PUBLIC_URL": "https://mcp.example.org/mcp"}
SERVERS = f"""
[servers.azure]
url = "{BASE}"
on_behalf_of = true
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret_env = "DICOMWEB_APP_SECRET"
"""


def servers_env(tmp_path: Path, text: str = SERVERS, **extra: str) -> dict[str, str]:
    path = tmp_path / "servers.toml"
    path.write_text(text)
    return {"DICOMWEB_SERVERS": str(path), "DICOMWEB_APP_SECRET": CLIENT_SECRET, **OAUTH, **extra}


def test_the_servers_file_names_the_app_and_the_variable_holding_its_secret(tmp_path: Path) -> None:
    server = Config.from_env(servers_env(tmp_path)).named["azure"]
    assert server.on_behalf_of and server.auth.value == "azure"  # an Azure URL is auth = "azure" already
    assert (server.tenant_id, server.client_id, server.client_secret) == (TENANT, CLIENT_ID, CLIENT_SECRET)
    assert CLIENT_SECRET not in repr(server) and "client_secret=***" in repr(server)


def test_or_a_certificate_file(tmp_path: Path) -> None:
    text = SERVERS.replace('client_secret_env = "DICOMWEB_APP_SECRET"', 'client_certificate = "~/app.pem"')
    server = Config.from_env(servers_env(tmp_path, text)).named["azure"]
    assert server.client_secret is None and server.client_certificate == Path("~/app.pem").expanduser()


def test_the_secret_itself_does_not_belong_in_the_file(tmp_path: Path) -> None:
    inline = SERVERS.replace('client_secret_env = "DICOMWEB_APP_SECRET"', 'client_secret = "abc"')
    with pytest.raises(ConfigError, match=r"secrets do not belong in this file.*client_secret_env"):
        Config.from_env(servers_env(tmp_path, inline))
    env = servers_env(tmp_path)
    del env["DICOMWEB_APP_SECRET"]
    with pytest.raises(
        ConfigError, match="client_secret_env names the environment variable DICOMWEB_APP_SECRET"
    ):
        Config.from_env(env)


def test_the_environment_variables_of_the_default_server(tmp_path: Path) -> None:
    env = {
        "DICOMWEB_URL": BASE,
        "DICOMWEB_AZURE_ON_BEHALF_OF": "true",
        "DICOMWEB_AZURE_TENANT_ID": TENANT,
        "DICOMWEB_AZURE_CLIENT_ID": CLIENT_ID,
        "DICOMWEB_AZURE_CLIENT_SECRET": CLIENT_SECRET,
        **OAUTH,
    }
    server = Config.from_env(env).server
    assert server.on_behalf_of and server.client_secret == CLIENT_SECRET
    del env["DICOMWEB_AZURE_CLIENT_ID"]
    with pytest.raises(ConfigError, match="needs DICOMWEB_AZURE_TENANT_ID and DICOMWEB_AZURE_CLIENT_ID"):
        Config.from_env(env)


def test_without_oauth_there_is_no_user_to_act_for(tmp_path: Path) -> None:
    env = servers_env(tmp_path)
    for name in OAUTH:
        del env[name]
    with pytest.raises(
        ConfigError, match=r"'azure' acts on behalf of the signed-in user.*DICOMWEB_MCP_OAUTH_ISSUER"
    ):
        Config.from_env(env)
    # The static token names nobody: still no user, and both at once are refused as before.
    with pytest.raises(ConfigError, match="static DICOMWEB_MCP_TOKEN, no user's token arrives"):
        Config.from_env({**env, "DICOMWEB_MCP_TOKEN": "operator-token"})


def test_over_stdio_the_server_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in servers_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    for argv in ([], ["serve"], ["serve", "--transport", "stdio"]):
        assert main(argv) == 2
        said = capsys.readouterr().err
        assert "'azure' acts on behalf of the signed-in user" in said and "--transport http" in said
        assert CLIENT_SECRET not in said


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"auth": "basic", "username": "u", "password": "p"}, "on_behalf_of needs auth=azure"),
        ({"tenant_id": None}, "needs tenant_id and client_id"),
        ({"client_id": ""}, "needs tenant_id and client_id"),
        ({"tenant_id": "common"}, "not common or organizations"),
        ({"tenant_id": "a/b"}, "is not a tenant"),
        ({"client_certificate": Path("/app.pem")}, "not both"),
        ({"client_secret": None}, "not neither"),
        ({"on_behalf_of": False}, "tenant_id is used only with on_behalf_of = true"),
    ],
)
def test_the_app_registration_is_checked(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        acting_server(name="azure", **settings)


def test_an_unreadable_certificate_stops_the_start(tmp_path: Path) -> None:
    server = acting_server(client_secret=None, client_certificate=tmp_path / "missing.pem")
    config = Config((server,), oauth_issuer=ISSUER, public_url="https://mcp.example.org/mcp")
    with pytest.raises(ConfigError, match=r"client_certificate .*missing\.pem.* cannot be read"):
        build_server(config)


def test_credentials_are_kept_per_assertion_in_a_bounded_lru() -> None:
    now = [1_000.0]
    auth = CallerAuth(acting_server(), max_users=2, clock=lambda: now[0])
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    first = auth.for_caller(alice)
    assert auth.for_caller(alice) is first  # the same assertion: the same credential, its tokens cached
    auth.for_caller(bob)
    auth.for_caller(alice)  # alice is now the most recently seen
    auth.for_caller(carol)  # over the bound: bob, the least recently seen, goes
    assert auth.credentials_made == 3
    assert auth.for_caller(alice) is first
    auth.for_caller(bob)
    assert auth.credentials_made == 4
    # A new token of the same person (signed in again) is a new assertion.
    assert auth.for_caller(user("alice", signature="renewed")) is not first
    assert CLIENT_SECRET not in repr(auth) and alice.token not in repr(auth)


def test_expired_assertions_are_forgotten() -> None:
    now = [0.0]
    auth = CallerAuth(acting_server(), clock=lambda: now[0])
    short = user("alice", lifetime=60)
    auth.for_caller(short)
    now[0] = float(short.expires_at or 0) + 1
    auth.for_caller(user("bob"))
    assert "users=1" in repr(auth)


def test_no_caller_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(PolicyError, match="carries no signed-in user"):
        CallerAuth(acting_server()).for_caller(None)


@pytest.mark.anyio
async def test_the_callers_flow_is_driven_whole_a_401_asks_once_more() -> None:
    """httpx drives the caller's own flow (CallerAuth hands it over): the header set, and after a 401 one
    more request with a token fetched anew, still in that caller's name."""
    alice = user("alice")
    entra = Entra()
    entra.accept(alice)
    auth = CallerAuth(acting_server(), caller=lambda: alice)
    with respx.mock(assert_all_called=False) as mock:
        mock.post(TOKEN_URL).mock(side_effect=entra)
        studies = mock.get(f"{BASE}/studies").mock(side_effect=[httpx.Response(401), httpx.Response(204)])
        async with httpx.AsyncClient(auth=auth) as http:
            response = await http.get(f"{BASE}/studies")
    assert response.status_code == 204 and studies.call_count == 2
    sent = [call.request.headers["authorization"] for call in studies.calls]
    assert all(header.startswith("Bearer dicom-token-alice-") for header in sent), sent
    assert all(form["assertion"] == alice.token for form in entra.forms) and entra.forms
    assert auth.credentials_made == 1
