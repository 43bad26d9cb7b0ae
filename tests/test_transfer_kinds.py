"""transfer_instances between server kinds: the real Orthanc and the Azure DICOM service, whose answers
are mocked with respx as its conformance statement describes them (STOW 200 with the references, 409
with failure reason 45070 for instances already stored; WADO-RS only with transfer-syntax=*)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import respx

from dicomweb_mcp import Config, DicomWebClient, FileStore, Reference, collect_dicom_files
from dicomweb_mcp.tools.context import Archive, no_progress
from dicomweb_mcp.tools.transfer import Transfer
from tests.support.azure import BASE, DICOM_JSON, FakeCredential, sop_item, stow_response
from tests.support.identified import IdentifiedStudy, make_identified_study
from tests.support.orthanc import Orthanc

pytestmark = pytest.mark.anyio


@pytest.fixture
def study(tmp_path: Path) -> IdentifiedStudy:
    return make_identified_study(tmp_path / "study", series=1, per_series=3)


def azure_config(tmp_path: Path) -> Config:
    return Config.single(
        url=BASE, auth="azure", name="azure", download_dir=tmp_path / "downloads", max_retries=0
    )  # type: ignore[arg-type]


async def test_orthanc_to_azure_and_again(
    orthanc_config: Config, study: IdentifiedStudy, tmp_path: Path
) -> None:
    files, _ = collect_dicom_files(study.paths)
    async with DicomWebClient(orthanc_config.server) as orthanc:
        await orthanc.store_instances(files)
        async with DicomWebClient(azure_config(tmp_path).server, credential=FakeCredential()) as azure:
            source, destination = Archive(orthanc_config.server, orthanc), Archive(azure.config, azure)
            store = FileStore(orthanc_config.download_dir)
            with respx.mock(assert_all_called=False) as mock:
                mock.route(host="127.0.0.1").pass_through()
                stored = stow_response(referenced=[sop_item(uid) for uid in study.instance_uids])
                already = stow_response(
                    failed=[sop_item(uid, **{"00081197": 45070}) for uid in study.instance_uids]
                )
                # Azure names every instance of the request in its answer; the client reads those it sent.
                answer = {"status_code": 200, "json": stored}
                route = mock.post(f"{BASE}/studies").mock(
                    side_effect=lambda request: httpx.Response(**answer, headers=DICOM_JSON)  # type: ignore[arg-type]
                )
                first = await Transfer(source, destination, store, no_progress, 8).run(
                    Reference(study.study_uid)
                )
                answer.update(status_code=409, json=already)
                second = await Transfer(source, destination, store, no_progress, 8).run(
                    Reference(study.study_uid)
                )
    assert (first.counts.stored, first.counts.failed) == (3, 0)
    assert (second.counts.stored, second.counts.already_present) == (0, 3)
    requests = [call.request for call in route.calls]
    assert all(r.headers["authorization"] == "Bearer token-1" for r in requests)
    sent = b"".join(r.content for r in requests[: len(requests) // 2])
    assert all(uid.encode() in sent for uid in study.instance_uids)  # every instance went in the first run


async def test_azure_to_orthanc(
    orthanc_config: Config, empty_orthanc: Orthanc, study: IdentifiedStudy, tmp_path: Path
) -> None:
    boundary = "azure-boundary-7"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n".encode()
            + path.read_bytes()
            + b"\r\n"
            for path in study.paths
        )
        + f"--{boundary}--".encode()
    )

    def retrieve(request: httpx.Request) -> httpx.Response:
        if "transfer-syntax=*" not in request.headers.get("accept", ""):
            return httpx.Response(406, text="The requested DICOM instances cannot be transcoded.")
        content_type = f'multipart/related; type="application/dicom"; boundary="{boundary}"'
        return httpx.Response(200, content=body, headers={"content-type": content_type})

    async with (
        DicomWebClient(azure_config(tmp_path).server, credential=FakeCredential()) as azure,
        DicomWebClient(orthanc_config.server) as orthanc,
    ):
        source, destination = Archive(azure.config, azure), Archive(orthanc_config.server, orthanc)
        store = FileStore(orthanc_config.download_dir)
        with respx.mock(assert_all_called=False) as mock:
            mock.route(host="127.0.0.1").pass_through()
            mock.get(f"{BASE}/studies/{study.study_uid}/series").respond(204)  # no list: one GET
            mock.get(f"{BASE}/studies/{study.study_uid}").mock(side_effect=retrieve)
            result = await Transfer(source, destination, store, no_progress, 8).run(
                Reference(study.study_uid)
            )
    assert (result.counts.retrieved, result.counts.stored) == (3, 3)
    assert empty_orthanc.statistics()["CountInstances"] == 3
