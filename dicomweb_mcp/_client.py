"""The async DICOMweb client: QIDO-RS, WADO-RS, STOW-RS, delete and change feed over one httpx pool.

It knows nothing of MCP. Server differences come from ``ServerProfile``; errors are ``DicomWebError``s.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import httpx
from httpcore._async import http11 as _httpcore_http11

from ._auth import TokenCredential, build_auth
from ._config import Config, ServerKind
from ._errors import (
    AuthenticationError,
    CredentialError,
    DicomWebError,
    HTTPStatusError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    ServerUnreachableError,
    UnsupportedMediaTypeError,
    UnsupportedOperationError,
    error_for_status,
)
from ._models import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    FRAME_MEDIA_TYPES,
    ChangeFeedEntry,
    DeleteResult,
    DicomFile,
    QueryResult,
    RenderedImage,
    StoreOutcome,
    StoreStatus,
)
from ._multipart import FileBody, FilePart, MultipartFileBody, MultipartReader, boundary_of
from ._query import MatchValue, build_query
from ._servers import ServerProfile, change_feed_version, guess_kind_from_url, orthanc_rest_root, profile_for
from ._stow import FAILED_SOP_SEQUENCE as _FAILED
from ._stow import REFERENCED_SOP_SEQUENCE as _REFERENCED
from ._stow import outcomes_from_response
from ._summary import SOP_INSTANCE_UID, element_values
from ._validation import check_scope, validate_frames, validate_uid

__all__ = ["DicomWebClient"]

log = logging.getLogger("dicomweb_mcp")

DICOM_JSON = "application/dicom+json"
_MAX_ERROR_BODY = 64 * 1024
# A STOW request carries at most this many instances / bytes: large enough to amortise the round trip,
# small enough that one failure does not cost a whole study's upload.
DEFAULT_STORE_BATCH_COUNT = 100
DEFAULT_STORE_BATCH_BYTES = 256 * 1024 * 1024
# Statuses that mean "not now" rather than "no": the same request may succeed later.
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_MAX_BACKOFF = 10.0
# Errors that the next request would meet again: stop sending instead of failing batch after batch.
_REPEATING_ERRORS = (
    AuthenticationError,
    PermissionDeniedError,
    CredentialError,
    ServerUnreachableError,
    UnsupportedMediaTypeError,
)
# Orthanc UID lists go into the URL: keep the URL well under common 8 KiB request-line limits.
_UID_LOOKUP_BATCH = 50

# httpcore reads at most 64 KiB per socket read, and for multi-gigabyte studies the per-read cost of the
# async stack dominates: receiving a 1 GB study on loopback ran at 620 MB/s with 64 KiB reads and at
# 1,540 MB/s with 256 KiB (benchmarks/). A larger read costs nothing for small answers (the kernel returns
# what it has); the limit is only raised, never lowered.
_READ_BYTES = 256 * 1024
if getattr(_httpcore_http11.AsyncHTTP11Connection, "READ_NUM_BYTES", _READ_BYTES) < _READ_BYTES:
    _httpcore_http11.AsyncHTTP11Connection.READ_NUM_BYTES = _READ_BYTES

Level = Literal["study", "series", "instance"]


@dataclass(frozen=True, slots=True)
class _Sent:
    response: httpx.Response
    attempts: int
    maybe_done: bool  # an earlier attempt may have been carried out (lost answer, gateway timeout)


OnFileSent = Callable[[DicomFile], Awaitable[None]]


def _transfer_syntax(value: str) -> str:
    return value if value == "*" else validate_uid(value, "transfer_syntax")


def _level_path(study_uid: str, series_uid: str | None, instance_uid: str | None) -> tuple[Level, str]:
    """Validate the UIDs of a study/series/instance reference and build its path."""
    path = f"/studies/{validate_uid(study_uid, 'study_uid')}"
    if series_uid is None:
        if instance_uid is not None:
            raise InvalidInputError("instance_uid needs series_uid too: give both, or neither.")
        return "study", path
    path += f"/series/{validate_uid(series_uid, 'series_uid')}"
    if instance_uid is None:
        return "series", path
    return "instance", path + f"/instances/{validate_uid(instance_uid, 'instance_uid')}"


class DicomWebClient:
    """One connection pool to one DICOMweb server. Use ``async with`` or call ``aclose()``."""

    def __init__(
        self,
        config: Config,
        *,
        credential: TokenCredential | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 10,
        retry_backoff: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.config = config
        self._backoff = retry_backoff
        self._sleep = sleep  # injectable so tests can check delays without waiting
        self._root = config.url + (f"/partitions/{config.partition}" if config.partition else "")
        self._http = httpx.AsyncClient(
            auth=build_auth(config, credential),
            timeout=httpx.Timeout(config.timeout, connect=min(config.timeout, 15.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            headers={"User-Agent": "dicomweb-mcp"},
        )
        kind = config.server_kind
        if kind is ServerKind.AUTO:
            kind = guess_kind_from_url(config.url) or ServerKind.AUTO
        self._profile: ServerProfile | None = None if kind is ServerKind.AUTO else profile_for(kind)
        self._detect_lock = anyio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"DicomWebClient({self.config.base_url!r})"

    # ----------------------------------------------------------------------------------------------
    # Server kind

    async def profile(self) -> ServerProfile:
        """The server's profile, detecting the kind on first use when it was left ``auto``."""
        if self._profile is None:
            async with self._detect_lock:
                if self._profile is None:
                    kind, definitive = await self._detect_kind()
                    if not definitive:
                        return profile_for(kind)
                    self._profile = profile_for(kind)
        return self._profile

    def assumed_profile(self) -> ServerProfile:
        """The profile known so far without asking the server (generic until detection succeeded)."""
        return self._profile or profile_for(ServerKind.GENERIC)

    async def _detect_kind(self) -> tuple[ServerKind, bool]:
        """Orthanc answers ``GET {rest root}/system`` with its name and version; others do not."""
        url = orthanc_rest_root(self.config.url) + "/system"
        response = (
            await self._send(
                "Detecting the server kind",
                "GET",
                url,
                headers={"Accept": "application/json"},
                content=None,
                retry=True,
            )
        ).response
        await response.aread()
        await response.aclose()
        if response.status_code in (401, 403):
            return ServerKind.GENERIC, False  # cannot tell yet; ask again once credentials work
        if response.status_code == 200:
            try:
                info = response.json()
            except ValueError:
                info = None
            if isinstance(info, dict) and "ApiVersion" in info and "DicomAet" in info:
                log.info("detected an Orthanc server (version %s)", info.get("Version"))
                return ServerKind.ORTHANC, True
        return ServerKind.GENERIC, True

    # ----------------------------------------------------------------------------------------------
    # HTTP plumbing

    def _transport_error(self, operation: str, exc: httpx.TransportError, attempts: int = 1) -> DicomWebError:
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

    async def _raise_for_status(self, operation: str, response: httpx.Response, attempts: int = 1) -> None:
        if response.status_code < 400:
            return
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= _MAX_ERROR_BODY:
                break
        raise error_for_status(operation, response.status_code, response.request.url.path, body, attempts)

    def _retry_delay(self, attempt: int, retry_after: str | None) -> float:
        """Exponential backoff with full jitter, or the server's Retry-After plus a little jitter."""
        waited = _parse_retry_after(retry_after)
        if waited is not None:
            return waited + random.uniform(0, self._backoff)
        return random.uniform(0, min(_MAX_BACKOFF, self._backoff * 2 ** (attempt - 1)))

    async def _send(
        self, operation: str, method: str, url: str, *, headers: Mapping[str, str], content: Any, retry: bool
    ) -> _Sent:
        """Send, retrying connection failures and 429/502/503/504 within DICOMWEB_MAX_RETRIES and
        DICOMWEB_TIMEOUT. Only callers whose request is safe to repeat pass ``retry=True``."""
        deadline = anyio.current_time() + self.config.timeout
        attempt = 0
        maybe_done = False  # could an earlier attempt have been carried out by the server?
        while True:
            attempt += 1
            retries_left = retry and attempt <= self.config.max_retries
            request = self._http.build_request(method, url, headers=headers, content=content)
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                delay = self._retry_delay(attempt, None)
                # A server that hung once will hang again: a timeout is reported, not retried, so the
                # caller hears within DICOMWEB_TIMEOUT. Refused or dropped connections are retried.
                hung = isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout)
                if hung or not retries_left or anyio.current_time() + delay > deadline:
                    raise self._transport_error(operation, exc, attempt) from None
                # A refused connection or a full pool sent nothing; a connection lost later may have.
                maybe_done = maybe_done or not isinstance(exc, httpx.ConnectError | httpx.TimeoutException)
                log.info("%s: %s, retrying in %.1f s", operation, type(exc).__name__, delay)
                await self._sleep(delay)
                continue
            if response.status_code in _RETRY_STATUSES and retries_left:
                delay = self._retry_delay(attempt, response.headers.get("retry-after"))
                if anyio.current_time() + delay <= deadline:
                    await response.aclose()
                    # 429 and 503 refuse the request; a gateway's 504 may hide one the server carried out.
                    maybe_done = maybe_done or response.status_code == 504
                    log.info("%s: HTTP %d, retrying in %.1f s", operation, response.status_code, delay)
                    await self._sleep(delay)
                    continue
            return _Sent(response, attempt, maybe_done)

    @asynccontextmanager
    async def _stream(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: Any = None,
        ok: Sequence[int] = (),
        retry: bool = True,
    ) -> AsyncIterator[_Sent]:
        """Send a request and yield the streaming response, how many attempts it took, and whether an
        earlier attempt may have been carried out already.

        Errors become ``DicomWebError``. Status codes in ``ok`` are handed to the caller even when they are
        errors (STOW's 409 and 400 carry a per-instance answer).
        """
        sent = await self._send(operation, method, url, headers=headers, content=content, retry=retry)
        try:
            if sent.response.status_code not in ok:
                await self._raise_for_status(operation, sent.response, sent.attempts)
            yield sent
        except httpx.TransportError as exc:
            raise self._transport_error(operation, exc, sent.attempts) from None
        finally:
            await sent.response.aclose()

    async def _read(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: Any = None,
        ok: Sequence[int] = (),
    ) -> httpx.Response:
        async with self._stream(operation, method, url, headers=headers, content=content, ok=ok) as sent:
            await sent.response.aread()
            return sent.response

    @staticmethod
    def _json(operation: str, response: httpx.Response) -> Any:
        if response.status_code == 204 or not response.content.strip():
            return None
        try:
            return json.loads(response.content)
        except ValueError:
            raise ProtocolError(
                f"{operation}: the server answered HTTP {response.status_code} with a body that is not JSON "
                f"({response.headers.get('content-type', 'no Content-Type')})."
            ) from None

    @classmethod
    def _json_objects(cls, operation: str, response: httpx.Response) -> list[dict[str, Any]]:
        """A JSON array of objects (datasets, change feed entries); an empty body is an empty list."""
        data = cls._json(operation, response)
        if data is None:
            return []
        if not isinstance(data, list):
            raise ProtocolError(f"{operation}: expected a JSON array, got {type(data).__name__}.")
        return [item for item in data if isinstance(item, dict)]

    # ----------------------------------------------------------------------------------------------
    # QIDO-RS

    async def _search(
        self,
        operation: str,
        path: str,
        match: Mapping[str, MatchValue] | None,
        include_fields: Sequence[str],
        fuzzy: bool,
        limit: int | None,
        offset: int | None,
    ) -> QueryResult:
        query = build_query(match, include_fields=include_fields, fuzzy=fuzzy, limit=limit, offset=offset)
        encoded = query.encode(await self.profile())
        # The URL is built as text so httpx keeps * ? ^ , unescaped (params= would escape them).
        url = self._root + path + (f"?{encoded}" if encoded else "")
        response = await self._read(operation, "GET", url, headers={"Accept": DICOM_JSON})
        # 204 (Azure) and 200 [] (Orthanc) both mean no match.
        return QueryResult(self._json_objects(operation, response), query.warnings)

    async def search_studies(
        self,
        match: Mapping[str, MatchValue] | None = None,
        *,
        include_fields: Sequence[str] = (),
        fuzzy: bool = False,
        limit: int | None = None,
        offset: int | None = None,
    ) -> QueryResult:
        """QIDO-RS ``/studies``: ``match`` maps keywords or tags to values (wildcards, ranges, UID lists)."""
        return await self._search(
            "Search for studies", "/studies", match, include_fields, fuzzy, limit, offset
        )

    async def search_series(
        self,
        match: Mapping[str, MatchValue] | None = None,
        *,
        study_uid: str | None = None,
        include_fields: Sequence[str] = (),
        fuzzy: bool = False,
        limit: int | None = None,
        offset: int | None = None,
    ) -> QueryResult:
        """QIDO-RS ``/series``, or ``/studies/{study}/series`` when ``study_uid`` scopes the search."""
        path = "/series" if study_uid is None else f"/studies/{validate_uid(study_uid, 'study_uid')}/series"
        return await self._search("Search for series", path, match, include_fields, fuzzy, limit, offset)

    async def search_instances(
        self,
        match: Mapping[str, MatchValue] | None = None,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        include_fields: Sequence[str] = (),
        fuzzy: bool = False,
        limit: int | None = None,
        offset: int | None = None,
    ) -> QueryResult:
        """QIDO-RS ``/instances``, scoped by study, or by study and series."""
        check_scope(study_uid, series_uid)
        path = "/instances"
        if study_uid is not None:
            _, scope = _level_path(study_uid, series_uid, None)
            path = scope + path
        return await self._search("Search for instances", path, match, include_fields, fuzzy, limit, offset)

    # ----------------------------------------------------------------------------------------------
    # WADO-RS

    @asynccontextmanager
    async def _multipart(self, operation: str, url: str, accept: str) -> AsyncIterator[MultipartReader]:
        async with self._stream(operation, "GET", url, headers={"Accept": accept}) as sent:
            boundary = boundary_of(sent.response.headers.get("content-type", ""))
            yield MultipartReader(self._chunks(operation, sent.response), boundary)

    async def _chunks(self, operation: str, response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.TransportError as exc:
            raise self._transport_error(operation, exc) from None

    @asynccontextmanager
    async def stream_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        instance_uid: str | None = None,
        *,
        transfer_syntax: str = "*",
    ) -> AsyncIterator[MultipartReader]:
        """WADO-RS retrieve of a study, series or instance; yields a reader of parts (DICOM Part 10 files).

        ``transfer_syntax='*'`` asks for the files as stored; Azure answers 406 to a multi-instance retrieve
        without it.
        """
        level, path = _level_path(study_uid, series_uid, instance_uid)
        syntax = _transfer_syntax(transfer_syntax)
        accept = f'multipart/related; type="application/dicom"; transfer-syntax={syntax}'
        async with self._multipart(f"Retrieve {level}", self._root + path, accept) as reader:
            yield reader

    @asynccontextmanager
    async def stream_frames(
        self,
        study_uid: str,
        series_uid: str,
        instance_uid: str,
        frames: Sequence[int],
        *,
        transfer_syntax: str = EXPLICIT_VR_LITTLE_ENDIAN,
    ) -> AsyncIterator[MultipartReader]:
        """WADO-RS frames (1-based numbers), as uncompressed Explicit VR Little Endian unless asked."""
        _, path = _level_path(study_uid, series_uid, instance_uid)
        numbers = ",".join(str(n) for n in validate_frames(frames))
        syntax = _transfer_syntax(transfer_syntax)
        media_type = FRAME_MEDIA_TYPES.get(syntax, "application/octet-stream")
        accept = f'multipart/related; type="{media_type}"; transfer-syntax={syntax}'
        async with self._multipart(
            "Retrieve frames", f"{self._root}{path}/frames/{numbers}", accept
        ) as reader:
            yield reader

    async def retrieve_metadata(
        self, study_uid: str, series_uid: str | None = None, instance_uid: str | None = None
    ) -> list[dict[str, Any]]:
        """WADO-RS metadata: one DICOM JSON dataset per instance (bulk data as BulkDataURI or left out)."""
        level, path = _level_path(study_uid, series_uid, instance_uid)
        operation = f"Retrieve {level} metadata"
        response = await self._read(
            operation, "GET", f"{self._root}{path}/metadata", headers={"Accept": DICOM_JSON}
        )
        return self._json_objects(operation, response)

    async def retrieve_rendered(
        self,
        study_uid: str,
        series_uid: str,
        instance_uid: str,
        *,
        frame: int | None = None,
        media_type: Literal["image/jpeg", "image/png"] = "image/jpeg",
        quality: int | None = None,
    ) -> RenderedImage:
        """WADO-RS rendered instance or frame, as a consumer image (JPEG or PNG)."""
        _, path = _level_path(study_uid, series_uid, instance_uid)
        if frame is not None:
            path += f"/frames/{validate_frames([frame])[0]}"
        if media_type not in ("image/jpeg", "image/png"):
            raise InvalidInputError(f"media_type {media_type!r} must be image/jpeg or image/png.")
        url = f"{self._root}{path}/rendered"
        if quality is not None:
            if not 1 <= quality <= 100:
                raise InvalidInputError(f"quality {quality} must be between 1 and 100.")
            url += f"?quality={quality}"
        response = await self._read("Retrieve rendered image", "GET", url, headers={"Accept": media_type})
        returned = response.headers.get("content-type", media_type).split(";")[0].strip()
        return RenderedImage(response.content, returned)

    # ----------------------------------------------------------------------------------------------
    # STOW-RS

    async def store_instances(
        self,
        files: Sequence[DicomFile],
        *,
        study_uid: str | None = None,
        encoding: Literal["multipart", "single-part"] = "multipart",
        batch_count: int = DEFAULT_STORE_BATCH_COUNT,
        batch_bytes: int = DEFAULT_STORE_BATCH_BYTES,
        on_batch: Callable[[Sequence[StoreOutcome]], Awaitable[None]] | None = None,
        on_sent: OnFileSent | None = None,
    ) -> list[StoreOutcome]:
        """STOW-RS: one outcome per file, in order. Bodies stream from disk, in batches, up to
        ``config.concurrency`` batches at a time.

        ``study_uid`` posts to ``/studies/{study}`` (the server refuses instances of other studies).
        ``encoding='single-part'`` sends one ``application/dicom`` body per file (Azure only).
        ``on_batch`` is awaited with each batch's outcomes as it completes, ``on_sent`` with each file as its
        bytes have been sent (progress; a retried request sends its files again).
        """
        path = "/studies" if study_uid is None else f"/studies/{validate_uid(study_uid, 'study_uid')}"
        if encoding not in ("multipart", "single-part"):
            raise InvalidInputError(f"encoding {encoding!r} must be 'multipart' or 'single-part'.")
        single_part = encoding == "single-part"
        batches = [[f] for f in files] if single_part else _batches(files, batch_count, batch_bytes)
        results: list[list[StoreOutcome] | None] = [None] * len(batches)
        stopped: list[DicomWebError] = []  # an error every further request would meet again
        limiter = anyio.Semaphore(self.config.concurrency)

        async def send(index: int, batch: list[DicomFile]) -> None:
            async with limiter:
                if stopped:
                    reason = f"not sent, an earlier request failed: {stopped[0]}"
                    done = [StoreOutcome(f, StoreStatus.FAILED, reason=reason) for f in batch]
                else:
                    try:
                        done = await self._store_batch(path, batch, single_part=single_part, on_sent=on_sent)
                    except DicomWebError as exc:
                        # Batches stored before or beside this one stay reported: this batch fails with the
                        # reason instead of one exception hiding every other outcome.
                        done = [
                            StoreOutcome(f, StoreStatus.FAILED, reason=f"not stored: {exc}") for f in batch
                        ]
                        if isinstance(exc, _REPEATING_ERRORS):
                            stopped.append(exc)
                results[index] = done
                if on_batch is not None:
                    await on_batch(done)

        async with anyio.create_task_group() as group:
            for index, batch in enumerate(batches):
                group.start_soon(send, index, batch)
        return [outcome for done in results for outcome in done or ()]

    async def _store_batch(
        self, path: str, batch: Sequence[DicomFile], *, single_part: bool, on_sent: OnFileSent | None
    ) -> list[StoreOutcome]:
        profile = await self.profile()
        known = await self._existing_instances(batch) if profile.silent_duplicates else set()
        by_path = {f.path: f for f in batch}

        async def part_sent(part: FilePart) -> None:
            if on_sent is not None:
                await on_sent(by_path[part.path])

        parts = [FilePart(f.path, f.size) for f in batch]
        body: FileBody | MultipartFileBody = (
            FileBody(parts[0], on_part_sent=part_sent)
            if single_part
            else MultipartFileBody(parts, on_part_sent=part_sent)
        )
        headers = {
            "Accept": DICOM_JSON,
            "Content-Type": body.content_type,
            "Content-Length": str(body.content_length),
        }
        operation = "Store instances"
        # 409 (all failed, e.g. already stored) and 400 (Orthanc: some failed) still carry the
        # per-instance answer.
        async with self._stream(
            operation, "POST", self._root + path, headers=headers, content=body, ok=(200, 202, 400, 409)
        ) as sent:
            response, attempts = sent.response, sent.attempts
            raw = await response.aread()
            dataset: Any = None
            if raw.strip():
                try:
                    dataset = json.loads(raw)
                except ValueError:
                    dataset = None
            if isinstance(dataset, list) and len(dataset) == 1:
                dataset = dataset[0]
            is_answer = isinstance(dataset, dict) and (_REFERENCED in dataset or _FAILED in dataset)
            if response.status_code >= 400 and not is_answer:
                # An error body (Orthanc's {"HttpError", "Message"}), not a per-instance answer.
                raise error_for_status(
                    operation, response.status_code, response.request.url.path, raw, attempts
                )
            if not isinstance(dataset, dict):
                if response.status_code >= 400:
                    raise error_for_status(operation, response.status_code, response.request.url.path, raw)
                raise ProtocolError(
                    f"{operation}: the server's answer (HTTP {response.status_code}) is not a "
                    "DICOM JSON dataset, so the outcome of each file is unknown."
                )
        # If an earlier attempt may have been carried out, "already stored" can be its doing: stored.
        return outcomes_from_response(dataset, batch, known_before=known, retried=sent.maybe_done)

    async def _existing_instances(self, files: Sequence[DicomFile]) -> set[str]:
        """The SOP instance UIDs of ``files`` the server already has (for servers that hide duplicates)."""
        found: set[str] = set()
        uids = sorted({f.instance_uid for f in files})
        for start in range(0, len(uids), _UID_LOOKUP_BATCH):
            chunk = uids[start : start + _UID_LOOKUP_BATCH]
            result = await self.search_instances({"SOPInstanceUID": chunk}, limit=len(chunk))
            for dataset in result.datasets:
                found.update(str(v) for v in element_values(dataset, SOP_INSTANCE_UID))
        return found

    # ----------------------------------------------------------------------------------------------
    # Delete

    async def delete(
        self, study_uid: str, series_uid: str | None = None, instance_uid: str | None = None
    ) -> DeleteResult:
        """Delete a study, series or instance. On Orthanc (405 on DICOMweb DELETE) via its REST API."""
        level, path = _level_path(study_uid, series_uid, instance_uid)
        profile = await self.profile()
        if profile.delete_method == "orthanc-rest":
            await self._orthanc_delete(level, study_uid, series_uid, instance_uid)
            return DeleteResult(level, study_uid, series_uid, instance_uid, "orthanc-rest")
        operation = f"Delete {level}"
        # DELETE answers with no body; Orthanc answers 400 instead of 405 to a series or instance DELETE
        # that asks for application/dicom+json, so ask for anything.
        async with self._stream(
            operation, "DELETE", self._root + path, headers={"Accept": "*/*"}, ok=(404, 405)
        ) as sent:
            response, status = sent.response, sent.response.status_code
            if status == 405:
                # An Orthanc that was not recognised (kind set to generic, /system hidden by a proxy):
                # its REST API can still delete; if there is none, the 405 stands.
                await response.aread()
            elif status == 404 and not sent.maybe_done:  # else the lost earlier attempt deleted it
                await self._raise_for_status(operation, response, sent.attempts)
        if status == 405:
            try:
                await self._orthanc_delete(level, study_uid, series_uid, instance_uid)
            except HTTPStatusError as exc:
                if exc.status_code == 404 and exc.path.endswith("/tools/lookup"):
                    raise error_for_status(
                        operation, 405, response.request.url.path, response.content
                    ) from None
                raise
            return DeleteResult(level, study_uid, series_uid, instance_uid, "orthanc-rest")
        return DeleteResult(level, study_uid, series_uid, instance_uid, "dicomweb")

    async def _orthanc_json(self, operation: str, method: str, url: str, body: bytes | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "text/plain"
        return self._json(operation, await self._read(operation, method, url, headers=headers, content=body))

    async def _orthanc_delete(
        self, level: Level, study_uid: str, series_uid: str | None, instance_uid: str | None
    ) -> None:
        """Look the UID up, keep the resources that really are in the named study (and series), delete all.

        Orthanc keys resources by patient too, so one UID can be several resources (the same study under
        two patient IDs): every one is deleted, or the study would survive a reported deletion.
        """
        rest = orthanc_rest_root(self.config.url)
        operation = f"Delete {level}"
        uid = instance_uid or series_uid or study_uid
        matches = await self._orthanc_json(operation, "POST", f"{rest}/tools/lookup", uid.encode()) or []
        wanted = {"study": "Study", "series": "Series", "instance": "Instance"}[level]
        resource = {"study": "studies", "series": "series", "instance": "instances"}[level]
        ids = [
            m["ID"]
            for m in matches
            if isinstance(m, dict)
            and m.get("Type") == wanted
            # An Orthanc ID is a hash, but it goes into a URL: check it anyway.
            and isinstance(m.get("ID"), str)
            and m["ID"].replace("-", "").isalnum()
        ]
        targets = []
        for orthanc_id in ids:
            if level != "study":
                # Never delete across studies: the UID must belong to the study (and series) named.
                parent = await self._orthanc_json(operation, "GET", f"{rest}/{resource}/{orthanc_id}/study")
                if _main_tag(parent, "StudyInstanceUID") != study_uid:
                    continue
                if level == "instance":
                    series = await self._orthanc_json(
                        operation, "GET", f"{rest}/instances/{orthanc_id}/series"
                    )
                    if _main_tag(series, "SeriesInstanceUID") != series_uid:
                        continue
            targets.append(orthanc_id)
        if not targets:
            _, path = _level_path(study_uid, series_uid, instance_uid)
            where = "" if level == "study" else f" in study {study_uid}"
            raise NotFoundError(operation, 404, path, f"no {level} {uid}{where}")
        for orthanc_id in targets:
            await self._read(
                operation, "DELETE", f"{rest}/{resource}/{orthanc_id}", headers={"Accept": "application/json"}
            )

    # ----------------------------------------------------------------------------------------------
    # Change feed (Azure DICOM service / Microsoft's open-source server)

    async def _require_change_feed(self) -> None:
        profile = await self.profile()
        if not profile.change_feed and profile.kind is not ServerKind.GENERIC:
            raise UnsupportedOperationError(
                "The change feed is an Azure DICOM service feature; this "
                f"{profile.kind.value} server has none. Use search_studies with a StudyDate range "
                "to find recent studies instead."
            )

    @property
    def change_feed_version(self) -> int:
        """1 or 2: in v1 ``offset`` is the last sequence seen, in v2 the number of entries to skip."""
        return change_feed_version(self.config.url)

    async def change_feed(
        self,
        *,
        offset: int = 0,
        limit: int | None = None,
        include_metadata: bool = False,
        start_time: str | None = None,
        end_time: str | None = None,
    ) -> list[ChangeFeedEntry]:
        """``/changefeed``: v1 pages by sequence (``offset`` exclusive); v2 skips ``offset`` entries of the
        (optional) time window."""
        version = self.change_feed_version
        most = 200 if version >= 2 else 100
        if offset < 0 or (limit is not None and not 1 <= limit <= most):
            raise InvalidInputError(
                f"offset must be at least 0 and limit between 1 and {most} (change feed v{version})."
            )
        if (start_time or end_time) and version < 2:
            raise InvalidInputError(
                "start_time and end_time need the v2 API: use a DICOMWEB_URL ending in /v2."
            )
        await self._require_change_feed()
        params: dict[str, str] = {"offset": str(offset), "includemetadata": str(include_metadata).lower()}
        if limit is not None:
            params["limit"] = str(limit)
        if start_time:
            params["startTime"] = start_time
        if end_time:
            params["endTime"] = end_time
        url = httpx.URL(self._root + "/changefeed", params=params)
        operation = "Read the change feed"
        response = await self._read(operation, "GET", str(url), headers={"Accept": "application/json"})
        return [_change_feed_entry(item) for item in self._json_objects(operation, response)]

    async def change_feed_latest(self, *, include_metadata: bool = False) -> ChangeFeedEntry | None:
        """``/changefeed/latest``: the newest entry, or None for an empty feed (204)."""
        await self._require_change_feed()
        operation = "Read the latest change feed entry"
        url = f"{self._root}/changefeed/latest?includemetadata={str(include_metadata).lower()}"
        data = self._json(
            operation, await self._read(operation, "GET", url, headers={"Accept": "application/json"})
        )
        return _change_feed_entry(data) if isinstance(data, dict) else None


def _change_feed_entry(item: Mapping[str, Any]) -> ChangeFeedEntry:
    """Keys are camelCase on the wire and enum values PascalCase: read keys case-insensitively."""
    lower = {str(k).lower(): v for k, v in item.items()}

    def text(key: str) -> str | None:
        value = lower.get(key)
        return None if value is None else str(value)

    try:
        sequence = int(lower.get("sequence", -1))
    except (TypeError, ValueError):
        sequence = -1
    metadata = lower.get("metadata")
    return ChangeFeedEntry(
        sequence=sequence,
        timestamp=text("timestamp"),
        action=text("action"),
        state=text("state"),
        study_uid=text("studyinstanceuid"),
        series_uid=text("seriesinstanceuid"),
        instance_uid=text("sopinstanceuid"),
        partition=text("partitionname"),
        metadata=metadata if isinstance(metadata, dict) else None,
    )


def _main_tag(resource: Any, keyword: str) -> Any:
    """A MainDicomTags value from an Orthanc REST resource."""
    return ((resource or {}).get("MainDicomTags") or {}).get(keyword) if isinstance(resource, dict) else None


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT even when it does not say so
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def _batches(files: Sequence[DicomFile], max_count: int, max_bytes: int) -> list[list[DicomFile]]:
    batches: list[list[DicomFile]] = []
    current: list[DicomFile] = []
    size = 0
    for file in files:
        if current and (len(current) >= max_count or size + file.size > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(file)
        size += file.size
    if current:
        batches.append(current)
    return batches
