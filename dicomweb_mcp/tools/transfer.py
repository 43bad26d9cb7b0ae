"""Server to server: WADO-RS from the source streamed into STOW-RS at the destination.

Instances are retrieved as a download is (several series at once from a far server), each written whole to
a spool under the download directory, optionally de-identified there, and sent on in batches while the
retrieve goes on. Memory stays at a few network chunks per connection; the spool holds at most
``SPOOL_BYTES`` (plus one instance per retrieving connection) and is removed at the end. Running the
same transfer again stores nothing twice: the destination reports the instances as already present
(de-identified copies keep their new UIDs across calls).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio

from ..dicomweb.models import StoreOutcome, StoreStatus
from ..errors import DicomWebError, InvalidInputError
from ..files.dicomfiles import DicomFile
from ..files.store import FileStore, SavedFile
from .deidentification import SPOOLS, Deidentification, remove_spool
from .download import Download, Progress, is_near
from .operations import DicomWebOperations
from .results import MAX_LISTED_PROBLEMS, TransferCounts, TransferProblem, TransferResult

__all__ = ["SPOOL_BYTES", "Transfer", "transfer_instances"]

# Temporary disk a transfer may fill before it waits for the destination to take batches.
SPOOL_BYTES = 256 * 1024 * 1024
# A batch of a transfer (one STOW call, itself sent as several requests at once). To a far server small
# enough to start sending soon and end with a short tail; to a near one large, as fewer calls cost less.
_FAR_BATCH_COUNT = 24
_NEAR_BATCH_COUNT = 50
_BATCH_BYTES = 32 * 1024 * 1024
_FAR_SENDERS = 3


@dataclass
class Transfer:
    source: DicomWebOperations
    destination: DicomWebOperations
    progress: Progress
    deidentification: Deidentification | None = None
    spool_bytes: int = SPOOL_BYTES
    outcomes: list[StoreOutcome] = field(default_factory=list)
    retrieved: int = 0
    retrieved_bytes: int = 0
    peak_spooled: int = 0  # the most bytes the spool held at once

    def __post_init__(self) -> None:
        self._pending: list[DicomFile] = []
        self._spooled = 0  # bytes on disk, waiting or being sent
        self._released = anyio.Event()
        # Batches in flight at once. Over a WAN three overlap each other's round trips and tails (200 MB
        # at 40 ms RTT: 4.6 s against 5.7 s with one); to a near server one is faster, since more only
        # compete for the CPU (1.7 s against 2.1 s on loopback).
        self._senders = anyio.CapacityLimiter(_FAR_SENDERS)
        self._stopped: DicomWebError | None = None

    async def run(self, study_uid: str, series_uid: str | None, instance_uid: str | None) -> TransferResult:
        self.destination.refuse_if_read_only()
        if self.source is self.destination and self.deidentification is None:
            raise InvalidInputError(
                f"source and destination are both {self.source.config.name!r}: a transfer there would copy "
                "every instance onto itself. Name another destination, or set deidentify=true for a "
                "de-identified copy."
            )
        store = FileStore(self.source.config.download_dir)
        spool = store.directory() / SPOOLS[1] / uuid.uuid4().hex
        failure: DicomWebError | None = None
        try:
            async with anyio.create_task_group() as self._group:
                download = Download(
                    self.source.client,
                    store,
                    spool,
                    None,
                    study_uid,
                    self._report_retrieved,
                    self.source.config.concurrency,
                    finish=lambda record: self._spooled_file(record, spool / "out"),
                )
                try:
                    await download.run(series_uid, instance_uid, "*")
                except DicomWebError as exc:
                    failure = exc  # what was retrieved whole still goes to the destination
                self._flush()
        finally:
            await remove_spool(spool)
        result = self._result()
        if failure is not None:
            counts, name = result.counts, self.destination.config.name
            failure.add_detail(
                f"The transfer stopped: {counts.stored} instances were stored at {name!r} and "
                f"{counts.already_present} were there already before it did. Call again to complete it: "
                "instances already stored are not sent twice."
            )
            raise failure
        return result

    async def _report_retrieved(self, done: float, total: float | None, message: str) -> None:
        await self._report()

    async def _report(self) -> None:
        answered = len(self.outcomes)
        await self.progress(
            self.retrieved + answered,
            None,
            f"retrieved {self.retrieved} instances ({self.retrieved_bytes / 1e6:.1f} MB); "
            f"{answered} answered by {self.destination.config.name!r}",
        )

    async def _spooled_file(self, record: SavedFile, out: Path) -> SavedFile | None:
        """A whole retrieved file: de-identify it if asked, then queue it for the destination, waiting while
        the spool is full."""
        if self._stopped is not None:
            raise self._stopped  # the destination cannot take more: stop retrieving
        if self.deidentification is not None:
            copy = await self.deidentification.apply(record, out)
            if copy is None:
                # Left out, never sent as it is; reported under the new UID it would have had.
                self.retrieved += 1
                new_uid = self.deidentification.uid(record.instance_uid)
                failed = replace(record.dicom_file(), instance_uid=new_uid)
                reason = self.deidentification.failures[-1]
                self.outcomes.append(
                    StoreOutcome(failed, StoreStatus.FAILED, reason=f"not de-identified: {reason}")
                )
                return None
            record = copy
        file = record.dicom_file()
        while self._spooled and self._spooled + file.size > self.spool_bytes:
            self._flush()  # what waits goes out, so that something is released
            await self._released.wait()
        self._spooled += file.size
        self.peak_spooled = max(self.peak_spooled, self._spooled)
        self._pending.append(file)
        self.retrieved += 1
        self.retrieved_bytes += file.size
        count = _NEAR_BATCH_COUNT if is_near(self.destination.client) else _FAR_BATCH_COUNT
        if len(self._pending) >= count or sum(f.size for f in self._pending) >= _BATCH_BYTES:
            self._flush()
        return record

    def _flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._group.start_soon(self._send, batch)

    async def _send(self, batch: list[DicomFile]) -> None:
        # Known once the destination has answered a request (the server's warm-up or the first batch).
        self._senders.total_tokens = 1 if is_near(self.destination.client) else _FAR_SENDERS
        async with self._senders:
            try:
                if self._stopped is not None:
                    raise self._stopped
                outcomes = await self.destination.client.store_instances(batch)
            except DicomWebError as exc:
                self._stopped = self._stopped or exc
                reason = f"not stored: {exc}"
                outcomes = [StoreOutcome(f, StoreStatus.FAILED, reason=reason) for f in batch]
            if self._stopped is None and _refused_whole(outcomes):
                # A request-level failure (credentials, an unreachable server) would meet every batch.
                self._stopped = DicomWebError(outcomes[0].reason or "the destination refused the request")
        self.outcomes.extend(outcomes)
        await anyio.to_thread.run_sync(_remove, batch)
        self._spooled -= sum(file.size for file in batch)
        self._released.set()
        self._released = anyio.Event()
        await self._report()

    def _result(self) -> TransferResult:
        by_status: dict[StoreStatus, list[StoreOutcome]] = {status: [] for status in StoreStatus}
        for outcome in self.outcomes:
            by_status[outcome.status].append(outcome)
        stored, present = by_status[StoreStatus.STORED], by_status[StoreStatus.ALREADY_PRESENT]
        failed = by_status[StoreStatus.FAILED]
        warnings = [f"{o.file.instance_uid}: {w}" for o in self.outcomes for w in o.warnings]
        if self.deidentification is not None:
            warnings = self.deidentification.summary() + warnings
        return TransferResult(
            source=self.source.config.name,
            destination=self.destination.config.name,
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


async def transfer_instances(
    source: DicomWebOperations,
    destination: DicomWebOperations,
    *,
    study_uid: str,
    series_uid: str | None = None,
    instance_uid: str | None = None,
    deidentify: bool = False,
    progress: Progress,
) -> TransferResult:
    """Copy a study, series or instance from ``source`` to ``destination``, de-identified if asked."""
    deidentification = Deidentification(source.config) if deidentify else None
    transfer = Transfer(source, destination, progress, deidentification)
    return await transfer.run(study_uid, series_uid, instance_uid)


def _remove(files: list[DicomFile]) -> None:
    for file in files:
        file.path.unlink(missing_ok=True)


def _refused_whole(outcomes: list[StoreOutcome]) -> bool:
    """Every file failed because its request did (the reasons dicomweb/stow gives a failed request), not
    because the server refused the instances one by one."""
    return bool(outcomes) and all(
        o.status is StoreStatus.FAILED and (o.reason or "").startswith(("not stored:", "not sent,"))
        for o in outcomes
    )
