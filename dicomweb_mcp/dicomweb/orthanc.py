"""What Orthanc does outside DICOMweb: how it is recognised, and deletion through its REST API.

Orthanc's DICOMweb plugin answers DELETE with 405; its REST API (the DICOMweb root without ``/dicom-web``)
looks a UID up and deletes the resources found.
"""

from __future__ import annotations

import logging
from typing import Any

from ..config import ServerKind
from ..dicom.reference import Reference
from ..errors import NotFoundError
from .servers import orthanc_rest_root
from .transport import HttpTransport, parse_json

__all__ = ["detect_kind", "orthanc_delete"]

log = logging.getLogger("dicomweb_mcp")

_TYPES = {"study": "Study", "series": "Series", "instance": "Instance"}
_RESOURCES = {"study": "studies", "series": "series", "instance": "instances"}


async def detect_kind(http: HttpTransport, dicomweb_url: str) -> tuple[ServerKind, bool]:
    """``(kind, definitive)``: Orthanc answers ``GET {rest root}/system`` with its name and version;
    others do not. A 401/403 is not definitive: ask again once credentials work."""
    url = orthanc_rest_root(dicomweb_url) + "/system"
    sent = await http.send(
        "Detecting the server kind",
        "GET",
        url,
        headers={"Accept": "application/json"},
        content=None,
        retry=True,
    )
    response = sent.response
    await http.read_body("Detecting the server kind", response)
    if response.status_code == 401:
        return ServerKind.GENERIC, False  # ask again once the credentials work
    # 403 and everything else: not Orthanc's REST API, or not for us (a proxy that shows DICOMweb only).
    if response.status_code == 200:
        try:
            info = response.json()
        except ValueError:
            info = None
        if isinstance(info, dict) and "ApiVersion" in info and "DicomAet" in info:
            log.info("detected an Orthanc server (version %s)", info.get("Version"))
            return ServerKind.ORTHANC, True
    return ServerKind.GENERIC, True


async def _json(http: HttpTransport, operation: str, method: str, url: str, body: bytes | None = None) -> Any:
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "text/plain"
    return parse_json(operation, await http.read(operation, method, url, headers=headers, content=body))


def _main_tag(resource: Any, keyword: str) -> Any:
    """A MainDicomTags value from an Orthanc REST resource."""
    return ((resource or {}).get("MainDicomTags") or {}).get(keyword) if isinstance(resource, dict) else None


async def orthanc_delete(http: HttpTransport, dicomweb_url: str, target: Reference) -> None:
    """Look the UID up, keep the resources that really are in the named study (and series), delete all.

    Orthanc keys resources by patient too, so one UID can be several resources (the same study under
    two patient IDs): every one is deleted, or the study would survive a reported deletion.
    """
    level, study_uid, series_uid, instance_uid = (
        target.level,
        target.study_uid,
        target.series_uid,
        target.instance_uid,
    )
    rest = orthanc_rest_root(dicomweb_url)
    operation = f"Delete {level}"
    uid = instance_uid or series_uid or study_uid
    matches = await _json(http, operation, "POST", f"{rest}/tools/lookup", uid.encode()) or []
    resource = _RESOURCES[level]
    ids = [
        m["ID"]
        for m in matches
        if isinstance(m, dict)
        and m.get("Type") == _TYPES[level]
        # An Orthanc ID is a hash, but it goes into a URL: check it anyway.
        and isinstance(m.get("ID"), str)
        and m["ID"].replace("-", "").isalnum()
    ]
    targets = []
    for orthanc_id in ids:
        if level != "study":
            # Never delete across studies: the UID must belong to the study (and series) named.
            parent = await _json(http, operation, "GET", f"{rest}/{resource}/{orthanc_id}/study")
            if _main_tag(parent, "StudyInstanceUID") != study_uid:
                continue
            if level == "instance":
                series = await _json(http, operation, "GET", f"{rest}/instances/{orthanc_id}/series")
                if _main_tag(series, "SeriesInstanceUID") != series_uid:
                    continue
        targets.append(orthanc_id)
    if not targets:
        where = "" if level == "study" else f" in study {study_uid}"
        raise NotFoundError(operation, 404, target.path, f"no {level} {uid}{where}")
    for orthanc_id in targets:
        await http.read(
            operation, "DELETE", f"{rest}/{resource}/{orthanc_id}", headers={"Accept": "application/json"}
        )
