"""Cohort jobs between two real Orthancs: six studies of three patients copied de-identified (one pseudonym
per patient), saved to the download directory, a missing study recorded failed beside the others, a job
cancelled, a server stopped midway whose successor finishes the job without sending a study twice, and a
replica that stops without a word whose job another replica takes over. The tests that run a job to its end
do so on each job store: SQLite, and a real PostgreSQL (``jobs_database``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pydicom
import pytest
from mcp import Client

from dicomweb_mcp import Config, DicomWebClient, ServerKind, collect_dicom_files
from dicomweb_mcp.tools.cohort import cohort_status, start_cohort
from dicomweb_mcp.tools.cohort_runner import CohortJobs, StudyEvent
from dicomweb_mcp.tools.context import ToolContext
from dicomweb_mcp.tools.server import build_server
from tests.support.counting import CountingTransport
from tests.support.identified import make_identified_study
from tests.support.imaging import axial_ct, phantom_hu, save, uid
from tests.support.mcp import answer, text, tool_context
from tests.support.nginx import Recorder
from tests.support.orthanc import Orthanc
from tests.support.reports import basic_text_sr

pytestmark = pytest.mark.anyio

# Six studies, two of each patient.
PATIENTS = ["PAT-A", "PAT-A", "PAT-B", "PAT-B", "PAT-C", "PAT-C"]
PER_STUDY = 2  # instances: one STOW request carries a whole study


@pytest.fixture
def config(clinical_and_research: Config) -> Config:
    return clinical_and_research


@pytest.fixture
async def studies(orthanc_config: Config, tmp_path: Path) -> list[str]:
    """Six small studies on the source, stored in order; their UIDs."""
    uids = []
    for seed, patient in enumerate(PATIENTS):
        made = make_identified_study(tmp_path / f"study{seed}", series=1, per_series=PER_STUDY, seed=seed)
        for path in made.paths:
            ds = pydicom.dcmread(path)
            ds.PatientID, ds.PatientName = patient, f"Patient^{patient[-1]}"
            ds.save_as(path)
        uids.append(made.study_uid)
    async with DicomWebClient(orthanc_config.server) as client:
        files, _ = collect_dicom_files([tmp_path / f"study{seed}" for seed in range(len(PATIENTS))])
        outcomes = await client.store_instances(files)
    assert len(outcomes) == len(PATIENTS) * PER_STUDY
    return uids


def _root(transport: CountingTransport) -> str:
    """The DICOMweb root's path, as the requests a transport counted show it."""
    return next(p.split(" ", 1)[1].split("/studies")[0] for p in transport.requests if "/studies" in p)


def manifest(path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


async def test_a_deidentified_cohort_arrives_whole_with_one_pseudonym_per_patient(
    config: Config, studies: list[str], destination: Orthanc, jobs_database: str | None
) -> None:
    source = CountingTransport()
    server = build_server(config.changed(jobs_database=jobs_database), transports={"clinical": source})
    async with Client(server) as client:
        started = await answer(
            client,
            "start_cohort",
            study_uids=studies,
            destination="research",
            deidentify=True,
            server="clinical",
        )
        assert (started["state"], started["studies"]["total"]) == ("running", 6)
        status = await answer(client, "cohort_status", job_id=started["job_id"], wait=60)
    assert status["state"] == "finished", status
    assert status["studies"] == {"total": 6, "done": 6, "failed": 0, "pending": 0, "running": 0}
    rows = manifest(status["manifest"])
    assert [row["study_uid"] for row in rows] == studies
    assert all(row["outcome"] == "done" and row["instances"] == PER_STUDY for row in rows)
    new_uids = [row["new_study_uid"] for row in rows]
    assert all(uid.startswith("2.25.") for uid in new_uids) and len(set(new_uids)) == 6
    assert [row["destination_study_uids"] for row in rows] == [[uid] for uid in new_uids]
    # At the destination: the new UIDs only, every instance, and each patient's two studies under one pseudonym.
    arrived = destination.held_studies()
    assert set(arrived) == set(new_uids)
    assert all(count == PER_STUDY for _, count in arrived.values())
    pseudonyms = [arrived[uid][0] for uid in new_uids]
    assert pseudonyms[0] == pseudonyms[1] != pseudonyms[2] == pseudonyms[3] != pseudonyms[4] == pseudonyms[5]
    assert all(p.startswith("ANON-") for p in pseudonyms) and pseudonyms[0] != pseudonyms[4]
    # The job runs studies side by side, so each study is one GET at the source, with no series list first.
    root = _root(source)
    retrieves = [p for p in source.requests if p.startswith("GET") and "/studies/" in p]
    assert sorted(retrieves) == sorted(f"GET {root}/studies/{uid}" for uid in studies)


async def test_a_cohort_by_filters_to_the_download_directory(config: Config, studies: list[str]) -> None:
    async with Client(build_server(config)) as client:
        started = await answer(client, "start_cohort", filters=["PatientID=PAT-B"], server="clinical")
        status = await answer(client, "cohort_status", wait=60)  # the latest job
    assert status["job_id"] == started["job_id"]
    assert status["state"] == "finished" and status["studies"]["done"] == 2
    assert status["bytes"] > 0
    rows = manifest(status["manifest"])
    assert {row["study_uid"] for row in rows} == set(studies[2:4])
    root = config.download_dir.resolve()
    for row in rows:
        assert row["directory"] == f"cohorts/{started['job_id']}/{row['study_uid']}"
        files = json.loads((root / row["files"]).read_text())
        assert files["complete"] and files["file_count"] == PER_STUDY
        saved = [root / row["directory"] / entry["path"] for entry in files["files"]]
        assert all(pydicom.dcmread(p).StudyInstanceUID == row["study_uid"] for p in saved)


async def test_a_missing_study_is_recorded_failed_and_the_others_are_done(
    config: Config, studies: list[str]
) -> None:
    missing = "1.2.826.0.1.3680043.8.498.999"
    async with Client(build_server(config)) as client:
        started = await answer(
            client, "start_cohort", study_uids=[studies[0], missing, studies[1]], destination="research"
        )
        status = await answer(client, "cohort_status", job_id=started["job_id"], wait=60)
    assert status["studies"] == {"total": 3, "done": 2, "failed": 1, "pending": 0, "running": 0}
    assert status["failed"][0]["study_uid"] == missing
    assert "404" in status["failed"][0]["reason"]
    rows = {row["study_uid"]: row for row in manifest(status["manifest"])}
    assert rows[missing]["outcome"] == "failed" and "404" in rows[missing]["reason"]
    assert rows[missing]["attempts"] == 1  # not found: no point in trying again
    assert rows[studies[0]]["outcome"] == rows[studies[1]]["outcome"] == "done"


async def test_refusals_name_what_to_do(config: Config, studies: list[str]) -> None:
    async with Client(build_server(config)) as client:
        both = await client.call_tool("start_cohort", {"study_uids": studies, "filters": ["PatientID=PAT-A"]})
        nifti = await client.call_tool(
            "start_cohort", {"study_uids": studies, "format": "nifti", "destination": "research"}
        )
        unknown = await client.call_tool("cohort_status", {"job_id": "0123456789ab"})
        bad = await client.call_tool("cohort_status", {"job_id": "../../x"})
    assert "not both and not neither" in text(both)
    assert "NIfTI volumes go to the download directory" in text(nifti)
    assert "No cohort job has been started" in text(unknown)
    assert "is not a job id" in text(bad)


@asynccontextmanager
async def runner(
    config: Config,
    research: httpx.AsyncBaseTransport,
    on_study: Callable[[StudyEvent, str, int], Awaitable[None]] | None,
    lease: float = 60.0,
) -> AsyncIterator[tuple[ToolContext, CohortJobs]]:
    """A job runner as a server's lifespan runs it, with ``on_study`` called at each study; stopped (as a
    server is) when the block ends."""
    async with (
        DicomWebClient(config.servers[0]) as source,
        DicomWebClient(config.servers[1], transport=research) as target,
        anyio.create_task_group() as group,
    ):
        plain = tool_context(config, source, target)
        jobs = CohortJobs(plain, lease=lease, backoff_base=0, on_study=on_study)
        await group.start(jobs.run)
        yield replace(plain, jobs=jobs), jobs
        group.cancel_scope.cancel()


def stop_at(
    event: StudyEvent, count: int
) -> tuple[anyio.Event, Callable[[StudyEvent, str, int], Awaitable[None]]]:
    """A hook that holds the runner at the ``count``th ``event`` (until it is stopped), and the event it
    sets there."""
    reached = anyio.Event()
    seen = 0

    async def hook(happened: StudyEvent, job_id: str, position: int) -> None:
        nonlocal seen
        if happened != event:
            return
        seen += 1
        if seen == count:
            reached.set()
            await anyio.sleep_forever()

    return reached, hook


async def test_cancel_stops_the_job_and_the_manifest_says_what_was_not_done(
    config: Config, studies: list[str]
) -> None:
    reached, hook = stop_at("recorded", 2)
    async with runner(config.changed(job_concurrency=1), httpx.AsyncHTTPTransport(), hook) as (app, _):
        started = await start_cohort(app, study_uids=studies, destination="research", server="clinical")
        await reached.wait()
        cancelled = await cohort_status(app, job_id=started.job_id, cancel=True)
    assert cancelled.state == "cancelled"
    assert (cancelled.studies.done, cancelled.studies.pending) == (2, 4)
    assert cancelled.manifest is not None
    outcomes = [row["outcome"] for row in manifest(cancelled.manifest)]
    assert outcomes == ["done", "done", "cancelled", "cancelled", "cancelled", "cancelled"]


@pytest.mark.parametrize(("event", "redone"), [("recorded", 0), ("sent", 1)])
async def test_a_restarted_server_finishes_the_job_and_sends_no_study_twice(
    config: Config,
    studies: list[str],
    destination: Orthanc,
    event: StudyEvent,
    redone: int,
    jobs_database: str | None,
) -> None:
    """Stopped after the third study was recorded: the next server sends the other three, once each.
    Stopped after the third study was sent but before it was recorded: that study is done again, but its
    instances, found at the destination, are not sent again; it holds each instance once either way."""
    config = config.changed(job_concurrency=1, jobs_database=jobs_database)
    first, second = CountingTransport(), CountingTransport()
    reached, hook = stop_at(event, 3)
    async with runner(config, first, hook) as (app, _):
        job = await start_cohort(
            app, study_uids=studies, destination="research", deidentify=True, server="clinical"
        )
        await reached.wait()
    assert first.stores == 3

    async with Client(build_server(config, transports={"research": second})) as client:
        status = await answer(client, "cohort_status", job_id=job.job_id, wait=60)
    assert status["state"] == "finished", status
    assert status["studies"]["done"] == 6
    assert second.stores == 3  # the redone study's instances were looked up, found, and not sent
    rows = manifest(status["manifest"])
    assert [row["outcome"] for row in rows] == ["done"] * 6
    assert rows[2]["already_present"] == (PER_STUDY if redone else 0)
    arrived = destination.held_studies()
    assert sorted(arrived) == sorted(row["new_study_uid"] for row in rows)
    assert all(count == PER_STUDY for _, count in arrived.values())
    assert destination.statistics()["CountInstances"] == 6 * PER_STUDY


async def test_a_stopped_replica_s_job_is_taken_over_and_no_study_is_sent_twice(
    config: Config, studies: list[str], destination: Orthanc, jobs_database: str | None
) -> None:
    """Two replicas on one job store and one download directory. The first holds after its third study and
    then reaches the store no more, without releasing its job (as a crashed or cut-off replica); the second
    reports the job as the store has it, takes it over once the first's lease has expired, and finishes it:
    the destination received each study once."""
    config = config.changed(job_concurrency=1, jobs_database=jobs_database)
    lease = 3.0  # seconds: renewed every second while the first replica lives
    first, second = CountingTransport(), CountingTransport()
    reached, hold = stop_at("recorded", 3)
    async with runner(config, first, hold, lease) as (one, first_jobs):
        job = await start_cohort(
            one, study_uids=studies, destination="research", deidentify=True, server="clinical"
        )
        await reached.wait()
        async with runner(config, second, None, lease) as (other, _):
            seen = await cohort_status(other, job_id=job.job_id)
            assert (seen.state, seen.studies.done, seen.studies.pending) == ("running", 3, 3)
            assert seen.note is not None and seen.note.startswith("Run by another server process")
            assert seen.rate_mb_per_s is not None and seen.seconds_left is not None

            async def gone(*args: Any) -> Any:
                raise ConnectionError("this replica has stopped")

            first_jobs.db = gone  # type: ignore[method-assign]
            status = await cohort_status(other, job_id=job.job_id, wait=60)
    assert status.state == "finished", status
    assert status.studies.done == 6
    assert (first.stores, second.stores) == (3, 3)
    assert status.manifest is not None
    rows = manifest(status.manifest)
    assert [row["outcome"] for row in rows] == ["done"] * 6
    assert [row["attempts"] for row in rows] == [1] * 6
    assert destination.statistics()["CountInstances"] == 6 * PER_STUDY


async def test_a_cohort_as_volumes_one_per_image_series_de_identified(config: Config, tmp_path: Path) -> None:
    """A CT series of five slices (stored in a shuffled order) and an SR: the CT becomes one volume whose
    affine puts its first voxel at the first slice's position (LPS to RAS), the SR is named as refused."""
    import nibabel

    study_uid, series_uid = uid(), uid()
    directory = tmp_path / "volume-study"
    slices = []
    for k in (3, 0, 4, 1, 2):
        ds = axial_ct(
            phantom_hu(32, seed=k),
            study_uid=study_uid,
            series_uid=series_uid,
            number=k + 1,
            z=2.5 * k,
            origin=(-100.0, -80.0),
            spacing=0.5,
            PatientName="Volunteer^Ines",
            SeriesDescription="Chest Volunteer low dose",  # names the patient: cut by de-identification
        )
        slices.append(save(ds, directory))
    basic_text_sr(directory, pydicom.dcmread(slices[0].path))
    async with DicomWebClient(config.server) as client:
        files, _ = collect_dicom_files([directory])
        assert len(await client.store_instances(files)) == 6
    async with Client(build_server(config)) as client:
        await answer(
            client, "start_cohort", study_uids=[study_uid], format="nifti", deidentify=True, server="clinical"
        )
        status = await answer(client, "cohort_status", wait=60)
    assert status["state"] == "finished" and status["studies"]["done"] == 1, status
    [row] = manifest(status["manifest"])
    root = config.download_dir.resolve()
    [volume] = row["volumes"]
    assert len(row["series_refused"]) == 1 and "no pixel data" in next(iter(row["series_refused"].values()))
    image = nibabel.load(root / volume)
    assert image.shape == (32, 32, 5)
    # Voxel (0, 0, 0) is the first slice's first pixel: LPS (-100, -80, 0) is RAS (100, 80, 0).
    assert list(image.affine @ [0, 0, 0, 1])[:3] == pytest.approx([100.0, 80.0, 0.0])
    assert list(image.affine @ [0, 0, 4, 1])[:3] == pytest.approx([100.0, 80.0, 10.0])
    sidecar = json.loads((root / volume.replace(".nii.gz", ".json")).read_text())
    assert sidecar["Modality"] == "CT" and sidecar["NumberOfSlices"] == 5
    assert sidecar["SeriesDescription"] == "Chest low dose"  # as de-identified: the name cut out
    assert not {"PatientName", "PatientID", "PatientBirthDate"} & set(sidecar)
    assert series_uid not in volume and study_uid not in row["directory"]  # named by the new UIDs


async def test_a_throttling_destination_is_waited_for_not_failed(
    config: Config, studies: list[str], destination: Orthanc, tmp_path: Path
) -> None:
    """The destination (behind nginx) refuses what passes 2 requests a second with 429 and Retry-After: 1, as
    a throttling cloud service does: the job's studies side by side meet it, wait as told, and every study
    arrives, once."""
    (tmp_path / "nginx").mkdir()
    gate = Recorder(tmp_path / "nginx", destination.port, rate="2r/s", retry_after=1).start()
    try:
        # Behind nginx Orthanc's Server header is gone: its kind is named, so duplicates are looked up.
        research = replace(config.named["research"], url=gate.url, server_kind=ServerKind.ORTHANC)
        throttled = replace(config, servers=(config.named["clinical"], research)).changed(job_concurrency=4)
        async with Client(build_server(throttled)) as client:
            await answer(
                client, "start_cohort", study_uids=studies, destination="research", server="clinical"
            )
            status = await answer(client, "cohort_status", wait=60)
    finally:
        gate.stop()
    assert status["state"] == "finished" and status["studies"]["done"] == len(studies), status
    answers = [request.status for request in gate.requests()]
    assert "429" in answers  # it did throttle
    assert sorted(count for _, count in destination.held_studies().values()) == [PER_STUDY] * len(studies)


async def test_a_job_cancelled_on_another_replica_has_a_manifest_of_what_arrived(
    config: Config, studies: list[str], jobs_database: str | None
) -> None:
    """Replica two cancels the job replica one runs, while replica one's third study has reached the
    destination but is not recorded yet. Replica two writes the manifest at once (the third study not done);
    replica one then records the third study, and the manifest is written again to say it arrived."""
    config = config.changed(job_concurrency=1, jobs_database=jobs_database)
    sent, go_on, recorded = anyio.Event(), anyio.Event(), anyio.Event()

    async def hold_third(happened: StudyEvent, job_id: str, position: int) -> None:
        if happened == "sent" and position == 2:
            sent.set()
            await go_on.wait()
        if happened == "recorded" and position == 2:
            recorded.set()

    async with runner(config, httpx.AsyncHTTPTransport(), hold_third) as (one, _):
        job = await start_cohort(one, study_uids=studies, destination="research", server="clinical")
        await sent.wait()
        async with runner(config, httpx.AsyncHTTPTransport(), None) as (two, _):
            cancelled = await cohort_status(two, job_id=job.job_id, cancel=True)
        assert cancelled.state == "cancelled" and cancelled.manifest is not None
        assert [row["outcome"] for row in manifest(cancelled.manifest)][:3] == ["done", "done", "cancelled"]
        go_on.set()
        with anyio.fail_after(30):
            await recorded.wait()
    rows = manifest(cancelled.manifest)
    assert [row["outcome"] for row in rows] == ["done"] * 3 + ["cancelled"] * 3
    assert rows[2]["stored"] == PER_STUDY


async def test_a_study_the_destination_throttles_is_tried_again_no_sooner_than_it_asked(
    config: Config, studies: list[str], destination: Orthanc, tmp_path: Path
) -> None:
    """The destination (behind nginx) passes one request every 2 s (and one more at once), answering the
    rest 429 with Retry-After: 4, time enough for the two requests of an attempt; its requests are not
    retried (max_retries 0). Someone has just used its allowance, so the study's first attempt is refused:
    it is tried again no sooner than 4 s later, though the job's own backoff is none, and arrives."""
    (tmp_path / "nginx").mkdir()
    gate = Recorder(tmp_path / "nginx", destination.port, rate="30r/m", retry_after=4).start()
    try:
        research = replace(
            config.named["research"], url=gate.url, server_kind=ServerKind.ORTHANC, max_retries=0
        )
        throttled = replace(config, servers=(config.named["clinical"], research))
        async with httpx.AsyncClient(timeout=10) as other:
            assert [(await other.get(f"{gate.url}/studies")).status_code for _ in range(2)] == [200, 200]
        async with runner(throttled, httpx.AsyncHTTPTransport(), None) as (app, _):
            job = await start_cohort(app, study_uids=studies[:1], destination="research", server="clinical")
            status = await cohort_status(app, job_id=job.job_id, wait=60)
    finally:
        gate.stop()
    assert status.state == "finished" and status.studies.done == 1, status
    assert status.manifest is not None and manifest(status.manifest)[0]["attempts"] == 2
    requests = gate.requests()[2:]  # the study's own
    assert [r.status for r in requests] == ["429", "200", "200"]  # refused; then its lookup and STOW
    assert requests[1].time - requests[0].time >= 3.99
    assert sorted(count for _, count in destination.held_studies().values()) == [PER_STUDY]
