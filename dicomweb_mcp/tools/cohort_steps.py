"""What a cohort job does to one study: copy it to a named server (a transfer), or save it under the job's
directory (a download), de-identified when asked; or write each image series as a NIfTI volume
(imaging/volumes).

A step either returns what it did (``StudyDone``: counts and the fields of the study's manifest row) or
raises. Each step can be run again for the same study with the same effect: the destination takes
instances it holds as already present, files are rewritten under the same names, and de-identified UIDs
come from the operator's key, so a redone study gets the same new UIDs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from ..dicom.reference import Reference
from ..errors import DicomWebError, HTTPStatusError, InvalidInputError, NotFoundError, PolicyError
from ..files.jobs import JobSpec
from ..imaging.checks import RenderError
from ..imaging.volumes import series_to_nifti
from .context import ToolContext, no_progress
from .deidentification import Deidentification, new_spool, remove_spool
from .download import Download, download_as_saved
from .transfer import SPOOL_BYTES, Transfer

__all__ = [
    "StudyDone",
    "StudyFailed",
    "cohort_directory",
    "describe_failure",
    "run_study",
    "unexpected",
]

# Failures another attempt would meet again: the study is recorded failed at once.
_PERMANENT = (NotFoundError, InvalidInputError, PolicyError)


@dataclass(frozen=True)
class StudyDone:
    instances: int
    bytes: int
    row: dict[str, Any] = field(default_factory=dict)  # the manifest row's own fields


class StudyFailed(Exception):
    """A study the step could not complete, in words for the manifest."""

    def __init__(self, reason: str, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after  # a throttled server's Retry-After: the next attempt waits for it


def cohort_directory(app: ToolContext, job_id: str) -> Path:
    """Where a job's manifest and saved studies go: ``{download_dir}/cohorts/{job_id}`` (a checked id)."""
    return app.store.directory() / "cohorts" / job_id


def unexpected(exc: BaseException) -> bool:
    """Whether a failure is none of those a step is known to meet (a bug, most likely): it is logged with
    its traceback, and its study recorded failed at once."""
    return not isinstance(exc, StudyFailed | DicomWebError | OSError)


def describe_failure(exc: BaseException) -> tuple[str, bool]:
    """The reason a manifest gives for a failed attempt, and whether trying again is pointless."""
    if isinstance(exc, StudyFailed):
        return exc.reason, exc.permanent
    if isinstance(exc, HTTPStatusError):
        said = f": {exc.server_message}" if exc.server_message else ""
        reason = f"{exc.operation} failed: HTTP {exc.status_code}{said}"
        return reason, isinstance(exc, _PERMANENT)
    if isinstance(exc, DicomWebError):
        # A transfer adds what to call next; a job calls again by itself.
        return str(exc).split(" The transfer stopped:")[0], isinstance(exc, _PERMANENT)
    if isinstance(exc, OSError):
        return f"local disk: {exc.strerror or type(exc).__name__}", False
    return f"unexpected {type(exc).__name__}", True


async def run_study(
    app: ToolContext, job_id: str, spec: JobSpec, study_uid: str, studies_at_once: int
) -> StudyDone:
    """Do ``spec`` to one study. Temporary disk is shared out between the studies done at once."""
    deidentification = Deidentification(app.config) if spec.deidentify else None
    new_uid = {"new_study_uid": deidentification.uid(study_uid)} if deidentification else {}
    if spec.destination is not None:
        done = await _to_server(app, spec, study_uid, deidentification, SPOOL_BYTES // studies_at_once)
    elif spec.format == "nifti":
        done = await _to_volumes(app, job_id, spec, study_uid, deidentification)
    else:
        done = await _to_directory(app, job_id, spec, study_uid, deidentification)
    if deidentification is not None and deidentification.failures:
        # Never sent or kept as they are; another attempt would leave them out again.
        raise StudyFailed(deidentification.summary()[0], permanent=True)
    # Burned-in text de-identification cannot remove: the researcher reviews these before sharing.
    warnings = (
        {"warnings": deidentification.summary()} if deidentification and deidentification.warned else {}
    )
    return StudyDone(done.instances, done.bytes, {**new_uid, **done.row, **warnings})


async def _to_server(
    app: ToolContext,
    spec: JobSpec,
    study_uid: str,
    deidentification: Deidentification | None,
    spool_bytes: int,
) -> StudyDone:
    source, destination = app.archive(spec.source), app.archive(spec.destination, "store")
    transfer = Transfer(
        source,
        destination,
        app.store,
        no_progress,
        source.config.concurrency,
        deidentification,
        spool_bytes,
        split=False,  # the job runs studies side by side: one GET a study, no series list first
    )
    result = await transfer.run(Reference(study_uid))
    counts = result.counts
    if counts.retrieved == 0:
        raise StudyFailed(f"{source.name!r} sent no instance of this study", permanent=True)
    refused = counts.failed - len(transfer.left_out)  # the others were left out, not de-identified
    if refused > 0:
        first = next((p.reason for p in result.failed if not p.reason.startswith("not de-identified")), "")
        raise StudyFailed(
            f"{refused} of {counts.retrieved} instances refused by {destination.name!r}: {first}",
            retry_after=transfer.retry_after,
        )
    return StudyDone(
        counts.stored + counts.already_present,
        result.total_bytes,
        {
            "destination": destination.name,
            "destination_study_uids": result.study_uids,
            "stored": counts.stored,
            "already_present": counts.already_present,
        },
    )


async def _download(
    app: ToolContext,
    spec: JobSpec,
    study_uid: str,
    deidentification: Deidentification | None,
    directory: Path,
) -> Download:
    """The study saved under ``directory`` by its (new) UIDs, with its own manifest of files."""
    source = app.archive(spec.source)
    download = await download_as_saved(
        source,
        app.store,
        Reference(study_uid),
        directory,
        deidentification,
        no_progress,
        split=False,  # as for a transfer: the job's studies side by side fill the link
    )
    if not download.saved and not (deidentification and deidentification.failures):
        raise StudyFailed(f"{source.name!r} sent no instance of this study", permanent=True)
    return download


async def _to_directory(
    app: ToolContext, job_id: str, spec: JobSpec, study_uid: str, deidentification: Deidentification | None
) -> StudyDone:
    directory = cohort_directory(app, job_id)
    download = await _download(app, spec, study_uid, deidentification, directory)
    root = app.store.directory()
    manifest = download.manifest
    assert manifest is not None
    return StudyDone(
        len(download.saved),
        download.saved_bytes,
        {"directory": str(manifest.parent.relative_to(root)), "files": str(manifest.relative_to(root))},
    )


async def _to_volumes(
    app: ToolContext, job_id: str, spec: JobSpec, study_uid: str, deidentification: Deidentification | None
) -> StudyDone:
    """Each image series of the study as a volume under the job's directory; the DICOM files wait in a
    spool removed at the end."""
    spool = new_spool(app.store, "download")
    try:
        download = await _download(app, spec, study_uid, deidentification, spool / "files")
        by_series: dict[str, list[Path]] = {}
        for file in download.saved:
            by_series.setdefault(file.series_uid, []).append(file.path)
        saved_study = download.saved_study_uid or study_uid
        out_dir = cohort_directory(app, job_id) / saved_study
        await anyio.to_thread.run_sync(partial(out_dir.mkdir, parents=True, exist_ok=True))
        volumes: list[str] = []
        refused: dict[str, str] = {}
        for series_uid, files in sorted(by_series.items()):
            convert = partial(series_to_nifti, files, out_dir, name=series_uid)
            try:
                made = await anyio.to_thread.run_sync(convert)
            except (InvalidInputError, RenderError) as exc:  # not one stack of images, or undecodable
                refused[series_uid] = str(exc)
                continue
            volumes.append(str(made.nifti.relative_to(app.store.directory())))
    finally:
        await remove_spool(spool)
    root = app.store.directory()
    return StudyDone(
        len(download.saved),
        download.saved_bytes,
        {"directory": str(out_dir.relative_to(root)), "volumes": volumes, "series_refused": refused},
    )
