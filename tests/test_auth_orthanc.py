"""HTTP Basic against a second, real Orthanc that requires it; and an unreachable server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomweb_mcp import AuthenticationError, Config, DicomWebClient, ServerKind, ServerUnreachableError
from tests.support.orthanc import Orthanc, free_port

pytestmark = pytest.mark.anyio

PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def secured_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    server = Orthanc(tmp_path_factory.mktemp("orthanc-auth"), users={"alice": PASSWORD}).start()
    try:
        yield server
    finally:
        server.stop()


async def test_basic_auth_required_and_accepted(secured_orthanc: Orthanc, tmp_path: Path) -> None:
    anonymous = Config.single(url=secured_orthanc.dicomweb_url, download_dir=tmp_path)
    async with DicomWebClient(anonymous.server) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.search_studies()
    message = str(caught.value)
    assert "HTTP 401" in message and "DICOMWEB_USERNAME" in message

    wrong = Config.single(
        url=secured_orthanc.dicomweb_url, auth="basic", username="alice", password="nope-9182"
    )  # type: ignore[arg-type]
    async with DicomWebClient(wrong.server) as client:
        with pytest.raises(AuthenticationError) as refused:
            await client.search_studies()
    assert "HTTP 401" in str(refused.value) and "nope-9182" not in str(refused.value)

    right = Config.single(url=secured_orthanc.dicomweb_url, auth="basic", username="alice", password=PASSWORD)  # type: ignore[arg-type]
    async with DicomWebClient(right.server) as client:
        assert (await client.search_studies()).datasets == []
        # With credentials the kind is detected; without them it was left undecided, not cached wrongly.
        assert (await client.profile()).kind is ServerKind.ORTHANC


async def test_unreachable_server(tmp_path: Path) -> None:
    config = Config.single(url=f"http://127.0.0.1:{free_port()}/dicom-web", server_kind="generic", timeout=5)  # type: ignore[arg-type]
    async with DicomWebClient(config.server) as client:
        with pytest.raises(
            ServerUnreachableError, match=r"cannot connect to http://127\.0\.0\.1:.*Check DICOMWEB_URL"
        ):
            await client.search_studies()
