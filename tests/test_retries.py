"""Retries: what is retried, how long the client waits, and when it gives up (delays recorded, not slept)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
import respx

from dicomweb_mcp import (
    DicomWebClient,
    NotFoundError,
    ServerError,
    ServerUnreachableError,
    StoreStatus,
    ThrottledError,
)
from dicomweb_mcp.config import ServerConfig
from dicomweb_mcp.dicom.reference import Reference
from tests.support.azure import BASE, FakeCredential, sop_item, stow_response
from tests.support.samples import Samples

pytestmark = pytest.mark.anyio

SERVER = ServerConfig(url=BASE, auth="azure", timeout=30, max_retries=3)  # type: ignore[arg-type]


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(sleeps: Sleeps) -> AsyncIterator[DicomWebClient]:
    async with DicomWebClient(SERVER, credential=FakeCredential(), sleep=sleeps) as c:
        yield c


async def test_throttling_then_success_honours_retry_after(client: DicomWebClient, sleeps: Sleeps) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.get("/studies").mock(
            side_effect=[
                httpx.Response(429, headers={"Retry-After": "2"}),
                httpx.Response(503, text="busy"),
                httpx.Response(200, json=[]),
            ]
        )
        result = await client.search_studies()
    assert result.datasets == [] and route.call_count == 3
    assert len(sleeps.delays) == 2
    assert 2.0 <= sleeps.delays[0] <= 2.5  # Retry-After plus at most one backoff unit of jitter
    assert 0.0 <= sleeps.delays[1] <= 1.0  # second attempt: backoff of up to 2 x 0.5 s, full jitter


async def test_gives_up_after_max_retries_and_says_throttled(client: DicomWebClient, sleeps: Sleeps) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.get("/studies").respond(429, text="Too many requests")
        with pytest.raises(ThrottledError, match=r"HTTP 429 at /v2/studies \(tried 4 times\).*throttled"):
            await client.search_studies()
    assert route.call_count == 4 and len(sleeps.delays) == 3


async def test_retries_off(sleeps: Sleeps) -> None:
    async with DicomWebClient(
        replace(SERVER, max_retries=0), credential=FakeCredential(), sleep=sleeps
    ) as client:
        with respx.mock(base_url=BASE) as mock:
            route = mock.get("/studies").respond(503)
            with pytest.raises(ThrottledError, match="throttled"):
                await client.search_studies()
    assert route.call_count == 1 and sleeps.delays == []


async def test_retry_after_beyond_the_time_budget_is_not_waited(
    client: DicomWebClient, sleeps: Sleeps
) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.get("/studies").respond(503, headers={"Retry-After": "3600"})
        with pytest.raises(ThrottledError) as refused:
            await client.search_studies()
    assert route.call_count == 1 and sleeps.delays == []
    assert refused.value.retry_after == 3600.0  # what a later attempt (a cohort job's) waits for


async def test_connection_failures_are_retried(client: DicomWebClient, sleeps: Sleeps) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.get("/studies").mock(
            side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=[])]
        )
        await client.search_studies()
        assert route.call_count == 2
        mock.get("/series").mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(ServerUnreachableError, match=r"cannot connect.*\(tried 4 times\)"):
            await client.search_series()


async def test_bad_gateway_retried_then_reported(client: DicomWebClient) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.get("/studies/1.2.3/metadata").respond(502, text="<html>502 Bad Gateway</html>")
        with pytest.raises(ServerError, match=r"HTTP 502.*502 Bad Gateway.*try again later"):
            await client.retrieve_metadata(Reference("1.2.3"))


async def test_client_errors_are_not_retried(client: DicomWebClient, sleeps: Sleeps) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.get("/studies").respond(400, text="Invalid query")
        with pytest.raises(Exception, match="Invalid query"):
            await client.search_studies()
    assert route.call_count == 1 and sleeps.delays == []


async def test_retried_store_counts_its_own_earlier_attempt_as_stored(
    client: DicomWebClient, samples: Samples
) -> None:
    conflict = stow_response(failed=[sop_item(samples.blue.instance_uid, **{"00081197": 45070})])
    with respx.mock(base_url=BASE) as mock:
        # The first attempt reached the server but its answer was lost to a 504 from a gateway.
        route = mock.post("/studies").mock(
            side_effect=[httpx.Response(504), httpx.Response(409, json=conflict)]
        )
        outcomes = await client.store_instances([samples.blue])
    assert route.call_count == 2
    assert outcomes[0].status is StoreStatus.STORED
    first, second = (call.request for call in route.calls)
    assert first.content == second.content  # the streamed body was sent again in full


async def test_retried_delete_that_finds_nothing_succeeded(client: DicomWebClient) -> None:
    with respx.mock(base_url=BASE) as mock:
        # A gateway timed out: the server may have deleted it, and the retry finds nothing.
        route = mock.delete("/studies/1.2.3").mock(side_effect=[httpx.Response(504), httpx.Response(404)])
        result = await client.delete(Reference("1.2.3"))
    assert route.call_count == 2 and result.level == "study"


async def test_throttled_then_missing_is_not_found(client: DicomWebClient) -> None:
    with respx.mock(base_url=BASE) as mock:
        # A 503 refused the first attempt outright: a 404 after it is the truth.
        mock.delete("/studies/1.2.3").mock(side_effect=[httpx.Response(503), httpx.Response(404)])
        with pytest.raises(NotFoundError):
            await client.delete(Reference("1.2.3"))


async def test_throttled_then_already_stored_is_already_present(
    client: DicomWebClient, samples: Samples
) -> None:
    conflict = stow_response(failed=[sop_item(samples.blue.instance_uid, **{"00081197": 45070})])
    with respx.mock(base_url=BASE) as mock:
        mock.post("/studies").mock(side_effect=[httpx.Response(503), httpx.Response(409, json=conflict)])
        outcomes = await client.store_instances([samples.blue])
    assert outcomes[0].status is StoreStatus.ALREADY_PRESENT  # it was there before this call


async def test_odd_retry_after_values_do_not_break_retries(client: DicomWebClient, sleeps: Sleeps) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.get("/studies").mock(
            side_effect=[
                httpx.Response(503, headers=[(b"Retry-After", b"\xb2")]),  # latin-1 superscript two
                httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00"}),  # past, no zone
                httpx.Response(200, json=[]),
            ]
        )
        await client.search_studies()
    assert route.call_count == 3 and all(0 <= d <= 1.5 for d in sleeps.delays)
