"""The cohort tools: many studies in one call, as a background job that survives restarts
(tools/cohort_runner), and its progress, manifest and cancellation.

Two tools rather than three or one: starting a job takes many arguments, following it few, and every
tool's schema is paid on every turn; cancelling is an argument of the status tool.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import Field

from ..dicom.dicomjson import element_value
from ..dicom.reference import Reference
from ..dicomweb.query import build_query
from ..errors import InvalidInputError, PolicyError
from ..files.job_store import JobStore
from ..files.jobs import JOB_ID, Job, JobSpec, JobState
from .arguments import Deidentify, Filters, ServerName, Text, match_pairs
from .cohort_runner import CohortJobs
from .cohort_steps import cohort_directory
from .context import App, Archive, ToolContext
from .results import CohortFailure, CohortJobResult, CohortStudies

__all__ = ["MAX_COHORT_STUDIES", "cohort_status", "start_cohort"]

MAX_COHORT_STUDIES = 10_000
_LISTED_FAILURES = 5
_SEARCH_PAGE = 200
# Rate and time left are those of the studies ended in this window: the current pace, on every replica.
_PACE_WINDOW = 600.0


async def start_cohort(
    app: App,
    study_uids: Annotated[
        list[str] | None, Field(max_length=MAX_COHORT_STUDIES, description="Up to 10,000; or filters.")
    ] = None,
    filters: Annotated[
        Filters, Field(description="Or every study matching, e.g. StudyDate=2023-, ModalitiesInStudy=CT.")
    ] = None,
    destination: Annotated[ServerName, Field(description="A server; absent: the download directory.")] = None,
    deidentify: Deidentify = False,
    format: Annotated[
        Literal["dicom", "nifti"], Field(description="nifti: image series as .nii.gz + JSON.")
    ] = "dicom",
    server: ServerName = None,
) -> CohortJobResult:
    """Copy many studies as a background job that survives restarts; answers at once with its job_id."""
    jobs = await _jobs(app)
    source = app.archive(server)
    if destination is not None:
        target = app.archive(destination, "store")
        if target is source and not deidentify:
            raise InvalidInputError(
                f"source and destination are both {source.name!r}: name another destination, or set "
                "deidentify=true for de-identified copies."
            )
    if format == "nifti" and destination is not None:
        raise InvalidInputError("NIfTI volumes go to the download directory: leave destination out.")
    if bool(study_uids) == bool(filters):
        raise InvalidInputError(
            "Give the studies either as study_uids (a list of Study Instance UIDs) or as filters "
            "(Keyword=value, as search_studies matches them), not both and not neither."
        )
    uids = _checked(study_uids) if study_uids else await _matching(source, filters or [])
    spec = JobSpec(source.name, destination, deidentify, format)
    job = await jobs.start(spec, uids)
    return await _status(jobs, job)


async def cohort_status(
    app: App,
    job_id: Annotated[Text, Field(description="Absent: the latest job.")] = None,
    wait: Annotated[int, Field(ge=0, le=60, description="Seconds to wait for the job to end.")] = 0,
    cancel: Annotated[bool, Field(description="Stop the job.")] = False,
) -> CohortJobResult:
    """A cohort job's progress (studies done, failed, pending; rate; time left); once ended, its manifest."""
    jobs = await _jobs(app)
    if job_id is not None and not JOB_ID.match(job_id):
        raise InvalidInputError(
            f"job_id {job_id!r} is not a job id (12 hex digits, as start_cohort returned)."
        )
    none_yet = InvalidInputError("No cohort job has been started with this job store: call start_cohort.")
    if not jobs.has_jobs():
        raise none_yet
    job = await jobs.db(JobStore.latest) if job_id is None else await jobs.db(JobStore.job, job_id)
    if job is None:
        if job_id is None:
            raise none_yet
        raise InvalidInputError(f"There is no cohort job {job_id!r} in the job store.")
    if cancel or wait:
        if cancel:
            await jobs.cancel(job.job_id)
        else:
            await jobs.wait(job.job_id, wait)
        job = await jobs.db(JobStore.job, job.job_id) or job
    return await _status(jobs, job)


async def _jobs(app: ToolContext) -> CohortJobs:
    if app.jobs is None:
        raise PolicyError("Cohort jobs are not running in this server process.")
    await app.jobs.resumed.wait()
    return app.jobs


def _checked(study_uids: list[str]) -> list[str]:
    """The UIDs, each checked, in order, each once."""
    for uid in study_uids:
        Reference(uid)
    return list(dict.fromkeys(study_uids))


async def _matching(source: Archive, filters: list[str]) -> list[str]:
    """Every study the search finds, page by page; refused beyond the job's limit."""
    cap = source.client.assumed_profile().qido_limit_cap
    page = min(_SEARCH_PAGE, cap or _SEARCH_PAGE)
    found: dict[str, None] = {}
    offset = 0
    while True:
        query = build_query(None, filters=match_pairs(filters), limit=page, offset=offset)
        result = await source.client.search("studies", query)
        uids = [element_value(d, "StudyInstanceUID") for d in result.datasets]
        new = [uid for uid in uids if isinstance(uid, str) and uid not in found]
        found.update(dict.fromkeys(new))
        if len(found) > MAX_COHORT_STUDIES:
            raise InvalidInputError(
                f"More than {MAX_COHORT_STUDIES:,} studies match: narrow the filters (a date range, a "
                "modality)."
            )
        if len(result.datasets) < page or not new:
            break
        offset += len(result.datasets)
    if not found:
        raise InvalidInputError(f"No study on {source.name!r} matches the filters: nothing to do.")
    return _checked(list(found))  # a UID the server sent names files and requests: checked like the caller's


async def _status(jobs: CohortJobs, job: Job) -> CohortJobResult:
    running = job.state is JobState.RUNNING
    now = time.time()
    # From the store, not this process: the same answer from the replica running the job and any other.
    since = now - _PACE_WINDOW if running else None
    status = await jobs.db(JobStore.status, job.job_id, _LISTED_FAILURES, since)
    counts, pace = status.counts, status.pace
    remaining = counts.pending + counts.running
    rate = pace.rate(now) if pace else None
    left = pace.seconds_left(remaining, now) if pace else None
    note = None
    if running and not jobs.running_here(job.job_id):
        held = job.lease_until is not None and job.lease_until > now
        note = (
            "Run by another server process (a replica, or another server on this download directory)."
            if held
            else "Not running now: a server using this job store takes it over (at its start, or soon)."
        )
    destination = job.spec.destination or str(cohort_directory(jobs.app, job.job_id))
    return CohortJobResult(
        job_id=job.job_id,
        state=job.state.value,
        source=job.spec.source,
        destination=destination,
        deidentified=job.spec.deidentify,
        format=job.spec.format,
        studies=CohortStudies(
            total=job.total,
            done=counts.done,
            failed=counts.failed,
            pending=counts.pending,
            running=counts.running,
        ),
        bytes=counts.bytes,
        rate_mb_per_s=round(rate / 1e6, 2) if rate is not None else None,
        seconds_left=round(left) if left is not None else None,
        manifest=job.manifest,
        failed=[CohortFailure(study_uid=f.study_uid, reason=f.reason or "failed") for f in status.failures],
        note=note,
    )
