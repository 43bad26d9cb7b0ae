"""The cohort job store and its pure parts: study states, backoff, leases, manifest rows. The store's tests
run on each back end (SQLite, and a real PostgreSQL), including two stores racing on one database as two
replicas do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from dicomweb_mcp.errors import NotFoundError, ServerUnreachableError
from dicomweb_mcp.files.job_store import JobStore, open_job_store
from dicomweb_mcp.files.job_store_sqlite import SqliteJobStore
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
from dicomweb_mcp.tools.cohort_runner import owner_name, stopped_here
from dicomweb_mcp.tools.cohort_steps import StudyFailed, describe_failure

SPEC = JobSpec(source="clinical", destination="research", deidentify=True, format="dicom")
UIDS = ["1.2.3.1", "1.2.3.2", "1.2.3.3"]


_T = TypeVar("_T")


@pytest.fixture
def store(jobs_database: str | None, tmp_path: Path) -> Iterator[JobStore]:
    opened = open_job_store(jobs_database, tmp_path)
    yield opened
    opened.close()


def at_once(count: int, task: Callable[[int], _T]) -> list[_T]:
    """``task(0..count-1)`` in as many threads, released together (a barrier) so that they race."""
    barrier = threading.Barrier(count)

    def run(n: int) -> _T:
        barrier.wait(timeout=30)
        return task(n)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


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


def test_a_study_recorded_after_the_cancelled_job_s_manifest_says_to_write_it_again(store: JobStore) -> None:
    """done, retry and fail say, from their own transaction, whether the job ended cancelled with its
    manifest written: only then has the runner that recorded the study to write the manifest again."""
    job = store.create("f" * 12, SPEC, UIDS, "me", now=100.0, lease=60)
    first, second, third = (store.claim(job.job_id, "me", 100.0) for _ in UIDS)
    assert first is not None and second is not None and third is not None
    assert store.done(job.job_id, first.position, 101.0, instances=2, size=10, result={}) is False
    assert store.cancel(job.job_id)
    # Cancelled, but no manifest yet: whoever writes it reads this study then.
    assert store.retry(job.job_id, second.position, "HTTP 503", not_before=110.0) is False
    store.end(job.job_id, JobState.CANCELLED, 102.0, "/manifest.jsonl")
    assert store.fail(job.job_id, third.position, 103.0, "HTTP 404") is True
    assert store.done(job.job_id, second.position, 104.0, instances=2, size=10, result={}) is True
    counts = store.counts(job.job_id)
    assert (counts.done, counts.failed, counts.pending, counts.running) == (2, 1, 0, 0)


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


def test_a_job_whose_owner_is_known_to_have_ended_is_adopted_before_its_lease_expires(
    store: JobStore,
) -> None:
    job = store.create("d" * 12, SPEC, UIDS, "host/4242/killed", now=100.0, lease=60)
    store.claim(job.job_id, "host/4242/killed", 100.0)
    assert store.adopt("new", now=101.0, lease=60, stopped=lambda owner: owner == "host/1/other") == []
    assert store.adopt("new", now=101.0, lease=60, stopped=lambda owner: owner == "host/4242/killed") == [
        job.job_id
    ]
    assert not store.renew(job.job_id, "host/4242/killed", 102.0, 60)
    redo = store.claim(job.job_id, "new", 102.0)
    assert redo is not None and redo.position == 0 and redo.attempts == 2


def test_an_owner_on_this_host_has_ended_only_when_its_process_is_gone() -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    gone = owner_name().replace(f":{os.getpid()}/", f":{int(ended.stdout)}/")
    assert stopped_here(gone)
    assert not stopped_here(owner_name())  # this process
    assert not stopped_here(gone.replace(socket.gethostname()[:32], "another-host", 1))  # cannot tell: wait
    # A container beside this one under the same host name (host networking): its process IDs are its own.
    host, space, rest = gone.split("/")
    assert not stopped_here(f"{host}/{space.replace(':', '0:', 1)}/{rest}")
    # Another machine of the same (truncated) name, in its first PID namespace as this one: another boot.
    assert not stopped_here(f"{host}/{'f' * 12}{space[12:]}/{rest}")
    assert not stopped_here("3f2a9c0d1e4b")  # an owner named before hosts and processes were


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


def test_the_store_survives_reopening(jobs_database: str | None, tmp_path: Path) -> None:
    first = open_job_store(jobs_database, tmp_path)
    job = first.create("e" * 12, SPEC, UIDS, "me", now=100.0, lease=60)
    first.close()
    again = open_job_store(jobs_database, tmp_path)
    assert again.job(job.job_id) == job
    assert [s.study_uid for s in again.studies(job.job_id)] == UIDS
    again.close()


def test_replicas_starting_together_make_the_tables_once(jobs_database: str | None, tmp_path: Path) -> None:
    stores = at_once(6, lambda n: open_job_store(jobs_database, tmp_path))
    stores[0].create("f" * 12, SPEC, UIDS, "me", now=100.0, lease=60)
    assert all(s.job("f" * 12) is not None for s in stores)
    for opened in stores:
        opened.close()


def test_of_replicas_adopting_at_once_one_takes_the_job(jobs_database: str | None, tmp_path: Path) -> None:
    """Eight runners (over two connections each, as on two replicas) find the same expired lease at the same
    moment: exactly one of them gets the job."""
    stores = [open_job_store(jobs_database, tmp_path) for _ in range(2)]
    for round_ in range(5):
        job_id = f"{round_:012x}"
        stores[0].create(job_id, SPEC, UIDS, "crashed", now=100.0, lease=60)
        now = 200.0 + round_
        taken = at_once(8, lambda n, now=now: stores[n % 2].adopt(f"runner{n}", now, 60))
        assert sorted(map(len, taken)) == [0] * 7 + [1], taken
        stores[0].end(job_id, JobState.FINISHED, 300.0, None)
    for opened in stores:
        opened.close()


def test_workers_claiming_at_once_get_each_study_once(jobs_database: str | None, tmp_path: Path) -> None:
    """Eight workers of one runner, over two connections, claim until nothing is left: every study is
    claimed, and none twice."""
    stores = [open_job_store(jobs_database, tmp_path) for _ in range(2)]
    uids = [f"1.2.3.{n}" for n in range(60)]
    stores[0].create("a1" * 6, SPEC, uids, "me", now=100.0, lease=60)

    def claim_all(n: int) -> list[int]:
        claimed = []
        while (study := stores[n % 2].claim("a1" * 6, "me", 100.0)) is not None:
            claimed.append(study.position)
        return claimed

    claimed = [position for positions in at_once(8, claim_all) for position in positions]
    assert sorted(claimed) == list(range(60))
    assert stores[1].counts("a1" * 6).running == 60
    for opened in stores:
        opened.close()


def test_progress_is_the_pace_of_the_studies_ended_lately(store: JobStore) -> None:
    job = store.create("b1" * 6, SPEC, UIDS, "me", now=100.0, lease=60)
    first, second = store.claim(job.job_id, "me", 100.0), store.claim(job.job_id, "me", 110.0)
    assert first is not None and second is not None
    store.done(job.job_id, first.position, 120.0, instances=2, size=3000, result={})
    store.fail(job.job_id, second.position, 130.0, "HTTP 404")
    progress = store.progress(job.job_id, since=0.0)
    assert (progress.studies, progress.bytes, progress.first_started) == (2, 3000, 100.0)
    assert progress.rate(now=130.0) == 100.0  # 3000 bytes in 30 s
    assert progress.seconds_left(1, now=130.0) == 15.0  # two studies in 30 s: one more in 15
    assert store.progress(job.job_id, since=125.0).studies == 1
    assert store.progress(job.job_id, since=200.0).rate(now=200.0) is None


def test_a_status_reads_counts_failures_and_pace_at_once(store: JobStore) -> None:
    job = store.create("b2" * 6, SPEC, UIDS, "me", now=100.0, lease=60)
    first, second = store.claim(job.job_id, "me", 100.0), store.claim(job.job_id, "me", 110.0)
    assert first is not None and second is not None
    store.done(job.job_id, first.position, 120.0, instances=2, size=3000, result={})
    store.fail(job.job_id, second.position, 130.0, "HTTP 404")
    status = store.status(job.job_id, failures=5, since=0.0)
    assert status.counts == store.counts(job.job_id)
    assert (status.counts.done, status.counts.failed, status.counts.pending, status.counts.bytes) == (
        1,
        1,
        1,
        3000,
    )
    assert [(f.study_uid, f.reason) for f in status.failures] == [(UIDS[1], "HTTP 404")]
    assert status.pace == store.progress(job.job_id, since=0.0)
    assert store.status(job.job_id, failures=0, since=None).failures == []
    assert store.status(job.job_id, failures=5, since=None).pace is None


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


def test_the_sqlite_database_is_the_owner_s_only(tmp_path: Path) -> None:
    SqliteJobStore(tmp_path / ".jobs" / "jobs.sqlite3").close()
    assert (tmp_path / ".jobs" / "jobs.sqlite3").stat().st_mode & 0o077 == 0
    assert (tmp_path / ".jobs").stat().st_mode & 0o077 == 0


def test_an_unreachable_postgresql_fails_at_once_without_showing_the_password(tmp_path: Path) -> None:
    from tests.support.orthanc import free_port

    url = f"postgresql://mcp:hunter2@127.0.0.1:{free_port()}/jobs"  # nothing listens there
    with pytest.raises(Exception) as failed:
        open_job_store(url, tmp_path)
    assert "Connection refused" in str(failed.value) and "hunter2" not in str(failed.value)
