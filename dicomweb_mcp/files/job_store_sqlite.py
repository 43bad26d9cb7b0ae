"""The job store in SQLite under the download directory: one process's (or one host's) jobs, the default."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .job_store import JobStore, Session

__all__ = ["SqliteJobStore"]


class SqliteJobStore(JobStore):
    """The jobs of one download directory in SQLite. Thread-safe: one connection, one transaction at a
    time."""

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
        _use_wal(self._db)
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._transaction() as db:
            self.create_schema(db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Session(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A read transaction (deferred: it takes no write lock), so that the statements of one read see
        the same moment."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield Session(self._db)
            finally:
                self._db.execute("COMMIT")


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch a new database to WAL. The switch takes the file for itself without waiting for others
    (SQLite's busy timeout does not cover it), so two servers opening a new store together are told
    "locked": the loser tries again shortly, and once the file is in WAL there is nothing to switch."""
    for attempt in range(100):
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.01 * (1 + attempt % 5))
