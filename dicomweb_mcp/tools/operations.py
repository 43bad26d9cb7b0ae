"""What each tool does, as plain async code over the client, the summarizer and the file store.

No MCP here: the server module adapts these to tools (arguments, progress, errors). Every method
validates its input before the first request and raises ``DicomWebError``s with actionable messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import anyio

from ..config import Config
from ..dicom.validation import validate_uid
from ..dicomweb.client import DicomWebClient
from ..dicomweb.models import EXPLICIT_VR_LITTLE_ENDIAN, DeleteResult, StoreOutcome, StoreStatus
from ..errors import DicomWebError, InvalidInputError, PolicyError, ProtocolError
from ..files.dicomfiles import DicomFile, collect_dicom_files
from ..files.store import FileStore, SavedFrame, uid_path
from .deidentification import SPOOLS, Deidentification, remove_spool
from .download import Download, Progress
from .overview import Overviews
from .reports import Reports
from .results import (
    MAX_LISTED_FILES,
    MAX_LISTED_PROBLEMS,
    ChangeFeedResult,
    FileProblem,
    InstanceMetadata,
    RetrieveFramesResult,
    RetrieveInstancesResult,
    RetrieveMetadataResult,
    ServerCapabilities,
    ServerInfo,
    StoreCounts,
    StoreInstancesResult,
)
from .search import Searches
from .summary import METADATA_FIELDS, summarize

__all__ = ["DicomWebOperations", "Progress"]


async def _no_progress(progress: float, total: float | None, message: str) -> None:
    return None


class DicomWebOperations(Searches, Overviews, Reports):
    """Every tool's work. Looking (retrieve_rendered, get_study_overview) and reading (read_report) come
    from their own modules."""

    def __init__(self, config: Config, client: DicomWebClient) -> None:
        super().__init__(client)
        self.config = config
        self.store = FileStore(config.download_dir)

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
        deidentify: bool = False,
        progress: Progress = _no_progress,
    ) -> RetrieveInstancesResult:
        directory = self.store.directory(output_dir)
        deidentification = Deidentification(self.config) if deidentify else None
        download = Download(
            self.client,
            self.store,
            directory,
            self._level_file(directory, study_uid, series_uid, instance_uid, "manifest"),
            study_uid,
            progress,
            self.config.concurrency,
        )
        spool = None
        if deidentification is not None:
            # Each file is written to a spool, de-identified into the directory under its new UIDs (the
            # same in every call), and removed: no file or directory name carries a source UID.
            new = [
                deidentification.uid(uid) if uid else None for uid in (study_uid, series_uid, instance_uid)
            ]
            spool = self.store.directory() / SPOOLS[0] / uuid.uuid4().hex
            download.manifest = self._level_file(directory, new[0] or study_uid, new[1], new[2], "manifest")
            download.saved_study_uid = new[0]
            download.save_to = spool
            download.finish = lambda record: deidentification.apply(record, directory)
        try:
            await download.run(series_uid, instance_uid, transfer_syntax)
        finally:
            if spool is not None:
                await remove_spool(spool)
        saved, study_directory = download.saved, download.study_directory
        return RetrieveInstancesResult(
            directory=str(study_directory),
            file_count=len(saved),
            total_bytes=download.saved_bytes,
            files=[str(Path(f.path).relative_to(study_directory)) for f in saved[:MAX_LISTED_FILES]],
            manifest=str(download.manifest),
            warnings=deidentification.summary() or None if deidentification is not None else None,
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
        base = uid_path(self.store.directory(), study_uid, series_uid, instance_uid)
        saved: list[SavedFrame] = []
        async with self.client.stream_frames(
            study_uid, series_uid, instance_uid, frames, transfer_syntax=transfer_syntax
        ) as reader:
            async for part in reader:
                if len(saved) >= len(frames):
                    raise ProtocolError(f"The server sent more frames than the {len(frames)} asked for.")
                number = part.frame_number or frames[len(saved)]
                saved.append(
                    await self.store.save_frame(
                        part.aiter_bytes(), base, number, part.media_type, part.transfer_syntax_uid
                    )
                )
        if len(saved) != len(frames):
            raise ProtocolError(f"The server sent {len(saved)} frames for the {len(frames)} asked for.")
        return RetrieveFramesResult(
            directory=str(base.parent),
            frame_count=len(saved),
            total_bytes=sum(f.size_bytes for f in saved),
            files=[Path(f.path).name for f in saved[:MAX_LISTED_FILES]],
            content_type=saved[0].content_type,
            transfer_syntax_uid=saved[0].transfer_syntax_uid,
        )

    # ---- store / delete -------------------------------------------------------------------------

    def refuse_if_read_only(self) -> None:
        if self.config.read_only:
            raise PolicyError(
                f"Server {self.config.name!r} is read-only: nothing can be stored there (the operator's "
                "read_only setting). Choose a writable server."
            )

    async def store_instances(
        self,
        *,
        paths: Sequence[str],
        study_uid: str | None = None,
        encoding: Literal["multipart", "single-part"] = "multipart",
        progress: Progress = _no_progress,
    ) -> StoreInstancesResult:
        self.refuse_if_read_only()
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
        by_status: dict[StoreStatus, list[StoreOutcome]] = {status: [] for status in StoreStatus}
        warnings: list[str] = []
        for outcome in outcomes:
            by_status[outcome.status].append(outcome)
            warnings.extend(f"{outcome.file.path.name}: {w}" for w in outcome.warnings)
        if not files:
            warnings.append("No DICOM files were found in the given paths; nothing was sent.")
        stored, present = by_status[StoreStatus.STORED], by_status[StoreStatus.ALREADY_PRESENT]
        failed = by_status[StoreStatus.FAILED]
        return StoreInstancesResult(
            counts=StoreCounts(
                stored=len(stored), already_present=len(present), failed=len(failed), skipped=len(skipped)
            ),
            study_uids=sorted({o.file.study_uid for o in stored + present}),
            stored=[str(o.file.path) for o in stored[:MAX_LISTED_FILES]],
            already_present=[str(o.file.path) for o in present[:MAX_LISTED_FILES]],
            failed=[
                FileProblem(path=str(o.file.path), reason=o.reason or "refused", reason_code=o.reason_code)
                for o in failed[:MAX_LISTED_PROBLEMS]
            ],
            skipped=[FileProblem(path=str(f.path), reason=f.reason) for f in skipped[:MAX_LISTED_PROBLEMS]],
            warnings=warnings[:MAX_LISTED_PROBLEMS],
        )

    async def delete_instances(
        self, *, study_uid: str, series_uid: str | None = None, instance_uid: str | None = None
    ) -> DeleteResult:
        if not self.config.delete_enabled:
            raise PolicyError(
                f"Deletion is switched off for server {self.config.name!r}: the operator allows it with "
                "allow_delete (and not read_only) for that server."
            )
        return await self.client.delete(study_uid, series_uid, instance_uid)

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
            entries=entries,
            next_offset=next_offset,
            metadata_file=metadata_file,
        )

    async def server_info(
        self, *, probe: bool = True, others: Sequence[DicomWebOperations] = ()
    ) -> ServerInfo:
        """This server's settings and, when probed, whether it answers and what it supports; ``others``
        (the other configured servers) are listed beside it, probed at the same time."""
        infos: list[ServerInfo | None] = [None] * (1 + len(others))

        async def describe(index: int, operations: DicomWebOperations) -> None:
            infos[index] = await operations._describe(probe)

        async with anyio.create_task_group() as group:
            for index, operations in enumerate([self, *others]):
                group.start_soon(describe, index, operations)
        first, *rest = (info for info in infos if info is not None)
        return first.model_copy(update={"servers": rest or None})

    async def _describe(self, probe: bool) -> ServerInfo:
        error = None
        reachable: bool | None = None  # not asked
        profile = self.client.assumed_profile()
        if probe:
            try:
                profile = await self.client.profile()
                await self.client.search_studies(limit=1)
                reachable = True
            except DicomWebError as exc:
                reachable, error = False, str(exc)
        return ServerInfo(
            name=self.config.name,
            base_url=self.config.base_url,
            server_kind=profile.kind.value,
            auth=self.config.auth.value,
            reachable=reachable,
            error=error,
            # Only a server that answered has capabilities to speak of.
            capabilities=ServerCapabilities(
                delete=profile.delete_method != "unsupported",
                change_feed=profile.change_feed != "none",
                rendered=profile.rendered,
                single_part_store=profile.single_part_store,
            )
            if reachable
            else None,
            download_dir=str(self.config.download_dir),
            read_only=self.config.read_only,
            delete_enabled=self.config.delete_enabled,
        )
