"""Contract tests for behaviour no local server has, shaped as the Azure DICOM service's conformance
statement describes it (409/202 STOW bodies, 204 QIDO, 406 without transfer-syntax=*, change feed,
token refresh, partitions). HTTP is mocked with respx; everything else is the real client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx

from dicomweb_mcp import (
    AuthenticationError,
    Config,
    CredentialError,
    DicomFile,
    DicomWebClient,
    NotFoundError,
    StoreStatus,
    ThrottledError,
    read_dicom_file,
)
from dicomweb_mcp.config import ServerConfig
from dicomweb_mcp.dicom.reference import Reference
from tests.support.azure import BASE, CHANGE_FEED, DICOM_JSON, FakeCredential, sop_item, stow_response
from tests.support.samples import Samples

pytestmark = pytest.mark.anyio


@pytest.fixture
def credential() -> FakeCredential:
    return FakeCredential()


async def no_wait(delay: float) -> None:
    """Retry delays are checked in test_retries; here they only need to pass."""


@pytest.fixture
async def azure(credential: FakeCredential) -> AsyncIterator[DicomWebClient]:
    config = Config.single(url=BASE, auth="azure")  # type: ignore[arg-type]
    async with DicomWebClient(config.server, credential=credential, sleep=no_wait) as client:
        yield client


async def test_409_already_stored(azure: DicomWebClient, samples: Samples) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.post("/studies").respond(
            409,
            json=stow_response(failed=[sop_item(samples.blue.instance_uid, **{"00081197": 45070})]),
            headers=DICOM_JSON,
        )
        outcomes = await azure.store_instances([samples.blue])
    assert outcomes[0].status is StoreStatus.ALREADY_PRESENT
    assert outcomes[0].reason_code == 45070
    request = route.calls.last.request
    assert request.headers["content-type"].startswith(
        'multipart/related; type="application/dicom"; boundary='
    )
    assert request.headers["accept"] == "application/dicom+json"
    assert request.headers["authorization"] == "Bearer token-1"


async def test_202_mixed_failures_and_warnings(azure: DicomWebClient, samples: Samples) -> None:
    body = stow_response(
        referenced=[
            sop_item(samples.blue.instance_uid),
            sop_item(samples.green.instance_uid, **{"00081196": 45063}),
        ],
        failed=[sop_item(samples.red.instance_uid, **{"00081197": 43265})],
    )
    with respx.mock(base_url=BASE) as mock:
        route = mock.post("/studies/1.2.3").respond(202, json=body, headers=DICOM_JSON)
        outcomes = await azure.store_instances(samples.all, study=Reference("1.2.3"))
    by_uid = {o.file.instance_uid: o for o in outcomes}
    assert by_uid[samples.blue.instance_uid].status is StoreStatus.STORED
    green = by_uid[samples.green.instance_uid]
    assert green.status is StoreStatus.STORED and "does not match the SOP class" in green.warnings[0]
    red = by_uid[samples.red.instance_uid]
    assert (red.status, red.reason_code) == (StoreStatus.FAILED, 43265)
    assert "does not match the study" in (red.reason or "")
    # Three 2.9 MB files with connections to spare: three requests in parallel, one file each, each
    # streamed with the length it announced.
    bodies = [call.request.content for call in route.calls]
    assert len(bodies) == 3
    assert all(int(c.request.headers["content-length"]) == len(c.request.content) for c in route.calls)
    assert all(sum(f.path.read_bytes() in body for body in bodies) == 1 for f in samples.all)


async def test_silently_dropped_part_is_failed(azure: DicomWebClient, samples: Samples) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.post("/studies").respond(
            200, json=stow_response(referenced=[sop_item(samples.blue.instance_uid)])
        )
        outcomes = await azure.store_instances([samples.blue, samples.red])
    assert [o.status for o in outcomes] == [StoreStatus.STORED, StoreStatus.FAILED]
    assert "did not acknowledge" in (outcomes[1].reason or "")


async def test_single_part_store(azure: DicomWebClient, samples: Samples) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.post("/studies").respond(
            200, json=stow_response(referenced=[sop_item(samples.red.instance_uid)])
        )
        outcomes = await azure.store_instances([samples.red], encoding="single-part")
    assert outcomes[0].status is StoreStatus.STORED
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/dicom"
    assert request.content == samples.red.path.read_bytes()


async def test_qido_204_is_empty(azure: DicomWebClient) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.get("/studies").respond(204)
        result = await azure.search_studies({"PatientName": "Anony Mous"}, limit=1000)
    assert result.datasets == []
    url = route.calls.last.request.url
    # Azure decodes percent-encoding; the limit is capped at its maximum of 200 and the caller told.
    assert url.params["PatientName"] == "Anony Mous" and url.params["limit"] == "200"
    assert "maximum of 200" in result.warnings[0]


async def test_study_retrieve_sends_transfer_syntax_any(azure: DicomWebClient, samples: Samples) -> None:
    parts = [f.path.read_bytes() for f in samples.all]
    boundary = "azure-boundary-1"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n".encode()
            + p
            + b"\r\n"
            for p in parts
        )
        + f"--{boundary}--".encode()
    )

    def answer(request: httpx.Request) -> httpx.Response:
        if "transfer-syntax=*" not in request.headers.get("accept", ""):
            return httpx.Response(406, text="The requested DICOM instances cannot be transcoded.")
        return httpx.Response(
            200,
            content=body,
            headers={"content-type": f'multipart/related; type="application/dicom"; boundary="{boundary}"'},
        )

    with respx.mock(base_url=BASE) as mock:
        mock.get(f"/studies/{samples.study_uid}").mock(side_effect=answer)
        received = []
        async with azure.stream_instances(Reference(samples.study_uid)) as reader:
            async for part in reader:
                received.append(b"".join([bytes(c) async for c in part.aiter_bytes()]))
    assert received == parts


async def test_delete_uses_dicomweb_and_404_is_not_found(azure: DicomWebClient) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.delete("/studies/1.2.3/series/1.2.3.4").respond(204)
        mock.delete("/studies/1.2.9").respond(404, text="The specified study cannot be found.")
        result = await azure.delete(Reference("1.2.3", "1.2.3.4"))
        with pytest.raises(NotFoundError, match="The specified study cannot be found"):
            await azure.delete(Reference("1.2.9"))
    assert (result.level, result.method) == ("series", "dicomweb")


async def test_change_feed(azure: DicomWebClient) -> None:
    with respx.mock(base_url=BASE) as mock:
        feed = mock.get("/changefeed").respond(200, json=CHANGE_FEED)
        latest = mock.get("/changefeed/latest").respond(200, json=CHANGE_FEED[1])
        entries = await azure.change_feed(
            offset=0,
            limit=10,
            include_metadata=True,
            start_time="2023-05-10T00:00:00Z",
            end_time="2023-05-11T00:00:00Z",
        )
        newest = await azure.change_feed_latest()
    assert [(e.sequence, e.action, e.state, e.instance_uid) for e in entries] == [
        (1, "Create", "Deleted", "1.2.3.4.5"),
        (2, "Delete", "Current", "1.2.3.4.5"),
    ]
    assert entries[1].metadata == {"00100010": {"vr": "PN"}} and entries[0].partition == "Microsoft.Default"
    params = feed.calls.last.request.url.params
    assert dict(params) == {
        "offset": "0",
        "limit": "10",
        "includemetadata": "true",
        "startTime": "2023-05-10T00:00:00Z",
        "endTime": "2023-05-11T00:00:00Z",
    }
    assert newest is not None and newest.sequence == 2 and latest.called


async def test_change_feed_latest_empty(azure: DicomWebClient) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.get("/changefeed/latest").respond(204)
        assert await azure.change_feed_latest() is None


async def test_token_cached_then_refreshed_after_401(
    azure: DicomWebClient, credential: FakeCredential
) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] == "Bearer token-1" and len(seen) > 1:
            return httpx.Response(401, text="token revoked")
        return httpx.Response(200, json=[])

    with respx.mock(base_url=BASE) as mock:
        mock.get("/studies").mock(side_effect=answer)
        await azure.search_studies()
        await azure.search_studies()  # cached token-1 is refused: one refresh, one retry
        await azure.search_studies()
    assert seen == ["Bearer token-1", "Bearer token-1", "Bearer token-2", "Bearer token-2"]
    assert credential.calls == 2


async def test_token_refreshed_before_expiry() -> None:
    credential = FakeCredential(lifetime=60)  # inside the refresh margin: every request gets a fresh one
    async with DicomWebClient(ServerConfig(url=BASE, auth="azure"), credential=credential) as client:  # type: ignore[arg-type]
        with respx.mock(base_url=BASE) as mock:
            route = mock.get("/studies").respond(200, json=[])
            await client.search_studies()
            await client.search_studies()
    assert [c.request.headers["authorization"] for c in route.calls] == ["Bearer token-1", "Bearer token-2"]


async def test_stow_retried_with_body_after_token_refresh(azure: DicomWebClient, samples: Samples) -> None:
    bodies: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        if request.headers["authorization"] == "Bearer token-1":
            return httpx.Response(401)
        return httpx.Response(200, json=stow_response(referenced=[sop_item(samples.blue.instance_uid)]))

    with respx.mock(base_url=BASE) as mock:
        mock.post("/studies").mock(side_effect=answer)
        outcomes = await azure.store_instances([samples.blue])
    assert outcomes[0].status is StoreStatus.STORED
    assert len(bodies) == 2 and bodies[0] == bodies[1] and len(bodies[1]) > samples.blue.size


async def test_persistent_401_is_an_authentication_error(azure: DicomWebClient) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.get("/studies").respond(401, text="Unauthorized")
        with pytest.raises(AuthenticationError, match="az login"):
            await azure.search_studies()


async def test_partition_in_path(credential: FakeCredential) -> None:
    config = Config.single(url=BASE, auth="azure", partition="radiology")  # type: ignore[arg-type]
    async with DicomWebClient(config.server, credential=credential) as client:
        with respx.mock(base_url=BASE) as mock:
            qido = mock.get("/partitions/radiology/studies").respond(
                200, json=[{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}]
            )
            meta = mock.get("/partitions/radiology/studies/1.2.3/metadata").respond(200, json=[])
            result = await client.search_studies()
            await client.retrieve_metadata(Reference("1.2.3"))
    assert len(result.datasets) == 1 and qido.called and meta.called


async def test_throttled_503(azure: DicomWebClient) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.get("/studies").respond(503, text="Service is busy", headers={"Retry-After": "2"})
        with pytest.raises(ThrottledError, match="throttled"):
            await azure.search_studies()


async def test_credential_failure_is_explained() -> None:
    class NoSignIn:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise RuntimeError(
                "DefaultAzureCredential failed to retrieve a token.\nAttempted credentials: ..."
            )

    async with DicomWebClient(ServerConfig(url=BASE, auth="azure"), credential=NoSignIn()) as client:  # type: ignore[arg-type]
        with respx.mock(base_url=BASE, assert_all_called=False) as mock:
            route = mock.get("/studies").respond(200, json=[])
            with pytest.raises(
                CredentialError, match=r"failed to retrieve a token\. Sign in with 'az login'"
            ):
                await client.search_studies()
    assert not route.called


async def test_error_body_that_is_not_a_stow_answer(azure: DicomWebClient, samples: Samples) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.post("/studies").respond(400, json={"HttpError": "Bad Request", "Message": "Bad file format"})
        outcomes = await azure.store_instances([samples.blue])
    # The server's own message, not a guess that the part was dropped.
    assert outcomes[0].status is StoreStatus.FAILED
    assert "HTTP 400" in (outcomes[0].reason or "") and "Server said: Bad file format" in (
        outcomes[0].reason or ""
    )


async def test_later_failure_keeps_earlier_outcomes(credential: FakeCredential, samples: Samples) -> None:
    config = Config.single(url=BASE, auth="azure", max_retries=0, concurrency=1)  # type: ignore[arg-type]
    async with DicomWebClient(config.server, credential=credential) as client:
        with respx.mock(base_url=BASE) as mock:
            mock.post("/studies").mock(
                side_effect=[
                    httpx.Response(200, json=stow_response(referenced=[sop_item(samples.blue.instance_uid)])),
                    httpx.Response(503, text="busy"),
                    httpx.Response(401, text="expired"),
                    httpx.Response(401, text="expired"),  # after the token refresh too
                ]
            )
            route = mock.routes[0]
            four = [samples.blue, samples.green, samples.red, samples.blue]
            outcomes = await client.store_instances(four, encoding="single-part")
    assert [o.status for o in outcomes] == [StoreStatus.STORED] + [StoreStatus.FAILED] * 3
    assert "HTTP 503" in (outcomes[1].reason or "")
    assert "HTTP 401" in (outcomes[2].reason or "")
    assert "not sent" in (outcomes[3].reason or "")  # the 401 would repeat: nothing more was sent
    assert route.call_count == 4


async def test_store_batches_run_concurrently_within_the_limit(
    credential: FakeCredential, samples: Samples
) -> None:
    in_flight = peak = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(5):  # let the other senders run
            await anyio.lowlevel.checkpoint()
        in_flight -= 1
        uid = next(f.instance_uid for f in samples.all if f.path.read_bytes() == request.content)
        return httpx.Response(200, json=stow_response(referenced=[sop_item(uid)]))

    files = [samples.blue, samples.green, samples.red] * 4
    config = Config.single(url=BASE, auth="azure", concurrency=3)  # type: ignore[arg-type]
    async with DicomWebClient(config.server, credential=credential) as client:
        with respx.mock(base_url=BASE) as mock:
            mock.post("/studies").mock(side_effect=answer)
            outcomes = await client.store_instances(files, encoding="single-part")
    assert peak == 3
    assert [o.file for o in outcomes] == files  # outcomes in the order of the files, whatever the timing
    assert all(o.status is StoreStatus.STORED for o in outcomes)


async def test_file_gone_before_sending_fails_only_its_batch(
    credential: FakeCredential, samples: Samples, tmp_path: Path
) -> None:
    copy = tmp_path / "red.dcm"
    copy.write_bytes(samples.red.path.read_bytes())
    red = read_dicom_file(copy)
    assert isinstance(red, DicomFile)
    copy.unlink()  # removed after it was collected, before it was sent
    config = Config.single(url=BASE, auth="azure", concurrency=1)  # type: ignore[arg-type]
    async with DicomWebClient(config.server, credential=credential) as client:
        with respx.mock(base_url=BASE, assert_all_called=False) as mock:
            mock.post("/studies").respond(
                200, json=stow_response(referenced=[sop_item(samples.blue.instance_uid)])
            )
            outcomes = await client.store_instances([samples.blue, red], encoding="single-part")
    assert [o.status for o in outcomes] == [StoreStatus.STORED, StoreStatus.FAILED]
    assert "could not be read" in (outcomes[1].reason or "")
