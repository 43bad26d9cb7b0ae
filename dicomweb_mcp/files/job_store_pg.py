"""The job store in PostgreSQL (``DICOMWEB_JOBS_DATABASE=postgresql://...``): one database for every
replica, so that any of them reports on any job and takes over the jobs of one that stopped.

psycopg 3 (its sync API: the runner calls the store from worker threads, as it does SQLite) through a small
pool: a call opens no connection of its own, which over TLS to a remote server would cost more than the
statement. The password comes from the URL or from libpq's own PGPASSWORD, and is never shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .job_store import JobStore, Session

__all__ = ["PostgresJobStore"]

# The advisory lock two replicas starting together take before creating the tables: CREATE TABLE IF NOT
# EXISTS run by both at once can fail on PostgreSQL's catalogue ("dicomweb" in ASCII).
_SCHEMA_LOCK = 0x6469636F6D776562
_NAME = "dicomweb-mcp-jobs"  # the connections' application_name, as pg_stat_activity shows them


class PostgresJobStore(JobStore):
    """The jobs in a PostgreSQL database. Thread-safe: each call takes a connection of the pool."""

    # Claims of one job wait for each other, and an adoption waits for a claim under way (and vice versa).
    lock_row = " FOR UPDATE"

    def __init__(self, url: str, *, max_connections: int = 4) -> None:
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        settings: dict[str, Any] = {"autocommit": True, "row_factory": dict_row, "application_name": _NAME}
        # The tables first, on a connection of its own: a wrong URL or an unreachable server fails here at
        # once with libpq's reason, where a pool would retry in the background until its timeout.
        with psycopg.connect(url, connect_timeout=10, **settings) as connection, connection.transaction():
            db = Session(connection, "%s")
            db.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            self.create_schema(db)
        self._pool: Any = ConnectionPool(
            url, min_size=1, max_size=max_connections, kwargs=settings, open=True, name=_NAME
        )

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._pool.connection() as connection, connection.transaction():
            yield Session(connection, "%s")
