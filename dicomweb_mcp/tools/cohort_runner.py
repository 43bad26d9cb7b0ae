"""Running cohort jobs in the background, durably: the jobs of the job store (files/job_store: SQLite under
the download directory, or PostgreSQL shared by replicas), one study at a time per worker, several workers
per job. Everything a status needs is in the store, so that any replica reports on any job.

A study is marked done only after its step returned, that is after the destination answered for every
instance (or every file was saved): a server stopped at any moment redoes at most the studies it was
working on, which their destination takes as already present. At start (and every third of a lease) the
runner takes the jobs nobody holds: those a stopped server released, and those of a crashed one once its
lease has expired. A failing study is tried again after a backoff, a bounded number of times, then
recorded failed with its reason. When no study is left the manifest is written (whole, then renamed).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ..files.job_store import JobStore, masked_url, open_job_store, sqlite_path
from ..files.jobs import (
    Job,
    JobSpec,
    JobState,
    StudyRow,
    StudyState,
    after_failure,
    backoff_seconds,
    manifest_row,
    new_job_id,
)
from .cohort_steps import cohort_directory, describe_failure, run_study, unexpected
from .context import ToolContext

__all__ = ["CohortJobs", "StudyEvent", "owner_name", "stopped_here"]

log = logging.getLogger("dicomweb_mcp")

_T = TypeVar("_T")
# "sent": a study's step returned (its destination confirmed it), not yet recorded; "recorded": its
# outcome is in the store. Tests stop a runner at either point.
StudyEvent = Literal["sent", "recorded"]
Hook = Callable[[StudyEvent, str, int], Awaitable[None]]


# How often a status waiting for a job run by another replica looks at the store again.
_POLL = 1.0


def _process_space() -> str:
    """This boot of this machine and this process's PID namespace: host names can repeat (truncated, or
    shared by containers with host networking), and so does the first namespace's number on every host."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot = file.read().strip().replace("-", "")[:12]
        namespace = "".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit())
    except OSError:
        return "-"
    return f"{boot}.{namespace}"


def owner_name() -> str:
    """This process as a job's owner: its host, boot, PID namespace and process ID (so a successor beside it
    knows at once that it has ended), and a random part (so a reused process ID is never mistaken for it)."""
    return f"{socket.gethostname()[:32]}/{_process_space()}:{os.getpid()}/{uuid.uuid4().hex[:12]}"


def stopped_here(owner: str) -> bool:
    """Whether ``owner`` was a process beside this one (same host, same PID namespace) that has ended: its
    job need not wait for its lease."""
    parts = owner.split("/")
    if len(parts) != 3:
        return False
    space, _, pid = parts[1].partition(":")
    if parts[0] != socket.gethostname()[:32] or space != _process_space() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, under another user
        return False
    return False


@dataclass
class CohortJobs:
    """The cohort jobs of one server process. ``run`` (in the server's lifespan) keeps them going."""

    app: ToolContext
    lease: float = 60.0  # a crashed server's jobs are taken over after this many seconds
    max_attempts: int = 4
    backoff_base: float = 5.0
    backoff_cap: float = 120.0
    on_study: Hook | None = None  # called at each StudyEvent (tests stop the runner there)
    owner: str = field(default_factory=lambda: owner_name())

    def __post_init__(self) -> None:
        self.database = self.app.config.jobs_database
        self.path = sqlite_path(self.app.config.download_dir)
        self._store: JobStore | None = None
        self._opening = anyio.Lock()  # two first calls at once open one store, not two (a pool each)
        self._group: TaskGroup | None = None
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._ended: dict[str, anyio.Event] = {}
        self._manifests = anyio.Lock()  # one manifest written at a time: the last one written is the newest
        # Set once the jobs left unfinished have been taken up: a status asked sooner waits for it.
        self.resumed = anyio.Event()

    # ---- the store, off the event loop --------------------------------------------------------------

    async def db(self, method: Callable[..., _T], *args: Any) -> _T:
        """``method`` of the job store (``JobStore.claim``...) run in a worker thread."""
        if self._store is None:
            async with self._opening:
                if self._store is None:
                    self._store = await anyio.to_thread.run_sync(
                        open_job_store, self.database, self.app.config.download_dir
                    )
        return await anyio.to_thread.run_sync(method, self._store, *args)

    def has_jobs(self) -> bool:
        """Whether there may be jobs: a shared database always may; SQLite's file is made by the first."""
        return self.database is not None or self._store is not None or self.path.exists()

    @property
    def where(self) -> str:
        """The store, for messages (a database URL without its password)."""
        return masked_url(self.database) if self.database is not None else str(self.path)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # ---- the process's runner -----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Resume the jobs left unfinished, run new ones, keep their leases; until cancelled."""
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                task_status.started()
                while True:
                    # No SQLite file yet means no job to resume: it is made by the first job only.
                    if self.has_jobs():
                        try:
                            await self._adopt_and_renew()
                        except Exception as exc:  # an unreachable store must not stop the server
                            log.warning("cohort jobs in %s cannot be resumed: %s", self.where, exc)
                    self.resumed.set()
                    await anyio.sleep(self.lease / 3)
        finally:
            self._group = None
            self.close()

    async def _adopt_and_renew(self) -> None:
        now = time.time()
        for job_id in list(self._scopes):
            if not await self.db(JobStore.renew, job_id, self.owner, now, self.lease):
                self._scopes[job_id].cancel()  # cancelled by another process, or taken over
        for job_id in await self.db(JobStore.adopt, self.owner, now, self.lease, stopped_here):
            log.info("resuming cohort job %s", job_id)
            self._launch(job_id)

    def _launch(self, job_id: str) -> None:
        if self._group is None:
            raise RuntimeError("the cohort job runner is not running")
        if job_id not in self._scopes:
            self._scopes[job_id] = anyio.CancelScope()
            self._ended[job_id] = anyio.Event()
            self._group.start_soon(self._run_job, job_id)

    async def start(self, spec: JobSpec, study_uids: list[str]) -> Job:
        """A new job, recorded then started: it survives a restart from this moment."""
        if self._group is None:
            raise RuntimeError("the cohort job runner is not running")
        job = await self.db(
            JobStore.create, new_job_id(), spec, study_uids, self.owner, time.time(), self.lease
        )
        self._launch(job.job_id)
        return job

    def running_here(self, job_id: str) -> bool:
        return job_id in self._scopes

    async def wait(self, job_id: str, seconds: float) -> None:
        """Until the job has ended, or ``seconds`` pass: on its event when it runs here, else looking at
        the store every second (another replica runs it, or will take it over)."""
        with anyio.move_on_after(seconds):
            while True:
                ended = self._ended.get(job_id)
                if ended is not None and not ended.is_set():
                    await ended.wait()
                job = await self.db(JobStore.job, job_id)
                if job is None or job.state is not JobState.RUNNING:
                    return
                await anyio.sleep(_POLL)

    async def cancel(self, job_id: str) -> bool:
        """Stop a running job: the studies being done stop, the others are left undone; the manifest
        says so. False when it had ended already."""
        if not await self.db(JobStore.cancel, job_id):
            return False
        scope = self._scopes.get(job_id)
        if scope is not None:
            scope.cancel()
            await self._ended[job_id].wait()
        await self._end(job_id, JobState.CANCELLED)
        return True

    # ---- one job ------------------------------------------------------------------------------------

    async def _run_job(self, job_id: str) -> None:
        try:
            with self._scopes[job_id]:
                job = await self.db(JobStore.job, job_id)
                if job is None:
                    return
                workers = max(1, min(self.app.config.job_concurrency, job.total))
                async with anyio.create_task_group() as group:
                    for _ in range(workers):
                        group.start_soon(self._worker, job, workers)
                counts = await self.db(JobStore.counts, job_id)
                if counts.pending == 0 and counts.running == 0:
                    await self._end(job_id, JobState.FINISHED)
        except Exception:
            # The job stays in the store, unfinished: the next start (or the next lease round) resumes it.
            log.exception("cohort job %s stopped", job_id)
        finally:
            with anyio.CancelScope(shield=True):
                self._scopes.pop(job_id, None)
                self._ended[job_id].set()
                try:
                    await self.db(JobStore.release, job_id, self.owner)
                except Exception:  # the lease expires by itself
                    log.warning("cohort job %s: its lease could not be released", job_id)

    async def _worker(self, job: Job, workers: int) -> None:
        while True:
            now = time.time()
            study = await self.db(JobStore.claim, job.job_id, self.owner, now)
            if study is None:
                due = await self.db(JobStore.next_retry, job.job_id)
                if due is None or due <= now:
                    return  # nothing left to start, or the job is no longer this runner's
                await anyio.sleep(due - now)  # a retried study's backoff
                continue
            await self._attempt(job, study, workers)

    async def _attempt(self, job: Job, study: StudyRow, workers: int) -> None:
        """Do one study; ``workers``, the job's studies done at once, share the temporary disk."""
        try:
            done = await run_study(self.app, job.job_id, job.spec, study.study_uid, workers)
        except Exception as exc:
            reason, permanent = describe_failure(exc)
            if unexpected(exc):
                log.error("cohort job %s, study %s: %s", job.job_id, study.study_uid, reason, exc_info=exc)
            now = time.time()
            with anyio.CancelScope(shield=True):
                if after_failure(study.attempts, self.max_attempts, permanent) is StudyState.FAILED:
                    rewrite = await self.db(JobStore.fail, job.job_id, study.position, now, reason)
                else:
                    wait = backoff_seconds(study.attempts, self.backoff_base, self.backoff_cap)
                    # A throttled server's Retry-After outlasting the backoff is waited for (up to the cap).
                    asked = getattr(exc, "retry_after", None) or 0.0
                    wait = max(wait, min(asked, self.backoff_cap))
                    rewrite = await self.db(JobStore.retry, job.job_id, study.position, reason, now + wait)
        else:
            await self._hook("sent", job.job_id, study.position)
            # Recorded even when the job is being stopped this instant: the destination has the study.
            with anyio.CancelScope(shield=True):
                rewrite = await self.db(
                    JobStore.done,
                    job.job_id,
                    study.position,
                    time.time(),
                    done.instances,
                    done.bytes,
                    done.row,
                )
        if rewrite:
            # Recorded after another process cancelled the job and wrote its manifest: the manifest is
            # written again, so that it says what reached the destination.
            await self._end(job.job_id, JobState.CANCELLED)
        await self._hook("recorded", job.job_id, study.position)

    async def _hook(self, event: StudyEvent, job_id: str, position: int) -> None:
        if self.on_study is not None:
            await self.on_study(event, job_id, position)

    async def _end(self, job_id: str, state: JobState) -> None:
        """Write the manifest (whole, then renamed) and record the job ended. Its studies are read again once
        the end is recorded: one another process recorded meanwhile, before it could see the end (and so
        write the manifest itself), is written in too."""
        path = cohort_directory(self.app, job_id) / "manifest.jsonl"
        with anyio.CancelScope(shield=True):
            async with self._manifests:
                rows = await self.db(JobStore.studies, job_id)
                await self._write_manifest(path, rows, state)
                await self.db(JobStore.end, job_id, state, time.time(), str(path))
                again = await self.db(JobStore.studies, job_id)
                if again != rows:
                    await self._write_manifest(path, again, state)

    async def _write_manifest(self, path: Path, rows: list[StudyRow], state: JobState) -> None:
        text = "".join(json.dumps(manifest_row(row, state)) + "\n" for row in rows)
        await anyio.to_thread.run_sync(self._write, path, text)

    def _write(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.app.store.write_bytes(path, text.encode("utf-8"))
