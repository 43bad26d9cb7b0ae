"""A user-space WAN on loopback: a TCP proxy on 127.0.0.1 that adds latency and caps bandwidth, and counts.

    python -m benchmarks.wanproxy --selfcheck [--rtt-ms 40 --conn-mbit 100 --total-mbit 1000]

What a byte goes through, in each direction on its own (client -> server, server -> client):

1. the connection's token bucket (``conn_mbit`` per connection), then the shared one (``total_mbit`` for
   all connections together): a chunk waits there until the buckets let it through, and while it waits
   the proxy reads nothing more from that socket, so TCP's flow control slows the sender as a real
   bottleneck would;
2. a delay line of ``rtt/2``: each chunk is stamped with the time it may leave and written then, in order.
   Chunks travel through it together (one timer per chunk, not a sleep that each chunk adds to the next);
3. a new connection's first bytes to the server leave no earlier than one RTT after the client connected:
   the TCP handshake a real WAN costs (the client's connect to the proxy returns at once on loopback).

It counts TCP connections (and the most open at once) and HTTP requests: each request's head is parsed
from the client -> server bytes (request line, Content-Length or chunked body skipped), so keep-alive and
request bodies count right. ``stats()`` returns the counters, ``reset()`` zeroes them.

The proxy runs in its own process (``WanProxy`` starts it and talks to it over stdin/stdout), so that it
takes no GIL time from a Python client measured through it. It only listens on 127.0.0.1 and only ever
connects to the upstream it was given, which must be a loopback address; it stops when told to, when its
parent goes away (stdin closes) or after ``max_seconds``, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import queue
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

READ_SIZE = 64 * 1024
REQUEST_LINE = re.compile(rb"^(GET|POST|PUT|DELETE|HEAD) ")
MAX_HEAD = 64 * 1024
STOP_TIMEOUT = 10.0
REPO = Path(__file__).resolve().parents[1]


def require_loopback(host: str) -> str:
    """The only addresses this proxy may listen on or connect to."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{host!r} is not an IP address: the WAN proxy takes loopback addresses only"
        ) from None
    if not address.is_loopback:
        raise ValueError(f"{host} is not a loopback address: the WAN proxy only works on 127.0.0.0/8 and ::1")
    return host


# ---- shaping ---------------------------------------------------------------------------------------------


class TokenBucket:
    """Bytes per second with a burst allowance, as a virtual clock: each take reserves its slot at once."""

    def __init__(self, rate: float | None, burst: int) -> None:
        self.rate = rate  # bytes/s; None = unlimited
        self.burst_time = burst / rate if rate else 0.0
        self.free_at = 0.0  # when the bytes taken so far will have drained at ``rate``

    async def take(self, size: int) -> None:
        if not self.rate:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.free_at = max(now, self.free_at) + size / self.rate
        wait = self.free_at - self.burst_time - now
        if wait > 0:
            await asyncio.sleep(wait)


@dataclass
class Counters:
    connections: int = 0
    max_open: int = 0
    requests: int = 0
    methods: dict[str, int] = field(default_factory=dict)
    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client
    unparsed: int = 0  # request heads the counter could not make sense of (should stay 0)


class RequestCounter:
    """Counts HTTP/1.1 requests in a client's byte stream: heads parsed, bodies skipped by their length.

    States: ``head`` (collecting a request head up to its blank line), ``body`` (skipping ``left`` bytes:
    a Content-Length body, or a chunk and its CRLF), ``size`` (a chunk-size line), ``trailer`` (lines up to
    the blank one that ends a chunked body).
    """

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.state = "head"
        self.left = 0
        self.chunked = False
        self.pending = bytearray()  # the head or line read so far

    def feed(self, data: bytes) -> None:
        at, end = 0, len(data)
        while at < end:
            if self.state == "body":
                step = min(self.left, end - at)
                self.left -= step
                at += step
                if not self.left:
                    self.state = "size" if self.chunked else "head"
                continue
            newline = data.find(b"\n", at)
            if newline < 0:
                self.pending += data[at:]
                if len(self.pending) > MAX_HEAD:  # not HTTP as we know it: start over at the next bytes
                    self.counters.unparsed += 1
                    self.pending.clear()
                return
            self.pending += data[at : newline + 1]
            at = newline + 1
            self._line()

    def _line(self) -> None:
        if self.state == "head":
            if bytes(self.pending) in (b"\r\n", b"\n"):  # a stray CRLF between requests
                self.pending.clear()
            elif self.pending.endswith((b"\r\n\r\n", b"\n\n")):
                head = bytes(self.pending)
                self.pending.clear()
                self._request(head)
            return
        line = bytes(self.pending).strip()
        self.pending.clear()
        if self.state == "size":
            try:
                size = int(line.split(b";")[0], 16)
            except ValueError:
                self.counters.unparsed += 1
                self.state, self.chunked = "head", False
                return
            if size:
                self.state, self.left = "body", size + 2  # the chunk and the CRLF after it
            else:
                self.state = "trailer"
        elif self.state == "trailer" and not line:
            self.state, self.chunked = "head", False

    def _request(self, head: bytes) -> None:
        match = REQUEST_LINE.match(head)
        if not match:
            self.counters.unparsed += 1
            return
        self.counters.requests += 1
        method = match.group(1).decode()
        self.counters.methods[method] = self.counters.methods.get(method, 0) + 1
        length = 0
        for raw in head.split(b"\n")[1:]:
            name, _, value = raw.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                with contextlib.suppress(ValueError):
                    length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True
        if self.chunked:
            self.state = "size"
        elif length:
            self.state, self.left = "body", length


@dataclass
class Shape:
    delay: float  # one way, seconds
    conn_rate: float | None  # bytes/s per connection and direction
    total_rate: float | None  # bytes/s for all connections, per direction
    handshake: bool = True

    @property
    def burst(self) -> int:
        # A few milliseconds of the rate, at least one read: bursts as short as a NIC's would be.
        return max(READ_SIZE, int((self.conn_rate or 0) * 0.002))

    def queue_limit(self) -> int:
        # Enough for the delay line at full rate twice over: the limit never shapes, it only bounds memory.
        return max(4 * 1024 * 1024, int(2 * (self.conn_rate or 125e6) * self.delay))


class DelayLine:
    """Chunks in order, each released at its stamp; the writer sleeps only until the head's time."""

    def __init__(self, limit: int) -> None:
        self.items: deque[tuple[float, bytes | None]] = deque()
        self.size = 0
        self.limit = limit
        self.changed = asyncio.Event()

    async def put(self, release: float, data: bytes | None) -> None:
        while self.size >= self.limit:
            self.changed.clear()
            await self.changed.wait()
        self.items.append((release, data))
        self.size += len(data or b"")
        self.changed.set()

    async def get(self) -> bytes | None:
        while not self.items:
            self.changed.clear()
            await self.changed.wait()
        release, data = self.items[0]
        wait = release - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
        self.items.popleft()
        self.size -= len(data or b"")
        self.changed.set()
        return data


class Proxy:
    """The asyncio side, run in the proxy's own process by ``serve``."""

    def __init__(self, upstream_host: str, upstream_port: int, shape: Shape) -> None:
        self.upstream = (require_loopback(upstream_host), upstream_port)
        self.shape = shape
        self.counters = Counters()
        self.open = 0
        self.total_up = TokenBucket(shape.total_rate, shape.burst)
        self.total_down = TokenBucket(shape.total_rate, shape.burst)
        self.tasks: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        # In place: the open connections' request counters hold this very object.
        fresh = Counters(max_open=self.open)
        for name in vars(fresh):
            setattr(self.counters, name, getattr(fresh, name))

    def stats(self) -> dict[str, Any]:
        c = self.counters
        return {
            "connections": c.connections,
            "max_open": c.max_open,
            "open": self.open,
            "requests": c.requests,
            "methods": dict(c.methods),
            "bytes_up": c.bytes_up,
            "bytes_down": c.bytes_down,
            "unparsed": c.unparsed,
        }

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        self.counters.connections += 1
        self.open += 1
        self.counters.max_open = max(self.counters.max_open, self.open)
        server_writer: asyncio.StreamWriter | None = None
        try:
            server_reader, upstream = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), timeout=10
            )
            server_writer = upstream
            for writer in (client_writer, upstream):
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # The client's first bytes would reach the server half an RTT after the handshake's RTT.
            earliest = accepted + 2 * self.shape.delay if self.shape.handshake else 0.0
            counter = RequestCounter(self.counters)
            await asyncio.gather(
                self.pipe(client_reader, upstream, self.total_up, earliest, counter, "up"),
                self.pipe(server_reader, client_writer, self.total_down, 0.0, None, "down"),
            )
        except OSError:  # TimeoutError included
            pass
        except asyncio.CancelledError:
            pass  # the proxy is stopping: end quietly (this is the connection's own top-level task)
        finally:
            self.open -= 1
            for closing in (client_writer, server_writer):
                if closing is not None:
                    closing.close()
                    with contextlib.suppress(Exception):
                        await closing.wait_closed()

    async def pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        total: TokenBucket,
        earliest: float,
        counter: RequestCounter | None,
        direction: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(self.shape.conn_rate, self.shape.burst)
        line = DelayLine(self.shape.queue_limit())

        async def read() -> None:
            try:
                while True:
                    data = await reader.read(READ_SIZE)
                    if not data:
                        break
                    if counter is not None:
                        counter.feed(data)
                    if direction == "up":
                        self.counters.bytes_up += len(data)
                    else:
                        self.counters.bytes_down += len(data)
                    await bucket.take(len(data))
                    await total.take(len(data))
                    await line.put(max(loop.time(), earliest) + self.shape.delay, data)
            except OSError:
                pass
            await line.put(max(loop.time(), earliest) + self.shape.delay, None)  # EOF, delayed too

        async def write() -> None:
            try:
                while (data := await line.get()) is not None:
                    writer.write(data)
                    await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
            except OSError:
                reading.cancel()  # the other side is gone: stop reading for it

        reading = asyncio.ensure_future(read())
        await asyncio.gather(reading, write(), return_exceptions=True)


async def _serve(
    upstream_host: str,
    upstream_port: int,
    shape: Shape,
    max_seconds: float,
    commands: asyncio.Queue[tuple[str, asyncio.Future[dict[str, Any]] | None]],
    announce: Any,
) -> None:
    proxy = Proxy(upstream_host, upstream_port, shape)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    announce(port)
    deadline = asyncio.get_running_loop().time() + max_seconds
    try:
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                command, reply = await asyncio.wait_for(commands.get(), timeout=left)
            except TimeoutError:
                break
            if command == "stop":
                break
            stats = proxy.stats()
            if command == "reset":
                proxy.reset()
            if reply is not None:
                reply.set_result(stats)
    finally:
        server.close()
        # Open connections are dropped: the parent only stops the proxy once its clients are done.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=5)


def serve(upstream_host: str, upstream_port: int, shape: Shape, max_seconds: float) -> None:
    """The proxy process: ``LISTENING <port>`` on stdout, then one JSON line per stats/reset on stdin."""
    loop = asyncio.new_event_loop()
    commands: asyncio.Queue[tuple[str, asyncio.Future[dict[str, Any]] | None]] = asyncio.Queue()

    def announce(port: int) -> None:
        print(f"LISTENING {port}", flush=True)
        threading.Thread(target=stdin_commands, daemon=True).start()

    def stdin_commands() -> None:
        for raw in sys.stdin:
            command = raw.strip()
            if command not in ("stats", "reset", "stop"):
                continue
            if command == "stop":
                loop.call_soon_threadsafe(commands.put_nowait, ("stop", None))
                return
            future = asyncio.run_coroutine_threadsafe(_ask(commands, command), loop)
            print(json.dumps(future.result(timeout=30)), flush=True)
        loop.call_soon_threadsafe(commands.put_nowait, ("stop", None))  # stdin closed: the parent is gone

    signal.signal(signal.SIGTERM, lambda *_: loop.call_soon_threadsafe(commands.put_nowait, ("stop", None)))
    try:
        loop.run_until_complete(_serve(upstream_host, upstream_port, shape, max_seconds, commands, announce))
    finally:
        loop.close()


async def _ask(
    commands: asyncio.Queue[tuple[str, asyncio.Future[dict[str, Any]] | None]], command: str
) -> dict[str, Any]:
    reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    await commands.put((command, reply))
    return await reply


# ---- the parent's handle ---------------------------------------------------------------------------------


class WanProxy:
    """Starts the proxy process and talks to it. ``with WanProxy(port, rtt_ms=40) as wan: wan.url``."""

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = "127.0.0.1",
        rtt_ms: float = 40.0,
        conn_mbit: float | None = 100.0,
        total_mbit: float | None = 1000.0,
        handshake: bool = True,
        max_seconds: float = 3600.0,
    ) -> None:
        self.upstream_host = require_loopback(upstream_host)
        self.upstream_port = upstream_port
        self.rtt = rtt_ms / 1000
        self.conn_mbit = conn_mbit
        self.total_mbit = total_mbit
        self.handshake = handshake
        self.max_seconds = max_seconds
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Self:
        command = [
            sys.executable,
            "-m",
            "benchmarks.wanproxy",
            "--serve",
            "--upstream",
            f"{self.upstream_host}:{self.upstream_port}",
            "--rtt-ms",
            str(self.rtt * 1000),
            "--conn-mbit",
            str(self.conn_mbit or 0),
            "--total-mbit",
            str(self.total_mbit or 0),
            "--max-seconds",
            str(self.max_seconds),
        ]
        if not self.handshake:
            command.append("--no-handshake")
        self.process = subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        threading.Thread(target=self._read, daemon=True).start()
        line = self._line(timeout=20)
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"the WAN proxy did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def _line(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError("the WAN proxy did not answer in time") from None
        if line is None:
            raise RuntimeError("the WAN proxy exited")
        return line

    def _command(self, command: str) -> dict[str, Any]:
        with self._lock:
            assert self.process is not None and self.process.stdin is not None
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
            result: dict[str, Any] = json.loads(self._line(timeout=30))
            return result

    def stats(self) -> dict[str, Any]:
        """Connections opened, most open at once, requests, bytes each way, since the last reset."""
        return self._command("stats")

    def reset(self) -> dict[str, Any]:
        """Zero the counters (open connections stay open); returns the counters as they were."""
        return self._command("reset")

    def wait_idle(self, timeout: float = 3.0) -> bool:
        """Wait (bounded) until no connection is open through the proxy, so that "most open" starts at 0."""
        deadline = time.monotonic() + timeout
        while self.stats()["open"]:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert process.stdin is not None
                process.stdin.write("stop\n")
                process.stdin.close()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
        with contextlib.suppress(OSError, ValueError):
            if process.stdin is not None:
                process.stdin.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# ---- self-check: a tiny local HTTP server behind the proxy -----------------------------------------------


class SinkServer:
    """HTTP/1.1 on 127.0.0.1 in a thread: ``GET /bytes/N`` answers N bytes, ``POST`` reads its body."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.server: asyncio.Server | None = None
        self.blob = bytes(1024 * 1024)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def __enter__(self) -> Self:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)
        return self

    def __exit__(self, *_: object) -> None:
        async def close() -> None:
            assert self.server is not None
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                while length:
                    got = await reader.read(min(length, 1024 * 1024))
                    if not got:
                        return
                    length -= len(got)
                size = int(path.rsplit("/", 1)[1]) if method == "GET" and path.startswith("/bytes/") else 2
                writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
                while size:
                    step = min(size, len(self.blob))
                    writer.write(self.blob[:step])
                    await writer.drain()
                    size -= step
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client left, or the server is stopping
        finally:
            writer.close()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _exchange(sock: socket.socket, request: bytes, body: bytes = b"") -> int:
    """Send one request, read its whole response; return the body's length."""
    sock.sendall(request)
    if body:
        sock.sendall(body)
    head = b""
    while b"\r\n\r\n" not in head:
        got = sock.recv(65536)
        if not got:
            raise RuntimeError("connection closed")
        head += got
    head, _, rest = head.partition(b"\r\n\r\n")
    length = int(
        next(ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")).split(b":")[1]
    )
    left = length - len(rest)
    buffer = bytearray(1024 * 1024)
    while left > 0:
        received = sock.recv_into(buffer, min(left, len(buffer)))
        if not received:
            raise RuntimeError("connection closed")
        left -= received
    return length


def selfcheck(rtt_ms: float, conn_mbit: float, total_mbit: float) -> dict[str, Any]:
    """Measure through the proxy what it was told to be: RTT, one connection's rate, the total rate."""
    results: dict[str, Any] = {
        "configured": {"rtt_ms": rtt_ms, "conn_mbit": conn_mbit, "total_mbit": total_mbit}
    }
    rtt = rtt_ms / 1000
    get = b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n"
    with (
        SinkServer() as sink,
        WanProxy(sink.port, rtt_ms=rtt_ms, conn_mbit=conn_mbit, total_mbit=total_mbit) as wan,
    ):
        # 1. RTT: a fresh connection + one small GET (handshake + request: 2 RTT), then GETs on it (1 RTT).
        fresh, warm = [], []
        wan.reset()
        for _ in range(5):
            started = time.perf_counter()
            with _connect(wan.port) as sock:
                _exchange(sock, get % 2)
                fresh.append(time.perf_counter() - started)
                for _ in range(4):
                    started = time.perf_counter()
                    _exchange(sock, get % 2)
                    warm.append(time.perf_counter() - started)
        counts = wan.reset()
        results["rtt"] = {
            "fresh_connection_get_ms": 1000 * statistics.median(fresh),
            "expected_fresh_ms": 2 * rtt_ms,
            "warm_get_ms": 1000 * statistics.median(warm),
            "expected_warm_ms": rtt_ms,
            "warm_error_ms": 1000 * (statistics.median(warm) - rtt),
            "connections": counts["connections"],
            "requests": counts["requests"],
            "expected_connections": 5,
            "expected_requests": 25,
        }
        # 2. One connection, each direction: the rate after the first RTT, which moves no data.
        size = int(conn_mbit * 1e6 / 8 * 1.5)  # 1.5 s at the cap
        with _connect(wan.port) as sock:
            _exchange(sock, get % 2)
            started = time.perf_counter()
            _exchange(sock, get % size)
            down = time.perf_counter() - started
            post = b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
            started = time.perf_counter()
            _exchange(sock, post, bytes(size))
            up = time.perf_counter() - started
        counts = wan.reset()
        results["one_connection"] = {
            "bytes": size,
            "download_mbit": size * 8 / (down - rtt) / 1e6,
            "upload_mbit": size * 8 / (up - rtt) / 1e6,
            "download_s": down,
            "upload_s": up,
            "requests": counts["requests"],
            "expected_requests": 3,
        }
        # 3. Enough connections in parallel to ask for twice the total: the total cap is what is left.
        streams = max(2, min(32, round(2 * total_mbit / conn_mbit)))
        each = int(total_mbit * 1e6 / 8 * 1.5 / streams)
        sockets = [_connect(wan.port) for _ in range(streams)]
        try:
            for sock in sockets:
                _exchange(sock, get % 2)
            wan.reset()
            done: list[float] = []

            def fetch(sock: socket.socket) -> None:
                _exchange(sock, get % each)
                done.append(time.perf_counter())

            started = time.perf_counter()
            threads = [threading.Thread(target=fetch, args=(s,)) for s in sockets]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            elapsed = max(done) - started
        finally:
            for sock in sockets:
                sock.close()
        counts = wan.reset()
        results["total"] = {
            "connections": streams,
            "bytes": each * streams,
            "download_mbit": each * streams * 8 / (elapsed - rtt) / 1e6,
            "seconds": elapsed,
            "max_open": counts["max_open"],
            "requests": counts["requests"],
        }
    return results


def selfcheck_problems(result: dict[str, Any]) -> list[str]:
    """What is further from the configuration than a user-space proxy on a busy machine should be."""
    configured, r, one, total = result["configured"], result["rtt"], result["one_connection"], result["total"]
    problems = []
    if abs(r["warm_get_ms"] - r["expected_warm_ms"]) > max(5.0, 0.1 * r["expected_warm_ms"]):
        problems.append(f"warm GET {r['warm_get_ms']:.1f} ms, configured RTT {r['expected_warm_ms']:.0f} ms")
    if abs(r["fresh_connection_get_ms"] - r["expected_fresh_ms"]) > max(10.0, 0.1 * r["expected_fresh_ms"]):
        problems.append(
            f"fresh GET {r['fresh_connection_get_ms']:.1f} ms, expected {r['expected_fresh_ms']:.0f} ms"
        )
    if (r["connections"], r["requests"]) != (r["expected_connections"], r["expected_requests"]):
        problems.append(f"counted {r['connections']} connections, {r['requests']} requests")
    if one["requests"] != one["expected_requests"]:
        problems.append(f"counted {one['requests']} requests on one connection")
    for direction in ("download_mbit", "upload_mbit"):
        if abs(one[direction] / configured["conn_mbit"] - 1) > 0.05:
            problems.append(
                f"one connection {direction} {one[direction]:.1f}, cap {configured['conn_mbit']:g}"
            )
    if abs(total["download_mbit"] / configured["total_mbit"] - 1) > 0.1:
        problems.append(f"total {total['download_mbit']:.0f} Mbit/s, cap {configured['total_mbit']:g}")
    if total["requests"] != total["connections"]:
        problems.append(f"counted {total['requests']} requests on {total['connections']} connections")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--selfcheck", action="store_true", help="measure the proxy against a local server")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", default="127.0.0.1:8042", help="loopback host:port to forward to")
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument(
        "--conn-mbit", type=float, default=100.0, help="per connection and direction; 0: none"
    )
    parser.add_argument(
        "--total-mbit", type=float, default=1000.0, help="all connections, per direction; 0: none"
    )
    parser.add_argument("--no-handshake", action="store_true", help="no RTT for a new connection's handshake")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop by itself after this long")
    args = parser.parse_args()
    if args.serve:
        host, _, port = args.upstream.rpartition(":")
        shape = Shape(
            delay=args.rtt_ms / 2000,
            conn_rate=args.conn_mbit * 1e6 / 8 or None,
            total_rate=args.total_mbit * 1e6 / 8 or None,
            handshake=not args.no_handshake,
        )
        serve(host.strip("[]"), int(port), shape, args.max_seconds)
    elif args.selfcheck:
        result = selfcheck(args.rtt_ms, args.conn_mbit, args.total_mbit)
        r, one, total = result["rtt"], result["one_connection"], result["total"]
        print(
            f"RTT: fresh connection + GET {r['fresh_connection_get_ms']:.1f} ms (expected {r['expected_fresh_ms']:.0f}), "
            f"warm GET {r['warm_get_ms']:.1f} ms (expected {r['expected_warm_ms']:.0f}); counted "
            f"{r['connections']} connections (expected {r['expected_connections']}), {r['requests']} requests "
            f"(expected {r['expected_requests']})"
        )
        print(
            f"one connection: down {one['download_mbit']:.1f} Mbit/s, up {one['upload_mbit']:.1f} Mbit/s "
            f"(cap {args.conn_mbit:g}); {one['requests']} requests counted (expected {one['expected_requests']})"
        )
        print(
            f"{total['connections']} connections at once: {total['download_mbit']:.0f} Mbit/s in total "
            f"(cap {args.total_mbit:g}, asked {total['connections'] * args.conn_mbit:g}); max open "
            f"{total['max_open']}, {total['requests']} requests"
        )
        print(json.dumps(result))
        problems = selfcheck_problems(result)
        for problem in problems:
            print(f"OFF: {problem}")
        print("self-check: " + ("ok" if not problems else f"{len(problems)} off"))
        sys.exit(1 if problems else 0)
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
