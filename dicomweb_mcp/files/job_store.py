"""Cohort jobs in a database: each job and each of its studies as rows, so that a restarted server knows
what is done and what is not. By default SQLite under the download directory (``.jobs/jobs.sqlite3``); with
``DICOMWEB_JOBS_DATABASE`` PostgreSQL (files/job_store_pg), shared by every replica.

Every method is one short transaction, synchronous (callers run them in a worker thread). The SQL is the
same for both databases and lives in this class only: plain (``CREATE TABLE IF NOT EXISTS``, ``UPDATE ...
WHERE``, no ``INSERT OR REPLACE``, no functions of one database), written with ``?`` placeholders that the
PostgreSQL store turns into psycopg's ``%s``. A job belongs to one runner at a time through a lease
(``owner``, ``lease_until``): a runner that stops without releasing it (a crash) loses it when the lease
expires. Where two runners may race, the statement that decides is conditional (an ``UPDATE ... WHERE``
whose row count says who won) and, in PostgreSQL, the job's row is locked while a study is claimed or
recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .jobs import (
    Job,
    JobCounts,
    JobProgress,
    JobSpec,
    JobState,
    JobStatus,
    StudyRow,
    StudyState,
    job_from_row,
    study_from_row,
)

__all__ = ["JobStore", "Session", "masked_url", "open_job_store", "sqlite_path"]

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


def masked_url(url: str) -> str:
    """A database URL fit to show: its password, in the address or the query, as ``***``."""
    parts = urlsplit(url)
    if parts.password is not None:
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "password" for key, _ in query):
        shown = [(key, "***" if key == "password" else value) for key, value in query]
        parts = parts._replace(query=urlencode(shown, safe="*"))
    return urlunsplit(parts)


def sqlite_path(download_dir: Path) -> Path:
    return download_dir / ".jobs" / "jobs.sqlite3"


def open_job_store(database: str | None, download_dir: Path) -> JobStore:
    """The job store a server uses: PostgreSQL at ``database`` (a ``postgresql://`` URL), else SQLite under
    ``download_dir``."""
    if database is not None:
        from .job_store_pg import PostgresJobStore

        return PostgresJobStore(database)
    from .job_store_sqlite import SqliteJobStore

    return SqliteJobStore(sqlite_path(download_dir))


@dataclass(frozen=True)
class Session:
    """One connection inside one transaction, with the statements' placeholders in its driver's style."""

    connection: Any  # sqlite3.Connection or psycopg.Connection: the calls used are the same (DB-API)
    placeholder: str = "?"

    def _sql(self, statement: str) -> str:
        return statement if self.placeholder == "?" else statement.replace("?", self.placeholder)

    def execute(self, statement: str, parameters: Sequence[Any] = ()) -> Any:
        return self.connection.execute(self._sql(statement), parameters)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        self.connection.cursor().executemany(self._sql(statement), rows)


def _counts(db: Session, job_id: str) -> JobCounts:
    rows = db.execute(
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


def _progress(db: Session, job_id: str, since: float) -> JobProgress:
    row = db.execute(
        "SELECT COUNT(*) AS n, SUM(bytes) AS b, MIN(started_at) AS t FROM studies "
        "WHERE job_id = ? AND state IN (?, ?) AND finished_at >= ?",
        (job_id, StudyState.DONE.value, StudyState.FAILED.value, since),
    ).fetchone()
    first = row["t"]
    return JobProgress(int(row["n"]), int(row["b"] or 0), float(first) if first is not None else None)


class JobStore:
    """The jobs, in whichever database: every statement is here; a subclass gives the connections."""

    # Appended to the statement that reads a job's row before a study is claimed: PostgreSQL locks the row
    # there, so that claims of one job (two workers, or an adoption) follow each other. SQLite's write
    # transactions already do.
    lock_row: str = ""

    def _transaction(self) -> AbstractContextManager[Session]:
        """A write transaction, committed when the block ends, rolled back when it raises."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Session]:
        """A connection to read with."""
        return self._transaction()

    def close(self) -> None:
        raise NotImplementedError

    def create_schema(self, db: Session) -> None:
        for statement in _SCHEMA:
            db.execute(statement)

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
        with self._read() as db:
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return job_from_row(row) if row is not None else None

    def latest(self) -> Job | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT 1").fetchone()
        return job_from_row(row) if row is not None else None

    def counts(self, job_id: str) -> JobCounts:
        with self._read() as db:
            return _counts(db, job_id)

    def status(self, job_id: str, failures: int, since: float | None) -> JobStatus:
        """What a status reports, in one read: the job's counts, its first ``failures`` failed studies and,
        with ``since``, its pace since then (``progress``)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM studies WHERE job_id = ? AND state = ? ORDER BY position LIMIT ?",
                (job_id, StudyState.FAILED.value, failures),
            ).fetchall()
            pace = _progress(db, job_id, since) if since is not None else None
            return JobStatus(_counts(db, job_id), [study_from_row(row) for row in rows], pace)

    def studies(self, job_id: str) -> list[StudyRow]:
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM studies WHERE job_id = ? ORDER BY position", (job_id,)
            ).fetchall()
        return [study_from_row(row) for row in rows]

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
            return bool(cursor.rowcount == 1)

    # ---- leases -------------------------------------------------------------------------------------

    def adopt(
        self, owner: str, now: float, lease: float, stopped: Callable[[str], bool] = lambda _: False
    ) -> list[str]:
        """Take every running job nobody holds (its owner released it, its lease expired, or ``stopped``
        says its owner is a process known to have ended), and put its studies that were being done back to
        pending: they are redone, safely, since a study is marked done only once its destination confirmed
        it. Returns the jobs taken, oldest first."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT job_id, owner, lease_until FROM jobs WHERE state = ? ORDER BY created_at",
                (JobState.RUNNING.value,),
            ).fetchall()
            taken = []
            for row in rows:
                held = row["owner"] is not None and row["lease_until"] >= now
                ended = held and stopped(row["owner"])
                if held and not ended:
                    continue
                # Conditional: of two runners adopting at once, the second finds the job held and gets 0 rows
                # (PostgreSQL checks the condition again on the row the first one committed).
                cursor = db.execute(
                    "UPDATE jobs SET owner = ?, lease_until = ? WHERE job_id = ? AND state = ? "
                    "AND (owner IS NULL OR lease_until < ? OR owner = ?)",
                    (
                        owner,
                        now + lease,
                        row["job_id"],
                        JobState.RUNNING.value,
                        now,
                        row["owner"] if ended else "",
                    ),
                )
                if cursor.rowcount != 1:
                    continue
                taken.append(row["job_id"])
                db.execute(
                    "UPDATE studies SET state = ? WHERE job_id = ? AND state = ?",
                    (StudyState.PENDING.value, row["job_id"], StudyState.RUNNING.value),
                )
        return taken

    def renew(self, job_id: str, owner: str, now: float, lease: float) -> bool:
        """Extend ``owner``'s lease; False when it no longer holds a running job (cancelled, or taken)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_until = ? WHERE job_id = ? AND owner = ? AND state = ?",
                (now + lease, job_id, owner, JobState.RUNNING.value),
            )
            return bool(cursor.rowcount == 1)

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
                "SELECT 1 FROM jobs WHERE job_id = ? AND owner = ? AND state = ?" + self.lock_row,
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
        return study_from_row(claimed)

    def progress(self, job_id: str, since: float) -> JobProgress:
        """The studies ended (done or failed) since ``since``, by whichever runner: what a rate and a time
        left are computed from, the same on every replica."""
        with self._read() as db:
            return _progress(db, job_id, since)

    def next_retry(self, job_id: str) -> float | None:
        """When the earliest pending study may be tried (0 for one that may be tried now); None when
        nothing is pending."""
        with self._read() as db:
            row = db.execute(
                "SELECT COUNT(*) AS n, MIN(COALESCE(not_before, 0)) AS t FROM studies "
                "WHERE job_id = ? AND state = ?",
                (job_id, StudyState.PENDING.value),
            ).fetchone()
        return float(row["t"]) if row["n"] else None

    def done(
        self, job_id: str, position: int, now: float, instances: int, size: int, result: dict[str, Any]
    ) -> bool:
        """The study reached its destination. True when the job had been cancelled and its manifest
        written meanwhile (by any process): the manifest is to be written again, to name this study."""
        values = (StudyState.DONE.value, now, instances, size, json.dumps(result))
        return self._record(
            job_id, position, "finished_at = ?, instances = ?, bytes = ?, result = ?, reason = NULL", values
        )

    def retry(self, job_id: str, position: int, reason: str, not_before: float) -> bool:
        """The study is tried again after ``not_before``; True as for ``done``."""
        values = (StudyState.PENDING.value, not_before, reason)
        return self._record(job_id, position, "not_before = ?, reason = ?", values)

    def fail(self, job_id: str, position: int, now: float, reason: str) -> bool:
        """The study failed for good; True as for ``done``."""
        values = (StudyState.FAILED.value, now, reason)
        return self._record(job_id, position, "finished_at = ?, reason = ?", values)

    def _record(self, job_id: str, position: int, columns: str, values: Sequence[Any]) -> bool:
        """Set the study's state and ``columns``; whether its job has ended cancelled, its manifest written.
        The job's row is read first, locked in PostgreSQL (before the study's, as claim and adopt do), so
        that the study is recorded either before the end (the process writing the manifest reads the studies
        again once the end is recorded, and sees it) or after it (seen here): never missed by both."""
        with self._transaction() as db:
            job = db.execute(
                "SELECT state, manifest FROM jobs WHERE job_id = ?" + self.lock_row, (job_id,)
            ).fetchone()
            db.execute(
                f"UPDATE studies SET state = ?, {columns} WHERE job_id = ? AND position = ?",
                (*values, job_id, position),
            )
        return job is not None and job["state"] == JobState.CANCELLED.value and job["manifest"] is not None
