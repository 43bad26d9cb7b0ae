"""STOW-RS: files in batches, several batches in flight, and each response turned into one outcome per file.

The rule that matters: an instance counts as stored only when the server names it in
ReferencedSOPSequence. Orthanc silently drops parts it does not like and still answers 200.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..dicom.dicomjson import element_values, json_key, sequence_items
from ..errors import (
    AuthenticationError,
    CredentialError,
    DicomWebError,
    PermissionDeniedError,
    ProtocolError,
    ServerUnreachableError,
    UnsupportedMediaTypeError,
    error_for_status,
)
from ..files.dicomfiles import DicomFile
from .models import QueryResult, StoreOutcome, StoreStatus
from .multipart import FileBody, MultipartFileBody
from .transport import HttpTransport

__all__ = [
    "DEFAULT_STORE_BATCH_BYTES",
    "DEFAULT_STORE_BATCH_COUNT",
    "FAILURE_REASONS",
    "MAX_LOOKUP_BATCH",
    "WARNING_REASONS",
    "Stow",
    "batch_limits",
    "batches",
    "existing_instances",
    "group_by_status",
    "outcomes_from_response",
]

# A STOW request carries at most this many instances / bytes: large enough to amortise the round trip,
# small enough that one failure does not cost a whole study's upload.
DEFAULT_STORE_BATCH_COUNT = 100
DEFAULT_STORE_BATCH_BYTES = 256 * 1024 * 1024
# Errors that the next request would meet again: stop sending instead of failing batch after batch.
_REPEATING_ERRORS = (
    AuthenticationError,
    PermissionDeniedError,
    CredentialError,
    ServerUnreachableError,
    UnsupportedMediaTypeError,
)

# Orthanc UID lists go into the URL: keep the URL well under common 8 KiB request-line limits. A batch
# that is looked up first holds at most this many files, so one lookup covers it.
MAX_LOOKUP_BATCH = 50
# Below this, splitting a batch by bytes costs more round trips than it saves.
_MIN_BATCH_BYTES = 1024 * 1024

OnFileSent = Callable[[DicomFile], Awaitable[None]]
OnBatch = Callable[[Sequence[StoreOutcome]], Awaitable[None]]
# The SOP instance UIDs of these files that the server already has (for servers that hide duplicates).
Lookup = Callable[[Sequence[DicomFile]], Awaitable[set[str]]]

# PS3.18 / PS3.4 status codes and the Azure DICOM service's own, as data.
FAILURE_REASONS: Mapping[int, str] = {
    0x0110: "processing failure",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xA700: "out of resources",
    0xA900: "data set does not match the SOP class, or its study does not match the request's study",
    43265: "the instance's StudyInstanceUID does not match the study named in the request",
    45070: "an instance with the same study, series and SOP instance UIDs is already stored",
    45071: "the instance is being stored by another request, or an earlier attempt failed and is not "
    "cleaned up yet: try again later",
    0xC000: "the server cannot understand the file",
}
WARNING_REASONS: Mapping[int, str] = {
    1: "stored with validation warnings",
    0xB000: "data elements were coerced",
    0xB006: "elements were discarded",
    0xB007: "data set does not match the SOP class (stored with validation warnings)",
}
ALREADY_STORED = 45070


def _uid(item: Mapping[str, Any]) -> str | None:
    values = element_values(item, "ReferencedSOPInstanceUID")
    return str(values[0]) if values else None


def _codes(item: Mapping[str, Any], keyword: str) -> list[int]:
    return [int(v) for v in element_values(item, keyword) if isinstance(v, int | str) and str(v).isdigit()]


def _describe(code: int, table: Mapping[int, str]) -> str:
    text = table.get(code)
    return f"{text} (code {code}, 0x{code:04X})" if text else f"code {code} (0x{code:04X})"


def outcomes_from_response(
    dataset: Mapping[str, Any],
    sent: Sequence[DicomFile],
    *,
    retried: bool = False,
) -> list[StoreOutcome]:
    """One outcome per file in ``sent``, in order.

    ``retried``: the request was sent more than once, so "already stored" may be this request's own earlier
    attempt; it counts as stored. (Instances a lookup found on the server before are not sent at all:
    ``Stow`` reports them already present itself.)
    """
    referenced = {_uid(item): item for item in sequence_items(dataset, "ReferencedSOPSequence")}
    failed: dict[str, Mapping[str, Any]] = {}
    anonymous_failures: list[int] = []
    for item in sequence_items(dataset, "FailedSOPSequence"):
        uid = _uid(item)
        if uid:
            failed[uid] = item
        else:
            anonymous_failures.extend(_codes(item, "FailureReason"))
    outcomes = []
    for file in sent:
        uid = file.instance_uid
        if uid in failed:
            codes = _codes(failed[uid], "FailureReason")
            code = codes[0] if codes else None
            if code == ALREADY_STORED and retried:
                outcomes.append(StoreOutcome(file, StoreStatus.STORED))
            elif code == ALREADY_STORED:
                outcomes.append(StoreOutcome(file, StoreStatus.ALREADY_PRESENT, code, FAILURE_REASONS[code]))
            else:
                reason = _describe(code, FAILURE_REASONS) if code is not None else "no reason given"
                outcomes.append(StoreOutcome(file, StoreStatus.FAILED, code, reason))
        elif uid in referenced:
            warnings = [_describe(c, WARNING_REASONS) for c in _codes(referenced[uid], "WarningReason")]
            outcomes.append(StoreOutcome(file, StoreStatus.STORED, warnings=warnings))
        else:
            reason = (
                "the server did not acknowledge this instance, so it was not stored "
                "(some servers drop parts silently)"
            )
            code = anonymous_failures[0] if anonymous_failures else None
            if code is not None:
                reason = f"{_describe(code, FAILURE_REASONS)}; {reason}"
            outcomes.append(StoreOutcome(file, StoreStatus.FAILED, code, reason))
    return outcomes


async def existing_instances(
    search: Callable[..., Awaitable[QueryResult]], files: Sequence[DicomFile]
) -> set[str]:
    """The SOP instance UIDs of ``files`` the server already has, by QIDO (``search`` is the client's
    instance search), for servers that hide duplicates."""
    found: set[str] = set()
    uids = sorted({f.instance_uid for f in files})
    for start in range(0, len(uids), MAX_LOOKUP_BATCH):
        chunk = uids[start : start + MAX_LOOKUP_BATCH]
        result = await search({"SOPInstanceUID": chunk}, limit=len(chunk))
        for dataset in result.datasets:
            found.update(str(v) for v in element_values(dataset, "SOPInstanceUID"))
    return found


def batch_limits(
    files: Sequence[DicomFile], concurrency: int, max_count: int, max_bytes: int
) -> tuple[int, int]:
    """Files and bytes per batch so that ``concurrency`` requests can be in flight: 200 files with 4
    connections go as 4 batches of 50, not 2 of 100 (over a WAN each request runs at the per-connection
    rate)."""
    total = sum(f.size for f in files)
    count = max(1, min(max_count, -(-len(files) // concurrency)))
    size = max(_MIN_BATCH_BYTES, min(max_bytes, -(-total // concurrency)))
    return count, size


def group_by_status(outcomes: Iterable[StoreOutcome]) -> dict[StoreStatus, list[StoreOutcome]]:
    """The outcomes of each status (every status a key), each list in the order given."""
    grouped: dict[StoreStatus, list[StoreOutcome]] = {status: [] for status in StoreStatus}
    for outcome in outcomes:
        grouped[outcome.status].append(outcome)
    return grouped


def _full(batch: Sequence[DicomFile], file: DicomFile, max_count: int, max_bytes: int) -> bool:
    """Whether ``file`` starts a new batch: at most ``max_count`` files and ``max_bytes`` in one (a larger
    file goes alone)."""
    return bool(batch) and (len(batch) >= max_count or sum(f.size for f in batch) + file.size > max_bytes)


def batches(files: Sequence[DicomFile], max_count: int, max_bytes: int) -> list[list[DicomFile]]:
    """The batches a ``Stow`` sends ``files`` in, added in this order."""
    result: list[list[DicomFile]] = []
    for file in files:
        if not result or _full(result[-1], file, max_count, max_bytes):
            result.append([])
        result[-1].append(file)
    return result


class Stow:
    """Files to one STOW-RS URL: gathered into batches of at most ``batch_count`` files and
    ``batch_bytes`` (a larger file goes alone), at most ``senders`` requests in flight. The one owner of
    STOW batching and concurrency, for a list of files (store) and a stream of them (transfer).

    A batch that fails is reported failed with the reason, beside the outcomes of the others; after an
    error every further request would meet again (credentials, an unreachable server) nothing more is
    sent and ``stopped`` holds that error. Use ``Stow.open``.
    """

    def __init__(
        self,
        http: HttpTransport,
        url: str,
        group: TaskGroup,
        *,
        single_part: bool,
        batch_count: int,
        batch_bytes: int,
        senders: int,
        lookup: Lookup | None,
        on_batch: OnBatch | None,
        on_sent: OnFileSent | None,
    ) -> None:
        self._http, self._url, self._group = http, url, group
        self._single_part = single_part
        self._count = 1 if single_part else batch_count
        self._bytes = batch_bytes
        self._limiter = anyio.Semaphore(senders)
        self._lookup, self._on_batch, self._on_sent = lookup, on_batch, on_sent
        self._pending: list[DicomFile] = []
        self._results: list[list[StoreOutcome] | None] = []
        self.stopped: DicomWebError | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, http: HttpTransport, url: str, **options: Any) -> AsyncIterator[Stow]:
        """A Stow whose requests have all been answered when the block ends."""
        async with anyio.create_task_group() as group:
            stow = cls(http, url, group, **options)
            yield stow
            stow.flush()

    def add(self, file: DicomFile) -> None:
        """Queue ``file``; a full batch starts on its way."""
        if _full(self._pending, file, self._count, self._bytes):
            self.flush()
        self._pending.append(file)
        if len(self._pending) >= self._count:
            self.flush()

    def flush(self) -> None:
        """Send what is queued, however little."""
        if self._pending:
            batch, self._pending = self._pending, []
            self._results.append(None)
            self._group.start_soon(self._send, len(self._results) - 1, batch)

    @property
    def outcomes(self) -> list[StoreOutcome]:
        """One outcome per file answered so far, in the order the files were added."""
        return [outcome for done in self._results for outcome in done or ()]

    async def _send(self, index: int, batch: list[DicomFile]) -> None:
        async with self._limiter:
            if self.stopped is not None:
                error = self.stopped
                reason = f"not sent, an earlier request failed: {error}"
                done = [StoreOutcome(f, StoreStatus.FAILED, reason=reason, error=error) for f in batch]
            else:
                try:
                    known = await self._lookup(batch) if self._lookup is not None else set()
                    done = await self._store_new(batch, known)
                except DicomWebError as exc:
                    reason = f"not stored: {exc}"
                    done = [StoreOutcome(f, StoreStatus.FAILED, reason=reason, error=exc) for f in batch]
                    if isinstance(exc, _REPEATING_ERRORS):
                        self.stopped = self.stopped or exc
            self._results[index] = done
            if self._on_batch is not None:
                await self._on_batch(done)

    async def _store_new(self, batch: list[DicomFile], known: set[str]) -> list[StoreOutcome]:
        """Store the files of ``batch`` the server does not hold yet: those it holds are not sent again (a
        resumed cohort study, a transfer called again) and are reported already present."""
        unknown = [file for file in batch if file.instance_uid not in known]
        answered = iter(
            await _store_batch(self._http, self._url, unknown, self._single_part, self._on_sent)
            if unknown
            else []
        )
        return [
            next(answered)
            if file.instance_uid not in known
            else StoreOutcome(file, StoreStatus.ALREADY_PRESENT)
            for file in batch
        ]


async def _store_batch(
    http: HttpTransport,
    url: str,
    batch: Sequence[DicomFile],
    single_part: bool,
    on_sent: OnFileSent | None,
) -> list[StoreOutcome]:
    async def part_sent(index: int) -> None:
        if on_sent is not None:
            await on_sent(batch[index])

    body: FileBody | MultipartFileBody = (
        FileBody(batch[0], on_part_sent=part_sent)
        if single_part
        else MultipartFileBody(batch, on_part_sent=part_sent)
    )
    headers = {
        "Accept": "application/dicom+json",
        "Content-Type": body.content_type,
        "Content-Length": str(body.content_length),
    }
    operation = "Store instances"
    # 409 (all failed, e.g. already stored) and 400 (Orthanc: some failed) still carry the per-instance
    # answer.
    async with http.stream(
        operation, "POST", url, headers=headers, content=body, ok=(200, 202, 400, 409)
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
    answers = ("ReferencedSOPSequence", "FailedSOPSequence")
    is_answer = isinstance(dataset, dict) and any(json_key(name) in dataset for name in answers)
    if response.status_code >= 400 and not is_answer:
        # An error body (Orthanc's {"HttpError", "Message"}), not a per-instance answer.
        raise error_for_status(operation, response.status_code, response.request.url.path, raw, attempts)
    if not isinstance(dataset, dict):
        raise ProtocolError(
            f"{operation}: the server's answer (HTTP {response.status_code}) is not a "
            "DICOM JSON dataset, so the outcome of each file is unknown."
        )
    # If an earlier attempt may have been carried out, "already stored" can be its doing: stored.
    return outcomes_from_response(dataset, batch, retried=sent.maybe_done)
