"""transfer_instances between two real Orthancs the suite starts: the copy is whole, a second run stores
nothing twice, a de-identified copy keeps nothing that identifies, and a read-only destination is refused
before anything moves."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pydicom
import pytest
from mcp import Client

from dicomweb_mcp import Config, DicomWebClient, Reference, collect_dicom_files
from dicomweb_mcp.config import ServerConfig
from dicomweb_mcp.files.store import FileStore
from dicomweb_mcp.tools.context import no_progress
from dicomweb_mcp.tools.server import build_server
from dicomweb_mcp.tools.transfer import Transfer
from tests.support.counting import CountingTransport
from tests.support.identified import IdentifiedStudy, make_identified_study
from tests.support.mcp import text, tool_context
from tests.support.orthanc import Orthanc, free_port
from tests.support.storage import save_all

pytestmark = pytest.mark.anyio


@pytest.fixture
def config(clinical_and_research: Config) -> Config:
    return clinical_and_research


@pytest.fixture
async def study(orthanc_config: Config, tmp_path: Path) -> IdentifiedStudy:
    made = make_identified_study(tmp_path / "study", series=2, per_series=3)
    async with DicomWebClient(orthanc_config.server) as client:
        files, _ = collect_dicom_files([tmp_path / "study"])
        outcomes = await client.store_instances(files)
    assert len(outcomes) == 6
    return made


async def transfer(
    config: Config, destination: CountingTransport | None = None, **arguments: Any
) -> dict[str, Any]:
    transports = {"research": destination} if destination is not None else None
    async with Client(build_server(config, transports=transports)) as client:
        result = await client.call_tool(
            "transfer_instances", {"source": "clinical", "destination": "research", **arguments}
        )
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


async def destination_files(url: str, study_uid: str, directory: Path) -> list[Path]:
    async with (
        DicomWebClient(ServerConfig(url=url)) as client,
        client.stream_instances(Reference(study_uid)) as reader,
    ):
        saved = await save_all(FileStore(directory), reader, directory)
    return [Path(f.path) for f in saved]


async def test_transfer_copies_a_study_whole_and_once(
    config: Config, study: IdentifiedStudy, destination: Orthanc, tmp_path: Path
) -> None:
    first = await transfer(config, study_uid=study.study_uid)
    assert first["counts"] == {"retrieved": 6, "stored": 6, "already_present": 0, "failed": 0}
    assert first["study_uids"] == [study.study_uid]
    copies = await destination_files(destination.dicomweb_url, study.study_uid, tmp_path / "copies")
    originals = {pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in study.paths}
    assert {pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in copies} == originals

    counted = CountingTransport()
    again = await transfer(config, counted, study_uid=study.study_uid)
    assert again["counts"] == {"retrieved": 6, "stored": 0, "already_present": 6, "failed": 0}
    assert counted.stores == 0  # looked up, found, and not sent again
    # The spool is gone: nothing of the transfer stays on local disk.
    assert not any((config.download_dir / ".transfer").iterdir())


async def test_transfer_of_one_series(config: Config, study: IdentifiedStudy) -> None:
    result = await transfer(config, study_uid=study.study_uid, series_uid=study.series_uids[1])
    assert result["counts"]["stored"] == 3


async def test_read_only_destination_is_refused_before_anything_moves(
    config: Config, study: IdentifiedStudy, destination: Orthanc
) -> None:
    # The source is a closed port: any request would fail as unreachable, so the refusal came first.
    closed = config.changed(url=f"http://127.0.0.1:{free_port()}/dicom-web", server_kind="orthanc")  # type: ignore[arg-type]
    read_only = replace(closed, servers=(closed.server, replace(config.servers[1], read_only=True)))
    async with Client(build_server(read_only)) as client:
        result = await client.call_tool(
            "transfer_instances",
            {"source": "clinical", "destination": "research", "study_uid": study.study_uid},
        )
    assert result.is_error
    assert "'research' is read-only" in text(result)
    assert destination.statistics()["CountInstances"] == 0
    assert not (config.download_dir / ".transfer").exists()


async def test_unknown_server_names_the_configured_ones(config: Config, study: IdentifiedStudy) -> None:
    async with Client(build_server(config)) as client:
        result = await client.call_tool(
            "transfer_instances", {"source": "clinical", "destination": "pacs", "study_uid": study.study_uid}
        )
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert result.is_error
    assert "There is no server named 'pacs': the servers are clinical, research." in text(result)
    schema = tools["transfer_instances"].input_schema["properties"]
    assert schema["destination"]["enum"] == ["clinical", "research"]
    assert tools["search_studies"].input_schema["properties"]["server"]["enum"] == ["clinical", "research"]


async def test_a_small_spool_bounds_temporary_disk_and_still_completes(
    config: Config, study: IdentifiedStudy
) -> None:
    """With room for two instances the transfer waits for the destination instead of filling the disk."""
    size = max(p.stat().st_size for p in study.paths)
    async with (
        DicomWebClient(config.server) as source_client,
        DicomWebClient(config.servers[1]) as destination_client,
    ):
        app = tool_context(config, source_client, destination_client)
        source, destination = app.archives.values()
        transfer = Transfer(source, destination, app.store, no_progress, 8, spool_bytes=2 * size)
        result = await transfer.run(Reference(study.study_uid))
    assert result.counts.stored == 6
    assert 0 < transfer.peak_spooled <= 2 * size


def scan(path: Path, study: IdentifiedStudy) -> pydicom.Dataset:
    """Assert that nothing identifying is left in a de-identified file, anywhere in its bytes or its
    elements; return the data set."""
    raw = path.read_bytes()
    for value in [*study.identifying, *study.original_uids]:
        assert value.encode() not in raw, (path.name, value)
    ds = pydicom.dcmread(path)
    for element in ds.iterall():
        assert element.tag.group % 2 == 0, f"private tag {element.tag} in {path.name}"
    assert ds.PatientIdentityRemoved == "YES"
    assert "113100" in {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    return ds


async def test_deidentified_transfer_keeps_nothing_identifying_and_is_consistent(
    config: Config, study: IdentifiedStudy, destination: Orthanc, tmp_path: Path
) -> None:
    result = await transfer(config, study_uid=study.study_uid, deidentify=True)
    assert result["counts"] == {"retrieved": 6, "stored": 6, "already_present": 0, "failed": 0}
    assert result["deidentified"] is True
    [new_study] = result["study_uids"]
    assert new_study != study.study_uid
    copies = await destination_files(destination.dicomweb_url, new_study, tmp_path / "copies")
    assert len(copies) == 6
    originals = {(int(d.SeriesNumber), int(d.InstanceNumber)): d for d in map(pydicom.dcmread, study.paths)}
    series: dict[str, set[str]] = {}
    frames_of_reference = set()
    for path in copies:
        ds = scan(path, study)
        original = originals[(int(ds.SeriesNumber), int(ds.InstanceNumber))]
        assert ds.PixelData == original.PixelData  # pixels unchanged
        assert ds.StudyInstanceUID == new_study
        series.setdefault(ds.SeriesInstanceUID, set()).add(ds.SOPInstanceUID)
        frames_of_reference.add(ds.FrameOfReferenceUID)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        # Dates moved by one shift for the patient, the same in every instance.
        assert ds.StudyDate != original.StudyDate and ds.StudyDate == ds.ContentDate
        if "ReferencedImageSequence" in ds:
            # References point at the new UID of the series' first image, which is in the copy.
            first = [
                c
                for c in copies
                if pydicom.dcmread(c).SOPInstanceUID == ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID
            ]
            assert len(first) == 1
    # Relations kept: 2 series of 3 instances, one frame of reference across both.
    assert sorted(len(v) for v in series.values()) == [3, 3]
    assert len(frames_of_reference) == 1
    assert {d.PatientName for d in map(pydicom.dcmread, copies)} == {pydicom.dcmread(copies[0]).PatientName}

    again = await transfer(config, study_uid=study.study_uid, deidentify=True)
    assert again["study_uids"] == [new_study]  # the same new UIDs: nothing stored twice
    assert again["counts"] == {"retrieved": 6, "stored": 0, "already_present": 6, "failed": 0}
    assert destination.statistics()["CountInstances"] == 6
    # The mapping that could re-identify stays with the operator, never in a result.
    mapping = config.download_dir / ".deidentify" / "mapping.jsonl"
    assert study.study_uid in mapping.read_text()
    assert "mapping" not in json.dumps(result) and study.study_uid not in json.dumps(result)


async def test_deidentified_retrieve_names_files_by_new_uids_only(
    config: Config, study: IdentifiedStudy
) -> None:
    async with Client(build_server(config)) as client:
        result = await client.call_tool(
            "retrieve_instances", {"study_uid": study.study_uid, "deidentify": True}
        )
    assert not result.is_error, text(result)
    content = result.structured_content
    assert content is not None and content["file_count"] == 6
    files = [p for p in config.download_dir.rglob("*") if p.is_file() and ".deidentify" not in p.parts]
    assert len(files) == 7  # six instances and the manifest
    for path in files:
        assert not any(uid in str(path) for uid in study.original_uids), path
        if path.suffix == ".dcm":
            scan(path, study)
    manifest = json.loads(Path(content["manifest"]).read_text())
    assert manifest["complete"] is True and study.study_uid not in json.dumps(manifest)


async def test_a_cancelled_transfer_leaves_no_spool(config: Config, study: IdentifiedStudy) -> None:
    async with (
        DicomWebClient(config.server) as source_client,
        DicomWebClient(config.servers[1]) as destination_client,
    ):
        app = tool_context(config, source_client, destination_client)
        source, destination = app.archives.values()
        with anyio.CancelScope() as scope:

            async def cancel_on_first(progress: float, total: float | None, message: str) -> None:
                scope.cancel()  # as a host cancelling the call once the first instance is spooled

            transfer = Transfer(source, destination, app.store, cancel_on_first, 8)
            await transfer.run(Reference(study.study_uid))
    assert scope.cancelled_caught
    assert transfer.retrieved >= 1
    assert not [p for p in (config.download_dir / ".transfer").rglob("*") if p.is_file()]
