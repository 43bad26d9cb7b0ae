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
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from ..dicom.dicomjson import DicomJson, element_value
from ..dicom.reference import Reference
from ..dicomweb.client import DicomWebClient
from ..dicomweb.paths import transfer_syntax_value
from ..dicomweb.query import build_query
from ..errors import DicomWebError, NotDicomError, ProtocolError, local_file_error
from ..files.dicomfiles import DicomFile
from ..files.store import FileStore
from .context import Archive, Progress
from .deidentification import Deidentification, new_spool, remove_spool

__all__ = ["NEAR_SERVER_SECONDS", "Download", "Finish", "download_as_saved", "is_near"]

# What happens to each whole file once saved (de-identified, handed to a store); returns the file kept,
# None when it was left out (it says why in its own result).
Finish = Callable[[DicomFile], Awaitable[DicomFile | None]]
# A study with more series (a series with more instances) than one QIDO page returns comes in one GET:
# nothing is left out.
_MAX_LISTED_SERIES = 200
_MAX_LISTED_INSTANCES = 1000
# Below this many bytes of pixels per instance, one request each costs more round trips than it saves.
_LARGE_INSTANCE_BYTES = 256 * 1024
# A server that answered within this is on this machine or its LAN: one stream already runs at the speed
# of the disk, while over a WAN each connection is capped and several streams arrive sooner.
NEAR_SERVER_SECONDS = 0.005
_SIZE_FIELDS = ("Rows", "Columns", "NumberOfFrames", "BitsAllocated", "SamplesPerPixel")


def _pixel_bytes(dataset: DicomJson) -> int:
    """Pixel data size from the image attributes QIDO returned (0 when they are missing)."""
    try:
        rows, columns, frames, bits, samples = (element_value(dataset, name) for name in _SIZE_FIELDS)
        size = int(rows) * int(columns) * int(frames or 1) * int(samples or 1)
        return size * -(-int(bits or 8) // 8)
    except (TypeError, ValueError):
        return 0


def is_near(client: DicomWebClient) -> bool:
    """A server this near (on this machine or its LAN) takes and sends one stream as fast as this machine
    can read or write it: more requests at once only compete for its CPU."""
    reply = client.http.fastest_reply
    return reply is not None and reply < NEAR_SERVER_SECONDS


@dataclass
class Download:
    """One retrieve of ``reference`` into ``save_to``. Each whole file goes to ``finish`` when given;
    with a ``manifest`` path the files kept are listed there, complete or not."""

    client: DicomWebClient
    store: FileStore
    reference: Reference
    save_to: Path
    progress: Progress
    concurrency: int
    transfer_syntax: str = "*"
    finish: Finish | None = None
    manifest: Path | None = None
    # The study UID the kept files carry (a de-identified copy's new one), for the manifest.
    saved_study_uid: str | None = None
    # False: one GET, no series list first; for a caller that already runs several downloads at once.
    split: bool = True
    saved: list[DicomFile] = field(default_factory=list)
    saved_bytes: int = 0
    total: int | None = None  # instances expected, when the series list said

    async def run(self) -> None:
        """Save everything asked for; on any failure or cancellation keep what is whole and write a
        manifest that lists exactly that, then re-raise (a local write failure as ``LocalFileError``)."""
        transfer_syntax_value(self.transfer_syntax)  # refused before the first request
        started = time.monotonic()
        try:
            units = await self._plan() if self.split and self.reference.instance_uid is None else None
            if units:
                await self._in_parallel(units)
            else:
                await self._stream(self.reference)
        except BaseException as exc:
            self._fail(exc)
        if self.manifest is not None:
            self.write_manifest(complete=True, seconds=time.monotonic() - started)

    async def _plan(self) -> list[Reference] | None:
        """What to fetch in parallel: the study's series, or the instances of its one series when they
        are large; None for one GET. Only lists known to be whole are split: a list a server cut short
        (a QIDO limit, silent or not) would leave instances out of a download reported complete."""
        if self.reference.series_uid is not None and is_near(self.client):
            return None  # one series from a near server: one GET, and no list to ask for
        study = Reference(self.reference.study_uid)
        query = build_query(None, include_fields=["NumberOfSeriesRelatedInstances"], limit=_MAX_LISTED_SERIES)
        try:
            found = await self.client.search("series", query, study)
        except DicomWebError:
            return None  # a server that cannot list: the single GET still works
        counts: dict[str, Any] = {
            element_value(d, "SeriesInstanceUID"): element_value(d, "NumberOfSeriesRelatedInstances")
            for d in found.datasets
        }
        # A full page (or a page a server lowered, said in a warning) may not be the whole list.
        cap = self.client.assumed_profile().qido_limit_cap or _MAX_LISTED_SERIES
        whole = not found.warnings and len(found.datasets) < min(cap, _MAX_LISTED_SERIES)
        if not whole or not counts or not all(isinstance(uid, str) for uid in counts):
            return None
        if all(isinstance(count, int) for count in counts.values()):
            self.total = sum(counts.values())
        if self.reference.series_uid is None and len(counts) > 1:
            return [Reference(study.study_uid, uid) for uid in counts]
        series_uid = self.reference.series_uid or next(iter(counts))
        series, expected = Reference(study.study_uid, series_uid), counts.get(series_uid)
        # Known now if not before: the series list was an answer from the server.
        near = is_near(self.client)
        return await self._large_instances(series, expected) if expected and not near else None

    async def _large_instances(self, series: Reference, expected: int) -> list[Reference] | None:
        """The instances of a series of large images (a CT or MR series: one GET each, several at once,
        beats one stream over a WAN); None for small ones, where a request each would cost more, and for a
        list that does not hold the ``expected`` count the series reported."""
        query = build_query(None, include_fields=_SIZE_FIELDS, limit=_MAX_LISTED_INSTANCES)
        try:
            found = await self.client.search("instances", query, series)
        except DicomWebError:
            return None
        uids = [element_value(d, "SOPInstanceUID") for d in found.datasets]
        sizes = [_pixel_bytes(d) for d in found.datasets]
        if len(uids) < 2 or len(uids) != expected or found.warnings or 0 in sizes:
            return None
        if not all(isinstance(uid, str) for uid in uids) or sum(sizes) / len(sizes) < _LARGE_INSTANCE_BYTES:
            return None
        self.total = len(uids)
        return [Reference(series.study_uid, series.series_uid, uid) for uid in uids]

    async def _in_parallel(self, units: list[Reference]) -> None:
        failures: list[BaseException] = []
        limiter = anyio.Semaphore(self.concurrency)
        async with anyio.create_task_group() as group:

            async def fetch(unit: Reference) -> None:
                async with limiter:
                    try:
                        await self._stream(unit)
                    except Exception as exc:  # the first failure stops the others; it is the one reported
                        failures.append(exc)
                        group.cancel_scope.cancel()

            for unit in units:
                group.start_soon(fetch, unit)
        if failures:
            raise failures[0]

    async def _stream(self, unit: Reference) -> None:
        study_uid = self.reference.study_uid
        async with self.client.stream_instances(unit, transfer_syntax=self.transfer_syntax) as reader:
            async for part in reader:
                try:
                    file = await self.store.save_instance(part.aiter_bytes(), self.save_to, study_uid)
                except NotDicomError as exc:
                    raise ProtocolError(
                        f"The server sent a part that is not a usable DICOM file ({exc.reason}, "
                        f"{part.content_type or 'no Content-Type'}); {len(self.saved)} files before it were "
                        "saved."
                    ) from None
                kept = await self.finish(file) if self.finish is not None else file
                if kept is None:
                    continue
                self.saved.append(kept)
                self.saved_bytes += kept.size
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
                kept += f" under {self.manifest.parent} (the manifest could not be written)"
            if isinstance(failure, DicomWebError):
                failure.add_detail(f"{kept}. Call again to fetch everything.")
        if failure is exc:
            raise exc
        raise failure from exc

    def write_manifest(
        self, *, complete: bool, error: str | None = None, seconds: float | None = None
    ) -> None:
        if self.manifest is None:
            return
        data: dict[str, Any] = {
            "study_uid": self.saved_study_uid or self.reference.study_uid,
            "complete": complete,
            "error": error,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3) if seconds is not None else None,
            "file_count": len(self.saved),
            "total_bytes": self.saved_bytes,
            "files": [f.manifest_entry() for f in self.saved],
        }
        self.store.write_json(self.manifest, data)


async def download_as_saved(
    archive: Archive,
    store: FileStore,
    reference: Reference,
    directory: Path,
    deidentification: Deidentification | None,
    progress: Progress,
    *,
    transfer_syntax: str = "*",
    split: bool = True,
) -> Download:
    """``reference`` saved under ``directory`` by its UIDs, new ones when de-identified, with its manifest
    of files. De-identified, each file is written to a spool, de-identified into the directory under its
    new UIDs (the same in every call), and removed: no file or directory name carries a source UID."""
    saved_as = deidentification.reference(reference) if deidentification else reference
    spool = new_spool(store, "download") if deidentification else None
    download = Download(
        archive.client,
        store,
        reference,
        spool or directory,
        progress,
        archive.config.concurrency,
        transfer_syntax,
        finish=partial(deidentification.apply, target_dir=directory) if deidentification else None,
        manifest=saved_as.level_file(directory, "manifest"),
        saved_study_uid=saved_as.study_uid,
        split=split,
    )
    try:
        await download.run()
    finally:
        if spool is not None:
            await remove_spool(spool)
    return download
