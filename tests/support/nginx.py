"""nginx run by the tests on 127.0.0.1: in front of Orthanc to inject faults (a bearer-token gate, rate
limiting with 429 and Retry-After, a dead upstream for 502, maintenance for 503) or to record and pace its
requests, and as a round-robin load balancer in front of MCP server replicas."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import NamedTuple, Self

from tests.support.orthanc import free_port, wait_until

NGINX_BINARY = shutil.which("nginx") or "/usr/sbin/nginx"
TOKEN = "gate-token-31415"


def _faults(port: int, upstream: int, dead: int, rate: int) -> str:
    """The fault injector's http block: a bearer gate, a rate limit, a dead upstream and maintenance."""
    proxy = (
        f'proxy_pass http://127.0.0.1:{upstream}/; proxy_http_version 1.1; proxy_set_header Connection ""; '
        "proxy_request_buffering off; proxy_buffering off;"
    )
    return f"""
    access_log off;
    client_max_body_size 0;
    limit_req_zone $binary_remote_addr zone=qido:1m rate={rate}r/s;
    limit_req_status 429;
    server {{
        listen 127.0.0.1:{port};
        location /secured/ {{
            if ($http_authorization != "Bearer {TOKEN}") {{ return 401 "missing or wrong token"; }}
            {proxy}
        }}
        location /limited/ {{
            limit_req zone=qido;
            add_header Retry-After 1 always;
            {proxy}
        }}
        location /down/ {{
            proxy_pass http://127.0.0.1:{dead}/;
        }}
        location /maintenance/ {{
            return 503 "down for maintenance";
        }}
    }}
"""


class NginxProcess:
    """One nginx process in the foreground on ``port``, its ``http`` block's directives given, its files in
    ``workdir``."""

    def __init__(self, workdir: Path, port: int, http: str) -> None:
        if not Path(NGINX_BINARY).exists():
            raise RuntimeError(
                "nginx is not installed: apt-get install nginx (the README's test command does this)"
            )
        self.workdir = workdir
        self.port = port
        self.config_path = workdir / "nginx.conf"
        self.config_path.write_text(
            f"daemon off;\nmaster_process off;\nworker_processes 1;\npid {workdir}/nginx.pid;\n"
            # Only what stops it: an upstream refusing a connection is expected, and stderr is read at start only.
            "error_log stderr crit;\nevents { worker_connections 1024; }\n"
            f"http {{\n    {temp_paths(workdir)}\n{http}\n}}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.process = subprocess.Popen(
            [NGINX_BINARY, "-c", str(self.config_path), "-p", str(self.workdir), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def listening() -> bool:
            if self.process is None or self.process.poll() is not None:
                return True  # exited: stop waiting and report below
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        # nginx has no "ready" line to wait for: poll the port, with a deadline.
        wait_until(listening, timeout=15)
        if self.process.poll() is not None:
            error = self.process.stderr.read().decode() if self.process.stderr else ""
            raise RuntimeError(f"nginx did not start: {error}")
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


def temp_paths(workdir: Path) -> str:
    """nginx's temporary directories inside ``workdir`` (its defaults are not writable by a test)."""
    lines = []
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        path = workdir / name
        path.mkdir(parents=True, exist_ok=True)
        lines.append(f"{name}_temp_path {path};")
    return "\n    ".join(lines)


class Nginx(NginxProcess):
    def __init__(self, workdir: Path, upstream_port: int, *, rate: int = 20) -> None:
        self.dead_port = free_port()  # nothing listens here: a stopped upstream
        port = free_port()
        super().__init__(workdir, port, _faults(port, upstream_port, self.dead_port, rate))

    def url(self, location: str) -> str:
        return f"http://127.0.0.1:{self.port}/{location}/dicom-web"


# Each request's replica (several, comma-separated, when nginx tried the next one) and the client's MCP
# headers: what the replica tests count.
BALANCER_LOG = (
    "$upstream_addr|$upstream_status|$status|$request_method|$http_mcp_protocol_version|$http_mcp_session_id"
)


class Balancer(NginxProcess):
    """nginx balancing /mcp over ``upstream_ports`` round robin, no sticky sessions, as the README's
    "Deploy for a team" does (without TLS); its access log names the replica of every request."""

    def __init__(self, workdir: Path, upstream_ports: list[int]) -> None:
        port = free_port()
        self.access_log = workdir / "access.log"
        servers = "\n        ".join(
            f"server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in upstream_ports
        )
        http = f"""
    log_format replicas '{BALANCER_LOG}';
    access_log {self.access_log} replicas;
    upstream mcp_replicas {{
        {servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location /mcp {{
            proxy_pass http://mcp_replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_next_upstream error timeout;
        }}
    }}
"""
        super().__init__(workdir, port, http)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def requests(self) -> list[dict[str, str]]:
        """The access log so far, one dict a request."""
        names = [field.strip("$").removeprefix("http_") for field in BALANCER_LOG.split("|")]
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        return [dict(zip(names, line.split("|"), strict=True)) for line in lines]


class Recorded(NamedTuple):
    method: str
    path: str
    status: str
    time: float  # when nginx answered, in seconds since the epoch


class Recorder(NginxProcess):
    """nginx in front of an Orthanc that logs every request and passes at most ``rate`` (nginx's "4r/s",
    "20r/m"): queueing the rest (a job through it takes long enough to be stopped midway), or, given
    ``retry_after``, refusing them with 429 and that Retry-After (seconds), as a throttling cloud service
    does."""

    def __init__(
        self, workdir: Path, upstream_port: int, *, rate: str, retry_after: int | None = None
    ) -> None:
        port = free_port()
        self.access_log = workdir / "access.log"
        proxy = f'proxy_pass http://127.0.0.1:{upstream_port}/; proxy_http_version 1.1; proxy_set_header Connection "";'
        limit = (
            "limit_req zone=paced burst=1000;"
            if retry_after is None
            else f"limit_req zone=paced burst=1 nodelay; limit_req_status 429; add_header Retry-After {retry_after} always;"
        )
        http = f"""
    client_max_body_size 0;
    log_format recorded '$request_method|$uri|$status|$msec';
    access_log {self.access_log} recorded;
    limit_req_zone $binary_remote_addr zone=paced:1m rate={rate};
    server {{
        listen 127.0.0.1:{port};
        location / {{
            {limit}
            {proxy}
        }}
    }}
"""
        super().__init__(workdir, port, http)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    def requests(self) -> list[Recorded]:
        """Each request answered so far, in the order answered."""
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        return [Recorded(m, p, s, float(t)) for m, p, s, t in (line.split("|") for line in lines)]
