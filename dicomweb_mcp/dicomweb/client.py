"""The async DICOMweb client: QIDO-RS, WADO-RS, STOW-RS, delete and change feed over one connection pool.

It knows nothing of MCP. Server differences come from ``ServerProfile``; errors are ``DicomWebError``s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from types import TracebackType
from typing import Any, Literal, Self

import anyio

from ..config import Config, ServerKind
from ..dicom.validation import check_scope, validate_frames, validate_uid
from ..errors import HTTPStatusError, InvalidInputError, UnsupportedOperationError, error_for_status
from ..files.dicomfiles import DicomFile
from .auth import TokenCredential, build_auth
from .changefeed import change_feed_version, check_change_feed_arguments, read_change_feed, read_latest_change
from .models import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    FRAME_MEDIA_TYPES,
    ChangeFeedEntry,
    DeleteResult,
    QueryResult,
    RenderedImage,
    StoreOutcome,
)
from .multipart import MultipartReader, boundary_of
from .orthanc import detect_kind, orthanc_delete
from .paths import level_path, transfer_syntax_value
from .query import MatchValue, build_query
from .servers import ServerProfile, guess_kind_from_url, profile_for
from .stow import (
    DEFAULT_STORE_BATCH_BYTES,
    DEFAULT_STORE_BATCH_COUNT,
    OnBatch,
    OnFileSent,
    batches,
    existing_instances,
    store_batches,
)
from .transport import BaseTransport, HttpTransport, parse_json_objects

__all__ = ["DicomWebClient"]

DICOM_JSON = "application/dicom+json"


class DicomWebClient:
    """One connection pool to one DICOMweb server. Use ``async with`` or call ``aclose()``."""

    def __init__(
        self,
        config: Config,
        *,
        credential: TokenCredential | None = None,
        transport: BaseTransport | None = None,
        max_connections: int = 10,
        retry_backoff: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.config = config
        self.http = HttpTransport(
            config,
            auth=build_auth(config, credential),
            transport=transport,
            max_connections=max_connections,
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

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    def __repr__(self) -> str:
        return f"DicomWebClient({self.config.base_url!r})"

    # ---- server kind ------------------------------------------------------------------------------

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

    def assumed_profile(self) -> ServerProfile:
        """The profile known so far without asking the server (generic until detection succeeded)."""
        return self._profile or profile_for(ServerKind.GENERIC)

    # ---- QIDO-RS ----------------------------------------------------------------------------------

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
        response = await self.http.read(operation, "GET", url, headers={"Accept": DICOM_JSON})
        # 204 (Azure) and 200 [] (Orthanc) both mean no match.
        return QueryResult(parse_json_objects(operation, response), query.warnings)

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
            path = level_path(study_uid, series_uid, None)[1] + path
        return await self._search("Search for instances", path, match, include_fields, fuzzy, limit, offset)

    # ---- WADO-RS ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def _multipart(self, operation: str, url: str, accept: str) -> AsyncIterator[MultipartReader]:
        async with self.http.stream(operation, "GET", url, headers={"Accept": accept}) as sent:
            boundary = boundary_of(sent.response.headers.get("content-type", ""))
            yield MultipartReader(self.http.chunks(operation, sent.response), boundary)

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
        level, path = level_path(study_uid, series_uid, instance_uid)
        syntax = transfer_syntax_value(transfer_syntax)
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
        _, path = level_path(study_uid, series_uid, instance_uid)
        numbers = ",".join(str(n) for n in validate_frames(frames))
        syntax = transfer_syntax_value(transfer_syntax)
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
        level, path = level_path(study_uid, series_uid, instance_uid)
        operation = f"Retrieve {level} metadata"
        url = f"{self._root}{path}/metadata"
        response = await self.http.read(operation, "GET", url, headers={"Accept": DICOM_JSON})
        return parse_json_objects(operation, response)

    async def retrieve_rendered(
        self,
        study_uid: str,
        series_uid: str,
        instance_uid: str,
        *,
        frame: int | None = None,
        media_type: Literal["image/jpeg", "image/png"] = "image/jpeg",
        quality: int | None = None,
        viewport: tuple[int, int] | None = None,
        window: tuple[float, float, str] | None = None,
    ) -> RenderedImage:
        """WADO-RS rendered instance or frame, as a consumer image (JPEG or PNG).

        ``viewport`` (width, height) and ``window`` (center, width, function) are PS3.18 8.3.5.1.3
        parameters: send them only to a server whose profile says it honours them (``rendered_viewport``,
        ``rendered_window``); others ignore or refuse them."""
        _, path = level_path(study_uid, series_uid, instance_uid)
        if frame is not None:
            path += f"/frames/{validate_frames([frame])[0]}"
        if media_type not in ("image/jpeg", "image/png"):
            raise InvalidInputError(f"media_type {media_type!r} must be image/jpeg or image/png.")
        parameters = []
        if quality is not None:
            if not 1 <= quality <= 100:
                raise InvalidInputError(f"quality {quality} must be between 1 and 100.")
            parameters.append(f"quality={quality}")
        if viewport is not None:
            width, height = viewport
            if width < 1 or height < 1:
                raise InvalidInputError(f"viewport {width}x{height} must be at least 1x1.")
            parameters.append(f"viewport={int(width)},{int(height)}")
        if window is not None:
            center, width_, function = window
            if function not in ("linear", "sigmoid"):
                raise InvalidInputError(f"window function {function!r} must be linear or sigmoid.")
            parameters.append(f"window={center:g},{width_:g},{function}")
        url = f"{self._root}{path}/rendered" + (f"?{'&'.join(parameters)}" if parameters else "")
        response = await self.http.read("Retrieve rendered image", "GET", url, headers={"Accept": media_type})
        returned = response.headers.get("content-type", media_type).split(";")[0].strip()
        return RenderedImage(response.content, returned)

    # ---- STOW-RS ----------------------------------------------------------------------------------

    async def store_instances(
        self,
        files: Sequence[DicomFile],
        *,
        study_uid: str | None = None,
        encoding: Literal["multipart", "single-part"] = "multipart",
        batch_count: int = DEFAULT_STORE_BATCH_COUNT,
        batch_bytes: int = DEFAULT_STORE_BATCH_BYTES,
        on_batch: OnBatch | None = None,
        on_sent: OnFileSent | None = None,
    ) -> list[StoreOutcome]:
        """STOW-RS: one outcome per file, in order; bodies stream from disk, ``config.concurrency``
        batches at a time. ``study_uid`` posts to ``/studies/{study}`` (other studies are refused);
        ``encoding='single-part'`` sends one ``application/dicom`` body per file (Azure only).
        ``on_batch`` gets each batch's outcomes, ``on_sent`` each file as its bytes are sent (progress).
        """
        path = "/studies" if study_uid is None else f"/studies/{validate_uid(study_uid, 'study_uid')}"
        if encoding not in ("multipart", "single-part"):
            raise InvalidInputError(f"encoding {encoding!r} must be 'multipart' or 'single-part'.")
        single_part = encoding == "single-part"
        groups = [[f] for f in files] if single_part else batches(files, batch_count, batch_bytes)
        # Servers that ignore duplicates silently are asked first which instances they already have.
        silent = (await self.profile()).silent_duplicates
        lookup = partial(existing_instances, self.search_instances) if silent else None
        return await store_batches(
            self.http,
            self._root + path,
            groups,
            single_part=single_part,
            concurrency=self.config.concurrency,
            lookup=lookup,
            on_batch=on_batch,
            on_sent=on_sent,
        )

    # ---- delete -----------------------------------------------------------------------------------

    async def delete(
        self, study_uid: str, series_uid: str | None = None, instance_uid: str | None = None
    ) -> DeleteResult:
        """Delete a study, series or instance. On Orthanc (405 on DICOMweb DELETE) via its REST API."""
        level, path = level_path(study_uid, series_uid, instance_uid)
        done = DeleteResult(
            deleted=True,
            level=level,
            study_uid=study_uid,
            series_uid=series_uid,
            instance_uid=instance_uid,
            method="dicomweb",
        )
        by_rest = done.model_copy(update={"method": "orthanc-rest"})
        url = self.config.url
        if (await self.profile()).delete_method == "orthanc-rest":
            await orthanc_delete(self.http, url, level, path, study_uid, series_uid, instance_uid)
            return by_rest
        operation = f"Delete {level}"
        # DELETE answers with no body; Orthanc answers 400 instead of 405 to a series or instance DELETE
        # that asks for application/dicom+json, so ask for anything.
        async with self.http.stream(
            operation, "DELETE", self._root + path, headers={"Accept": "*/*"}, ok=(404, 405)
        ) as sent:
            response, status = sent.response, sent.response.status_code
            if status == 405:
                await response.aread()
            elif status == 404 and not sent.maybe_done:  # else the lost earlier attempt deleted it
                await self.http.raise_for_status(operation, response, sent.attempts)
        if status != 405:
            return done
        # An Orthanc that was not recognised (kind set to generic, /system hidden by a proxy): its REST
        # API can still delete; if there is none, the 405 stands.
        try:
            await orthanc_delete(self.http, url, level, path, study_uid, series_uid, instance_uid)
        except HTTPStatusError as exc:
            if exc.status_code == 404 and exc.path.endswith("/tools/lookup"):
                raise error_for_status(operation, 405, response.request.url.path, response.content) from None
            raise
        return by_rest

    # ---- change feed ------------------------------------------------------------------------------

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
        check_change_feed_arguments(self.change_feed_version, offset, limit, start_time, end_time)
        await self._require_change_feed()
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
        await self._require_change_feed()
        return await read_latest_change(self.http, self._root, include_metadata=include_metadata)
