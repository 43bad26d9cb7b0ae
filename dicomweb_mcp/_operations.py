"""What each tool does, as plain async code over the client, the summarizer and the file store.

No MCP here: the server module adapts these to tools (arguments, progress, errors). Every method
validates its input before the first request and raises ``DicomWebError``s with actionable messages.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio

from ._client import DicomWebClient
from ._config import Config
from ._dicomfiles import collect_dicom_files
from ._dictionary import resolve_attribute
from ._errors import DicomWebError, InvalidInputError
from ._models import EXPLICIT_VR_LITTLE_ENDIAN, DicomFile, QueryResult, StoreOutcome, StoreStatus
from ._query import MatchValue, build_query
from ._results import (
    MAX_LISTED_FILES,
    ChangeFeedEntryInfo,
    ChangeFeedResult,
    DeleteInstancesResult,
    FrameFile,
    InstanceMetadata,
    InstanceSummary,
    RetrieveFramesResult,
    RetrieveInstancesResult,
    RetrieveMetadataResult,
    RetrieveRenderedResult,
    SavedInstanceFile,
    SearchInstancesResult,
    SearchSeriesResult,
    SearchStudiesResult,
    SeriesSummary,
    ServerCapabilities,
    ServerInfo,
    StoreCounts,
    StoredFile,
    StoreInstancesResult,
    StudySummary,
)
from ._store import FileStore, SavedFile, uid_path
from ._summary import INSTANCE_FIELDS, METADATA_FIELDS, SERIES_FIELDS, STUDY_FIELDS, extra_fields, summarize
from ._validation import check_scope, normalize_date_range, validate_uid

__all__ = ["DicomWebOperations", "Progress"]

# progress, total (None when unknown), message
Progress = Callable[[float, float | None, str], Awaitable[None]]


async def _no_progress(progress: float, total: float | None, message: str) -> None:
    return None


Search = Callable[[int, int], Awaitable[QueryResult]]


class DicomWebOperations:
    def __init__(self, config: Config, client: DicomWebClient) -> None:
        self.config = config
        self.client = client
        self.store = FileStore(config.download_dir)

    # ---- search ---------------------------------------------------------------------------------

    @staticmethod
    def _match(
        explicit: Mapping[str, MatchValue | None], filters: Mapping[str, MatchValue] | None
    ) -> dict[str, MatchValue]:
        """Merge named arguments with ``filters``; the same attribute given twice is an error."""
        match: dict[str, MatchValue] = {}
        named = {keyword for keyword, value in explicit.items() if value is not None}
        for key, value in (filters or {}).items():
            attribute = resolve_attribute(key)
            if attribute.keyword in named:
                raise InvalidInputError(
                    f"{attribute.keyword} is given both as an argument and in filters: give it once."
                )
            match[key] = value
        match.update({k: v for k, v in explicit.items() if v is not None})
        return match

    async def _page(
        self,
        search: Search,
        match: Mapping[str, MatchValue],
        include_fields: Sequence[str],
        limit: int,
        offset: int,
    ) -> tuple[QueryResult, bool]:
        """Ask for one result more than the page, to know whether there are more, within the server's cap."""
        # Validate before the first request (finding the cap may mean asking the server what it is).
        build_query(match, include_fields=include_fields, limit=limit, offset=offset)
        cap = (await self.client.profile()).qido_limit_cap
        ask = limit + 1 if cap is None or limit + 1 <= cap else limit
        result = await search(ask, offset)
        has_more = len(result.datasets) > limit or (ask == limit and len(result.datasets) == limit)
        result.datasets = result.datasets[:limit]
        return result, has_more

    @staticmethod
    def _paging(result: QueryResult, has_more: bool, offset: int) -> dict[str, Any]:
        returned = len(result.datasets)
        return {
            "returned": returned,
            "offset": offset,
            "has_more": has_more,
            "next_offset": offset + returned if has_more else None,
            "warnings": result.warnings,
        }

    async def search_studies(
        self,
        *,
        patient_name: str | None = None,
        patient_id: str | None = None,
        study_date: str | None = None,
        accession_number: str | None = None,
        modality: str | None = None,
        study_description: str | None = None,
        referring_physician_name: str | None = None,
        study_uid: str | None = None,
        filters: Mapping[str, MatchValue] | None = None,
        include_fields: Sequence[str] = (),
        fuzzy: bool = False,
        limit: int = 25,
        offset: int = 0,
    ) -> SearchStudiesResult:
        match = self._match(
            {
                "PatientName": patient_name,
                "PatientID": patient_id,
                "StudyDate": normalize_date_range(study_date, "study_date") if study_date else None,
                "AccessionNumber": accession_number,
                "ModalitiesInStudy": modality,
                "StudyDescription": study_description,
                "ReferringPhysicianName": referring_physician_name,
                "StudyInstanceUID": validate_uid(study_uid, "study_uid") if study_uid else None,
            },
            filters,
        )
        # StudyDescription is not in the standard's default return set (Orthanc leaves it out).
        fields = ["StudyDescription", *include_fields]

        async def search(ask: int, at: int) -> QueryResult:
            return await self.client.search_studies(
                match, include_fields=fields, fuzzy=fuzzy, limit=ask, offset=at
            )

        result, has_more = await self._page(search, match, fields, limit, offset)
        results = [
            StudySummary(
                **summarize(d, STUDY_FIELDS),
                extra_fields=extra_fields(d, include_fields, STUDY_FIELDS.values()) or None,
            )
            for d in result.datasets
            if summarize(d, {"study_uid": "StudyInstanceUID"})
        ]
        return SearchStudiesResult(results=results, **self._paging(result, has_more, offset))

    async def search_series(
        self,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        modality: str | None = None,
        series_description: str | None = None,
        series_number: int | None = None,
        filters: Mapping[str, MatchValue] | None = None,
        include_fields: Sequence[str] = (),
        fuzzy: bool = False,
        limit: int = 25,
        offset: int = 0,
    ) -> SearchSeriesResult:
        match = self._match(
            {
                "SeriesInstanceUID": validate_uid(series_uid, "series_uid") if series_uid else None,
                "Modality": modality,
                "SeriesDescription": series_description,
                "SeriesNumber": series_number,
            },
            filters,
        )

        async def search(ask: int, at: int) -> QueryResult:
            return await self.client.search_series(
                match, study_uid=study_uid, include_fields=include_fields, fuzzy=fuzzy, limit=ask, offset=at
            )

        result, has_more = await self._page(search, match, include_fields, limit, offset)
        results = []
        for d in result.datasets:
            summary = summarize(d, SERIES_FIELDS)
            if "series_uid" not in summary:
                continue
            summary.setdefault("study_uid", study_uid)
            extras = extra_fields(d, include_fields, SERIES_FIELDS.values()) or None
            results.append(SeriesSummary(**summary, extra_fields=extras))
        return SearchSeriesResult(results=results, **self._paging(result, has_more, offset))

    async def search_instances(
        self,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        instance_uid: str | None = None,
        sop_class_uid: str | None = None,
        instance_number: int | None = None,
        filters: Mapping[str, MatchValue] | None = None,
        include_fields: Sequence[str] = (),
        fuzzy: bool = False,
        limit: int = 25,
        offset: int = 0,
    ) -> SearchInstancesResult:
        check_scope(study_uid, series_uid)
        match = self._match(
            {
                "SOPInstanceUID": validate_uid(instance_uid, "instance_uid") if instance_uid else None,
                "SOPClassUID": validate_uid(sop_class_uid, "sop_class_uid") if sop_class_uid else None,
                "InstanceNumber": instance_number,
            },
            filters,
        )

        async def search(ask: int, at: int) -> QueryResult:
            return await self.client.search_instances(
                match,
                study_uid=study_uid,
                series_uid=series_uid,
                include_fields=include_fields,
                fuzzy=fuzzy,
                limit=ask,
                offset=at,
            )

        result, has_more = await self._page(search, match, include_fields, limit, offset)
        results = []
        for d in result.datasets:
            summary = summarize(d, INSTANCE_FIELDS)
            if "instance_uid" not in summary:
                continue
            summary.setdefault("study_uid", study_uid)
            summary.setdefault("series_uid", series_uid)
            extras = extra_fields(d, include_fields, INSTANCE_FIELDS.values()) or None
            results.append(InstanceSummary(**summary, extra_fields=extras))
        return SearchInstancesResult(results=results, **self._paging(result, has_more, offset))

    # ---- retrieve -------------------------------------------------------------------------------

    @staticmethod
    def _level_file(
        directory: Path, study_uid: str, series_uid: str | None, instance_uid: str | None, name: str
    ) -> Path:
        """``{study}/{name}.json``, ``{study}/{series}/{name}.json`` or ``.../{instance}.{name}.json``."""
        if instance_uid is not None:
            return uid_path(directory, study_uid, series_uid, instance_uid, f".{name}.json")
        return uid_path(directory, study_uid, series_uid) / f"{name}.json"

    async def retrieve_instances(
        self,
        *,
        study_uid: str,
        series_uid: str | None = None,
        instance_uid: str | None = None,
        transfer_syntax: str = "*",
        output_dir: str | None = None,
        progress: Progress = _no_progress,
    ) -> RetrieveInstancesResult:
        directory = self.store.directory(output_dir)
        manifest = self._level_file(directory, study_uid, series_uid, instance_uid, "manifest")
        saved: list[SavedFile] = []
        total_bytes = 0

        async def on_saved(file: SavedFile) -> None:
            nonlocal total_bytes
            saved.append(file)
            total_bytes += file.size_bytes
            await progress(len(saved), None, f"{len(saved)} instances, {total_bytes / 1e6:.1f} MB saved")

        started = time.monotonic()
        try:
            async with self.client.stream_instances(
                study_uid, series_uid, instance_uid, transfer_syntax=transfer_syntax
            ) as reader:
                await self.store.save_instances(reader, directory, on_saved)
        except BaseException as exc:
            if not saved:
                raise
            # Whatever completed stays (each file is whole), and the manifest says exactly what that is.
            self._write_manifest(
                manifest, study_uid, saved, complete=False, error=str(exc) or type(exc).__name__
            )
            if isinstance(exc, DicomWebError):
                raise DicomWebError(
                    f"{exc} {len(saved)} complete files were kept; {manifest} lists them. "
                    "Call again to fetch everything."
                ) from exc
            raise
        self._write_manifest(manifest, study_uid, saved, complete=True, seconds=time.monotonic() - started)
        return RetrieveInstancesResult(
            directory=str(directory),
            files=[_saved_file(f) for f in saved[:MAX_LISTED_FILES]],
            file_count=len(saved),
            total_bytes=total_bytes,
            manifest=str(manifest),
        )

    def _write_manifest(
        self,
        path: Path,
        study_uid: str,
        saved: Sequence[SavedFile],
        *,
        complete: bool,
        error: str | None = None,
        seconds: float | None = None,
    ) -> None:
        self.store.write_json(
            path,
            {
                "study_uid": study_uid,
                "complete": complete,
                "error": error,
                "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "seconds": round(seconds, 3) if seconds is not None else None,
                "file_count": len(saved),
                "total_bytes": sum(f.size_bytes for f in saved),
                "files": [_saved_file(f).model_dump() for f in saved],
            },
        )

    async def retrieve_metadata(
        self, *, study_uid: str, series_uid: str | None = None, instance_uid: str | None = None
    ) -> RetrieveMetadataResult:
        datasets = await self.client.retrieve_metadata(study_uid, series_uid, instance_uid)
        path = self._level_file(self.store.directory(), study_uid, series_uid, instance_uid, "metadata")
        await anyio.to_thread.run_sync(self.store.write_json, path, datasets)
        summaries = [summarize(d, METADATA_FIELDS) for d in datasets]
        summaries = [s for s in summaries if "instance_uid" in s]
        summaries.sort(
            key=lambda s: (
                s.get("series_number") or 0,
                s.get("series_uid", ""),
                s.get("instance_number") or 0,
            )
        )
        return RetrieveMetadataResult(
            instances=[InstanceMetadata(**s) for s in summaries[:MAX_LISTED_FILES]],
            instance_count=len(summaries),
            metadata_file=str(path),
        )

    async def retrieve_frames(
        self,
        *,
        study_uid: str,
        series_uid: str,
        instance_uid: str,
        frames: Sequence[int],
        transfer_syntax: str = EXPLICIT_VR_LITTLE_ENDIAN,
    ) -> RetrieveFramesResult:
        directory = self.store.directory()
        async with self.client.stream_frames(
            study_uid, series_uid, instance_uid, frames, transfer_syntax=transfer_syntax
        ) as reader:
            saved = await self.store.save_frames(
                reader, directory, study_uid, series_uid, instance_uid, frames
            )
        return RetrieveFramesResult(
            files=[
                FrameFile(
                    frame=f.frame,
                    path=str(f.path),
                    content_type=f.content_type,
                    transfer_syntax_uid=f.transfer_syntax_uid,
                    size_bytes=f.size_bytes,
                )
                for f in saved
            ]
        )

    async def retrieve_rendered(
        self,
        *,
        study_uid: str,
        series_uid: str,
        instance_uid: str,
        frame: int | None = None,
        media_type: Literal["image/jpeg", "image/png"] = "image/jpeg",
        quality: int | None = None,
    ) -> RetrieveRenderedResult:
        image = await self.client.retrieve_rendered(
            study_uid, series_uid, instance_uid, frame=frame, media_type=media_type, quality=quality
        )
        extension = ".png" if image.media_type == "image/png" else ".jpg"
        base = self._level_file(self.store.directory(), study_uid, series_uid, instance_uid, "rendered")
        name = base.name.removesuffix(".json") + (f"-frame-{frame}" if frame else "") + extension
        path = base.with_name(name)
        await anyio.to_thread.run_sync(self.store.write_bytes, path, image.content)
        return RetrieveRenderedResult(
            path=str(path), content_type=image.media_type, size_bytes=len(image.content)
        )

    # ---- store / delete -------------------------------------------------------------------------

    async def store_instances(
        self,
        *,
        paths: Sequence[str],
        study_uid: str | None = None,
        encoding: Literal["multipart", "single-part"] = "multipart",
        progress: Progress = _no_progress,
    ) -> StoreInstancesResult:
        if not paths:
            raise InvalidInputError("paths is empty: give at least one DICOM file or directory.")
        if study_uid is not None:
            validate_uid(study_uid, "study_uid")
        files, skipped = await anyio.to_thread.run_sync(collect_dicom_files, paths, self.config.upload_roots)
        outcomes: list[StoreOutcome] = []
        sent: set[Path] = set()  # a retried request sends files again: count each once
        sent_bytes = 0
        total_bytes = sum(f.size for f in files)

        async def report() -> None:
            # Progress must increase with every report: count each file once when sent, once when answered.
            await progress(
                len(sent) + len(outcomes),
                2 * len(files),
                f"sent {len(sent)}/{len(files)} instances "
                f"({sent_bytes / 1e6:.1f}/{total_bytes / 1e6:.1f} MB); {len(outcomes)} answered",
            )

        async def on_sent(file: DicomFile) -> None:
            nonlocal sent_bytes
            if file.path not in sent:
                sent.add(file.path)
                sent_bytes += file.size
                await report()

        async def on_batch(batch: Sequence[StoreOutcome]) -> None:
            outcomes.extend(batch)
            await report()

        if files:
            await self.client.store_instances(
                files, study_uid=study_uid, encoding=encoding, on_batch=on_batch, on_sent=on_sent
            )
        by_status: dict[StoreStatus, list[StoredFile]] = {status: [] for status in StoreStatus}
        warnings: list[str] = []
        for outcome in outcomes:
            by_status[outcome.status].append(_stored_file(outcome.file, outcome))
            warnings.extend(f"{outcome.file.path.name}: {w}" for w in outcome.warnings)
        skipped_files = [StoredFile(path=str(s.path), reason=s.reason) for s in skipped]
        if not files:
            warnings.append("No DICOM files were found in the given paths; nothing was sent.")
        return StoreInstancesResult(
            stored=by_status[StoreStatus.STORED],
            already_present=by_status[StoreStatus.ALREADY_PRESENT],
            failed=by_status[StoreStatus.FAILED],
            skipped=skipped_files,
            counts=StoreCounts(
                stored=len(by_status[StoreStatus.STORED]),
                already_present=len(by_status[StoreStatus.ALREADY_PRESENT]),
                failed=len(by_status[StoreStatus.FAILED]),
                skipped=len(skipped_files),
            ),
            warnings=warnings,
        )

    async def delete_instances(
        self, *, study_uid: str, series_uid: str | None = None, instance_uid: str | None = None
    ) -> DeleteInstancesResult:
        result = await self.client.delete(study_uid, series_uid, instance_uid)
        return DeleteInstancesResult(
            deleted=True,
            level=result.level,
            study_uid=result.study_uid,
            series_uid=result.series_uid,
            instance_uid=result.instance_uid,
            method=result.method,
        )

    # ---- change feed / server -------------------------------------------------------------------

    async def get_change_feed(
        self,
        *,
        offset: int = 0,
        limit: int | None = None,
        include_metadata: bool = False,
        start_time: str | None = None,
        end_time: str | None = None,
        latest: bool = False,
    ) -> ChangeFeedResult:
        if latest:
            entry = await self.client.change_feed_latest(include_metadata=include_metadata)
            entries = [entry] if entry is not None else []
        else:
            entries = await self.client.change_feed(
                offset=offset,
                limit=limit,
                include_metadata=include_metadata,
                start_time=start_time,
                end_time=end_time,
            )
        metadata_file = None
        with_metadata = [e for e in entries if e.metadata]
        if include_metadata and with_metadata:
            first, last = entries[0].sequence, entries[-1].sequence
            path = self.store.directory() / "changefeed" / f"metadata-{first}-{last}.json"
            data = {str(e.sequence): e.metadata for e in with_metadata}
            await anyio.to_thread.run_sync(self.store.write_json, path, data)
            metadata_file = str(path)
        if latest or not entries:
            next_offset = None if latest else offset
        elif self.client.change_feed_version >= 2:
            next_offset = offset + len(entries)  # v2: the offset counts entries (within the time window)
        else:
            next_offset = max(e.sequence for e in entries)  # v1: the offset is the last sequence seen
        return ChangeFeedResult(
            entries=[
                ChangeFeedEntryInfo(
                    sequence=e.sequence,
                    timestamp=e.timestamp,
                    action=e.action,
                    state=e.state,
                    study_uid=e.study_uid,
                    series_uid=e.series_uid,
                    instance_uid=e.instance_uid,
                )
                for e in entries
            ],
            next_offset=next_offset,
            metadata_file=metadata_file,
        )

    async def server_info(self, *, delete_enabled: bool) -> ServerInfo:
        error = None
        try:
            profile = await self.client.profile()
            await self.client.search_studies(limit=1)
            reachable = True
        except DicomWebError as exc:
            reachable, error = False, str(exc)
            profile = self.client.assumed_profile()
        return ServerInfo(
            base_url=self.config.base_url,
            server_kind=profile.kind.value,
            auth=self.config.auth.value,
            reachable=reachable,
            error=error,
            capabilities=ServerCapabilities(
                delete=profile.delete_method != "unsupported",
                change_feed=profile.change_feed,
                rendered=profile.rendered,
                single_part_store=profile.single_part_store,
            ),
            download_dir=str(self.config.download_dir),
            read_only=self.config.read_only,
            delete_enabled=delete_enabled,
        )


def _saved_file(file: SavedFile) -> SavedInstanceFile:
    return SavedInstanceFile(
        path=str(file.path),
        study_uid=file.study_uid,
        series_uid=file.series_uid,
        instance_uid=file.instance_uid,
        size_bytes=file.size_bytes,
        transfer_syntax_uid=file.transfer_syntax_uid,
    )


def _stored_file(file: DicomFile, outcome: StoreOutcome) -> StoredFile:
    return StoredFile(
        path=str(file.path),
        study_uid=file.study_uid,
        series_uid=file.series_uid,
        instance_uid=file.instance_uid,
        reason_code=outcome.reason_code,
        reason=outcome.reason,
        warnings=outcome.warnings or None,
    )
