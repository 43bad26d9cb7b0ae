"""Start-up time of the stdio server: process spawn to the answer of its first request.

    python -m benchmarks.startup [--runs 7] [--warmup 1]
    python -m benchmarks.startup --discover [--discover-timeout 1.0]

The server is launched as an MCP host launches it: ``[sys.executable, "-m", "dicomweb_mcp"]`` with a small
environment (the variables hosts pass on, plus ``DICOMWEB_URL`` pointing at a closed local port and
``DICOMWEB_DOWNLOAD_DIR`` in a temporary directory; nothing is contacted). The request is written to its
stdin right after the spawn, as hosts do, so it waits in the pipe until the server reads it. The time is
taken from just before the spawn to the moment the response line arrives on stdout.

By default one ``initialize`` request is sent, and the median, minimum and maximum over the runs are
printed. With ``--discover`` the client behaves like the Vercel AI SDK (``@ai-sdk/mcp``) over stdio: it
sends ``server/discover`` with the 2026-07-28 request envelope, waits ``--discover-timeout`` seconds (the AI
SDK waits 1 s) and, with no answer by then, sends ``initialize``; each run prints what came back and when.

The server is imported from the current directory first (``-m`` puts it on ``sys.path``), then from
``PYTHONPATH`` (passed on when set), then from the installed package: to measure another checkout with the
same interpreter, run this file from that checkout (``cd /other/checkout && python /path/to/startup.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["DiscoverRun", "measure_discover", "measure_startup"]

# mcp.types.version.LATEST_HANDSHAKE_VERSION in mcp 2.3: the newest version reachable through `initialize`.
INITIALIZE_PROTOCOL_VERSION = "2025-11-25"
# mcp.types.version.LATEST_MODERN_VERSION in mcp 2.3: what `server/discover` is probed with.
DISCOVER_PROTOCOL_VERSION = "2026-07-28"
CLIENT_INFO = {"name": "dicomweb-mcp-startup-benchmark", "version": "0"}

# What MCP hosts pass on to a stdio server they launch (the SDKs' default inherited variables).
_INHERITED_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "SYSTEMROOT", "TEMP", "PYTHONPATH")
_UNREACHABLE_URL = "http://127.0.0.1:9/dicom-web"  # the discard port: nothing needs to answer there


def _initialize_request(request_id: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": INITIALIZE_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": CLIENT_INFO,
        },
    }


def _discover_request(request_id: int) -> dict[str, Any]:
    # The AI SDK stamps the 2026-07-28 envelope on its probe; that envelope is what decides the era.
    meta = {
        "io.modelcontextprotocol/protocolVersion": DISCOVER_PROTOCOL_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    }
    return {"jsonrpc": "2.0", "id": request_id, "method": "server/discover", "params": {"_meta": meta}}


class _Server:
    """One server process with a thread that stamps every stdout line with its arrival time."""

    def __init__(self, command: list[str], env: Mapping[str, str], stderr: IO[bytes]) -> None:
        self.stderr = stderr
        self.lines: queue.Queue[tuple[float, str | None]] = queue.Queue()
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=dict(env)
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put((time.perf_counter(), raw.decode("utf-8", "replace")))
        self.lines.put((time.perf_counter(), None))

    def send(self, message: dict[str, Any]) -> float:
        """Write one JSON-RPC line; returns seconds since the spawn."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()
        return time.perf_counter() - self.started

    def receive(self, deadline: float) -> tuple[float, dict[str, Any]] | None:
        """The next JSON-RPC message and its arrival (seconds since the spawn); ``None`` at the deadline."""
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
            try:
                arrived, line = self.lines.get(timeout=remaining)
            except queue.Empty:
                return None
            if line is None:
                raise RuntimeError(f"the server closed stdout before answering{self._stderr_tail()}")
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError as exc:
                raise RuntimeError(f"the server wrote a line that is not JSON: {line[:200]!r}") from exc
            return arrived - self.started, message

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode("utf-8", "replace").strip()
        return f"; its stderr ends with:\n{text[-2000:]}" if text else ""

    def close(self) -> None:
        """End the process as hosts do: close stdin, then terminate if it lingers."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)  # it stops at EOF; closing stdout under it would raise in the thread
        if self.process.stdout is not None:
            self.process.stdout.close()


def _server_env(download_dir: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {key: os.environ[key] for key in _INHERITED_ENV if key in os.environ}
    env.update(DICOMWEB_URL=_UNREACHABLE_URL, DICOMWEB_DOWNLOAD_DIR=download_dir)
    env.update(extra or {})
    return env


def _server_command() -> list[str]:
    return [sys.executable, "-m", "dicomweb_mcp"]


def _response_to(server: _Server, request_id: int, deadline: float) -> tuple[float, dict[str, Any]] | None:
    """Wait for the response to ``request_id``, skipping notifications and other responses."""
    while (received := server.receive(deadline)) is not None:
        if received[1].get("id") == request_id and "method" not in received[1]:
            return received
    return None


def _one_startup(timeout: float, extra_env: Mapping[str, str] | None) -> float:
    with (
        tempfile.TemporaryDirectory(prefix="dicomweb-mcp-startup-") as download_dir,
        tempfile.TemporaryFile() as stderr,
    ):
        server = _Server(_server_command(), _server_env(download_dir, extra_env), stderr)
        try:
            server.send(_initialize_request(1))
            received = _response_to(server, 1, server.started + timeout)
            if received is None:
                raise RuntimeError(f"no answer to initialize within {timeout} s")
            elapsed, response = received
            if "result" not in response:
                raise RuntimeError(f"initialize was not accepted: {json.dumps(response)[:500]}")
            return elapsed
        finally:
            server.close()


def measure_startup(
    runs: int = 7, *, warmup: int = 0, timeout: float = 30.0, env: Mapping[str, str] | None = None
) -> list[float]:
    """Seconds from process spawn to the ``initialize`` response line, one value per run.

    ``warmup`` runs first, untimed (they compile bytecode and warm the file cache as a host's first
    launch after an install does). ``env`` adds to or overrides the server's environment
    (``{"DICOMWEB_AUTH": "azure"}``).
    """
    for _ in range(warmup):
        _one_startup(timeout, env)
    return [_one_startup(timeout, env) for _ in range(runs)]


# Errors on `server/discover` after which the AI SDK gives up instead of falling back to `initialize`.
_MODERN_ERROR_CODES = (-32020, -32021, -32022)


@dataclass(frozen=True)
class DiscoverRun:
    """What a client that probes ``server/discover`` first (as ``@ai-sdk/mcp`` does over stdio) saw in one run.

    The client's rules: a discover result within the wait means the 2026-07-28 protocol and no
    ``initialize``; a discover error with a code in ``_MODERN_ERROR_CODES`` is a failure; any other error, or
    no answer within the wait, means ``initialize`` on the same connection. Times are seconds since the
    spawn; ``initialize_sent`` is ``None`` when no ``initialize`` was sent.
    """

    discover_answered: float | None
    discover_answer: dict[str, Any] | None
    initialize_sent: float | None
    initialize_answered: float | None
    initialize_answer: dict[str, Any] | None

    @property
    def discover_in_time(self) -> bool:
        return self.discover_answered is not None and (
            self.initialize_sent is None or self.discover_answered <= self.initialize_sent
        )

    @property
    def connected(self) -> bool:
        """Whether a client following the AI SDK's rules ends up connected."""
        if self.initialize_sent is None:
            return self.discover_answer is not None and "result" in self.discover_answer
        return self.initialize_answer is not None and "result" in self.initialize_answer


def _error_code(answer: dict[str, Any]) -> Any:
    error = answer.get("error")
    return error.get("code") if isinstance(error, dict) else None


def _one_discover(
    discover_timeout: float, timeout: float, extra_env: Mapping[str, str] | None
) -> DiscoverRun:
    with (
        tempfile.TemporaryDirectory(prefix="dicomweb-mcp-startup-") as download_dir,
        tempfile.TemporaryFile() as stderr,
    ):
        server = _Server(_server_command(), _server_env(download_dir, extra_env), stderr)
        try:
            discover_sent = server.send(_discover_request(0))
            discover = _response_to(server, 0, server.started + discover_sent + discover_timeout)
            if discover is not None and (
                "result" in discover[1] or _error_code(discover[1]) in _MODERN_ERROR_CODES
            ):
                return DiscoverRun(discover[0], discover[1], None, None, None)
            initialize_sent = server.send(_initialize_request(1))
            deadline = server.started + timeout
            initialize = None
            while (discover is None or initialize is None) and (
                message := server.receive(deadline)
            ) is not None:
                if "method" in message[1]:
                    continue
                if message[1].get("id") == 0:
                    discover = message
                elif message[1].get("id") == 1:
                    initialize = message
            return DiscoverRun(
                discover[0] if discover else None,
                discover[1] if discover else None,
                initialize_sent,
                initialize[0] if initialize else None,
                initialize[1] if initialize else None,
            )
        finally:
            server.close()


def measure_discover(
    runs: int = 5,
    *,
    discover_timeout: float = 1.0,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> list[DiscoverRun]:
    """Probe ``server/discover`` first and fall back to ``initialize`` as the AI SDK does (see `DiscoverRun`)."""
    return [_one_discover(discover_timeout, timeout, env) for _ in range(runs)]


def _describe_answer(answer: dict[str, Any] | None) -> str:
    if answer is None:
        return "no answer"
    if "error" in answer:
        error = answer["error"]
        return f"error {error.get('code')} {error.get('message')!r}"
    result = answer.get("result", {})
    if "supportedVersions" in result:
        return f"result, supportedVersions={','.join(result['supportedVersions'])}"
    if "protocolVersion" in result:
        return f"result, protocolVersion={result['protocolVersion']}"
    return "result"


def _describe_run(number: int, run: DiscoverRun, discover_timeout: float) -> str:
    if run.discover_answered is None:
        discover = "discover: no answer"
    else:
        when = "" if run.discover_in_time else f" (late: after the {discover_timeout:g} s wait)"
        discover = f"discover answered at {run.discover_answered:.3f} s{when}: {_describe_answer(run.discover_answer)}"
    if run.initialize_sent is None:
        verdict = f"connected on {DISCOVER_PROTOCOL_VERSION}" if run.connected else "FAILED"
        return f"run {number}: {discover}; {verdict}"
    answered = "" if run.initialize_answered is None else f", answered at {run.initialize_answered:.3f} s"
    initialize = (
        f"initialize sent at {run.initialize_sent:.3f} s{answered}: {_describe_answer(run.initialize_answer)}"
    )
    verdict = "connected with initialize" if run.connected else "FAILED"
    return f"run {number}: {discover}; {initialize}; {verdict}"


def _summary(times: list[float]) -> str:
    return (
        f"median {statistics.median(times):.3f} s, min {min(times):.3f} s, max {max(times):.3f} s "
        f"({len(times)} runs)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for an answer (default 30)"
    )
    parser.add_argument(
        "--discover", action="store_true", help="send server/discover first, as @ai-sdk/mcp does"
    )
    parser.add_argument(
        "--discover-timeout", type=float, default=1.0, help="seconds to wait for discover (AI SDK: 1)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add to the server's environment (repeatable), e.g. DICOMWEB_AUTH=azure",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if any("=" not in item for item in args.env):
        parser.error("--env takes NAME=VALUE")
    env = dict(item.split("=", 1) for item in args.env)
    try:
        if args.discover:
            for _ in range(args.warmup):
                _one_discover(args.discover_timeout, args.timeout, env)
            results = measure_discover(
                args.runs, discover_timeout=args.discover_timeout, timeout=args.timeout, env=env
            )
            for number, run in enumerate(results, 1):
                print(_describe_run(number, run, args.discover_timeout))
            answered = [r.discover_answered for r in results if r.discover_answered is not None]
            connected = sum(r.connected for r in results)
            in_time = sum(r.discover_in_time for r in results)
            timing = _summary(answered) if answered else "never"
            print(
                f"connected {connected}/{len(results)}; discover answered within {args.discover_timeout:g} s in "
                f"{in_time}/{len(results)}; discover answer: {timing}"
            )
        else:
            times = measure_startup(args.runs, warmup=args.warmup, timeout=args.timeout, env=env)
            print(f"spawn to initialize answer over stdio: {_summary(times)}")
    except RuntimeError as exc:
        print(f"startup benchmark: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
