"""Cohort jobs: what a job is, the states it and its studies go through, how long a failed study waits,
and the manifest line each study gets. The rows are kept by a job store (files/job_store).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "JOB_ID",
    "Job",
    "JobCounts",
    "JobProgress",
    "JobSpec",
    "JobState",
    "JobStatus",
    "StudyRow",
    "StudyState",
    "after_failure",
    "backoff_seconds",
    "job_from_row",
    "manifest_row",
    "new_job_id",
    "study_from_row",
]

# A job id: what the tools accept, checked before it names a file.
JOB_ID = re.compile(r"^[0-9a-f]{12}$")


class JobState(StrEnum):
    RUNNING = "running"  # studies left to do (or being done)
    FINISHED = "finished"  # every study done or failed
    CANCELLED = "cancelled"


class StudyState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class JobSpec:
    """What a job does with each study."""

    source: str  # a server name
    destination: str | None  # a server name; None: the download directory
    deidentify: bool
    format: str  # dicom, nifti


@dataclass(frozen=True)
class Job:
    job_id: str
    state: JobState
    spec: JobSpec
    total: int
    created_at: float
    finished_at: float | None
    manifest: str | None
    owner: str | None
    lease_until: float | None


@dataclass(frozen=True)
class StudyRow:
    job_id: str
    position: int
    study_uid: str
    state: StudyState
    attempts: int
    started_at: float | None = None
    finished_at: float | None = None
    instances: int | None = None
    bytes: int | None = None
    result: dict[str, Any] | None = None  # what the step reports: new UIDs, directory, counts
    reason: str | None = None


@dataclass(frozen=True)
class JobCounts:
    pending: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    bytes: int = 0
    instances: int = 0


@dataclass(frozen=True)
class JobProgress:
    """The studies of a job ended in a recent window, for its rate and time left."""

    studies: int  # ended (done or failed)
    bytes: int
    first_started: float | None  # when the earliest of them started

    def rate(self, now: float) -> float | None:
        """Bytes a second since the earliest of these studies started."""
        elapsed = now - self.first_started if self.first_started is not None else 0
        return self.bytes / elapsed if self.studies and elapsed > 0 else None

    def seconds_left(self, remaining: int, now: float) -> float | None:
        """At the pace of these studies, the time the ``remaining`` ones take."""
        elapsed = now - self.first_started if self.first_started is not None else 0
        return remaining * elapsed / self.studies if self.studies and elapsed > 0 else None


@dataclass(frozen=True)
class JobStatus:
    """What a job's status reports beside the job's own row, read at once."""

    counts: JobCounts
    failures: list[StudyRow]  # the first few failed studies, in order
    pace: JobProgress | None  # of the studies ended lately; None when not asked (a job that has ended)


def job_from_row(row: Mapping[str, Any]) -> Job:
    """A job as the job store's ``jobs`` table has it."""
    spec = JobSpec(row["source"], row["destination"], bool(row["deidentify"]), row["format"])
    return Job(
        row["job_id"],
        JobState(row["state"]),
        spec,
        row["total"],
        row["created_at"],
        row["finished_at"],
        row["manifest"],
        row["owner"],
        row["lease_until"],
    )


def study_from_row(row: Mapping[str, Any]) -> StudyRow:
    """A study as the job store's ``studies`` table has it."""
    return StudyRow(
        row["job_id"],
        row["position"],
        row["study_uid"],
        StudyState(row["state"]),
        row["attempts"],
        row["started_at"],
        row["finished_at"],
        row["instances"],
        row["bytes"],
        json.loads(row["result"]) if row["result"] else None,
        row["reason"],
    )


def new_job_id() -> str:
    return secrets.token_hex(6)


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """The wait before the next attempt of a study that failed ``attempt`` times: doubling from ``base``,
    at most ``cap`` (the client has already retried each request; this spaces whole attempts)."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))


def manifest_row(study: StudyRow, job_state: JobState) -> dict[str, Any]:
    """One line of a job's manifest: the study, how it ended, and what the step reported or why it
    failed. A study not ended when the job was cancelled says so."""
    outcome = study.state.value
    if study.state in (StudyState.PENDING, StudyState.RUNNING):
        outcome = "cancelled" if job_state is JobState.CANCELLED else "pending"
    row: dict[str, Any] = {"position": study.position, "study_uid": study.study_uid, "outcome": outcome}
    if study.state is StudyState.DONE:
        row.update(instances=study.instances, bytes=study.bytes, **(study.result or {}))
    if study.reason is not None and study.state is not StudyState.DONE:
        row["reason"] = study.reason
    row["attempts"] = study.attempts
    return row


def after_failure(attempts: int, max_attempts: int, permanent: bool) -> StudyState:
    """What a study becomes when an attempt failed: pending again (retried after a backoff) while attempts
    remain and the failure may pass; failed otherwise."""
    return StudyState.FAILED if permanent or attempts >= max_attempts else StudyState.PENDING
