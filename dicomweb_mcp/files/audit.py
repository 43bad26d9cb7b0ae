"""The audit file: JSON lines appended whole, readable by the owner only, rotated by size.

The writer knows nothing of what a line says (tools/audit.py builds them). Each line is one ``os.write``
on a descriptor opened with ``O_APPEND``, under a lock, so lines never interleave and rotation never
loses one within this process. The file is opened again for every line: a file the operator moved,
removed or made unwritable is noticed at the next line (and, the caller failing closed, the next call),
instead of lines going on into a descriptor nobody reads.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

__all__ = ["AuditLog"]

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_MODE = 0o600


class AuditLog:
    """Append-only lines in ``path``; past ``max_bytes`` the file becomes ``path.1`` (``path.1`` becomes
    ``path.2``, ...) and ``keep`` old files are kept. Raises ``OSError`` when a line cannot be written."""

    def __init__(self, path: Path, *, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        # A threading lock, not an async one: the write holds it without awaiting, from any thread.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r}, max_bytes={self.max_bytes}, keep={self.keep})"

    def check(self) -> None:
        """Open (creating) the file and make it the owner's alone, or raise ``OSError``: for start-up."""
        with self._lock:
            fd = os.open(self.path, _FLAGS, _MODE)
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise IsADirectoryError(f"{self.path} is not a regular file")
                if info.st_mode & 0o077:
                    # A file made by another tool or an older umask: others must not read who saw what.
                    os.fchmod(fd, _MODE)
            finally:
                os.close(fd)

    def write(self, line: bytes) -> None:
        """Append ``line`` (one JSON document and its newline), rotating first when it would not fit."""
        with self._lock:
            fd = os.open(self.path, _FLAGS, _MODE)
            try:
                size = os.fstat(fd).st_size
                if size and size + len(line) > self.max_bytes:
                    os.close(fd)
                    fd = -1
                    self._rotate()
                    fd = os.open(self.path, _FLAGS, _MODE)
                _write_all(fd, line)
            finally:
                if fd >= 0:
                    os.close(fd)

    def _rotate(self) -> None:
        """path.(keep-1) -> path.keep, ..., path -> path.1; the oldest beyond ``keep`` is replaced."""
        for index in range(self.keep - 1, 0, -1):
            older = self._numbered(index)
            if older.exists():
                os.replace(older, self._numbered(index + 1))
        os.replace(self.path, self._numbered(1))

    def _numbered(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")


def _write_all(fd: int, data: bytes) -> None:
    # One write is the rule; a short one (a full disk, a signal) is finished under the same lock.
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"the audit line could not be written ({written} bytes accepted)")
        view = view[written:]
