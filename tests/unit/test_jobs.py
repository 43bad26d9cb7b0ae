"""The cohort job store and its pure parts: study states, backoff, leases, manifest rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomweb_mcp.errors import NotFoundError, ServerUnreachableError
from dicomweb_mcp.files.job_store import JobStore
from dicomweb_mcp.files.jobs import (
    JOB_ID,
    JobSpec,
    JobState,
    StudyRow,
    StudyState,
    after_failure,
    backoff_seconds,
    manifest_row,
    new_job_id,
)
from dicomweb_mcp.tools.cohort_steps import StudyFailed, describe_failure

SPEC = JobSpec(source="clinical", destination="research", deidentify=True, format="dicom")
UIDS = ["1.2.3.1", "1.2.3.2", "1.2.3.3"]


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / ".jobs" / "jobs.sqlite3")


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_seconds(attempt, 5, 30) for attempt in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]
    assert backoff_seconds(1, 0, 30) == 0


def test_a_failure_is_retried_until_the_attempts_run_out_unless_it_is_permanent() -> None:
    assert after_failure(1, 3, permanent=False) is StudyState.PENDING
    assert after_failure(2, 3, permanent=False) is StudyState.PENDING
    assert after_failure(3, 3, permanent=False) is StudyState.FAILED
    assert after_failure(1, 3, permanent=True) is StudyState.FAILED


def test_failures_are_described_in_words_and_classed() -> None:
    missing = NotFoundError("Retrieve instances", 404, "/studies/1.2.3", "Unknown resource")
    assert describe_failure(missing) == ("Retrieve instances failed: HTTP 404: Unknown resource", True)
    reason, permanent = describe_failure(ServerUnreachableError("cannot connect"))
    assert (reason, permanent) == ("cannot connect", False)
    assert describe_failure(StudyFailed("2 of 6 instances refused", permanent=False)) == (
        "2 of 6 instances refused",
        False,
    )
    assert describe_failure(OSError(28, "No space left on device")) == (
        "local disk: No space left on device",
        False,
    )
    assert describe_failure(KeyError("x")) == ("unexpected KeyError", True)


def test_job_ids_are_what_the_tools_accept() -> None:
    assert all(JOB_ID.match(new_job_id()) for _ in range(20))
    assert not JOB_ID.match("../../etc")


def test_studies_are_claimed_in_order_once_each(store: JobStore) -> None:
    job = store.create("a" * 12, SPEC, UIDS, "me", now=100.0, lease=60)
    assert (job.state, job.total, job.spec) == (JobState.RUNNING, 3, SPEC)
    first, second = store.claim(job.job_id, "me", 100.0), store.claim(job.job_id, "me", 100.0)
    assert first is not None and second is not None
    assert (first.study_uid, first.attempts, first.state) == ("1.2.3.1", 1, StudyState.RUNNING)
    assert second.study_uid == "1.2.3.2"
    # Another process does not own the job: it gets nothing.
    assert store.claim(job.job_id, "other", 100.0) is None
    counts = store.counts(job.job_id)
    assert (counts.pending, counts.running, counts.done) == (1, 2, 0)


def test_a_retried_study_waits_for_its_time(store: JobStore) -> None:
    job = store.create("b" * 12, SPEC, UIDS[:1], "me", now=100.0, lease=60)
    study = store.claim(job.job_id, "me", 100.0)
    assert study is not None
    store.retry(job.job_id, study.position, "HTTP 503", not_before=110.0)
    assert store.claim(job.job_id, "me", 105.0) is None
    assert store.next_retry(job.job_id) == 110.0
    again = store.claim(job.job_id, "me", 110.0)
    assert again is not None and again.attempts == 2 and again.reason == "HTTP 503"
    store.done(job.job_id, again.position, 111.0, instances=6, size=1000, result={"stored": 6})
    assert store.next_retry(job.job_id) is None
    counts = store.counts(job.job_id)
    assert (counts.done, counts.bytes, counts.instances) == (1, 1000, 6)


def test_a_crashed_owner_s_job_is_adopted_once_its_lease_expires(store: JobStore) -> None:
    job = store.create("c" * 12, SPEC, UIDS, "crashed", now=100.0, lease=60)
    in_flight = store.claim(job.job_id, "crashed", 100.0)
    assert in_flight is not None
    assert store.adopt("new", now=150.0, lease=60) == []  # still held
    assert store.adopt("new", now=161.0, lease=60) == [job.job_id]
    assert store.adopt("third", now=162.0, lease=60) == []  # held by the new owner now
    assert not store.renew(job.job_id, "crashed", 162.0, 60)
    assert store.renew(job.job_id, "new", 162.0, 60)
    # The study in flight at the crash is pending again, first in line.
    redo = store.claim(job.job_id, "new", 162.0)
    assert redo is not None and redo.position == in_flight.position and redo.attempts == 2


def test_a_released_job_is_adopted_at_once_and_an_ended_one_never(store: JobStore) -> None:
    job = store.create("d" * 12, SPEC, UIDS, "stopping", now=100.0, lease=60)
    store.release(job.job_id, "stopping")
    assert store.adopt("next", now=101.0, lease=60) == [job.job_id]
    assert store.cancel(job.job_id)
    assert not store.cancel(job.job_id)
    store.end(job.job_id, JobState.CANCELLED, 102.0, "/m.jsonl")
    assert store.adopt("later", now=500.0, lease=60) == []
    ended = store.job(job.job_id)
    assert ended is not None and (ended.state, ended.owner, ended.manifest) == (
        JobState.CANCELLED,
        None,
        "/m.jsonl",
    )
    assert store.latest() == ended


def test_the_store_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    first = JobStore(path)
    job = first.create("e" * 12, SPEC, UIDS, "me", now=100.0, lease=60)
    first.close()
    again = JobStore(path)
    assert again.job(job.job_id) == job
    assert [s.study_uid for s in again.studies(job.job_id)] == UIDS


def test_manifest_rows_say_how_each_study_ended() -> None:
    done = StudyRow(
        "j", 0, "1.2.3.1", StudyState.DONE, 1, instances=6, bytes=900, result={"new_study_uid": "2.25.1"}
    )
    assert manifest_row(done, JobState.FINISHED) == {
        "position": 0,
        "study_uid": "1.2.3.1",
        "outcome": "done",
        "instances": 6,
        "bytes": 900,
        "new_study_uid": "2.25.1",
        "attempts": 1,
    }
    failed = StudyRow("j", 1, "1.2.3.2", StudyState.FAILED, 1, reason="HTTP 404")
    assert manifest_row(failed, JobState.FINISHED)["reason"] == "HTTP 404"
    waiting = StudyRow("j", 2, "1.2.3.3", StudyState.RUNNING, 1, reason="HTTP 503")
    assert manifest_row(waiting, JobState.CANCELLED)["outcome"] == "cancelled"


def test_the_database_is_the_owner_s_only(tmp_path: Path) -> None:
    JobStore(tmp_path / ".jobs" / "jobs.sqlite3").close()
    assert (tmp_path / ".jobs" / "jobs.sqlite3").stat().st_mode & 0o077 == 0
    assert (tmp_path / ".jobs").stat().st_mode & 0o077 == 0
