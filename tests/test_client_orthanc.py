"""The tutorial walk against a real Orthanc: store, retrieve, metadata, frames, every QIDO form, delete."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pydicom
import pytest

from dicomweb_mcp import (
    Config,
    DicomWebClient,
    InvalidInputError,
    NotFoundError,
    ServerKind,
    StoreStatus,
    collect_dicom_files,
)
from dicomweb_mcp.dicom.dicomjson import element_value
from dicomweb_mcp.dicom.reference import Reference
from dicomweb_mcp.dicomweb.transport import reads_wide
from dicomweb_mcp.files.store import FileStore
from tests.support.samples import Samples
from tests.support.storage import save_all
from tests.support.synthetic import make_study

pytestmark = pytest.mark.anyio

STUDY_INSTANCE_UID = "0020000D"
SERIES_INSTANCE_UID = "0020000E"
SOP_INSTANCE_UID = "00080018"


def uids(datasets: list[dict], tag: str) -> list[str]:
    return sorted(d[tag]["Value"][0] for d in datasets)


async def store_tutorial(client: DicomWebClient, samples: Samples) -> None:
    """The tutorial's order: blue-circle to /studies, red-triangle to /studies/{study}, then green-square."""
    outcomes = await client.store_instances([samples.blue])
    outcomes += await client.store_instances([samples.red], study=Reference(samples.study_uid))
    outcomes += await client.store_instances([samples.green], study=Reference(samples.study_uid))
    assert [o.status for o in outcomes] == [StoreStatus.STORED] * 3, outcomes


async def test_detects_orthanc(client: DicomWebClient) -> None:
    assert (await client.profile()).kind is ServerKind.ORTHANC


async def test_store_retrieve_study_series_instance(
    client: DicomWebClient, samples: Samples, tmp_path: Path
) -> None:
    await store_tutorial(client, samples)
    store = FileStore(tmp_path)

    async with client.stream_instances(Reference(samples.study_uid)) as reader:
        study = await save_all(store, reader, tmp_path / "study")
    assert sorted(f.instance_uid for f in study) == sorted(f.instance_uid for f in samples.all)
    for saved in study:
        original = next(f for f in samples.all if f.instance_uid == saved.instance_uid)
        assert (
            Path(saved.path)
            == tmp_path / "study" / original.study_uid / original.series_uid / f"{original.instance_uid}.dcm"
        )
        assert saved.size == saved.path.stat().st_size
        assert pydicom.dcmread(Path(saved.path)).PixelData == pydicom.dcmread(original.path).PixelData

    async with client.stream_instances(Reference(samples.study_uid, samples.red.series_uid)) as reader:
        series = await save_all(store, reader, tmp_path / "series")
    assert sorted(f.instance_uid for f in series) == sorted(
        [samples.red.instance_uid, samples.green.instance_uid]
    )

    async with client.stream_instances(
        Reference(samples.study_uid, samples.red.series_uid, samples.red.instance_uid)
    ) as reader:
        instance = await save_all(store, reader, tmp_path / "instance")
    assert [f.instance_uid for f in instance] == [samples.red.instance_uid]
    # No temporary file is left anywhere.
    assert not list(tmp_path.rglob("*.partial"))


async def test_metadata_at_each_level(client: DicomWebClient, samples: Samples) -> None:
    await store_tutorial(client, samples)
    study = await client.retrieve_metadata(Reference(samples.study_uid))
    series = await client.retrieve_metadata(Reference(samples.study_uid, samples.blue.series_uid))
    instance = await client.retrieve_metadata(
        Reference(samples.study_uid, samples.green.series_uid, samples.green.instance_uid)
    )
    assert uids(study, SOP_INSTANCE_UID) == sorted(f.instance_uid for f in samples.all)
    assert uids(series, SOP_INSTANCE_UID) == [samples.blue.instance_uid]
    assert uids(instance, SOP_INSTANCE_UID) == [samples.green.instance_uid]
    assert instance[0]["00100010"]["Value"][0]["Alphabetic"] == "Anony Mous"
    # Pixel data is bulk data: a reference, never inline bytes in metadata.
    assert "InlineBinary" not in instance[0].get("7FE00010", {})


async def test_frame_of_red_triangle(client: DicomWebClient, samples: Samples, tmp_path: Path) -> None:
    await store_tutorial(client, samples)
    red = samples.red
    async with client.stream_frames(
        Reference(red.study_uid, red.series_uid, red.instance_uid), [1]
    ) as reader:
        base = Reference(red.study_uid, red.series_uid, red.instance_uid).file(tmp_path)
        frames = [
            await FileStore(tmp_path).save_frame(
                part.aiter_bytes(), base, part.frame_number or 1, part.media_type, part.transfer_syntax_uid
            )
            async for part in reader
        ]
    assert len(frames) == 1
    frame = frames[0]
    original = pydicom.dcmread(red.path)
    assert frame.size_bytes == original.Rows * original.Columns * original.SamplesPerPixel == 2_892_945
    assert Path(frame.path).read_bytes() == original.PixelData[: frame.size_bytes]
    assert frame.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert Path(frame.path).name == f"{red.instance_uid}.frame-1.raw"


async def test_rendered_instance(client: DicomWebClient, samples: Samples) -> None:
    await store_tutorial(client, samples)
    red = samples.red
    jpeg = await client.retrieve_rendered(Reference(red.study_uid, red.series_uid, red.instance_uid))
    png = await client.retrieve_rendered(
        Reference(red.study_uid, red.series_uid, red.instance_uid), frame=1, media_type="image/png"
    )
    assert jpeg.media_type == "image/jpeg" and jpeg.data and jpeg.data[:3] == b"\xff\xd8\xff"
    assert png.media_type == "image/png" and png.data and png.data[:8] == b"\x89PNG\r\n\x1a\n"
    original = pydicom.dcmread(red.path)
    assert (jpeg.renderer, jpeg.width, jpeg.height) == ("server", original.Columns, original.Rows)


async def store_other_study(client: DicomWebClient, directory: Path) -> None:
    """A study that matches none of the tutorial's searches: a search that ignored its filter would find it."""
    files, _ = collect_dicom_files(
        make_study(directory, instances=2, series=2, seed=11, patient_name="Other^Person")
    )
    assert all(o.status is StoreStatus.STORED for o in await client.store_instances(files))


async def test_every_tutorial_qido_form(client: DicomWebClient, samples: Samples, tmp_path: Path) -> None:
    await store_tutorial(client, samples)
    await store_other_study(client, tmp_path)
    study, red = samples.study_uid, samples.red
    results = {
        "studies by StudyInstanceUID": await client.search_studies({"StudyInstanceUID": study}),
        "series by SeriesInstanceUID": await client.search_series({"SeriesInstanceUID": red.series_uid}),
        "series in study": await client.search_series(
            {"SeriesInstanceUID": red.series_uid}, study=Reference(study)
        ),
        "instances by SOPInstanceUID": await client.search_instances({"SOPInstanceUID": red.instance_uid}),
        "instances in study": await client.search_instances(
            {"SOPInstanceUID": red.instance_uid}, scope=Reference(study)
        ),
        "instances in series": await client.search_instances(
            {"SOPInstanceUID": red.instance_uid}, scope=Reference(study, red.series_uid)
        ),
        "PatientName=Anony*": await client.search_studies({"PatientName": "Anony*"}),
        "PatientName=Anony Mous": await client.search_studies({"PatientName": "Anony Mous"}),
        "StudyDate range": await client.search_studies({"StudyDate": "20200101-20201231"}),
        "StudyDate by tag": await client.search_studies({"00080020": "20200922"}),
    }
    for name, result in results.items():
        assert len(result.datasets) == 1, name
        assert {element_value(d, STUDY_INSTANCE_UID) for d in result.datasets} == {study}, name
    assert uids(results["instances in series"].datasets, SOP_INSTANCE_UID) == [red.instance_uid]
    # The space cannot reach Orthanc: it went as '?', and the caller is told.
    assert any("Anony?Mous" in w for w in results["PatientName=Anony Mous"].warnings)


async def test_qido_no_match_is_empty_and_lists_work(
    client: DicomWebClient, samples: Samples, tmp_path: Path
) -> None:
    await store_tutorial(client, samples)
    await store_other_study(client, tmp_path)
    assert len((await client.search_studies()).datasets) == 2
    assert (await client.search_studies({"PatientName": "Nobody*"})).datasets == []
    assert (await client.search_studies({"StudyDate": "19900101-19901231"})).datasets == []
    both = await client.search_instances(
        {"SOPInstanceUID": [samples.red.instance_uid, samples.blue.instance_uid]}
    )
    assert uids(both.datasets, SOP_INSTANCE_UID) == sorted(
        [samples.red.instance_uid, samples.blue.instance_uid]
    )
    page = await client.search_instances(limit=2, scope=Reference(samples.study_uid))
    rest = await client.search_instances(limit=2, offset=2, scope=Reference(samples.study_uid))
    assert len(page.datasets) == 2 and len(rest.datasets) == 1
    assert set(uids(page.datasets + rest.datasets, SOP_INSTANCE_UID)) == {f.instance_uid for f in samples.all}
    plain = await client.search_instances({"SOPInstanceUID": samples.red.instance_uid})
    extra = await client.search_instances(
        {"SOPInstanceUID": samples.red.instance_uid}, include_fields=["ImageComments"]
    )
    assert "00204000" not in plain.datasets[0]
    assert extra.datasets[0]["00204000"]["Value"] == ["Fake DICOM - Red Triangle"]


async def test_qido_rejects_bad_input_before_sending(client: DicomWebClient) -> None:
    with pytest.raises(InvalidInputError, match="not a DICOM keyword"):
        await client.search_studies({"PatientNmae": "x"})
    with pytest.raises(InvalidInputError, match="not a date"):
        await client.search_studies({"StudyDate": "2020-13-01"})
    with pytest.raises(InvalidInputError, match="not a valid DICOM UID"):
        await client.search_series(study=Reference("1.2.3/../../etc"))


async def test_duplicate_and_foreign_study_outcomes(client: DicomWebClient, samples: Samples) -> None:
    await store_tutorial(client, samples)
    again = await client.store_instances([samples.blue])
    assert again[0].status is StoreStatus.ALREADY_PRESENT
    # An instance posted to a study it does not belong to is refused (Orthanc: 409 with reason 272).
    await client.delete(Reference(samples.study_uid, samples.blue.series_uid, samples.blue.instance_uid))
    wrong = await client.store_instances([samples.blue], study=Reference("1.2.3.4"))
    assert wrong[0].status is StoreStatus.FAILED
    assert wrong[0].reason_code is not None


async def test_delete_instance_then_series_then_study(client: DicomWebClient, samples: Samples) -> None:
    await store_tutorial(client, samples)
    study, red, green, blue = samples.study_uid, samples.red, samples.green, samples.blue

    result = await client.delete(Reference(study, red.series_uid, red.instance_uid))
    assert (result.level, result.method) == ("instance", "orthanc-rest")
    remaining = await client.search_instances(scope=Reference(study))
    assert uids(remaining.datasets, SOP_INSTANCE_UID) == sorted([green.instance_uid, blue.instance_uid])

    await client.delete(Reference(study, green.series_uid))
    series = await client.search_series(study=Reference(study))
    assert uids(series.datasets, SERIES_INSTANCE_UID) == [blue.series_uid]

    await client.delete(Reference(study))
    assert (await client.search_studies({"StudyInstanceUID": study})).datasets == []
    with pytest.raises(NotFoundError, match="search"):
        await client.delete(Reference(study))


async def test_delete_refuses_uid_from_another_study(client: DicomWebClient, samples: Samples) -> None:
    await store_tutorial(client, samples)
    with pytest.raises(NotFoundError):
        await client.delete(Reference("1.2.3.4", samples.red.series_uid, samples.red.instance_uid))
    assert len((await client.search_instances({"SOPInstanceUID": samples.red.instance_uid})).datasets) == 1


async def test_missing_study_is_not_found(client: DicomWebClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.retrieve_metadata(Reference("1.2.3.4.5"))
    assert "/studies/1.2.3.4.5/metadata" in str(caught.value)


async def test_change_feed_on_orthanc_from_its_change_log(client: DicomWebClient, samples: Samples) -> None:
    await store_tutorial(client, samples)
    await client.delete(Reference(samples.study_uid, samples.red.series_uid, samples.red.instance_uid))
    feed = await client.change_feed(limit=50)
    # Instance entries only, oldest first, with their UIDs; Orthanc drops a deleted resource's entries.
    # (The three files were stored in parallel: their order in the log is the order they arrived.)
    assert {(e.instance_uid, e.series_uid, e.study_uid, e.action) for e in feed} == {
        (f.instance_uid, f.series_uid, f.study_uid, "Create") for f in (samples.blue, samples.green)
    }
    assert len(feed) == 2 and feed[0].sequence < feed[1].sequence
    assert feed[0].timestamp and feed[0].state == "Current"
    after_first = await client.change_feed(offset=feed[0].sequence, limit=1)
    assert [e.instance_uid for e in after_first] == [feed[1].instance_uid]
    latest = await client.change_feed_latest()
    assert latest is not None and latest.instance_uid == feed[1].instance_uid
    with pytest.raises(InvalidInputError, match="no time window"):
        await client.change_feed(start_time="2024-01-01T00:00:00Z")


async def test_delete_removes_a_study_held_under_two_patient_ids(
    client: DicomWebClient, samples: Samples, tmp_path: Path
) -> None:
    await store_tutorial(client, samples)
    # Same study UID, another patient ID: Orthanc keeps it as a second study resource.
    copy = pydicom.dcmread(samples.blue.path)
    copy.PatientID = "OTHER"
    copy.SOPInstanceUID = pydicom.uid.generate_uid()
    copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
    copy.save_as(tmp_path / "copy.dcm")
    files, _ = collect_dicom_files([tmp_path / "copy.dcm"])
    assert (await client.store_instances(files))[0].status is StoreStatus.STORED

    await client.delete(Reference(samples.study_uid))
    assert (await client.search_studies({"StudyInstanceUID": samples.study_uid})).datasets == []
    assert (await client.search_instances({"StudyInstanceUID": samples.study_uid})).datasets == []


async def test_unrecognised_orthanc_still_deletes(orthanc_config: Config, samples: Samples) -> None:
    # Kind forced to generic: the DICOMweb DELETE answers 405, and the REST API does the work.
    async with DicomWebClient(replace(orthanc_config.server, server_kind=ServerKind.GENERIC)) as generic:
        outcomes = await generic.store_instances([samples.red])
        result = await generic.delete(
            Reference(samples.study_uid, samples.red.series_uid, samples.red.instance_uid)
        )
        remaining = await generic.search_instances({"SOPInstanceUID": samples.red.instance_uid})
    assert outcomes[0].status is StoreStatus.STORED
    assert result.method == "orthanc-rest" and remaining.datasets == []


async def test_socket_reads_are_wide_on_our_pool_only(client: DicomWebClient, samples: Samples) -> None:
    """The 256 KiB reads (2.5x faster receive on large studies) take effect on our pool, and on it only."""
    await store_tutorial(client, samples)
    assert reads_wide(client.http.pool_transport)
    biggest = 0
    url = f"{client.config.url}/studies/{samples.study_uid}"
    accept = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    async with client.http.stream("Retrieve study", "GET", url, headers=accept) as sent:
        async for chunk in sent.response.aiter_bytes():
            biggest = max(biggest, len(chunk))
    assert biggest > 64 * 1024  # httpcore alone never reads more than 64 KiB at once
    assert not reads_wide(httpx.AsyncHTTPTransport())  # everyone else's pools are untouched
