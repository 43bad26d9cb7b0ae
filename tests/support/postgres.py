"""A real PostgreSQL (Debian's package) run by the tests on 127.0.0.1 with a temporary data directory, trust
authentication on loopback, and stopped by its PID. As root, initdb and postgres refuse to run: they run as
the unprivileged ``postgres`` user the Debian package creates, owning the data directory."""

from __future__ import annotations

import getpass
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from tests.support.orthanc import follow_log, free_port, stop_process

_START_TIMEOUT = 60.0
_SUPERUSER = "dicomweb"  # the role initdb makes; trust authentication, so no password


class PostgresMissing(RuntimeError):
    pass


def binaries() -> Path:
    """The newest installed server's bin directory (/usr/lib/postgresql/<version>/bin)."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresMissing(
            "PostgreSQL is not installed: apt-get install postgresql (scripts/setup.sh does this)."
        )
    return found[-1]


class Postgres:
    """One PostgreSQL server; ``start()`` returns once it accepts connections."""

    def __init__(self) -> None:
        self.bin = binaries()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: list[str] = []
        # As root: run as ``postgres``, in a directory it owns (pytest's own temporary tree is root's only).
        self.user = "postgres" if os.geteuid() == 0 else getpass.getuser()
        self.workdir = Path(tempfile.mkdtemp(prefix="dicomweb-mcp-postgres-"))
        if os.geteuid() == 0:
            account = pwd.getpwnam(self.user)
            os.chown(self.workdir, account.pw_uid, account.pw_gid)
        self.data = self.workdir / "data"

    def _as_user(self) -> dict[str, Any]:
        """Popen's arguments that drop root for the ``postgres`` user (none when not root)."""
        if os.geteuid() != 0:
            return {}
        return {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid, "extra_groups": []}

    def start(self) -> Postgres:
        environment = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(self.workdir)}
        # Trust: any local role may connect without a password (loopback only, a throw-away cluster).
        command = [str(self.bin / "initdb"), "-D", str(self.data), "-U", _SUPERUSER, "-A", "trust"]
        initdb = subprocess.run(
            [*command, "-E", "UTF8", "--no-sync"],
            capture_output=True,
            env=environment,
            cwd=self.workdir,
            **self._as_user(),
        )
        if initdb.returncode != 0:
            raise RuntimeError("initdb failed:\n" + initdb.stdout.decode() + initdb.stderr.decode())
        # TCP on loopback only, no Unix socket (no directory of the system's to write), fsync off (a
        # throw-away cluster), logs on stderr for the readiness line.
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "fsync": "off",
            "max_connections": "100",
        }
        command = [str(self.bin / "postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        started = threading.Event()
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=environment,
            cwd=self.workdir,
            **self._as_user(),
        )
        assert self.process.stderr is not None
        follow_log(self.process.stderr, self._log, "database system is ready to accept connections", started)
        if not started.wait(_START_TIMEOUT) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("PostgreSQL did not start:\n" + "\n".join(self._log[-30:]))
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database (one per test: nothing carries over); its URL."""
        import psycopg

        name = f"jobs_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        process, self.process = self.process, None
        # SIGINT: PostgreSQL's fast shutdown (ends the sessions, then exits).
        stop_process(process, signal.SIGINT, 30)
        shutil.rmtree(self.workdir, ignore_errors=True)
