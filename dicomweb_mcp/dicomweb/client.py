"""The async DICOMweb client: QIDO-RS, WADO-RS, STOW-RS, delete and change feed over one connection pool.

It knows nothing of MCP. Server differences come from ``ServerProfile``; errors are ``DicomWebError``s.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Literal, Self

import anyio
import httpx

from ..config import ServerConfig, ServerKind
from ..dicom.reference import Reference
from ..dicom.validation import validate_frames
from ..errors import InvalidInputError, UnsupportedOperationError
from ..files.dicomfiles import DicomFile
from ..imaging.pictures import Picture, dimensions
from .auth import TokenCredential, build_auth
from .changefeed import change_feed_version, check_change_feed_arguments, read_change_feed, read_latest_change
from .delete import delete_resource
from .models import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    FRAME_MEDIA_TYPES,
    ChangeFeedEntry,
    DeleteResult,
    QueryResult,
    StoreOutcome,
)
from .multipart import MultipartReader, boundary_of
from .orthanc import detect_kind, orthanc_delete
from .orthanc_changes import read_latest_orthanc_change, read_orthanc_changes
from .paths import rendered_query, transfer_syntax_value
from .query import MatchValue, Query, Resource, build_query, encode_query
from .servers import ServerProfile, guess_kind_from_url, profile_for
from .stow import (
    DEFAULT_STORE_BATCH_BYTES,
    DEFAULT_STORE_BATCH_COUNT,
    MAX_LOOKUP_BATCH,
    OnBatch,
    OnFileSent,
    Stow,
    batch_limits,
    existing_instances,
)
from .transport import BaseTransport, HttpTransport, beside, parse_json_objects

__all__ = ["DicomWebClient"]

log = logging.getLogger("dicomweb_mcp")

DICOM_JSON = "application/dicom+json"
_ACCEPT_JSON = {"Accept": DICOM_JSON}
# What a server whose kind the URL does not give away can turn out to be.
_UNDETECTED = (ServerKind.ORTHANC, ServerKind.GENERIC)


class DicomWebClient:
    """One connection pool to one DICOMweb server. Use ``async with`` or call ``aclose()``."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        credential: TokenCredential | None = None,
        # Replaces the config's auth flow: a server acting for each caller (tools/obo.py).
        auth: httpx.Auth | None = None,
        transport: BaseTransport | None = None,
        max_connections: int | None = None,
        retry_backoff: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.config = config
        self.http = HttpTransport(
            config,
            auth=auth or build_auth(config, credential),
            transport=transport,
            # Room for every request one operation may have in flight, and a little more.
            max_connections=max_connections or max(10, config.concurrency + 2),
            retry_backoff=retry_backoff,
            sleep=sleep,
        )
        self._root = config.url + (f"/partitions/{config.partition}" if config.partition else "")
        kind = config.server_kind
        if kind is ServerKind.AUTO:
            kind = guess_kind_from_url(config.url) or ServerKind.AUTO
        self._profile: ServerProfile | None = None if kind is ServerKind.AUTO else profile_for(kind)
        self._detect_lock = anyio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    def __repr__(self) -> str:
        return f"DicomWebClient({self.config.base_url!r})"

    async def profile(self) -> ServerProfile:
        """The server's profile, detecting the kind on first use when it was left ``auto``."""
        if self._profile is None:
            async with self._detect_lock:
                if self._profile is None:
                    kind, definitive = await detect_kind(self.http, self.config.url)
                    if not definitive:
                        return profile_for(kind)
                    self._profile = profile_for(kind)
        return self._profile

    async def warm_up(self) -> None:
        """Detect the server kind (and open a connection) ahead of need; never raises: a failure is left
        for the next request to meet and report."""
        try:
            await self.profile()
        except Exception as exc:
            log.debug("server-kind detection failed: %s", type(exc).__name__)

    def assumed_profile(self) -> ServerProfile:
        """The profile known so far without asking the server (generic until detection succeeded)."""
        return self._profile or profile_for(ServerKind.GENERIC)

    # ---- QIDO-RS ----------------------------------------------------------------------------------

    async def search(self, resource: Resource, query: Query, scope: Reference | None = None) -> QueryResult:
        """QIDO-RS ``/studies``, ``/series`` or ``/instances``, within ``scope`` (a study, or a series of
        one) when given, for a query ``build_query`` validated."""
        operation = f"Search for {resource}"
        # The URL is built as text so httpx keeps * ? ^ , unescaped (params= would escape them).
        url = self._root + (scope.path if scope is not None else "") + f"/{resource}"
        if self._profile is None:
            # Not known yet, so Orthanc or another server (the URL tells the rest). When both would read
            # this query the same way, it goes beside the detection instead of after it: the first call
            # of a session then costs one round trip, not two.
            either = {encode_query(query, profile_for(kind))[0] for kind in _UNDETECTED}
            if len(either) == 1:
                read = partial(
                    self.http.read, operation, "GET", _with_query(url, either.pop()), headers=_ACCEPT_JSON
                )
                response = await beside(self.warm_up, read)
                # The warnings for what detection found (generic if it failed).
                warnings = encode_query(query, self.assumed_profile())[1]
                return QueryResult(parse_json_objects(operation, response), warnings)
        encoded, warnings = encode_query(query, await self.profile())
        response = await self.http.read(operation, "GET", _with_query(url, encoded), headers=_ACCEPT_JSON)
        # 204 (Azure) and 200 [] (Orthanc) both mean no match.
        return QueryResult(parse_json_objects(operation, response), warnings)

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
        query = build_query(match, include_fields=include_fields, fuzzy=fuzzy, limit=limit, offset=offset)
        return await self.search("studies", query)

    async def search_series(
        self,
        match: Mapping[str, MatchValue] | None = None,
        *,
        study: Reference | None = None,
        include_fields: Sequence[str] = (),
        limit: int | None = None,
        offset: int | None = None,
    ) -> QueryResult:
        """QIDO-RS ``/series``, or ``/studies/{study}/series``."""
        query = build_query(match, include_fields=include_fields, limit=limit, offset=offset)
        return await self.search("series", query, study)

    async def search_instances(
        self,
        match: Mapping[str, MatchValue] | None = None,
        *,
        scope: Reference | None = None,
        include_fields: Sequence[str] = (),
        limit: int | None = None,
        offset: int | None = None,
    ) -> QueryResult:
        """QIDO-RS ``/instances``, scoped by study, or by study and series."""
        query = build_query(match, include_fields=include_fields, limit=limit, offset=offset)
        return await self.search("instances", query, scope)

    # ---- WADO-RS ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def _multipart(self, operation: str, url: str, accept: str) -> AsyncIterator[MultipartReader]:
        async with self.http.stream(operation, "GET", url, headers={"Accept": accept}) as sent:
            boundary = boundary_of(sent.response.headers.get("content-type", ""))
            yield MultipartReader(self.http.chunks(operation, sent.response), boundary)

    @asynccontextmanager
    async def stream_instances(
        self, reference: Reference, *, transfer_syntax: str = "*"
    ) -> AsyncIterator[MultipartReader]:
        """WADO-RS retrieve of a study, series or instance: a reader of parts (Part 10 files). ``'*'`` asks
        for the files as stored; Azure answers 406 to a multi-instance retrieve without it."""
        syntax = transfer_syntax_value(transfer_syntax)
        accept = f'multipart/related; type="application/dicom"; transfer-syntax={syntax}'
        url = self._root + reference.path
        async with self._multipart(f"Retrieve {reference.level}", url, accept) as reader:
            yield reader

    @asynccontextmanager
    async def stream_frames(
        self,
        instance: Reference,
        frames: Sequence[int],
        *,
        transfer_syntax: str = EXPLICIT_VR_LITTLE_ENDIAN,
    ) -> AsyncIterator[MultipartReader]:
        """WADO-RS frames (1-based numbers) of an instance, uncompressed unless asked otherwise."""
        numbers = ",".join(str(n) for n in validate_frames(frames))
        syntax = transfer_syntax_value(transfer_syntax)
        media_type = FRAME_MEDIA_TYPES.get(syntax, "application/octet-stream")
        accept = f'multipart/related; type="{media_type}"; transfer-syntax={syntax}'
        url = f"{self._root}{_instance_path(instance)}/frames/{numbers}"
        async with self._multipart("Retrieve frames", url, accept) as reader:
            yield reader

    async def retrieve_metadata(self, reference: Reference) -> list[dict[str, Any]]:
        """WADO-RS metadata: one DICOM JSON dataset per instance (bulk data as BulkDataURI or left out)."""
        operation = f"Retrieve {reference.level} metadata"
        url = f"{self._root}{reference.path}/metadata"
        response = await self.http.read(operation, "GET", url, headers=_ACCEPT_JSON)
        return parse_json_objects(operation, response)

    async def retrieve_rendered(
        self,
        instance: Reference,
        *,
        frame: int | None = None,
        media_type: Literal["image/jpeg", "image/png"] = "image/jpeg",
        quality: int | None = None,
        viewport: tuple[int, int] | None = None,
        window: tuple[float, float, str] | None = None,
    ) -> Picture:
        """WADO-RS rendered instance or frame, as a consumer image (JPEG or PNG).

        ``viewport`` (width, height) and ``window`` (center, width, function) are PS3.18 8.3.5.1.3
        parameters: send them only to a server whose profile says it honours them (``rendered_viewport``,
        ``rendered_window``); others ignore or refuse them."""
        path = _instance_path(instance)
        if frame is not None:
            path += f"/frames/{validate_frames([frame])[0]}"
        url = f"{self._root}{path}/rendered{rendered_query(media_type, quality, viewport, window)}"
        response = await self.http.read("Retrieve rendered image", "GET", url, headers={"Accept": media_type})
        returned = response.headers.get("content-type", media_type).split(";")[0].strip()
        width, height = dimensions(response.content) or (0, 0)
        return Picture("server", width, height, data=response.content, media_type=returned)

    # ---- STOW-RS ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def storing(
        self,
        *,
        study: Reference | None = None,
        encoding: Literal["multipart", "single-part"] = "multipart",
        batch_count: int = DEFAULT_STORE_BATCH_COUNT,
        batch_bytes: int = DEFAULT_STORE_BATCH_BYTES,
        senders: int | None = None,
        on_batch: OnBatch | None = None,
        on_sent: OnFileSent | None = None,
    ) -> AsyncIterator[Stow]:
        """STOW-RS of files added to the ``Stow`` while the block runs, every request answered when it
        ends. ``study`` posts to ``/studies/{study}`` (other studies are refused);
        ``encoding='single-part'`` sends one ``application/dicom`` body per file (Azure only). At most
        ``senders`` requests (``config.concurrency``, and never more than the pool holds) at once."""
        path = study.path if study is not None else "/studies"
        if encoding not in ("multipart", "single-part"):
            raise InvalidInputError(f"encoding {encoding!r} must be 'multipart' or 'single-part'.")
        # Servers that ignore duplicates silently are asked first which instances they already have.
        silent = (await self.profile()).silent_duplicates
        lookup = partial(existing_instances, self.search_instances) if silent else None
        async with Stow.open(
            self.http,
            self._root + path,
            single_part=encoding == "single-part",
            batch_count=min(batch_count, MAX_LOOKUP_BATCH) if lookup else batch_count,
            batch_bytes=batch_bytes,
            senders=min(senders or self.config.concurrency, self.http.max_connections),
            lookup=lookup,
            on_batch=on_batch,
            on_sent=on_sent,
        ) as stow:
            yield stow

    async def store_instances(
        self,
        files: Sequence[DicomFile],
        *,
        study: Reference | None = None,
        encoding: Literal["multipart", "single-part"] = "multipart",
        batch_count: int = DEFAULT_STORE_BATCH_COUNT,
        batch_bytes: int = DEFAULT_STORE_BATCH_BYTES,
        on_batch: OnBatch | None = None,
        on_sent: OnFileSent | None = None,
    ) -> list[StoreOutcome]:
        """STOW-RS of ``files``: one outcome per file, in order; bodies stream from disk, in batches of at
        most ``batch_count`` files and ``batch_bytes``, sized so that every sender has one. ``on_batch``
        gets each batch's outcomes, ``on_sent`` each file as its bytes are sent (progress)."""
        count, size = batch_limits(files, self.config.concurrency, batch_count, batch_bytes)
        async with self.storing(
            study=study,
            encoding=encoding,
            batch_count=count,
            batch_bytes=size,
            on_batch=on_batch,
            on_sent=on_sent,
        ) as stow:
            for file in files:
                stow.add(file)
        return stow.outcomes

    # ---- delete -----------------------------------------------------------------------------------

    async def delete(self, reference: Reference) -> DeleteResult:
        """Delete a study, series or instance. On Orthanc (405 on DICOMweb DELETE) via its REST API."""
        if (await self.profile()).delete_method == "orthanc-rest":
            await orthanc_delete(self.http, self.config.url, reference)
            method: Literal["dicomweb", "orthanc-rest"] = "orthanc-rest"
        else:
            method = await delete_resource(self.http, self._root, self.config.url, reference)
        return DeleteResult(
            deleted=True,
            level=reference.level,
            study_uid=reference.study_uid,
            series_uid=reference.series_uid,
            instance_uid=reference.instance_uid,
            method=method,
        )

    # ---- change feed ------------------------------------------------------------------------------

    async def _change_feed_kind(self) -> str:
        profile = await self.profile()
        if profile.change_feed == "none" and profile.kind is not ServerKind.GENERIC:
            raise UnsupportedOperationError(
                f"This {profile.kind.value} server keeps no change feed. Use search_studies with a "
                "StudyDate range to find recent studies instead."
            )
        return profile.change_feed

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
        """v1 (and Orthanc) page by sequence (``offset`` exclusive); v2 skips ``offset`` entries."""
        if await self._change_feed_kind() == "orthanc":
            window = (start_time, end_time)
            return await read_orthanc_changes(self.http, self.config, offset, limit, window)
        check_change_feed_arguments(self.change_feed_version, offset, limit, start_time, end_time)
        return await read_change_feed(
            self.http,
            self._root,
            offset=offset,
            limit=limit,
            include_metadata=include_metadata,
            start_time=start_time,
            end_time=end_time,
        )

    async def change_feed_latest(self, *, include_metadata: bool = False) -> ChangeFeedEntry | None:
        """``/changefeed/latest``: the newest entry, or None for an empty feed (204)."""
        if await self._change_feed_kind() == "orthanc":
            return await read_latest_orthanc_change(self.http, self.config)
        return await read_latest_change(self.http, self._root, include_metadata=include_metadata)


def _instance_path(reference: Reference) -> str:
    if reference.instance_uid is None:
        raise InvalidInputError(f"This needs an instance, not a {reference.level}: give instance_uid too.")
    return reference.path


def _with_query(url: str, encoded: str) -> str:
    return f"{url}?{encoded}" if encoded else url
