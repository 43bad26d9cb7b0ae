"""Orthanc's change log (``GET /changes`` on its REST API) read as a change feed of instances.

Orthanc logs every new patient, study, series and instance (and stable and modified events) with a
sequence number; the feed keeps the instance entries, with their UIDs looked up. Orthanc removes the
entries of a resource when it is deleted and logs no deletion, so this feed shows creations only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio

from ..config import ServerConfig
from ..errors import DicomWebError, InvalidInputError, NotFoundError
from .changefeed import check_change_feed_arguments
from .models import ChangeFeedEntry
from .servers import orthanc_rest_root
from .transport import HttpTransport, parse_json

__all__ = ["read_latest_orthanc_change", "read_orthanc_changes"]

_ACCEPT = {"Accept": "application/json"}
_OPERATION = "Read Orthanc's change log"
# Pages of the log read for one call at most: a long run of study- or series-level events is skipped,
# never read forever.
_MAX_PAGES = 10
_SCAN_PAGE = 1000
_ACTIONS = {"NewInstance": "Create", "ModifiedInstance": "Update"}


async def read_orthanc_changes(
    http: HttpTransport,
    config: ServerConfig,
    since: int,
    limit: int | None,
    window: tuple[str | None, str | None] = (None, None),
) -> list[ChangeFeedEntry]:
    """Up to ``limit`` (default 10) instance entries after sequence ``since``, oldest first."""
    check_change_feed_arguments(1, since, limit, None, None)
    if any(window):
        raise InvalidInputError("Orthanc's change log has no time window: page with offset instead.")
    rest = orthanc_rest_root(config.url)
    changes = await _instance_changes(http, rest, since, limit or 10)
    return await _describe(http, rest, changes[: limit or 10], config.concurrency)


async def read_latest_orthanc_change(http: HttpTransport, config: ServerConfig) -> ChangeFeedEntry | None:
    """The newest instance entry: the log's last sequence number, then the page that ends there."""
    rest = orthanc_rest_root(config.url)
    page = parse_json(_OPERATION, await http.read(_OPERATION, "GET", f"{rest}/changes?last", headers=_ACCEPT))
    last = int(page.get("Last", 0)) if isinstance(page, dict) else 0
    changes = await _instance_changes(http, rest, max(0, last - _SCAN_PAGE), _SCAN_PAGE)
    entries = await _describe(http, rest, changes[-1:], 1)
    return entries[0] if entries else None


async def _instance_changes(http: HttpTransport, rest: str, since: int, limit: int) -> list[dict[str, Any]]:
    """The instance entries of the log after ``since`` (at least ``limit`` of them when there are)."""
    changes: list[dict[str, Any]] = []
    for _ in range(_MAX_PAGES):
        # Pages larger than asked: the log also holds patient, study and series events to skip.
        url = f"{rest}/changes?since={since}&limit={max(limit, _SCAN_PAGE)}"
        page = parse_json(_OPERATION, await http.read(_OPERATION, "GET", url, headers=_ACCEPT)) or {}
        if not isinstance(page, dict):
            break
        entries = page.get("Changes") or []
        changes += [c for c in entries if isinstance(c, dict) and c.get("ChangeType") in _ACTIONS]
        since = int(page.get("Last", since))
        if len(changes) >= limit or page.get("Done", True):
            break
    return changes


async def _describe(
    http: HttpTransport, rest: str, changes: list[dict[str, Any]], concurrency: int
) -> list[ChangeFeedEntry]:
    lookup = _Lookup(http, rest)
    found: list[ChangeFeedEntry | None] = [None] * len(changes)
    limiter = anyio.Semaphore(concurrency)
    failures: list[DicomWebError] = []

    async def describe(index: int, change: dict[str, Any]) -> None:
        async with limiter:
            try:
                found[index] = await lookup.entry(change)
            except DicomWebError as exc:  # raised below as itself, not inside an exception group
                failures.append(exc)
                group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for index, change in enumerate(changes):
            group.start_soon(describe, index, change)
    if failures:
        raise failures[0]
    return [entry for entry in found if entry is not None]


class _Lookup:
    """Instance -> series -> study UIDs, each series and study asked for once."""

    def __init__(self, http: HttpTransport, rest: str) -> None:
        self._http = http
        self._rest = rest
        self._parents: dict[str, tuple[str | None, str | None]] = {}  # series ID -> (series UID, study UID)

    async def _get(self, path: str) -> dict[str, Any] | None:
        operation = _OPERATION
        try:
            data = parse_json(
                operation, await self._http.read(operation, "GET", self._rest + path, headers=_ACCEPT)
            )
        except NotFoundError:
            return None  # deleted since it was logged
        return data if isinstance(data, dict) else None

    async def _series(self, series_id: str) -> tuple[str | None, str | None]:
        if series_id not in self._parents:
            series = await self._get(f"/series/{series_id}") or {}
            study = (
                await self._get(f"/studies/{series.get('ParentStudy')}")
                if series.get("ParentStudy")
                else None
            )
            self._parents[series_id] = (_tag(series, "SeriesInstanceUID"), _tag(study, "StudyInstanceUID"))
        return self._parents[series_id]

    async def entry(self, change: dict[str, Any]) -> ChangeFeedEntry:
        instance_id = str(change.get("ID", ""))
        instance = (
            await self._get(f"/instances/{instance_id}") if instance_id.replace("-", "").isalnum() else None
        )
        series_uid = study_uid = None
        if instance and isinstance(instance.get("ParentSeries"), str):
            series_uid, study_uid = await self._series(instance["ParentSeries"])
        return ChangeFeedEntry(
            sequence=int(change.get("Seq", -1)),
            timestamp=_timestamp(change.get("Date")),
            action=_ACTIONS.get(str(change.get("ChangeType"))),
            state="Current" if instance else "Deleted",
            study_uid=study_uid,
            series_uid=series_uid,
            instance_uid=_tag(instance, "SOPInstanceUID"),
            partition=None,
            metadata=None,
        )


def _tag(resource: dict[str, Any] | None, keyword: str) -> str | None:
    value = ((resource or {}).get("MainDicomTags") or {}).get(keyword)
    return str(value) if value else None


def _timestamp(value: Any) -> str | None:
    """Orthanc writes 20261122T081015 (server local time); ISO 8601 reads better, without a zone."""
    try:
        return datetime.strptime(str(value), "%Y%m%dT%H%M%S").isoformat()
    except ValueError:
        return None
