"""Cohort jobs on disk: each job and each of its studies as rows of an SQLite database under the download
directory (``.jobs/jobs.sqlite3``), so that a restarted server knows what is done and what is not.

Every method is one short transaction, synchronous (callers run them in a worker thread). The SQL is
plain (``CREATE TABLE IF NOT EXISTS``, ``UPDATE ... WHERE``, no ``INSERT OR REPLACE``, no SQLite
functions; types PostgreSQL knows) and lives in this module only, so that a PostgreSQL store can follow
with the same methods. A job belongs to one runner at a time through a lease (``owner``,
``lease_until``): a runner that stops without releasing it (a crash) loses it when the lease expires.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .jobs import Job, JobCounts, JobSpec, JobState, StudyRow, StudyState

__all__ = ["JobStore"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        job_id VARCHAR(32) PRIMARY KEY,
        state VARCHAR(16) NOT NULL,
        source VARCHAR(64) NOT NULL,
        destination VARCHAR(64),
        deidentify INTEGER NOT NULL,
        format VARCHAR(16) NOT NULL,
        total INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION,
        manifest TEXT,
        owner VARCHAR(64),
        lease_until DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS studies (
        job_id VARCHAR(32) NOT NULL,
        position INTEGER NOT NULL,
        study_uid VARCHAR(64) NOT NULL,
        state VARCHAR(16) NOT NULL,
        attempts INTEGER NOT NULL,
        not_before DOUBLE PRECISION,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        instances INTEGER,
        bytes BIGINT,
        result TEXT,
        reason TEXT,
        PRIMARY KEY (job_id, position)
    )""",
    "CREATE INDEX IF NOT EXISTS studies_by_state ON studies (job_id, state, position)",
)


def _job(row: sqlite3.Row) -> Job:
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


def _study(row: sqlite3.Row) -> StudyRow:
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


class JobStore:
    """The jobs of one download directory. Thread-safe: one connection, one transaction at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The rows name studies: readable by the owner only (SQLite gives its -wal and -shm files the same).
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.path = path
        self._lock = threading.Lock()
        # Autocommit mode: each method opens its own transaction (BEGIN IMMEDIATE) and ends it.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        # WAL: readers (a status call) never wait for the runner's writes. NORMAL sync: a mark lost to a
        # power cut only makes a study be sent again, which the destination takes as already present.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- jobs ---------------------------------------------------------------------------------------

    def create(
        self, job_id: str, spec: JobSpec, study_uids: Sequence[str], owner: str, now: float, lease: float
    ) -> Job:
        """A new running job owned by ``owner``, its studies pending in the order given."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (job_id, state, source, destination, deidentify, format, total, "
                "created_at, owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    JobState.RUNNING.value,
                    spec.source,
                    spec.destination,
                    int(spec.deidentify),
                    spec.format,
                    len(study_uids),
                    now,
                    owner,
                    now + lease,
                ),
            )
            db.executemany(
                "INSERT INTO studies (job_id, position, study_uid, state, attempts) VALUES (?, ?, ?, ?, 0)",
                [
                    (job_id, position, uid, StudyState.PENDING.value)
                    for position, uid in enumerate(study_uids)
                ],
            )
        job = self.job(job_id)
        assert job is not None
        return job

    def job(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _job(row) if row is not None else None

    def latest(self) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT 1").fetchone()
        return _job(row) if row is not None else None

    def counts(self, job_id: str) -> JobCounts:
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) AS n, SUM(bytes) AS b, SUM(instances) AS i FROM studies "
                "WHERE job_id = ? GROUP BY state",
                (job_id,),
            ).fetchall()
        by_state = {row["state"]: row for row in rows}
        done = by_state.get(StudyState.DONE.value)
        return JobCounts(
            **{state.value: by_state[state.value]["n"] for state in StudyState if state.value in by_state},
            bytes=int(done["b"] or 0) if done else 0,
            instances=int(done["i"] or 0) if done else 0,
        )

    def failures(self, job_id: str, limit: int) -> list[StudyRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM studies WHERE job_id = ? AND state = ? ORDER BY position LIMIT ?",
                (job_id, StudyState.FAILED.value, limit),
            ).fetchall()
        return [_study(row) for row in rows]

    def studies(self, job_id: str) -> list[StudyRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM studies WHERE job_id = ? ORDER BY position", (job_id,)
            ).fetchall()
        return [_study(row) for row in rows]

    def end(self, job_id: str, state: JobState, now: float, manifest: str | None) -> None:
        """The job has ended (finished or cancelled); nobody owns it any more. A job cancelled meanwhile
        stays cancelled."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, manifest = ?, owner = NULL, lease_until = NULL "
                "WHERE job_id = ? AND state IN (?, ?)",
                (state.value, now, manifest, job_id, JobState.RUNNING.value, state.value),
            )

    def cancel(self, job_id: str) -> bool:
        """Mark a running job cancelled; False when it had already ended."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET state = ? WHERE job_id = ? AND state = ?",
                (JobState.CANCELLED.value, job_id, JobState.RUNNING.value),
            )
            return cursor.rowcount == 1

    # ---- leases -------------------------------------------------------------------------------------

    def adopt(self, owner: str, now: float, lease: float) -> list[str]:
        """Take every running job nobody holds (its owner released it or its lease expired), and put its
        studies that were being done back to pending: they are redone, safely, since a study is marked
        done only once its destination confirmed it. Returns the jobs taken, oldest first."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT job_id FROM jobs WHERE state = ? AND (owner IS NULL OR lease_until < ?) "
                "ORDER BY created_at",
                (JobState.RUNNING.value, now),
            ).fetchall()
            taken = [row["job_id"] for row in rows]
            for job_id in taken:
                db.execute(
                    "UPDATE jobs SET owner = ?, lease_until = ? WHERE job_id = ?",
                    (owner, now + lease, job_id),
                )
                db.execute(
                    "UPDATE studies SET state = ? WHERE job_id = ? AND state = ?",
                    (StudyState.PENDING.value, job_id, StudyState.RUNNING.value),
                )
        return taken

    def renew(self, job_id: str, owner: str, now: float, lease: float) -> bool:
        """Extend ``owner``'s lease; False when it no longer holds a running job (cancelled, or taken)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_until = ? WHERE job_id = ? AND owner = ? AND state = ?",
                (now + lease, job_id, owner, JobState.RUNNING.value),
            )
            return cursor.rowcount == 1

    def release(self, job_id: str, owner: str) -> None:
        """Give a job up (the server is stopping): the next runner to start takes it at once."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET owner = NULL, lease_until = NULL WHERE job_id = ? AND owner = ?",
                (job_id, owner),
            )

    # ---- studies ------------------------------------------------------------------------------------

    def claim(self, job_id: str, owner: str, now: float) -> StudyRow | None:
        """The first pending study whose retry time has come, marked running (one attempt more); None
        when there is none, or the job is no longer ``owner``'s to run."""
        with self._transaction() as db:
            held = db.execute(
                "SELECT 1 FROM jobs WHERE job_id = ? AND owner = ? AND state = ?",
                (job_id, owner, JobState.RUNNING.value),
            ).fetchone()
            if held is None:
                return None
            row = db.execute(
                "SELECT position FROM studies WHERE job_id = ? AND state = ? "
                "AND (not_before IS NULL OR not_before <= ?) ORDER BY position LIMIT 1",
                (job_id, StudyState.PENDING.value, now),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE studies SET state = ?, attempts = attempts + 1, started_at = ? "
                "WHERE job_id = ? AND position = ?",
                (StudyState.RUNNING.value, now, job_id, row["position"]),
            )
            claimed = db.execute(
                "SELECT * FROM studies WHERE job_id = ? AND position = ?", (job_id, row["position"])
            ).fetchone()
        return _study(claimed)

    def next_retry(self, job_id: str) -> float | None:
        """When the earliest pending study may be tried (0 for one that may be tried now); None when
        nothing is pending."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) AS n, MIN(COALESCE(not_before, 0)) AS t FROM studies "
                "WHERE job_id = ? AND state = ?",
                (job_id, StudyState.PENDING.value),
            ).fetchone()
        return float(row["t"]) if row["n"] else None

    def done(
        self, job_id: str, position: int, now: float, instances: int, size: int, result: dict[str, Any]
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE studies SET state = ?, finished_at = ?, instances = ?, bytes = ?, result = ?, "
                "reason = NULL WHERE job_id = ? AND position = ?",
                (StudyState.DONE.value, now, instances, size, json.dumps(result), job_id, position),
            )

    def retry(self, job_id: str, position: int, reason: str, not_before: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE studies SET state = ?, not_before = ?, reason = ? WHERE job_id = ? AND position = ?",
                (StudyState.PENDING.value, not_before, reason, job_id, position),
            )

    def fail(self, job_id: str, position: int, now: float, reason: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE studies SET state = ?, finished_at = ?, reason = ? WHERE job_id = ? AND position = ?",
                (StudyState.FAILED.value, now, reason, job_id, position),
            )
