"""HTTP for the DICOMweb client: one httpx pool, retries within a deadline, errors the reader can act on.

The only module that builds requests with httpx (the auth flows plug into it); the client above speaks in
operations, URLs and headers.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx

from ..config import ServerConfig
from ..errors import (
    DicomWebError,
    ProtocolError,
    ServerUnreachableError,
    error_for_status,
    parse_retry_after,
)
from .servers import root_hint

__all__ = [
    "READ_BYTES",
    "BaseTransport",
    "HttpTransport",
    "Response",
    "Sent",
    "parse_json",
    "parse_json_objects",
]

log = logging.getLogger("dicomweb_mcp")

_T = TypeVar("_T")
Response = httpx.Response
BaseTransport = httpx.AsyncBaseTransport

_MAX_ERROR_BODY = 64 * 1024
# Statuses that mean "not now" rather than "no": the same request may succeed later.
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_MAX_BACKOFF = 10.0

# httpcore reads at most 64 KiB per socket read, and for multi-gigabyte studies the per-read cost of the
# async stack dominates: fewer, larger reads make a large retrieve much faster (measured with
# benchmarks/). A larger read costs nothing for small answers (the kernel returns what it has).
READ_BYTES = 256 * 1024
# Idle connections outlive a model's turn between calls (a new one costs a round trip), within the idle
# timeouts of NAT and load balancers; httpx's 5 s expired them as bursts came, briefly overfilling the pool.
KEEPALIVE_SECONDS = 30.0


class _WideReadStream(httpcore.AsyncNetworkStream):
    """A network stream that reads up to ``READ_BYTES`` whatever smaller size httpcore asks for."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, READ_BYTES), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _WideReadStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _WideReadBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _WideReadStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _WideReadStream(await self.inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def _pool_transport(limits: httpx.Limits, tls: bool) -> httpx.AsyncHTTPTransport:
    """httpx's own transport, its connection pool reading wide. Only this pool is tuned (the MCP SDK's
    clients keep httpcore's default), and if httpx or httpcore change their insides the pool simply
    keeps the default read size: ``reads_wide`` tells which, and a test checks it.

    Without ``tls`` (an http:// server) no certificate store is loaded: every request goes to that
    server's own scheme and host and redirects are not followed, so the TLS context is never used, and
    loading the store would only delay the first call of a session."""
    transport = httpx.AsyncHTTPTransport(limits=limits, verify=tls)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(pool, httpcore.AsyncConnectionPool) and isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = _WideReadBackend(backend)
    else:  # pragma: no cover - only when httpx/httpcore change
        log.warning("could not widen socket reads (httpx/httpcore changed): downloads may be slower")
    return transport


def reads_wide(transport: httpx.AsyncBaseTransport) -> bool:
    pool = getattr(transport, "_pool", None)
    return isinstance(getattr(pool, "_network_backend", None), _WideReadBackend)


@dataclass(frozen=True, slots=True)
class Sent:
    response: httpx.Response
    attempts: int
    maybe_done: bool  # an earlier attempt may have been carried out (lost answer, gateway timeout)


class HttpTransport:
    """One connection pool to one server; every request goes through ``send``."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        auth: httpx.Auth | None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 10,
        retry_backoff: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.config = config
        self._root_hint = root_hint(config.url)
        self._backoff = retry_backoff
        self._sleep = sleep  # injectable so tests can check delays without waiting
        self._auth = auth
        self._given_transport = transport
        self.max_connections = max_connections
        self._limits = httpx.Limits(max_connections=max_connections, keepalive_expiry=KEEPALIVE_SECONDS)
        self._client: httpx.AsyncClient | None = None
        self.fastest_reply: float | None = None  # seconds: the quickest GET answer's headers so far

    @property
    def _http(self) -> httpx.AsyncClient:
        """The pool, made on the first request: building it (TLS context, certificates) costs start-up
        time that a host waits for before the server answers at all."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                auth=self._auth,
                timeout=httpx.Timeout(self.config.timeout, connect=min(self.config.timeout, 15.0)),
                limits=self._limits,
                transport=self._given_transport
                or _pool_transport(self._limits, tls=urlsplit(self.config.url).scheme.lower() != "http"),
                headers={"User-Agent": "dicomweb-mcp"},
            )
        return self._client

    @property
    def pool_transport(self) -> httpx.AsyncBaseTransport:
        return self._http._transport

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def transport_error(self, operation: str, exc: httpx.TransportError, attempts: int = 1) -> DicomWebError:
        base = self.config.base_url
        tried = f" (tried {attempts} times)" if attempts > 1 else ""
        if isinstance(exc, httpx.PoolTimeout):
            return ServerUnreachableError(
                f"{operation} failed: no connection to {base} became free within {self.config.timeout:g} s"
                f"{tried}: too many requests are in flight at once. Try again, or lower the concurrency."
            )
        if isinstance(exc, httpx.TimeoutException):
            return ServerUnreachableError(
                f"{operation} failed: {base} did not answer within {self.config.timeout:g} s{tried}. "
                "The server may be overloaded or the request too large: try again, narrow the request, or "
                "raise DICOMWEB_TIMEOUT."
            )
        if isinstance(exc, httpx.ConnectError):
            return ServerUnreachableError(
                f"{operation} failed: cannot connect to {base} ({exc}){tried}. Check DICOMWEB_URL and that "
                "the server is running and reachable from this machine."
            )
        return ServerUnreachableError(
            f"{operation} failed: the connection to {base} broke ({type(exc).__name__}: {exc}){tried}. "
            "Try again."
        )

    async def raise_for_status(self, operation: str, response: httpx.Response, attempts: int = 1) -> None:
        if response.status_code < 400:
            return
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= _MAX_ERROR_BODY:
                break
        error = error_for_status(operation, response.status_code, response.request.url.path, body, attempts)
        error.retry_after = parse_retry_after(response.headers.get("retry-after"))
        if response.status_code in (400, 404, 405) and self._root_hint:
            error.add_detail(self._root_hint)
        raise error

    def _retry_delay(self, attempt: int, retry_after: str | None) -> float:
        """Exponential backoff with full jitter, or the server's Retry-After plus a little jitter."""
        waited = parse_retry_after(retry_after)
        if waited is not None:
            return waited + random.uniform(0, self._backoff)
        return random.uniform(0, min(_MAX_BACKOFF, self._backoff * 2 ** (attempt - 1)))

    async def send(
        self, operation: str, method: str, url: str, *, headers: Mapping[str, str], content: Any, retry: bool
    ) -> Sent:
        """Send, retrying connection failures and 429/502/503/504 within DICOMWEB_MAX_RETRIES and
        DICOMWEB_TIMEOUT. Only callers whose request is safe to repeat pass ``retry=True``."""
        deadline = anyio.current_time() + self.config.timeout
        attempt = 0
        maybe_done = False  # could an earlier attempt have been carried out by the server?
        while True:
            attempt += 1
            retries_left = retry and attempt <= self.config.max_retries
            request = self._http.build_request(method, url, headers=headers, content=content)
            asked = anyio.current_time()
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                delay = self._retry_delay(attempt, None)
                # A server that hung once will hang again: a timeout is reported, not retried, so the
                # caller hears within DICOMWEB_TIMEOUT. Refused or dropped connections are retried.
                hung = isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout)
                if hung or not retries_left or anyio.current_time() + delay > deadline:
                    raise self.transport_error(operation, exc, attempt) from None
                # A refused connection or a full pool sent nothing; a connection lost later may have.
                maybe_done = maybe_done or not isinstance(exc, httpx.ConnectError | httpx.TimeoutException)
                log.info("%s: %s, retrying in %.1f s", operation, type(exc).__name__, delay)
                await self._sleep(delay)
                continue
            if method == "GET":
                # The quickest answer yet bounds the round trip (with any connection set-up in it).
                waited = anyio.current_time() - asked
                self.fastest_reply = min(self.fastest_reply or waited, waited)
            if response.status_code in _RETRY_STATUSES and retries_left:
                delay = self._retry_delay(attempt, response.headers.get("retry-after"))
                if anyio.current_time() + delay <= deadline:
                    await response.aclose()
                    # 429 and 503 refuse the request; a gateway's 504 may hide one the server carried out.
                    maybe_done = maybe_done or response.status_code == 504
                    log.info("%s: HTTP %d, retrying in %.1f s", operation, response.status_code, delay)
                    await self._sleep(delay)
                    continue
            return Sent(response, attempt, maybe_done)

    @asynccontextmanager
    async def stream(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: Any = None,
        ok: Sequence[int] = (),
        retry: bool = True,
    ) -> AsyncIterator[Sent]:
        """Send a request and yield the streaming response, how many attempts it took, and whether an
        earlier attempt may have been carried out already.

        Errors become ``DicomWebError``. Status codes in ``ok`` are handed to the caller even when they are
        errors (STOW's 409 and 400 carry a per-instance answer).
        """
        sent = await self.send(operation, method, url, headers=headers, content=content, retry=retry)
        async with self._answer(operation, sent, ok):
            yield sent

    async def read(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: Any = None,
        ok: Sequence[int] = (),
    ) -> httpx.Response:
        """Send and read the whole (small) answer (``stream``'s rules, without holding it open)."""
        sent = await self.send(operation, method, url, headers=headers, content=content, retry=True)
        async with self._answer(operation, sent, ok):
            await sent.response.aread()
        return sent.response

    @asynccontextmanager
    async def _answer(self, operation: str, sent: Sent, ok: Sequence[int]) -> AsyncIterator[None]:
        """An answer whose error status (one not in ``ok``) is raised, whose broken connection is a
        ``DicomWebError``, and which is closed at the end."""
        try:
            if sent.response.status_code not in ok:
                await self.raise_for_status(operation, sent.response, sent.attempts)
            yield
        except httpx.TransportError as exc:
            raise self.transport_error(operation, exc, sent.attempts) from None
        finally:
            await sent.response.aclose()

    async def read_body(self, operation: str, response: httpx.Response) -> bytes:
        """The rest of a streamed response, then closed; a broken or undecodable body is a DicomWebError."""
        try:
            return await response.aread()
        except httpx.TransportError as exc:
            raise self.transport_error(operation, exc) from None
        except httpx.HTTPError as exc:
            raise ProtocolError(
                f"{operation}: the answer could not be read ({type(exc).__name__})."
            ) from None
        finally:
            await response.aclose()

    async def chunks(self, operation: str, response: httpx.Response) -> AsyncIterator[bytes]:
        """The body of a streaming response; a broken connection becomes ``ServerUnreachableError``."""
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.TransportError as exc:
            raise self.transport_error(operation, exc) from None


async def beside(
    background: Callable[[], Coroutine[Any, Any, None]], call: Callable[[], Awaitable[_T]]
) -> _T:
    """``call``'s result, with ``background`` (which must not raise) run at the same time, both done on
    return. An error from ``call`` is raised as itself, not inside an exception group."""
    outcome: list[_T | Exception] = []

    async def run() -> None:
        try:
            outcome.append(await call())
        except Exception as exc:  # raised below as itself: an exception group would hide its message
            outcome.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(background)
        group.start_soon(run)
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


def parse_json(operation: str, response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content.strip():
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        raise ProtocolError(
            f"{operation}: the server answered HTTP {response.status_code} with a body that is not JSON "
            f"({response.headers.get('content-type', 'no Content-Type')})."
        ) from None


def parse_json_objects(operation: str, response: httpx.Response) -> list[dict[str, Any]]:
    """A JSON array of objects (datasets, change feed entries); an empty body is an empty list."""
    data = parse_json(operation, response)
    if data is None:
        return []
    if not isinstance(data, list):
        raise ProtocolError(f"{operation}: expected a JSON array, got {type(data).__name__}.")
    return [item for item in data if isinstance(item, dict)]
