"""A small local HTTP server written for fault tests: it answers with whatever bytes a test scripts,
including truncated bodies, bad lengths, hostile UIDs, silence and stalls."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Script = Callable[["Handler"], None]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HostileServer

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        script = self.server.routes.get(path)
        if script is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        script(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_multipart_head(self, boundary: str, *, content_type: str | None = None) -> None:
        self.send_response(200)
        self.send_header(
            "Content-Type",
            content_type or f'multipart/related; type="application/dicom"; boundary={boundary}',
        )
        self.send_header("Connection", "close")  # no length: the body ends when the connection does
        self.end_headers()

    def write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()


class HostileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes: dict[str, Script] = {}
        self.release = threading.Event()  # stalled scripts wait on this
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/dicom-web"

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


def part(
    payload: bytes, boundary: str, *, length: int | None = None, content_type: str = "application/dicom"
) -> bytes:
    size = len(payload) if length is None else length
    return (
        f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-Length: {size}\r\n\r\n".encode()
        + payload
        + b"\r\n"
    )
