"""Server to server: WADO-RS from the source streamed into STOW-RS at the destination.

Instances are retrieved as a download is (several series at once from a far server), each written whole to
a spool under the download directory, optionally de-identified there, and sent on in batches while the
retrieve goes on. Memory stays at a few network chunks per connection; the spool holds at most
``SPOOL_BYTES`` (plus one instance per retrieving connection) and is removed at the end. Running the
same transfer again stores nothing twice: the destination reports the instances as already present
(de-identified copies keep their new UIDs across calls).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio

from ..dicom.reference import Reference
from ..dicomweb.models import StoreOutcome, StoreStatus
from ..dicomweb.stow import group_by_status
from ..errors import DicomWebError, HTTPStatusError
from ..files.dicomfiles import DicomFile
from ..files.store import FileStore
from .context import Archive, Progress
from .deidentification import Deidentification, new_spool, remove_spool
from .download import Download, is_near
from .results import MAX_LISTED_PROBLEMS, TransferCounts, TransferProblem, TransferResult

__all__ = ["SPOOL_BYTES", "Transfer"]

# Temporary disk a transfer may fill before it waits for the destination to take batches.
SPOOL_BYTES = 256 * 1024 * 1024
# A batch (one STOW request) holds a few instances, so that the destination's concurrency keeps its
# connections busy while the retrieve goes on: over a WAN each connection has its own rate, and near
# servers take several requests at once too (the README's transfer figures).
_FAR_BATCH_COUNT = 3
_NEAR_BATCH_COUNT = 7
_BATCH_BYTES = 32 * 1024 * 1024


@dataclass
class Transfer:
    source: Archive
    destination: Archive
    store: FileStore
    progress: Progress
    concurrency: int  # retrieving connections at once
    deidentification: Deidentification | None = None
    spool_bytes: int = SPOOL_BYTES
    split: bool = True  # see Download.split
    retrieved: int = 0
    retrieved_bytes: int = 0
    peak_spooled: int = 0  # the most bytes the spool held at once
    left_out: list[StoreOutcome] = field(default_factory=list)  # not de-identified, so never sent

    async def run(self, reference: Reference) -> TransferResult:
        spool = new_spool(self.store, "transfer")
        self._spooled = 0  # bytes on disk, waiting or being sent
        self._released = anyio.Event()
        failure: DicomWebError | None = None
        near = is_near(self.destination.client)
        try:
            async with self.destination.client.storing(
                batch_count=_NEAR_BATCH_COUNT if near else _FAR_BATCH_COUNT,
                batch_bytes=_BATCH_BYTES,
                on_batch=self._answered,
            ) as self._stow:
                download = Download(
                    self.source.client,
                    self.store,
                    reference,
                    spool,
                    self._report_retrieved,
                    self.concurrency,
                    finish=lambda file: self._spooled_file(file, spool / "out"),
                    split=self.split,
                )
                try:
                    await download.run()
                except DicomWebError as exc:
                    failure = exc  # what was retrieved whole still goes to the destination
        finally:
            await remove_spool(spool)
        result = self._result()
        if failure is not None:
            counts = result.counts
            failure.add_detail(
                f"The transfer stopped: {counts.stored} instances were stored at {self.destination.name!r} "
                f"and {counts.already_present} were there already before it did. Call again to complete "
                "it: instances already stored are not sent twice."
            )
            raise failure
        return result

    async def _report_retrieved(self, done: float, total: float | None, message: str) -> None:
        await self._report()

    async def _report(self) -> None:
        answered = len(self._stow.outcomes)
        await self.progress(
            self.retrieved + answered,
            None,
            f"retrieved {self.retrieved} instances ({self.retrieved_bytes / 1e6:.1f} MB); "
            f"{answered} answered by {self.destination.name!r}",
        )

    async def _spooled_file(self, file: DicomFile, out: Path) -> DicomFile | None:
        """A whole retrieved file: de-identify it if asked, then queue it for the destination, waiting while
        the spool is full."""
        if self._stow.stopped is not None:
            raise self._stow.stopped  # the destination cannot take more: stop retrieving
        if self.deidentification is not None:
            copy = await self.deidentification.apply(file, out)
            if copy is None:
                # Left out, never sent as it is; reported under the new UID it would have had.
                self.retrieved += 1
                failed = replace(file, instance_uid=self.deidentification.uid(file.instance_uid))
                reason = f"not de-identified: {self.deidentification.failures[-1]}"
                self.left_out.append(StoreOutcome(failed, StoreStatus.FAILED, reason=reason))
                return None
            file = copy
        while self._spooled and self._spooled + file.size > self.spool_bytes:
            self._stow.flush()  # what waits goes out, so that something is released
            await self._released.wait()
        self._spooled += file.size
        self.peak_spooled = max(self.peak_spooled, self._spooled)
        self.retrieved += 1
        self.retrieved_bytes += file.size
        self._stow.add(file)
        return file

    async def _answered(self, batch: Sequence[StoreOutcome]) -> None:
        """A batch is answered: its spool files go, and a retrieve waiting for room goes on."""
        await anyio.to_thread.run_sync(_remove, [o.file for o in batch])
        self._spooled -= sum(o.file.size for o in batch)
        self._released.set()
        self._released = anyio.Event()
        await self._report()

    @property
    def retry_after(self) -> float | None:
        """The longest wait a throttled destination asked for, in a refusal that failed instances."""
        asked = [
            e.retry_after for o in self._stow.outcomes if (e := o.error) and isinstance(e, HTTPStatusError)
        ]
        return max((a for a in asked if a is not None), default=None)

    def _result(self) -> TransferResult:
        outcomes = [*self.left_out, *self._stow.outcomes]
        by_status = group_by_status(outcomes)
        stored, present = by_status[StoreStatus.STORED], by_status[StoreStatus.ALREADY_PRESENT]
        failed = by_status[StoreStatus.FAILED]
        warnings = [f"{o.file.instance_uid}: {w}" for o in outcomes for w in o.warnings]
        if self.deidentification is not None:
            warnings = self.deidentification.summary() + warnings
        return TransferResult(
            source=self.source.name,
            destination=self.destination.name,
            deidentified=self.deidentification is not None,
            counts=TransferCounts(
                retrieved=self.retrieved, stored=len(stored), already_present=len(present), failed=len(failed)
            ),
            total_bytes=self.retrieved_bytes,
            study_uids=sorted({o.file.study_uid for o in stored + present}),
            failed=[
                TransferProblem(instance_uid=o.file.instance_uid, reason=o.reason or "refused")
                for o in failed[:MAX_LISTED_PROBLEMS]
            ],
            warnings=warnings[:MAX_LISTED_PROBLEMS],
        )


def _remove(files: list[DicomFile]) -> None:
    for file in files:
        file.path.unlink(missing_ok=True)
