"""Downloading a study, series or instance to whole files, with a manifest that is always true.

A study with several series is fetched one GET per series, several at once: over a WAN each connection
runs at its own rate, so eight series in parallel arrive up to eight times sooner than one stream. The
series list costs one QIDO request; where it cannot be had, the study comes in one GET as before.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from ..dicomweb.client import DicomWebClient
from ..dicomweb.paths import level_path, transfer_syntax_value
from ..errors import DicomWebError, NotDicomError, ProtocolError, local_file_error
from ..files.store import FileStore, SavedFile, uid_path
from .summary import SERIES_FIELDS, summarize

__all__ = ["Download", "Progress"]

# progress, total (None when unknown), message
Progress = Callable[[float, float | None, str], Awaitable[None]]
# A study with more series than one QIDO page returns comes in one GET: nothing is left out.
_MAX_LISTED_SERIES = 200


@dataclass
class Download:
    client: DicomWebClient
    store: FileStore
    directory: Path
    manifest: Path
    study_uid: str
    progress: Progress
    concurrency: int
    saved: list[SavedFile] = field(default_factory=list)
    saved_bytes: int = 0
    total: int | None = None  # instances expected, when the series list said

    async def run(self, series_uid: str | None, instance_uid: str | None, transfer_syntax: str) -> None:
        """Save everything asked for; on any failure or cancellation keep what is whole and write a
        manifest that lists exactly that, then re-raise (a local write failure as ``LocalFileError``)."""
        # Refuse bad input before the first request, the series list included.
        level_path(self.study_uid, series_uid, instance_uid)
        transfer_syntax_value(transfer_syntax)
        started = time.monotonic()
        try:
            series = await self._series() if series_uid is None else None
            if series and len(series) > 1:
                await self._in_parallel(series, transfer_syntax)
            else:
                await self._stream(series_uid, instance_uid, transfer_syntax)
        except BaseException as exc:
            self._fail(exc)
        self.write_manifest(complete=True, seconds=time.monotonic() - started)

    async def _series(self) -> list[str] | None:
        """The study's series UIDs (and the instance count, for progress), or None to use one GET."""
        try:
            found = await self.client.search_series(
                study_uid=self.study_uid,
                limit=_MAX_LISTED_SERIES,
                include_fields=["NumberOfSeriesRelatedInstances"],
            )
        except DicomWebError:
            return None  # a server that cannot list: the single GET still works
        summaries = [summarize(d, SERIES_FIELDS) for d in found.datasets]
        uids = [s["series_uid"] for s in summaries if "series_uid" in s]
        if len(uids) != len(found.datasets) or len(uids) >= _MAX_LISTED_SERIES:
            return None
        counts = [s.get("number_of_instances") for s in summaries]
        if all(isinstance(c, int) for c in counts):
            self.total = sum(counts)  # type: ignore[arg-type]
        return uids

    async def _in_parallel(self, series: list[str], transfer_syntax: str) -> None:
        failures: list[BaseException] = []
        limiter = anyio.Semaphore(self.concurrency)
        async with anyio.create_task_group() as group:

            async def fetch(series_uid: str) -> None:
                async with limiter:
                    try:
                        await self._stream(series_uid, None, transfer_syntax)
                    except Exception as exc:  # the first failure stops the others; it is the one reported
                        failures.append(exc)
                        group.cancel_scope.cancel()

            for series_uid in series:
                group.start_soon(fetch, series_uid)
        if failures:
            raise failures[0]

    async def _stream(self, series_uid: str | None, instance_uid: str | None, transfer_syntax: str) -> None:
        async with self.client.stream_instances(
            self.study_uid, series_uid, instance_uid, transfer_syntax=transfer_syntax
        ) as reader:
            async for part in reader:
                try:
                    record = await self.store.save_instance(part.aiter_bytes(), self.directory)
                except NotDicomError as exc:
                    raise ProtocolError(
                        f"The server sent a part that is not a usable DICOM file ({exc.reason}, "
                        f"{part.content_type or 'no Content-Type'}); {len(self.saved)} files before it were "
                        "saved."
                    ) from None
                self.saved.append(record)
                self.saved_bytes += record.size_bytes
                done = f"{len(self.saved)} instances, {self.saved_bytes / 1e6:.1f} MB saved"
                await self.progress(len(self.saved), self.total, done)

    def _fail(self, exc: BaseException) -> None:
        failure: BaseException = local_file_error(exc) if isinstance(exc, OSError) else exc
        if self.saved:
            # Whatever completed stays (each file is whole), and the manifest says exactly what that is.
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            reason = "cancelled by the client" if cancelled else str(failure) or type(exc).__name__
            kept = f"{len(self.saved)} complete files were kept"
            try:
                self.write_manifest(complete=False, error=reason)
                kept += f"; {self.manifest} lists them"
            except OSError:
                kept += f" under {self.directory} (the manifest could not be written)"
            if isinstance(failure, DicomWebError):
                failure.add_detail(f"{kept}. Call again to fetch everything.")
        if failure is exc:
            raise exc
        raise failure from exc

    def write_manifest(
        self, *, complete: bool, error: str | None = None, seconds: float | None = None
    ) -> None:
        data: dict[str, Any] = {
            "study_uid": self.study_uid,
            "complete": complete,
            "error": error,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3) if seconds is not None else None,
            "file_count": len(self.saved),
            "total_bytes": self.saved_bytes,
            "files": [f.model_dump() for f in self.saved],
        }
        self.store.write_json(self.manifest, data)

    @property
    def study_directory(self) -> Path:
        return uid_path(self.directory, self.study_uid)
