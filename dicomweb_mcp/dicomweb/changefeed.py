"""The change feed of the Azure DICOM service and Microsoft's open-source server (``/changefeed``).

v1 pages by sequence number (``offset`` is the last sequence seen); v2 adds a time window and ``offset``
counts entries to skip within it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import InvalidInputError
from .models import ChangeFeedEntry
from .transport import HttpTransport, parse_json, parse_json_objects

__all__ = ["change_feed_entry", "change_feed_version", "read_change_feed", "read_latest_change"]

_ACCEPT = {"Accept": "application/json"}


def change_feed_version(url: str) -> int:
    """The Azure API version in the URL (``/v1``, ``/v1.0-prerelease``, ``/v2``): it decides what the change
    feed's ``offset`` means (v1: a sequence number; v2: entries to skip). No version segment means v1."""
    for segment in urlsplit(url).path.split("/"):
        match = re.fullmatch(r"v(\d+)(\.\d+)?(-[a-z]+)?", segment)
        if match:
            return int(match.group(1))
    return 1


def check_change_feed_arguments(
    version: int, offset: int, limit: int | None, start_time: str | None, end_time: str | None
) -> None:
    most = 200 if version >= 2 else 100
    if offset < 0 or (limit is not None and not 1 <= limit <= most):
        raise InvalidInputError(
            f"offset must be at least 0 and limit between 1 and {most} (change feed v{version})."
        )
    if (start_time or end_time) and version < 2:
        raise InvalidInputError("start_time and end_time need the v2 API: use a DICOMWEB_URL ending in /v2.")


async def read_change_feed(
    http: HttpTransport,
    root: str,
    *,
    offset: int,
    limit: int | None,
    include_metadata: bool,
    start_time: str | None,
    end_time: str | None,
) -> list[ChangeFeedEntry]:
    params: dict[str, str] = {"offset": str(offset), "includemetadata": str(include_metadata).lower()}
    if limit is not None:
        params["limit"] = str(limit)
    if start_time:
        params["startTime"] = start_time
    if end_time:
        params["endTime"] = end_time
    operation = "Read the change feed"
    url = f"{root}/changefeed?{urlencode(params)}"
    response = await http.read(operation, "GET", url, headers=_ACCEPT)
    return [change_feed_entry(item) for item in parse_json_objects(operation, response)]


async def read_latest_change(
    http: HttpTransport, root: str, *, include_metadata: bool
) -> ChangeFeedEntry | None:
    """``/changefeed/latest``: the newest entry, or None for an empty feed (204)."""
    operation = "Read the latest change feed entry"
    url = f"{root}/changefeed/latest?includemetadata={str(include_metadata).lower()}"
    data = parse_json(operation, await http.read(operation, "GET", url, headers=_ACCEPT))
    return change_feed_entry(data) if isinstance(data, dict) else None


def change_feed_entry(item: Mapping[str, Any]) -> ChangeFeedEntry:
    """Keys are camelCase on the wire and enum values PascalCase: read keys case-insensitively."""
    lower = {str(k).lower(): v for k, v in item.items()}

    def text(key: str) -> str | None:
        value = lower.get(key)
        return None if value is None else str(value)

    try:
        sequence = int(lower.get("sequence", -1))
    except (TypeError, ValueError):
        sequence = -1
    metadata = lower.get("metadata")
    return ChangeFeedEntry(
        sequence=sequence,
        timestamp=text("timestamp"),
        action=text("action"),
        state=text("state"),
        study_uid=text("studyinstanceuid"),
        series_uid=text("seriesinstanceuid"),
        instance_uid=text("sopinstanceuid"),
        partition=text("partitionname"),
        metadata=metadata if isinstance(metadata, dict) else None,
    )
