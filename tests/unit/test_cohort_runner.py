"""The cohort runner's decisions with a stand-in step (no server): a failure that may pass is retried
until it succeeds or the attempts run out, a permanent one is recorded at once, and the manifest is
written when no study is left."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from dicomweb_mcp import Config
from dicomweb_mcp.config import DEFAULT_JOB_CONCURRENCY
from dicomweb_mcp.errors import NotFoundError, ServerUnreachableError, ThrottledError
from dicomweb_mcp.files.job_store import JobStore, open_job_store
from dicomweb_mcp.files.jobs import JobSpec
from dicomweb_mcp.files.store import FileStore
from dicomweb_mcp.tools import cohort_runner
from dicomweb_mcp.tools.cohort_runner import CohortJobs
from dicomweb_mcp.tools.cohort_steps import StudyDone
from dicomweb_mcp.tools.context import ToolContext

pytestmark = pytest.mark.anyio

FLAKY, MISSING, DOWN, FINE = "1.2.3.1", "1.2.3.2", "1.2.3.3", "1.2.3.4"

Step = Callable[[ToolContext, str, JobSpec, str, int], Awaitable[StudyDone]]


@dataclass(frozen=True)
class Ended:
    job_id: str
    state: str  # as the job store has it
    rows: list[dict[str, Any]]  # its manifest's


async def run_job(
    tmp_path: Path,
    step: Step,
    uids: list[str],
    *,
    job_concurrency: int = DEFAULT_JOB_CONCURRENCY,
    **options: Any,
) -> Ended:
    """A job of ``uids`` run to its end (30 s at most) by a runner whose step is ``step``; ``options`` are
    the runner's (CohortJobs: max_attempts...), with no backoff unless given."""
    config = Config.single(
        url="http://dicomweb.invalid/dicom-web", download_dir=tmp_path, job_concurrency=job_concurrency
    )
    jobs = CohortJobs(ToolContext({}, FileStore(tmp_path), config), **{"backoff_base": 0, **options})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cohort_runner, "run_study", step)
        async with anyio.create_task_group() as group:
            await group.start(jobs.run)
            job = await jobs.start(JobSpec("default", None, False, "dicom"), uids)
            await jobs.wait(job.job_id, 30)
            group.cancel_scope.cancel()
    with sqlite3.connect(jobs.path) as db:
        state, manifest = db.execute(
            "SELECT state, manifest FROM jobs WHERE job_id = ?", (job.job_id,)
        ).fetchone()
    rows = [json.loads(line) for line in Path(manifest).read_text().splitlines()] if manifest else []
    return Ended(job.job_id, state, rows)


async def test_retries_are_bounded_and_permanent_failures_are_not_retried(tmp_path: Path) -> None:
    tries: Counter[str] = Counter()

    async def step(app: ToolContext, job_id: str, spec: JobSpec, study_uid: str, at_once: int) -> StudyDone:
        tries[study_uid] += 1
        if study_uid == FLAKY and tries[study_uid] < 3:
            raise ServerUnreachableError("cannot connect")
        if study_uid == MISSING:
            raise NotFoundError("Retrieve instances", 404, f"/studies/{study_uid}")
        if study_uid == DOWN:
            raise ServerUnreachableError("cannot connect")
        return StudyDone(2, 100, {"directory": study_uid})

    ended = await run_job(tmp_path, step, [FLAKY, MISSING, DOWN, FINE], job_concurrency=2, max_attempts=3)
    assert tries == {FLAKY: 3, MISSING: 1, DOWN: 3, FINE: 1}
    assert ended.state == "finished"
    rows = ended.rows
    assert [(r["outcome"], r["attempts"]) for r in rows] == [
        ("done", 3),
        ("failed", 1),
        ("failed", 3),
        ("done", 1),
    ]
    assert rows[1]["reason"] == "Retrieve instances failed: HTTP 404"
    assert rows[2]["reason"] == "cannot connect"
    assert rows[0]["directory"] == FLAKY


@pytest.mark.parametrize(("concurrency", "studies"), [(1, 12), (3, 12), (4, 2)])
async def test_studies_at_once_are_bounded_by_the_job_concurrency(
    tmp_path: Path, concurrency: int, studies: int
) -> None:
    """Studies whose step waits until it is released: never more than DICOMWEB_JOB_CONCURRENCY run at once,
    and that many do (each step is released only once the limit is reached, or the last ones run). A job of
    fewer studies runs them all at once, and its steps share the spool among those only."""
    at_most = min(concurrency, studies)
    running, most = 0, 0
    released = anyio.Event()
    started: list[str] = []

    async def step(app: ToolContext, job_id: str, spec: JobSpec, study_uid: str, at_once: int) -> StudyDone:
        nonlocal running, most
        assert at_once == at_most  # the step is told, to share its spool
        running += 1
        most = max(most, running)
        started.append(study_uid)
        if running == at_most:
            released.set()
        await released.wait()
        running -= 1
        return StudyDone(1, 10, {"directory": study_uid})

    uids = [f"1.2.3.{i}" for i in range(studies)]
    ended = await run_job(tmp_path, step, uids, job_concurrency=concurrency)
    assert most == at_most
    assert sorted(started) == sorted(uids)
    assert ended.state == "finished"


async def test_a_throttled_study_waits_as_long_as_the_server_asked(tmp_path: Path) -> None:
    """A study whose requests were still throttled after their retries is tried again no sooner than the
    server's Retry-After, even when the job's own backoff is shorter (here none)."""
    tried_at: list[float] = []

    async def step(app: ToolContext, job_id: str, spec: JobSpec, study_uid: str, at_once: int) -> StudyDone:
        tried_at.append(anyio.current_time())
        if len(tried_at) == 1:
            throttled = ThrottledError("Retrieve instances", 429, f"/studies/{study_uid}")
            throttled.retry_after = 0.5
            raise throttled
        return StudyDone(1, 10, {"directory": study_uid})

    ended = await run_job(tmp_path, step, [FINE])
    assert len(tried_at) == 2 and tried_at[1] - tried_at[0] >= 0.5
    assert ended.state == "finished"


async def test_an_unexpected_failure_is_logged_with_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A step raising what no step is known to raise (a bug): the study fails at once, and the log has the
    traceback, which the manifest's "unexpected KeyError" alone would not say."""
    tries: Counter[str] = Counter()

    async def step(app: ToolContext, job_id: str, spec: JobSpec, study_uid: str, at_once: int) -> StudyDone:
        tries[study_uid] += 1
        raise KeyError("instances")

    with caplog.at_level(logging.ERROR, logger="dicomweb_mcp"):
        ended = await run_job(tmp_path, step, [FINE])
    assert tries == {FINE: 1}
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "dicomweb_mcp"]
    assert ended.job_id in record.getMessage() and FINE in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert "in step" in caplog.text and "Traceback" in caplog.text
    assert ended.state == "finished"
    [row] = ended.rows
    assert (row["outcome"], row["reason"]) == ("failed", "unexpected KeyError")


async def test_two_first_calls_at_once_open_one_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is opened on first use: two status calls arriving together must not each open one (on
    PostgreSQL, a pool each, one never closed)."""
    opened: list[JobStore] = []

    def open_counted(database: str | None, download_dir: Path) -> JobStore:
        time.sleep(0.2)  # a slow connection: the second call arrives while the first is opening
        opened.append(open_job_store(database, download_dir))
        return opened[-1]

    monkeypatch.setattr(cohort_runner, "open_job_store", open_counted)
    config = Config.single(url="http://dicomweb.invalid/dicom-web", download_dir=tmp_path)
    jobs = CohortJobs(ToolContext({}, FileStore(tmp_path), config))
    try:
        async with anyio.create_task_group() as group:
            for _ in range(2):
                group.start_soon(jobs.db, JobStore.latest)
        assert len(opened) == 1
    finally:
        jobs.close()
        for store in opened[1:]:  # opened beside the one kept, were the lock gone
            store.close()
