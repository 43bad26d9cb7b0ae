"""What differs between DICOMweb servers, in one place.

Each server kind has a ``ServerProfile``; the client asks the profile, never the kind, so a new quirk is
one field here. Facts come from the servers' conformance statements and probes of the real servers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ..config import AZURE_HOST_SUFFIX, ServerKind

__all__ = ["ServerProfile", "guess_kind_from_url", "orthanc_rest_root", "profile_for", "root_hint"]


@dataclass(frozen=True, slots=True)
class ServerProfile:
    kind: ServerKind
    # Orthanc does not percent-decode query values: wildcards, carets and commas must go raw, and a space,
    # which cannot be sent raw, becomes the single-character wildcard "?".
    raw_query_values: bool = False
    # Azure answers 400 to a QIDO limit above 200.
    qido_limit_cap: int | None = None
    delete_method: Literal["dicomweb", "orthanc-rest", "unsupported"] = "dicomweb"
    # "changefeed": the Azure DICOM service's; "orthanc": Orthanc's REST change log, read as one.
    change_feed: Literal["changefeed", "orthanc", "none"] = "none"
    single_part_store: bool = False
    rendered: bool = True
    # WADO-RS rendered parameters the server honours as PS3.18 says: viewport=w,h (the picture comes back at
    # that size; Orthanc stretches to it, so the caller sends the aspect-kept size) and window=c,w,function
    # in modality units, MONOCHROME1 inverted. Where False, a sized or windowed picture is rendered locally.
    rendered_viewport: bool = False
    rendered_window: bool = False
    # Orthanc ignores a duplicate silently (200, stored copy kept): look the UIDs up before storing to
    # report "already present" truthfully.
    silent_duplicates: bool = False
    # QIDO matching. Azure matches exactly: a '*' would be matched literally (no results), so a name
    # prefix goes as fuzzy matching (word prefix on person names) and any other wildcard is refused.
    wildcards: bool = True
    uid_lists: bool = True
    fuzzy_matching: bool = True
    # Orthanc ignores includefield=all silently: the caller is told.
    include_all: bool = True


_PROFILES: dict[ServerKind, ServerProfile] = {
    ServerKind.AZURE: ServerProfile(
        ServerKind.AZURE,
        qido_limit_cap=200,
        change_feed="changefeed",
        single_part_store=True,
        wildcards=False,
        uid_lists=False,
    ),
    ServerKind.ORTHANC: ServerProfile(
        ServerKind.ORTHANC,
        raw_query_values=True,
        delete_method="orthanc-rest",
        change_feed="orthanc",
        silent_duplicates=True,
        fuzzy_matching=False,
        include_all=False,
        # Probed on 1.10 + DICOMweb 1.7: exact viewport sizes, HU windows (linear and sigmoid, signed and
        # rescaled data, MONOCHROME1 inverted). Its default ignores the instance's own window (min-max).
        rendered_viewport=True,
        rendered_window=True,
    ),
    # dcm4chee deletes only rejected studies (403 otherwise): the DICOMweb DELETE is tried and its 403
    # explained by the error hint.
    ServerKind.DCM4CHEE: ServerProfile(ServerKind.DCM4CHEE),
    ServerKind.GOOGLE: ServerProfile(ServerKind.GOOGLE),
    ServerKind.GENERIC: ServerProfile(ServerKind.GENERIC),
}


def profile_for(kind: ServerKind) -> ServerProfile:
    if kind is ServerKind.AUTO:
        raise ValueError("resolve ServerKind.AUTO before asking for its profile")
    return _PROFILES[kind]


def guess_kind_from_url(url: str) -> ServerKind | None:
    """The kind a URL alone gives away, or None when only asking the server can tell."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host.endswith(AZURE_HOST_SUFFIX):
        return ServerKind.AZURE
    if host == "healthcare.googleapis.com" or "/dicomstores/" in parts.path.lower():
        return ServerKind.GOOGLE
    if "/dcm4chee-arc/" in parts.path.lower():
        return ServerKind.DCM4CHEE
    return None


def orthanc_rest_root(dicomweb_url: str) -> str:
    """Orthanc's REST API lives at the DICOMweb root without its last path segment (``/dicom-web``)."""
    parts = urlsplit(dicomweb_url)
    path = parts.path.rstrip("/").rpartition("/")[0]
    return f"{parts.scheme}://{parts.netloc}{path}"


def root_hint(url: str) -> str | None:
    """What is likely wrong with a DICOMWEB_URL that misses the DICOMweb root, or None when it looks right.

    Shown with a 400/404/405 answer: a server's own REST API at the same address answers DICOMweb paths
    with errors that say nothing of the URL (Orthanc: 'Missing "since" argument')."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    base = f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "") + path
    if (parts.hostname or "").endswith(AZURE_HOST_SUFFIX):
        if not re.search(r"/v\d", path):
            return f"DICOMWEB_URL has no API version: the Azure DICOM service answers at {base}/v2 (or /v1)."
        return None
    if not path:
        return (
            f"DICOMWEB_URL {base} has no path, so it may be the server's own address rather than its "
            f"DICOMweb root: for Orthanc use {base}/dicom-web, for dcm4chee {base}/dcm4chee-arc/aets/AET/rs."
        )
    if parts.port == 8042 and not path.endswith("/dicom-web"):
        root = base.removesuffix(path)
        return f"Orthanc serves DICOMweb under /dicom-web: try DICOMWEB_URL={root}/dicom-web."
    return None
