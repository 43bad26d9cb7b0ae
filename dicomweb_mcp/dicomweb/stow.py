"""STOW-RS: files in batches, several batches in flight, and each response turned into one outcome per file.

The rule that matters: an instance counts as stored only when the server names it in
ReferencedSOPSequence. Orthanc silently drops parts it does not like and still answers 200.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import anyio

from ..dicom.dicomjson import element_values, sequence_items
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
from .multipart import FileBody, FilePart, MultipartFileBody
from .transport import HttpTransport

__all__ = [
    "DEFAULT_STORE_BATCH_BYTES",
    "DEFAULT_STORE_BATCH_COUNT",
    "FAILURE_REASONS",
    "WARNING_REASONS",
    "batch_limits",
    "batches",
    "existing_instances",
    "outcomes_from_response",
    "store_batches",
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

# Orthanc UID lists go into the URL: keep the URL well under common 8 KiB request-line limits.
_UID_LOOKUP_BATCH = 50
_SOP_INSTANCE_UID = "00080018"
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

_REFERENCED_SOP_SEQUENCE = "00081199"
_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_INSTANCE_UID = "00081155"
_FAILURE_REASON = "00081197"
_WARNING_REASON = "00081196"


def _uid(item: Mapping[str, Any]) -> str | None:
    values = element_values(item, _REFERENCED_SOP_INSTANCE_UID)
    return str(values[0]) if values else None


def _codes(item: Mapping[str, Any], tag: str) -> list[int]:
    return [int(v) for v in element_values(item, tag) if isinstance(v, int | str) and str(v).isdigit()]


def _describe(code: int, table: Mapping[int, str]) -> str:
    text = table.get(code)
    return f"{text} (code {code}, 0x{code:04X})" if text else f"code {code} (0x{code:04X})"


def outcomes_from_response(
    dataset: Mapping[str, Any],
    sent: Sequence[DicomFile],
    *,
    known_before: Iterable[str] = (),
    retried: bool = False,
) -> list[StoreOutcome]:
    """One outcome per file in ``sent``, in order.

    ``known_before``: SOP instance UIDs the server had before this request. ``retried``: the request was
    sent more than once, so "already stored" may be this request's own earlier attempt; it counts as
    stored unless the UID was known before.
    """
    referenced = {_uid(item): item for item in sequence_items(dataset, _REFERENCED_SOP_SEQUENCE)}
    failed: dict[str, Mapping[str, Any]] = {}
    anonymous_failures: list[int] = []
    for item in sequence_items(dataset, _FAILED_SOP_SEQUENCE):
        uid = _uid(item)
        if uid:
            failed[uid] = item
        else:
            anonymous_failures.extend(_codes(item, _FAILURE_REASON))
    already = set(known_before)
    outcomes = []
    for file in sent:
        uid = file.instance_uid
        if uid in failed:
            codes = _codes(failed[uid], _FAILURE_REASON)
            code = codes[0] if codes else None
            if code == ALREADY_STORED and retried and uid not in already:
                outcomes.append(StoreOutcome(file, StoreStatus.STORED))
            elif code == ALREADY_STORED:
                outcomes.append(StoreOutcome(file, StoreStatus.ALREADY_PRESENT, code, FAILURE_REASONS[code]))
            else:
                reason = _describe(code, FAILURE_REASONS) if code is not None else "no reason given"
                outcomes.append(StoreOutcome(file, StoreStatus.FAILED, code, reason))
        elif uid in referenced:
            warnings = [_describe(c, WARNING_REASONS) for c in _codes(referenced[uid], _WARNING_REASON)]
            status = StoreStatus.ALREADY_PRESENT if uid in already else StoreStatus.STORED
            outcomes.append(StoreOutcome(file, status, warnings=warnings))
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
    for start in range(0, len(uids), _UID_LOOKUP_BATCH):
        chunk = uids[start : start + _UID_LOOKUP_BATCH]
        result = await search({"SOPInstanceUID": chunk}, limit=len(chunk))
        for dataset in result.datasets:
            found.update(str(v) for v in element_values(dataset, _SOP_INSTANCE_UID))
    return found


def batch_limits(
    files: Sequence[DicomFile], concurrency: int, max_count: int, max_bytes: int, looked_up: bool
) -> tuple[int, int]:
    """Files and bytes per batch so that ``concurrency`` requests can be in flight: 200 files with 4
    connections go as 4 batches of 50, not 2 of 100 (over a WAN each request runs at the per-connection
    rate). Batches that are looked up first hold at most one lookup's worth of UIDs."""
    total = sum(f.size for f in files)
    count = max(1, min(max_count, -(-len(files) // concurrency)))
    if looked_up:
        count = min(count, _UID_LOOKUP_BATCH)
    size = max(_MIN_BATCH_BYTES, min(max_bytes, -(-total // concurrency)))
    return count, size


def batches(files: Sequence[DicomFile], max_count: int, max_bytes: int) -> list[list[DicomFile]]:
    """Consecutive runs of at most ``max_count`` files and ``max_bytes`` (a larger file goes alone)."""
    result: list[list[DicomFile]] = []
    current: list[DicomFile] = []
    size = 0
    for file in files:
        if current and (len(current) >= max_count or size + file.size > max_bytes):
            result.append(current)
            current, size = [], 0
        current.append(file)
        size += file.size
    if current:
        result.append(current)
    return result


async def store_batches(
    http: HttpTransport,
    url: str,
    groups: Sequence[Sequence[DicomFile]],
    *,
    single_part: bool,
    concurrency: int,
    lookup: Lookup | None = None,
    on_batch: OnBatch | None = None,
    on_sent: OnFileSent | None = None,
) -> list[StoreOutcome]:
    """POST each group (up to ``concurrency`` at once); one outcome per file, in order.

    A batch that fails is reported failed with the reason, beside the outcomes of the others; after an
    error every further request would meet again (credentials, unreachable server), nothing more is sent.
    """
    results: list[list[StoreOutcome] | None] = [None] * len(groups)
    stopped: list[DicomWebError] = []
    limiter = anyio.Semaphore(concurrency)

    async def send(index: int, batch: Sequence[DicomFile]) -> None:
        async with limiter:
            if stopped:
                reason = f"not sent, an earlier request failed: {stopped[0]}"
                done = [StoreOutcome(f, StoreStatus.FAILED, reason=reason) for f in batch]
            else:
                try:
                    known = await lookup(batch) if lookup is not None else set()
                    done = await _store_batch(http, url, batch, single_part, known, on_sent)
                except DicomWebError as exc:
                    done = [StoreOutcome(f, StoreStatus.FAILED, reason=f"not stored: {exc}") for f in batch]
                    if isinstance(exc, _REPEATING_ERRORS):
                        stopped.append(exc)
            results[index] = done
            if on_batch is not None:
                await on_batch(done)

    async with anyio.create_task_group() as group:
        for index, batch in enumerate(groups):
            group.start_soon(send, index, batch)
    return [outcome for done in results for outcome in done or ()]


async def _store_batch(
    http: HttpTransport,
    url: str,
    batch: Sequence[DicomFile],
    single_part: bool,
    known: set[str],
    on_sent: OnFileSent | None,
) -> list[StoreOutcome]:
    by_path = {f.path: f for f in batch}

    async def part_sent(part: FilePart) -> None:
        if on_sent is not None:
            await on_sent(by_path[part.path])

    parts = [FilePart(f.path, f.size) for f in batch]
    body: FileBody | MultipartFileBody = (
        FileBody(parts[0], on_part_sent=part_sent)
        if single_part
        else MultipartFileBody(parts, on_part_sent=part_sent)
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
    is_answer = isinstance(dataset, dict) and (
        _REFERENCED_SOP_SEQUENCE in dataset or _FAILED_SOP_SEQUENCE in dataset
    )
    if response.status_code >= 400 and not is_answer:
        # An error body (Orthanc's {"HttpError", "Message"}), not a per-instance answer.
        raise error_for_status(operation, response.status_code, response.request.url.path, raw, attempts)
    if not isinstance(dataset, dict):
        raise ProtocolError(
            f"{operation}: the server's answer (HTTP {response.status_code}) is not a "
            "DICOM JSON dataset, so the outcome of each file is unknown."
        )
    # If an earlier attempt may have been carried out, "already stored" can be its doing: stored.
    return outcomes_from_response(dataset, batch, known_before=known, retried=sent.maybe_done)
