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

__all__ = ["NEAR_SERVER_SECONDS", "Download", "Finish", "Progress", "is_near"]

# progress, total (None when unknown), message
Progress = Callable[[float, float | None, str], Awaitable[None]]
# What happens to each whole file once saved (de-identified, handed to a store); returns the file kept,
# None when it was left out (it says why in its own result).
Finish = Callable[[SavedFile], Awaitable[SavedFile | None]]
# A study with more series (a series with more instances) than one QIDO page returns comes in one GET:
# nothing is left out.
_MAX_LISTED_SERIES = 200
_MAX_LISTED_INSTANCES = 1000
# Below this many bytes of pixels per instance, one request each costs more round trips than it saves.
_LARGE_INSTANCE_BYTES = 256 * 1024
# A server that answered within this is on this machine or its LAN: one stream already runs at the speed
# of the disk (measured on loopback: a 1 GB series 20% slower split than in one GET), while over a WAN each
# connection is capped and eight streams arrive several times sooner.
NEAR_SERVER_SECONDS = 0.005
_INSTANCE_SIZE = {
    "instance_uid": "SOPInstanceUID",
    "rows": "Rows",
    "columns": "Columns",
    "frames": "NumberOfFrames",
    "bits": "BitsAllocated",
    "samples": "SamplesPerPixel",
}
_SIZE_FIELDS = ["Rows", "Columns", "NumberOfFrames", "BitsAllocated", "SamplesPerPixel"]


def _pixel_bytes(summary: dict[str, Any]) -> int:
    """Pixel data size from the image attributes QIDO returned (0 when they are missing)."""
    try:
        rows, columns = int(summary["rows"]), int(summary["columns"])
        frames, samples = int(summary.get("frames") or 1), int(summary.get("samples") or 1)
        return rows * columns * frames * samples * -(-int(summary.get("bits") or 8) // 8)
    except (KeyError, TypeError, ValueError):
        return 0


def is_near(client: DicomWebClient) -> bool:
    """A server this near (on this machine or its LAN) takes and sends one stream as fast as this machine
    can read or write it: more requests at once only compete for its CPU."""
    reply = client.http.fastest_reply
    return reply is not None and reply < NEAR_SERVER_SECONDS


@dataclass
class Download:
    client: DicomWebClient
    store: FileStore
    directory: Path
    manifest: Path | None  # None: a spool, not kept (a transfer)
    study_uid: str
    progress: Progress
    concurrency: int
    finish: Finish | None = None
    # Where parts are written first when ``finish`` moves them on (a spool); else ``directory``.
    save_to: Path | None = None
    # The study UID the saved files carry (a de-identified copy's), for the manifest and the directory.
    saved_study_uid: str | None = None
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
            units = await self._units(series_uid) if instance_uid is None else None
            if units:
                await self._in_parallel(units, transfer_syntax)
            else:
                await self._stream(series_uid, instance_uid, transfer_syntax)
        except BaseException as exc:
            self._fail(exc)
        if self.manifest is not None:
            self.write_manifest(complete=True, seconds=time.monotonic() - started)

    async def _units(self, series_uid: str | None) -> list[tuple[str, str | None]] | None:
        """What to fetch in parallel: the study's series, or the instances of its one series when they
        are large; None for one GET. Only lists known to be whole are split: a list a server cut short
        (a QIDO limit, silent or not) would leave instances out of a download reported complete."""
        if series_uid is not None and self._near():
            return None  # one series from a near server: one GET, and no list to ask for
        series = await self._series()
        if series is None:
            return None
        if series_uid is None and len(series) > 1:
            return [(uid, None) for uid in series]
        wanted = series_uid or next(iter(series))
        expected = series.get(wanted)
        return await self._large_instances(wanted, expected) if expected else None

    async def _large_instances(self, series_uid: str, expected: int) -> list[tuple[str, str | None]] | None:
        """The instances of a series of large images (a CT or MR series: one GET each, several at once,
        beats one stream over a WAN); None for small ones, where a request each would cost more, and for a
        list that does not hold the ``expected`` count the series reported."""
        if self._near():
            return None
        try:
            found = await self.client.search_instances(
                study_uid=self.study_uid,
                series_uid=series_uid,
                limit=_MAX_LISTED_INSTANCES,
                include_fields=_SIZE_FIELDS,
            )
        except DicomWebError:
            return None
        summaries = [summarize(d, _INSTANCE_SIZE) for d in found.datasets]
        sizes = [_pixel_bytes(s) for s in summaries]
        uids = [s.get("instance_uid") for s in summaries]
        if len(uids) < 2 or len(uids) != expected or found.warnings or None in uids or 0 in sizes:
            return None
        if sum(sizes) / len(sizes) < _LARGE_INSTANCE_BYTES:
            return None
        self.total = len(uids)
        return [(series_uid, str(uid)) for uid in uids]

    def _near(self) -> bool:
        return is_near(self.client)

    async def _series(self) -> dict[str, int | None] | None:
        """The study's series UIDs with their instance counts, or None to use one GET."""
        try:
            found = await self.client.search_series(
                study_uid=self.study_uid,
                limit=_MAX_LISTED_SERIES,
                include_fields=["NumberOfSeriesRelatedInstances"],
            )
        except DicomWebError:
            return None  # a server that cannot list: the single GET still works
        summaries = [summarize(d, SERIES_FIELDS) for d in found.datasets]
        # A full page (or a page a server lowered, said in a warning) may not be the whole list.
        cap = self.client.assumed_profile().qido_limit_cap or _MAX_LISTED_SERIES
        if found.warnings or len(summaries) >= min(cap, _MAX_LISTED_SERIES):
            return None
        if any("series_uid" not in s for s in summaries) or not summaries:
            return None
        counts = {s["series_uid"]: s.get("number_of_instances") for s in summaries}
        if all(isinstance(c, int) for c in counts.values()):
            self.total = sum(counts.values())  # type: ignore[arg-type]
        return counts

    async def _in_parallel(self, units: list[tuple[str, str | None]], transfer_syntax: str) -> None:
        failures: list[BaseException] = []
        limiter = anyio.Semaphore(self.concurrency)
        async with anyio.create_task_group() as group:

            async def fetch(series_uid: str, instance_uid: str | None) -> None:
                async with limiter:
                    try:
                        await self._stream(series_uid, instance_uid, transfer_syntax)
                    except Exception as exc:  # the first failure stops the others; it is the one reported
                        failures.append(exc)
                        group.cancel_scope.cancel()

            for series_uid, instance_uid in units:
                group.start_soon(fetch, series_uid, instance_uid)
        if failures:
            raise failures[0]

    async def _stream(self, series_uid: str | None, instance_uid: str | None, transfer_syntax: str) -> None:
        async with self.client.stream_instances(
            self.study_uid, series_uid, instance_uid, transfer_syntax=transfer_syntax
        ) as reader:
            async for part in reader:
                try:
                    record = await self.store.save_instance(
                        part.aiter_bytes(), self.save_to or self.directory, self.study_uid
                    )
                except NotDicomError as exc:
                    raise ProtocolError(
                        f"The server sent a part that is not a usable DICOM file ({exc.reason}, "
                        f"{part.content_type or 'no Content-Type'}); {len(self.saved)} files before it were "
                        "saved."
                    ) from None
                if self.finish is not None:
                    finished = await self.finish(record)
                    if finished is None:
                        continue
                    record = finished
                self.saved.append(record)
                self.saved_bytes += record.size_bytes
                done = f"{len(self.saved)} instances, {self.saved_bytes / 1e6:.1f} MB saved"
                await self.progress(len(self.saved), self.total, done)

    def _fail(self, exc: BaseException) -> None:
        failure: BaseException = local_file_error(exc) if isinstance(exc, OSError) else exc
        if self.saved and self.manifest is not None:
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
            "study_uid": self.saved_study_uid or self.study_uid,
            "complete": complete,
            "error": error,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3) if seconds is not None else None,
            "file_count": len(self.saved),
            "total_bytes": self.saved_bytes,
            "files": [f.model_dump() for f in self.saved],
        }
        if self.manifest is not None:
            self.store.write_json(self.manifest, data)

    @property
    def study_directory(self) -> Path:
        return uid_path(self.directory, self.saved_study_uid or self.study_uid)
