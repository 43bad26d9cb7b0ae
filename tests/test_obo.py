"""An Azure DICOM server acting as each signed-in user (on-behalf-of): each caller's access token exchanged
with Microsoft Entra ID for a DICOM service token in their name, through the MCP layer.

No local server does Entra's on-behalf-of exchange, so its token endpoint and the DICOM service are mocked
with respx, shaped as Microsoft documents them (tests/support/entra.py, tests/support/azure.py). The user
reaches the tool call as the OAuth middleware (tools/http.py RequireOAuthToken) hands it on: the SDK's
authenticated-user context variable holding the verified AccessToken.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.server.auth.provider import AccessToken

from dicomweb_mcp import Config
from dicomweb_mcp.config import ServerConfig
from dicomweb_mcp.tools.server import build_server
from tests.support.azure import BASE, DICOM_JSON, sop_item, stow_response
from tests.support.entra import (
    BAD_ASSERTION,
    CLIENT_ID,
    CLIENT_SECRET,
    CONSENT_REQUIRED,
    DICOM_SCOPE,
    ISSUER,
    JWT_BEARER,
    Entra,
    acting_config,
    acting_server,
    mocked,
    signed_in,
    user,
)
from tests.support.samples import Samples

pytestmark = pytest.mark.anyio


async def search(client: Client, token: AccessToken | None) -> Any:
    with signed_in(token):
        return await client.call_tool("search_studies", {"patient_id": "PAT-1"})


async def test_each_user_reaches_the_archive_with_their_own_token(tmp_path: Path) -> None:
    alice, bob = user("alice"), user("bob")
    entra = Entra()
    entra.accept(alice, bob)
    with mocked(entra) as (_, archive):
        async with Client(build_server(acting_config(tmp_path))) as client:
            first = await search(client, alice)
            second = await search(client, bob)
    assert not first.is_error and not second.is_error
    assert first.structured_content["results"][0]["patient_id"] == "PAT-1"
    assert archive.authorizations == ["Bearer dicom-token-alice-1", "Bearer dicom-token-bob-2"]
    # The request Microsoft documents for the on-behalf-of flow, one per user, with that user's token.
    assert entra.forms == [
        {
            "grant_type": JWT_BEARER,
            "requested_token_use": "on_behalf_of",
            "assertion": token.token,
            "scope": DICOM_SCOPE,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "client_info": "1",
        }
        for token in (alice, bob)
    ]
    assert all("authorization" not in headers for headers in entra.headers)


async def test_the_callers_token_never_reaches_the_archive(tmp_path: Path) -> None:
    alice = user("alice")
    entra = Entra()
    entra.accept(alice)
    with mocked(entra) as (_, archive):
        async with Client(build_server(acting_config(tmp_path))) as client:
            await search(client, alice)
            # server_info asks the archive too (its kind, a one-study probe).
            info = await search_info(client, alice)
    assert not info.is_error and archive.requests
    signature = alice.token.rsplit(".", 1)[-1]
    for request in archive.requests:
        sent = str(request.url) + json.dumps(dict(request.headers)) + request.content.decode("latin-1")
        assert alice.token not in sent and signature not in sent
        assert request.headers["authorization"] == "Bearer dicom-token-alice-1"


async def search_info(client: Client, token: AccessToken) -> Any:
    with signed_in(token):
        return await client.call_tool("server_info", {})


async def test_a_users_second_call_reuses_the_exchanged_token(tmp_path: Path) -> None:
    alice, bob = user("alice"), user("bob")
    entra = Entra()
    entra.accept(alice, bob)
    with mocked(entra) as (_, archive):
        async with Client(build_server(acting_config(tmp_path))) as client:
            for caller in (alice, alice, bob, alice, bob):
                assert not (await search(client, caller)).is_error
            exchanges = len(entra.forms)
            # Signed in again: a new access token for the same person is a new assertion, a new exchange.
            again = user("alice", signature="renewed")
            entra.accept(again)
            assert not (await search(client, again)).is_error
    assert exchanges == 2
    assert len(entra.forms) == 3
    assert archive.authorizations == [
        "Bearer dicom-token-alice-1",
        "Bearer dicom-token-alice-1",
        "Bearer dicom-token-bob-2",
        "Bearer dicom-token-alice-1",
        "Bearer dicom-token-bob-2",
        "Bearer dicom-token-alice-3",
    ]


UNKNOWN_CODE = {
    "error": "invalid_grant",
    "error_description": "AADSTS999999: Something Entra ID has not said before.\r\nTrace ID: x",
    "error_codes": [999999],
}


@pytest.mark.parametrize(
    ("refusal", "said"),
    [
        pytest.param(
            CONSENT_REQUIRED,
            ["AADSTS65001", "invalid_grant", "administrator", "admin consent", "Dicom.ReadWrite", CLIENT_ID],
            id="consent required",
        ),
        pytest.param(
            BAD_ASSERTION,
            ["AADSTS50013", "Sign in again", "not issued for this MCP server's app registration"],
            id="assertion refused",
        ),
        pytest.param(
            UNKNOWN_CODE, ["invalid_grant: AADSTS999999: Something", "sign in again"], id="unknown code"
        ),
    ],
)
async def test_entras_refusal_is_said_in_words(
    tmp_path: Path, refusal: dict[str, Any], said: list[str]
) -> None:
    alice = user("alice")
    entra = Entra(refusals={alice.token: refusal})
    with mocked(entra) as (_, archive):
        async with Client(build_server(acting_config(tmp_path))) as client:
            result = await search(client, alice)
    text = result.content[0].text
    assert result.is_error and not archive.requests
    for words in said:
        assert words in text
    assert "Trace ID" not in text  # the description's first line, not the whole of it
    assert alice.token not in text


async def test_a_call_without_a_signed_in_user_is_refused(tmp_path: Path) -> None:
    entra = Entra()
    with mocked(entra) as (_, archive):
        async with Client(build_server(acting_config(tmp_path))) as client:
            result = await search(client, None)
    assert result.is_error and "carries no signed-in user" in result.content[0].text
    assert "own identity" in result.content[0].text
    assert not entra.forms and not archive.requests


async def test_the_audit_line_names_the_person_and_no_token_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alice = user("alice")
    entra = Entra()
    entra.accept(alice)
    audit = tmp_path / "audit.jsonl"
    caplog.set_level(logging.DEBUG)
    with mocked(entra):
        async with Client(build_server(acting_config(tmp_path, audit_log=audit))) as client:
            assert not (await search(client, alice)).is_error
    call = [json.loads(line) for line in audit.read_text().splitlines()][-1]
    assert call["user"]["subject"] == "alice-subject" and call["user"]["name"] == "Alice"
    assert call["outcome"] == "ok"
    everything = audit.read_text() + caplog.text
    for secret in (alice.token, alice.token.rsplit(".", 1)[-1], CLIENT_SECRET, "dicom-token-alice"):
        assert secret not in everything


async def test_the_server_acting_for_users_sits_beside_one_that_does_not(tmp_path: Path) -> None:
    """A second server with the process's own Azure identity keeps it: only the acting one exchanges."""
    from tests.support.azure import FakeCredential

    other = ServerConfig(url=BASE.replace("ws-svc", "ws-other"), name="research", auth="azure")  # type: ignore[arg-type]
    config = Config(
        (acting_server(), other),
        download_dir=tmp_path,
        oauth_issuer=ISSUER,
        public_url="https://mcp.example.org/mcp",
    )
    alice = user("alice")
    entra = Entra()
    entra.accept(alice)
    seen: list[str] = []

    def research(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(204)

    with mocked(entra) as (mock, archive):
        mock.get(f"{other.url}/studies").mock(side_effect=research)
        async with Client(build_server(config, credentials={"research": FakeCredential()})) as client:
            with signed_in(alice):
                mine = await client.call_tool("search_studies", {"patient_id": "PAT-1"})
                theirs = await client.call_tool(
                    "search_studies", {"patient_id": "PAT-1", "server": "research"}
                )
    assert not mine.is_error and not theirs.is_error
    assert archive.authorizations == ["Bearer dicom-token-alice-1"]
    assert seen == ["Bearer token-1"]


def app_certificate(path: Path) -> Path:
    """A self-signed certificate and its private key in one PEM file, as Entra ID takes for an app."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dicomweb-mcp test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + certificate.public_bytes(serialization.Encoding.PEM)
    )
    return path


async def test_a_certificate_authenticates_the_app_instead_of_a_secret(tmp_path: Path) -> None:
    server = acting_server(client_secret=None, client_certificate=app_certificate(tmp_path / "app.pem"))
    config = Config(
        (server,), download_dir=tmp_path, oauth_issuer=ISSUER, public_url="https://mcp.example.org/mcp"
    )
    alice = user("alice")
    entra = Entra()
    entra.accept(alice)
    with mocked(entra) as (_, archive):
        async with Client(build_server(config)) as client:
            assert not (await search(client, alice)).is_error
    form = entra.forms[0]
    assert "client_secret" not in form and form["assertion"] == alice.token
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    header = json.loads(base64.urlsafe_b64decode(form["client_assertion"].split(".")[0] + "=="))
    # Signed with the app's certificate, which the header names by its thumbprint.
    assert header["alg"] in ("RS256", "PS256") and {"x5t", "x5t#S256"} & set(header)
    assert archive.authorizations == ["Bearer dicom-token-alice-1"]


async def test_a_store_sends_every_batch_as_the_user(tmp_path: Path, samples: Samples) -> None:
    """Work a tool spreads over tasks (the STOW sender tasks, a file a request) still acts as its caller."""
    alice = user("alice")
    entra = Entra()
    entra.accept(alice)
    stored = stow_response(
        referenced=[sop_item(samples.blue.instance_uid), sop_item(samples.green.instance_uid)]
    )
    paths = [str(samples.blue.path), str(samples.green.path)]
    with mocked(entra) as (mock, _):
        stow = mock.post(f"{BASE}/studies").respond(200, json=stored, headers=DICOM_JSON)
        async with Client(build_server(acting_config(tmp_path))) as client:
            with signed_in(alice):
                result = await client.call_tool(
                    "store_instances", {"paths": paths, "encoding": "single-part"}
                )
    assert not result.is_error and result.structured_content["counts"]["stored"] == 2, result.content
    assert stow.call_count == 2 and len(entra.forms) == 1
    assert {call.request.headers["authorization"] for call in stow.calls} == {"Bearer dicom-token-alice-1"}
