"""nginx in front of Orthanc, run by the tests on 127.0.0.1 to inject faults: a bearer-token gate,
rate limiting (429 with Retry-After), a dead upstream (502) and maintenance (503)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from tests.support.orthanc import free_port, wait_until

NGINX_BINARY = shutil.which("nginx") or "/usr/sbin/nginx"
TOKEN = "gate-token-31415"


def _config(workdir: Path, port: int, upstream: int, dead: int, rate: int) -> str:
    temp = {name: workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    proxy = (
        f'proxy_pass http://127.0.0.1:{upstream}/; proxy_http_version 1.1; proxy_set_header Connection ""; '
        "proxy_request_buffering off; proxy_buffering off;"
    )
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log stderr error;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
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
}}
"""


class Nginx:
    def __init__(self, workdir: Path, upstream_port: int, *, rate: int = 20) -> None:
        if not Path(NGINX_BINARY).exists():
            raise RuntimeError(
                "nginx is not installed: apt-get install nginx (the README's test command does this)"
            )
        self.workdir = workdir
        self.port = free_port()
        self.dead_port = free_port()  # nothing listens here: a stopped upstream
        self.config_path = workdir / "nginx.conf"
        self.config_path.write_text(_config(workdir, self.port, upstream_port, self.dead_port, rate))
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, location: str) -> str:
        return f"http://127.0.0.1:{self.port}/{location}/dicom-web"

    def start(self) -> Nginx:
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
