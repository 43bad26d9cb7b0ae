"""A real Orthanc with the DICOMweb plugin, run by the tests on 127.0.0.1 and stopped by its PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx

ORTHANC_BINARY = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
_START_TIMEOUT = 30.0


class OrthancMissing(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Orthanc:
    """One Orthanc process with its own storage directory; ``start()`` returns once it serves DICOMweb."""

    def __init__(self, workdir: Path, *, users: dict[str, str] | None = None) -> None:
        if not Path(ORTHANC_BINARY).exists() or not Path(DICOMWEB_PLUGIN).exists():
            raise OrthancMissing(
                "Orthanc with the DICOMweb plugin is not installed: apt-get install orthanc orthanc-dicomweb "
                "(the README's test command does this)."
            )
        self.workdir = workdir
        self.port = free_port()
        self.users = users
        self.process: subprocess.Popen[bytes] | None = None
        self._log_lines: list[str] = []

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.root}/dicom-web"

    def config(self) -> dict[str, Any]:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "Name": "dicomweb-mcp-tests",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "DicomServerEnabled": False,
            "HttpCompressionEnabled": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users or {},
        }
        return config

    def start(self) -> Orthanc:
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.config()))
        started = threading.Event()
        self.process = subprocess.Popen(
            [ORTHANC_BINARY, str(config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        # Orthanc logs "Orthanc has started" once its HTTP server is up: wait for that line, not a sleep.
        assert self.process.stdout is not None
        follow_log(self.process.stdout, self._log_lines, "Orthanc has started", started)
        if not started.wait(_START_TIMEOUT) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("Orthanc did not start:\n" + self.log_tail())
        auth = None
        if self.users:
            user, password = next(iter(self.users.items()))
            auth = httpx.BasicAuth(user, password)
        # A wrong plugin path does not stop Orthanc: check the DICOMweb plugin is really loaded.
        response = httpx.get(f"{self.root}/plugins/dicom-web", auth=auth, timeout=10)
        if response.status_code != 200:
            self.stop()
            raise RuntimeError(f"Orthanc started without the DICOMweb plugin (HTTP {response.status_code})")
        return self

    def log_tail(self, lines: int = 30) -> str:
        """Orthanc's last log lines (it logs refusals and errors that its HTTP answers leave out)."""
        return "\n".join(self._log_lines[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process, signal.SIGTERM, 20)

    def kill(self) -> None:
        """Stop at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def statistics(self) -> dict[str, Any]:
        """Orthanc's own counts (instances, studies, disk size): what the archive holds, seen from inside."""
        response = httpx.get(f"{self.root}/statistics", auth=self._auth(), timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def _auth(self) -> httpx.BasicAuth | None:
        return httpx.BasicAuth(*next(iter(self.users.items()))) if self.users else None

    def clear(self) -> None:
        """Delete every study, so that each test starts from an empty archive."""
        with httpx.Client(base_url=self.root, auth=self._auth(), timeout=30) as http:
            for study in http.get("/studies").json():
                http.delete(f"/studies/{study}").raise_for_status()

    def held_studies(self) -> dict[str, tuple[str, int]]:
        """What the archive holds, by Study Instance UID: the patient ID and the number of instances (two
        requests, whatever the number of studies)."""
        with httpx.Client(base_url=self.root, auth=self._auth(), timeout=120) as http:
            studies = http.get("/studies", params={"expand": "1"}).json()
            series = http.get("/series", params={"expand": "1"}).json()
        instances = dict.fromkeys((s["ID"] for s in studies), 0)
        for one in series:
            instances[one["ParentStudy"]] += len(one["Instances"])
        return {
            s["MainDicomTags"]["StudyInstanceUID"]: (
                s["PatientMainDicomTags"]["PatientID"],
                instances[s["ID"]],
            )
            for s in studies
        }


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    """Poll a condition with a deadline (for external processes that give no event to wait on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def stop_process(process: subprocess.Popen[bytes] | None, stop: signal.Signals, timeout: float) -> None:
    """Send a server ``stop`` (its own orderly shutdown) by its PID; SIGKILL when it has not ended after
    ``timeout`` seconds. Nothing when it has ended already."""
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, stop)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def follow_log(stream: IO[bytes], lines: list[str], ready: str, started: threading.Event) -> None:
    """Read a server's log in a thread: keep its last 200 lines in ``lines``, set ``started`` at the line
    containing ``ready``, or when the log ends (the process stopped: the caller sees it)."""

    def read() -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            lines.append(line)
            del lines[:-200]
            if ready in line:
                started.set()
        started.set()

    threading.Thread(target=read, daemon=True).start()
